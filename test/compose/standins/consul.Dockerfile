# Stand-in for hashicorp/consul:1.16.1 (docs/compose.md): the Consul binary scripts/consul-binary.sh builds from
# Consul's Go module at v1.16.1 (the one the contract suite runs), on the debian:bookworm-slim stand-in.
FROM debian:bookworm-slim
COPY consul /bin/consul
RUN mkdir -p /consul/data /consul/config
EXPOSE 8300 8301 8302 8500 8600 8600/udp
ENTRYPOINT ["consul"]
CMD ["agent", "-dev", "-client", "0.0.0.0"]

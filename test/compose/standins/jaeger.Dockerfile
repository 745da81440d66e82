# Stand-in for jaegertracing/all-in-one (docs/compose.md): `cmd/all-in-one` of the Go module
# github.com/jaegertracing/jaeger (scripts/go-module-binary.sh; its query API, without the web UI's files, which the
# module does not carry), and wget for the compose file's health check, on the debian:bookworm-slim stand-in.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wget >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY all-in-one /go/bin/all-in-one-linux
USER 10001
EXPOSE 4317 4318 14269 16686
ENTRYPOINT ["/go/bin/all-in-one-linux"]

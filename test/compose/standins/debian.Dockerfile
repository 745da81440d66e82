# Stand-in for debian:bookworm-slim (docs/compose.md): the minbase rootfs of rootfs.sh, imported, plus this
# machine's CA certificates, so that an image built on it can fetch from a registry through a TLS proxy that re-signs
# with a local CA. The policy-rc.d is the official image's: no service starts while a package installs.
FROM worker-resolver-standin/bookworm-rootfs:import
COPY local-ca/ /usr/local/share/ca-certificates/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
CMD ["bash"]

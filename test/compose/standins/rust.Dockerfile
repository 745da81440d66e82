# Stand-in for rust:<version>-slim-bookworm (docs/compose.md), the image rust/Dockerfile's `compile` stage builds in;
# only the compose test's compile mode (WORKER_RESOLVER_COMPOSE_RUST=compile) needs it. The official image's layout
# and environment: the toolchain under RUSTUP_HOME=/usr/local/rustup, cargo and rustc on PATH from
# CARGO_HOME=/usr/local/cargo/bin, and gcc, libc6-dev and ca-certificates from Debian (cc links, the *-sys crates
# compile C). The toolchain is this machine's rustup toolchain of the same version (bin, lib, libexec: no docs, no
# rustup itself), since static.rust-lang.org is not reachable here; on the debian:bookworm-slim stand-in, so cargo
# trusts what the host trusts when it fetches crates.
FROM debian:bookworm-slim
ARG RUST_VERSION
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
COPY toolchain/ /usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu/
RUN mkdir -p /usr/local/cargo/bin \
 && for b in cargo rustc rustdoc; do \
      ln -s "/usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu/bin/$b" /usr/local/cargo/bin/; \
    done \
 && chmod -R a+w /usr/local/cargo \
 && cargo --version && rustc --version

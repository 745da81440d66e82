#!/usr/bin/env bash
# Prints the path of a program built from a published Go module, building it first when it is not cached.
#
#   scripts/go-module-binary.sh NAME MODULE VERSION PACKAGE [LDFLAGS]
#   e.g. scripts/go-module-binary.sh docker-compose github.com/docker/compose/v2 v2.40.3 ./cmd
#
# The compose test's tools that no registry here ships as a binary (Compose v2, Jaeger all-in-one; docs/compose.md):
# `go install MODULE/PACKAGE@VERSION` refuses both (their go.mod files have replace/exclude directives), so the
# module's source is taken from the Go module cache (`go mod download`, verified against the checksum database),
# copied to a temporary directory and built there as the main module, under `nice -n 19` (the machine is shared).
# The binary is cached outside the clone, keyed by name and version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/NAME-VERSION/NAME
# Build output goes to stderr, so `bin=$(scripts/go-module-binary.sh …)` captures only the path.
set -euo pipefail
if [ "$#" -lt 4 ]; then
  echo "usage: $0 NAME MODULE VERSION PACKAGE [LDFLAGS]" >&2
  exit 2
fi
name="$1" module="$2" version="$3" package="$4" ldflags="${5:-}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/$name-$version"
bin="$cache/$name"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null 2>&1; then
  echo "go-module-binary: go is not installed; it is needed once to build $module $version into $cache" >&2
  exit 1
fi
mkdir -p "$cache"
t0=$SECONDS
echo "go-module-binary: building $name from $module $version into $cache (once; minutes on 2 cores)" >&2
src="$(cd / && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [ -z "$src" ] || [ ! -f "$src/go.mod" ]; then
  echo "go-module-binary: go mod download gave no source directory for $module@$version" >&2
  exit 1
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/go-module-binary.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -a "$src/." "$work/"
chmod -R u+w "$work"
(
  cd "$work"
  GOFLAGS=-buildvcs=false CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "-s -w $ldflags" -o "$cache/$name.tmp" "$package"
) >&2
mv "$cache/$name.tmp" "$bin"
echo "go-module-binary: built $name in $((SECONDS - t0)) s" >&2
echo "$bin"

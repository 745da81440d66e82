#!/usr/bin/env bash
# Prints the path of the Debian bookworm root filesystem (a tar) that the stand-in for debian:bookworm-slim is
# imported from, building it first when it is not cached (docs/compose.md, "The stand-in images").
#
# `mmdebstrap --variant=minbase bookworm` (the variant the official slim image is made from), from Debian's
# packages, once, under `nice -n 19`; cached outside the clone, keyed by suite and variant:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/rootfs-bookworm-minbase/rootfs.tar
# Delete that directory to take a newer bookworm point release. Progress goes to stderr.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/worker-resolver/rootfs-bookworm-minbase"
tar="$cache/rootfs.tar"
if [ -s "$tar" ]; then
  echo "$tar"
  exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "rootfs: mmdebstrap is not installed (scripts/test-compose.sh installs it)" >&2
  exit 1
fi
mkdir -p "$cache"
t0=$SECONDS
echo "rootfs: mmdebstrap --variant=minbase bookworm into $cache (once; about a minute)" >&2
# --dpkgopt / --aptopt as the official slim image: no documentation, no apt package lists left behind.
nice -n 19 mmdebstrap --quiet --format=tar --variant=minbase \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$cache/rootfs.tmp.tar" >&2
mv "$cache/rootfs.tmp.tar" "$tar"
echo "rootfs: built in $((SECONDS - t0)) s ($(du -sh "$tar" | cut -f1))" >&2
echo "$tar"

# Sourced by scripts/test-rust.sh and scripts/test-compose.sh: the cargo target directory they share, and a guard
# against building from one checkout and running another's binaries.
#
#   source scripts/cargo-target.sh
#   claim_cargo_target "$root/rust"     # after: cargo in that workspace builds that checkout's code
#
# The target directory is a cache outside the clone (${CARGO_TARGET_DIR:-~/.cache/worker-resolver/cargo-target}),
# so that DataFusion is compiled once per machine, not once per clone. Cargo names a workspace crate's artifacts by
# its package name and version, not by its path, and calls them fresh when they are newer than the sources: after
# another clone of this repository built into the same directory, its binaries (consul-worker, the coordinator, the
# test binaries) can pass for this clone's, silently (seen: a compose run with a consul-worker lacking --advertise).
# So the directory records which checkout last built into it; when that is another checkout, this one's workspace
# crates are cleaned (`cargo clean -p`, a minute of rebuilding; DataFusion and the other dependencies stay).
# The claim also takes an exclusive lock (flock) on the directory, held until the calling script exits, so two
# checkouts' runs on one machine take turns instead of overwriting each other's binaries mid-run.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/worker-resolver/cargo-target}"

claim_cargo_target() {
  local workspace
  workspace="$(cd "$1" && pwd -P)"
  mkdir -p "$CARGO_TARGET_DIR"
  local stamp="$CARGO_TARGET_DIR/.worker-resolver-checkout"
  # fd 9 stays open (and the lock held) for the rest of the calling script.
  exec 9>>"$CARGO_TARGET_DIR/.worker-resolver.lock"
  if ! flock -n 9; then
    echo "cargo-target: $CARGO_TARGET_DIR is in use by another run; waiting for it" >&2
    flock 9
  fi
  local last=""
  [ ! -f "$stamp" ] || last="$(cat "$stamp")"
  # No record but artifacts: built by a run from before this guard, from whichever checkout.
  if [ "$last" != "$workspace" ] && { [ -n "$last" ] || [ -d "$CARGO_TARGET_DIR/debug" ]; }; then
    echo "cargo-target: $CARGO_TARGET_DIR was last built from ${last:-an unrecorded checkout}; cleaning this" \
      "workspace's crates" >&2
    local args=() p
    # Each member's package name: the first `name =` under [package] ([[bin]] sections have names too).
    for p in $(awk '/^\[package\]/ { inpkg = 1; next } /^\[/ { inpkg = 0 }
                    inpkg && /^name = / { gsub(/"/, "", $3); print $3 }' "$workspace"/*/Cargo.toml); do
      args+=(-p "$p")
    done
    (cd "$workspace" && cargo clean -q "${args[@]}")
  fi
  printf '%s\n' "$workspace" >"$stamp"
}

#!/usr/bin/env bash
# The Rust workspace's checks: cargo fmt --check, clippy -D warnings, all tests (unit, the
# client against the real TypeScript sidecar, and the end-to-end cluster of real DataFusion
# workers). Works on a fresh machine with only the Rust and Node toolchains installed:
# it adds the rustfmt/clippy components if missing, and builds the TypeScript CLI (dist/) when
# it is missing or older than src/. Build output goes to a cache outside the clone
# ($CARGO_TARGET_DIR, default ~/.cache/worker-resolver/cargo-target), so reruns are incremental; it is claimed
# for this checkout first (scripts/cargo-target.sh: another clone's binaries never pass for this one's).
#   scripts/test-rust.sh            # everything
#   scripts/test-rust.sh --no-e2e   # skip the DataFusion cluster tests (the core crate only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/cargo-target.sh
source scripts/cargo-target.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
E2E=1
[[ "${1:-}" == "--no-e2e" ]] && E2E=0

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
start=$(date +%s)

# rustup installs into ~/.cargo/bin, which a non-login shell (CI) may not have on PATH.
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
command -v cargo >/dev/null || { echo "test-rust: cargo not found (install Rust with rustup)" >&2; exit 1; }
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    step "rustup component add $c"
    rustup component add "$c"
  fi
done

# The integration tests run the real sidecar: node dist/cli/main.js serve.
if [[ ! -f dist/cli/main.js || ! -f dist/testing/index.js || -n "$(find src -newer dist/cli/main.js -name '*.ts' -print -quit)" ]]; then
  step "building the TypeScript CLI (dist/)"
  [[ -d node_modules ]] || npm ci --no-audit --no-fund
  npm run build
fi

# The real-Consul end-to-end scenario runs the agent binary the contract tests use.
if [[ $E2E == 1 && -z "${WORKER_RESOLVER_CONSUL_BIN:-}" && -x scripts/consul-binary.sh ]]; then
  step "finding the Consul binary (scripts/consul-binary.sh)"
  WORKER_RESOLVER_CONSUL_BIN="$(scripts/consul-binary.sh)"
  export WORKER_RESOLVER_CONSUL_BIN
fi

claim_cargo_target "$ROOT/rust"
cd "$ROOT/rust"
step "cargo fmt --check"
cargo fmt --all --check
NICE=(nice -n 10)
if [[ $E2E == 1 ]]; then
  step "cargo clippy --workspace --all-targets --all-features -D warnings"
  "${NICE[@]}" cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
  step "cargo test --workspace --all-features"
  "${NICE[@]}" cargo test --locked --workspace --all-features
else
  step "cargo clippy -p worker-resolver-client -D warnings"
  "${NICE[@]}" cargo clippy --locked -p worker-resolver-client --all-targets -- -D warnings
  step "cargo test -p worker-resolver-client"
  "${NICE[@]}" cargo test --locked -p worker-resolver-client
fi
echo "test-rust: ok in $(( $(date +%s) - start ))s"

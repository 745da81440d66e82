#!/usr/bin/env bash
# The one command for every test on a fresh machine of this project's kind (README, "The two commands"):
#   1. provision what the tests need (scripts/provision.sh: Debian peers, the real Consul agent binary);
#   2. the Rust workspace's tests, when scripts/test-rust.sh exists;
#   3. `npm test`: typecheck, lint + format check, every TypeScript test — the contract suite against the dev server
#      and the real Consul agent, and the real-Consul fault tests included;
#   4. the compose cluster built and run for real (scripts/test-compose.sh: its own Docker engine, stand-in images,
#      the Rust workers and coordinator from step 2's build; docs/compose.md).
# Runs every step even when one fails, and exits non-zero if any did. `.ci/run` is `npm ci` + this.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

started=$SECONDS
failed=()
step() {
  local name="$1"
  shift
  local t0=$SECONDS
  echo "test-all: ── $name" >&2
  if "$@"; then
    echo "test-all: ── $name: ok ($((SECONDS - t0)) s)" >&2
  else
    echo "test-all: ── $name: FAILED ($((SECONDS - t0)) s)" >&2
    failed+=("$name")
  fi
}

step provision bash scripts/provision.sh
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-all: provisioning failed; the tests would fail for want of their peers" >&2
  exit 1
fi
[ -d node_modules ] || step "npm ci" npm ci --no-audit --no-fund
if [ -f scripts/test-rust.sh ]; then step rust bash scripts/test-rust.sh; fi
step "npm test" npm test
step compose bash scripts/test-compose.sh

echo "test-all: done in $((SECONDS - started)) s" >&2
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-all: failed: ${failed[*]}" >&2
  exit 1
fi

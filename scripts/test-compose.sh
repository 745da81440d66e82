#!/usr/bin/env bash
# The compose cluster, built and run for real (docs/compose.md; a step of scripts/test-all.sh, runnable alone):
#
#   bash scripts/test-compose.sh            # as root, on a machine of this project's kind
#
#   1. provisions what it needs: Debian's docker.io (the engine), mmdebstrap, iptables; Compose v2 and buildx (Bake,
#      through which Compose builds) built once from their Go modules (scripts/go-module-binary.sh: Debian's
#      docker-compose 1.29 rejects the file);
#   2. starts its own dockerd, as root, with a data root, exec root, socket and pidfile in a directory it owns;
#   3. loads the stand-in images under the official names (test/compose/standins/build.sh: no image registry is
#      reachable here), cached by content outside the clone;
#   4. runs docker-compose.yml unchanged plus test/compose/docker-compose.test.yml (Grafana out) and
#      test/compose/docker-compose.prebuilt.yml (the Rust image from the binaries the Rust tests built), `up --build
#      --wait`, then the checks (test/compose/cluster.test.ts);
#   5. tears everything down whatever happened: `compose down -v`, dockerd stopped by its PID, its bridge (docker0),
#      its iptables rules and chains, ip_forward as it was, and its directory removed.
#
# Environment: WORKER_RESOLVER_COMPOSE_KEEP=1 leaves the cluster and dockerd up at the end (for a look by hand; the
# script prints how to tear down). CARGO_TARGET_DIR: where the Rust binaries are built (the Rust tests' cache).
# WORKER_RESOLVER_COMPOSE_RUST=compile builds the Rust image as users do instead, rust/Dockerfile's `compile` stage
# (a release build of DataFusion inside the build, ~30 min on 2 cores; on a stand-in rust image), and runs the same
# checks on it; not part of `npm run test:all` for its time (docs/compose.md, "The users' Rust build").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
started=$SECONDS
log() { echo "test-compose: $* ($((SECONDS - started)) s)" >&2; }
# Warnings are defects: Compose's own (a deprecated setting, a missing plugin, an unset variable) and those of the
# images' builds (npm's, cargo's or a tool's "warning:" inside a RUN step). no_warnings LOG WHAT
no_warnings() {
  if grep -iE 'level=warn|\bwarn(ing)?(:|\[)|npm warn ' "$1" >&2; then
    echo "test-compose: $2 warned (above)" >&2
    exit 1
  fi
}

COMPOSE_VERSION=v2.40.3
# Compose builds through Bake, i.e. `docker buildx bake`, as users' Compose does (its own builder is deprecated and
# warns); buildx at the version Compose v2.40.3's go.mod requires.
BUILDX_VERSION=v0.29.1
rust_mode="${WORKER_RESOLVER_COMPOSE_RUST:-prebuilt}"
case "$rust_mode" in
  prebuilt | compile) ;;
  *)
    echo "test-compose: WORKER_RESOLVER_COMPOSE_RUST must be prebuilt or compile, not '$rust_mode'" >&2
    exit 2
    ;;
esac
export WORKER_RESOLVER_COMPOSE_RUST="$rust_mode"
# shellcheck source=scripts/cargo-target.sh
source scripts/cargo-target.sh
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="/usr/local/go/bin:$PATH"
command -v cargo >/dev/null 2>&1 || [ ! -x "$HOME/.cargo/bin/cargo" ] || PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
  echo "test-compose: needs root (it starts a Docker engine)" >&2
  exit 1
fi

# ── 1. provisioning ────────────────────────────────────────────────────────────────────────────────────────────────
missing=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # As scripts/provision.sh: a policy-rc.d that forbids starting services, so docker.io's install starts no dockerd
  # (this script starts its own, with its own paths); an existing policy is left alone.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# worker-resolver provisioning: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$made_policy" = 0 ] || rm -f "$policy"
fi
# The checks run under tsx: install the dev dependencies first when this script runs alone on a fresh clone, rather
# than fail after the images are built.
if [ ! -d node_modules/tsx ]; then
  log "npm ci (the checks need the dev dependencies)"
  npm ci --no-audit --no-fund >&2
fi
# The Debian client (20.10) speaks the engine's own API version; /usr/local/bin/docker may be a newer client only.
docker=/usr/bin/docker
buildx_bin="$(scripts/go-module-binary.sh docker-buildx github.com/docker/buildx "$BUILDX_VERSION" ./cmd/buildx \
  "-X github.com/docker/buildx/version.Version=$BUILDX_VERSION -X github.com/docker/buildx/version.Package=github.com/docker/buildx")"
compose_bin="$(scripts/go-module-binary.sh docker-compose github.com/docker/compose/v2 "$COMPOSE_VERSION" ./cmd \
  "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION")"
log "engine $(/usr/sbin/dockerd --version | awk '{print $3}' | tr -d ,), compose $("$compose_bin" version --short 2>/dev/null), buildx $(DOCKER_CONFIG=/nonexistent "$buildx_bin" version 2>/dev/null | awk '{print $2}')"

# The Rust binaries the images run: those the Rust tests built. The same cargo command as scripts/test-rust.sh's test
# build (same flags, same target directory), so after that step nothing is compiled again; from scratch it compiles
# DataFusion (~25 min on this machine kind). A binary that no integration test needs is built with --bins after it.
rust_bins=(consul-worker worker-resolver-coordinator)
if [ "$rust_mode" = prebuilt ]; then
  log "cargo: the Rust binaries (debug, in $CARGO_TARGET_DIR)"
  claim_cargo_target "$root/rust"
  (cd rust && nice -n 10 cargo test --locked --workspace --all-features --no-run -q 2>&1 | { grep -v '^  Executable ' || true; } >&2)
  for b in "${rust_bins[@]}"; do
    if [ ! -x "$CARGO_TARGET_DIR/debug/$b" ] || [ -n "$(find rust -name '*.rs' -newer "$CARGO_TARGET_DIR/debug/$b" -print -quit)" ]; then
      (cd rust && nice -n 10 cargo build --locked --workspace --all-features --bins -q) >&2
      break
    fi
  done
else
  log "the Rust image is compiled by rust/Dockerfile's compile stage (release), as users build it"
fi

# ── 2. the engine ──────────────────────────────────────────────────────────────────────────────────────────────────
if ip link show docker0 >/dev/null 2>&1; then
  echo "test-compose: a docker0 bridge exists already (another engine?); refusing to share it" >&2
  exit 1
fi
state="$(mktemp -d /tmp/worker-resolver-compose.XXXXXX)"
export DOCKER_HOST="unix://$state/docker.sock"
export DOCKER_CONFIG="$state/client-config"
# buildx as a CLI plugin of this run's client config only (where Compose looks for it), nowhere on the machine.
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$buildx_bin" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
ip_forward_before="$(cat /proc/sys/net/ipv4/ip_forward)"
forward_policy_before="$(iptables -S FORWARD | awk '$1 == "-P" { print $3 }')"
iptables-save >"$state/iptables.before"
dockerd_pid=""
compose=("$compose_bin" --project-directory "$root" -f "$root/docker-compose.yml" -f "$root/test/compose/docker-compose.test.yml")
[ "$rust_mode" = compile ] || compose+=(-f "$root/test/compose/docker-compose.prebuilt.yml")

teardown() {
  local rc=$?
  set +e
  if [ "${WORKER_RESOLVER_COMPOSE_KEEP:-}" = 1 ] && [ -n "$dockerd_pid" ]; then
    echo "test-compose: kept up. DOCKER_HOST=$DOCKER_HOST; tear down with: kill $dockerd_pid, then remove docker0," \
      "the DOCKER iptables chains and $state" >&2
    return
  fi
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    if [ "$rc" -ne 0 ]; then
      "${compose[@]}" ps -a >&2 2>/dev/null
      "${compose[@]}" logs --no-color --tail 40 >"$state/compose.log" 2>&1 && tail -n 200 "$state/compose.log" >&2
    fi
    timeout 120 "${compose[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1
    kill -TERM "$dockerd_pid"
    for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "test-compose: dockerd ($dockerd_pid) still up after 30 s; SIGKILL" >&2
      kill -KILL "$dockerd_pid"
    fi
  fi
  # What the engine leaves behind: its bridge, the rules and chains it added, ip_forward and FORWARD's policy.
  ip link delete docker0 2>/dev/null
  for table in filter nat; do
    # Docker's own chains and the default bridge's rules, and the rules of the project network's bridge (br-<id>)
    # that were not there before (compose down has normally removed them already).
    {
      iptables-save -t "$table" | grep -E '^-A .*(DOCKER|docker0)'
      iptables-save -t "$table" | grep -E '^-A .*br-[0-9a-f]{12}' | grep -vxF -f "$state/iptables.before"
    } | sed 's/^-A /-D /' | tac | while read -r rule; do
      # shellcheck disable=SC2086
      iptables -t "$table" $rule 2>/dev/null
    done
    for chain in $(iptables-save -t "$table" | sed -n 's/^:\(DOCKER[^ ]*\) .*/\1/p'); do
      iptables -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $(iptables-save -t "$table" | sed -n 's/^:\(DOCKER[^ ]*\) .*/\1/p'); do
      iptables -t "$table" -X "$chain" 2>/dev/null
    done
  done
  [ -z "$forward_policy_before" ] || iptables -P FORWARD "$forward_policy_before"
  echo "$ip_forward_before" >/proc/sys/net/ipv4/ip_forward
  # Mounts left under the data root (none after a clean stop) would make rm fail.
  grep -o " $state/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$state"
  if ip link show docker0 >/dev/null 2>&1 || iptables-save | grep -q DOCKER; then
    echo "test-compose: teardown left docker0 or DOCKER iptables rules behind" >&2
    rc=1
  fi
  echo "test-compose: torn down; $( [ "$rc" -eq 0 ] && echo ok || echo FAILED) in $((SECONDS - started)) s" >&2
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

log "starting dockerd (data root $state/data)"
# 9>&-: the cargo-target lock (scripts/cargo-target.sh) is not the engine's to hold.
/usr/sbin/dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
  --host "$DOCKER_HOST" --log-level warn >"$state/dockerd.log" 2>&1 9>&- &
dockerd_pid=$!
for _ in $(seq 1 60); do
  "$docker" version >/dev/null 2>&1 && break
  if ! kill -0 "$dockerd_pid" 2>/dev/null; then
    cat "$state/dockerd.log" >&2
    echo "test-compose: dockerd exited" >&2
    exit 1
  fi
  sleep 0.5
done
"$docker" version >/dev/null
log "dockerd $dockerd_pid up"

# ── 3. the stand-in images ─────────────────────────────────────────────────────────────────────────────────────────
test/compose/standins/build.sh "$docker" "$root/docker-compose.yml"
log "stand-in images loaded"

# The Rust image: from the binaries above, as the build context docker-compose.prebuilt.yml gives rust/Dockerfile's
# `prebuilt` stage; or, in compile mode, built from source by its `compile` stage before the cluster starts.
if [ "$rust_mode" = prebuilt ]; then
  export WORKER_RESOLVER_RUST_BIN="$state/rust-bin"
  export WORKER_RESOLVER_RUST_DOCKERFILE="$root/rust/Dockerfile"
  mkdir -p "$WORKER_RESOLVER_RUST_BIN"
  for b in "${rust_bins[@]}"; do
    cp "$CARGO_TARGET_DIR/debug/$b" "$WORKER_RESOLVER_RUST_BIN/"
  done
else
  # A release build of DataFusion on this machine's cores, inside the image build; timed on its own.
  log "compose build worker-1 (rust/Dockerfile, compile stage)"
  if ! timeout 5400 "${compose[@]}" build worker-1 >"$state/build.log" 2>&1; then
    tail -n 100 "$state/build.log" >&2
    echo "test-compose: rust/Dockerfile's compile stage failed" >&2
    exit 1
  fi
  no_warnings "$state/build.log" "compose build worker-1"
  log "the Rust image built from source"
fi

# ── 4. the cluster and the checks ──────────────────────────────────────────────────────────────────────────────────
log "compose up --build --wait"
if ! timeout 900 "${compose[@]}" up --build --wait --wait-timeout 300 --quiet-pull >"$state/up.log" 2>&1; then
  cat "$state/up.log" >&2
  echo "test-compose: the cluster did not come up healthy" >&2
  exit 1
fi
log "every service healthy"
no_warnings "$state/up.log" "compose up"
# Built through Bake, as users' Compose builds (buildx's first step reads the bake definition Compose writes).
if ! grep -q 'load local bake definitions' "$state/up.log"; then
  echo "test-compose: compose did not build through Bake (docker buildx bake)" >&2
  exit 1
fi
WORKER_RESOLVER_COMPOSE="$(printf '%s\n' "${compose[@]}")" \
  node --import tsx --test --test-timeout=600000 --test-reporter=spec test/compose/cluster.test.ts
log "checks passed"

#!/usr/bin/env bash
# Provisions what the test suite needs on a machine of this project's kind (Debian with Go, Node.js 20, npm),
# installing only what is missing:
#   - Debian peers: dnsmasq (a real DNS server for the DNS SRV tests), prometheus + promtool (the exposition lint,
#     the alert-rule tests, the dashboard queries run by a real Prometheus), openssl (the tests' own CA for mTLS).
#     Only the binaries are needed: the tests start their own instances on loopback ports and stop them.
#   - The real Consul agent of the contract suite, built once from its Go module into the cache
#     (scripts/consul-binary.sh; several minutes the first time, nothing afterwards).
# Idempotent: a second run does nothing but check.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

missing=()
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "provision: missing ${missing[*]}; as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "provision: installing ${missing[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian's prometheus package starts its own service on :9090 when it is installed; the tests need none. A
  # policy-rc.d that answers 101 ("action forbidden") stops invoke-rc.d / deb-systemd-invoke from starting it,
  # so there is nothing to stop afterwards (and nothing is ever killed by name). An existing policy is left alone.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# worker-resolver provisioning: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

consul="$("$root/scripts/consul-binary.sh")"
echo "provision: consul $("$consul" version | head -1 | awk '{print $2}') at $consul" >&2

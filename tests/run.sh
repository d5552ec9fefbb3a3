#!/usr/bin/env bash
# Runs every test of quorumsign on a fresh Debian machine: installs the real peer tools the
# integration tests use as referees (BIND, ldns, Knot, SoftHSM2), then runs the suites.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Daemons (named, knotd, unbound) are started by the tests themselves on loopback, never by the package:
# keep invoke-rc.d from starting services while installing.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
fi
$SUDO apt-get install -y -qq --no-install-recommends \
    softhsm2 bind9 bind9-utils bind9-dnsutils ldnsutils knot knot-dnssecutils knot-dnsutils unbound shellcheck >/dev/null
if [ -n "$policy" ]; then $SUDO rm -f "$policy"; fi

for t in dnssec-verify dnssec-keygen dnssec-dsfromkey ldns-keygen ldns-verify-zone ldns-signzone kzonecheck kzonesign keymgr softhsm2-util named unbound delv dig kdig knotd shellcheck; do
    command -v "$t" >/dev/null || { echo "missing test tool: $t" >&2; exit 1; }
done

cargo test --all-targets --features testkit "$@"

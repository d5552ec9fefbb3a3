#!/usr/bin/env bash
# Runs every test of quorumsign on a fresh Debian machine: installs the real peer tools the
# integration tests use as referees (BIND, ldns, Knot, SoftHSM2), then runs the suites.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    softhsm2 bind9-utils bind9-dnsutils ldnsutils knot-dnssecutils knot-dnsutils >/dev/null

for t in dnssec-verify dnssec-keygen dnssec-dsfromkey ldns-verify-zone ldns-signzone kzonecheck softhsm2-util; do
    command -v "$t" >/dev/null || { echo "missing test tool: $t" >&2; exit 1; }
done

cargo test --all-targets "$@"

#!/bin/sh
# Powers a node off through its BMC. MAP lists "NODE BMC-HOST USER PASSWORD-FILE" per line.
# Usage (as fence.command): ["fence-ipmi.sh", "MAP"]; quorumsign appends NODE ADDRESS TERM REASON.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-ipmi.sh MAP NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
map=$1 node=$2
case "$node" in ''|*[!0-9]*) echo "bad node id: $node" >&2; exit 2 ;; esac
[ -r "$map" ] || { echo "cannot read BMC map $map" >&2; exit 2; }
line=$(awk -v n="$node" '$1 == n { print; exit }' "$map")
[ -n "$line" ] || { echo "node $node is not in $map" >&2; exit 2; }
set -- $line
bmc=$2 user=$3 pwfile=$4
[ -r "$pwfile" ] || { echo "cannot read password file $pwfile" >&2; exit 2; }
command -v ipmitool >/dev/null || { echo "ipmitool is not installed" >&2; exit 2; }
ipmitool -I lanplus -H "$bmc" -U "$user" -f "$pwfile" chassis power off ||
    { echo "ipmitool power off of node $node via $bmc failed" >&2; exit 1; }
# Fenced only once the BMC reports the power off.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if ipmitool -I lanplus -H "$bmc" -U "$user" -f "$pwfile" chassis power status | grep -q 'is off'; then
        echo "node $node powered off via $bmc"
        exit 0
    fi
    sleep 2
done
echo "node $node: BMC $bmc does not report power off" >&2
exit 1

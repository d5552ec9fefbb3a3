#!/bin/sh
# Powers a node off through its BMC. MAP lists "NODE BMC-HOST USER PASSWORD-FILE" per line.
# Usage (as fence.command): ["fence-ipmi.sh", "MAP"]; quorumsign appends NODE ADDRESS TERM REASON.
# Every argument is checked (fence-args.sh), and so is the map's line, before anything runs;
# ipmitool gets its arguments as words, never through a shell.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-ipmi.sh MAP NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
# shellcheck source=fence-args.sh
. "$(dirname "$0")/fence-args.sh"
map=$1
shift
fence_args "$@"
[ -r "$map" ] || { echo "cannot read BMC map $map" >&2; exit 2; }
line=$(awk -v n="$fence_node" '$1 == n { print; exit }' "$map")
[ -n "$line" ] || { echo "node $fence_node is not in $map" >&2; exit 2; }
set -f
# shellcheck disable=SC2086 # the map's fields, split on purpose (globbing is off)
set -- $line
set +f
[ "$#" -eq 4 ] || { echo "$map: the line of node $fence_node needs NODE BMC-HOST USER PASSWORD-FILE" >&2; exit 2; }
bmc=$2 user=$3 pwfile=$4
fence_host "BMC host" "$bmc"
fence_host "BMC user" "$user"
[ -r "$pwfile" ] || { echo "cannot read password file $pwfile" >&2; exit 2; }
command -v ipmitool >/dev/null || { echo "ipmitool is not installed" >&2; exit 2; }
ipmitool -I lanplus -H "$bmc" -U "$user" -f "$pwfile" chassis power off ||
    { echo "ipmitool power off of node $fence_node via $bmc failed" >&2; exit 1; }
# Fenced only once the BMC reports the power off.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if ipmitool -I lanplus -H "$bmc" -U "$user" -f "$pwfile" chassis power status | grep -q 'is off'; then
        echo "node $fence_node powered off via $bmc"
        exit 0
    fi
    sleep 2
done
echo "node $fence_node: BMC $bmc does not report power off" >&2
exit 1

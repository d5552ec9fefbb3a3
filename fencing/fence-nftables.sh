#!/bin/sh
# Cuts a node off: over ssh to HOST (a router or hypervisor on the node's path), adds nftables
# rules dropping all traffic to and from the node's address, in table inet quorumsign-fence.
# Usage (as fence.command): ["fence-nftables.sh", "HOST"]; quorumsign appends NODE ADDRESS TERM REASON.
# Every argument is checked (fence-args.sh) before anything runs; the command sent over ssh
# holds only the checked node id, address family and IP literal.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-nftables.sh HOST NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
# shellcheck source=fence-args.sh
. "$(dirname "$0")/fence-args.sh"
fence_host "host" "$1"
host=$1
shift
fence_args "$@"
command -v ssh >/dev/null || { echo "ssh is not installed" >&2; exit 2; }
remote="set -e
nft list table inet quorumsign-fence >/dev/null 2>&1 || nft add table inet quorumsign-fence
nft list chain inet quorumsign-fence forward >/dev/null 2>&1 ||
    nft add chain inet quorumsign-fence forward '{ type filter hook forward priority -10; }'
nft add rule inet quorumsign-fence forward $fence_family saddr '$fence_ip' drop comment '\"quorumsign node $fence_node\"'
nft add rule inet quorumsign-fence forward $fence_family daddr '$fence_ip' drop comment '\"quorumsign node $fence_node\"'"
ssh -o BatchMode=yes -o ConnectTimeout=10 -- "$host" "$remote" ||
    { echo "nftables fence of node $fence_node ($fence_ip) on $host failed" >&2; exit 1; }
echo "node $fence_node ($fence_ip) cut off on $host"

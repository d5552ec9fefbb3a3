#!/bin/sh
# Cuts a node off: over ssh to HOST (a router or hypervisor on the node's path), adds nftables
# rules dropping all traffic to and from the node's address, in table inet quorumsign-fence.
# Usage (as fence.command): ["fence-nftables.sh", "HOST"]; quorumsign appends NODE ADDRESS TERM REASON.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-nftables.sh HOST NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
host=$1 node=$2 addr=$3
case "$node" in ''|*[!0-9]*) echo "bad node id: $node" >&2; exit 2 ;; esac
ip=${addr%:*}
ip=${ip#[}; ip=${ip%]}
case "$ip" in
    *:*) fam=ip6 ;;
    *.*.*.*) fam=ip ;;
    *) echo "cannot take an IP address from '$addr'" >&2; exit 2 ;;
esac
command -v ssh >/dev/null || { echo "ssh is not installed" >&2; exit 2; }
ssh -o BatchMode=yes -o ConnectTimeout=10 "$host" "
    set -e
    nft list table inet quorumsign-fence >/dev/null 2>&1 || nft add table inet quorumsign-fence
    nft list chain inet quorumsign-fence forward >/dev/null 2>&1 ||
        nft add chain inet quorumsign-fence forward '{ type filter hook forward priority -10; }'
    nft add rule inet quorumsign-fence forward $fam saddr $ip drop comment \"quorumsign node $node\"
    nft add rule inet quorumsign-fence forward $fam daddr $ip drop comment \"quorumsign node $node\"
" || { echo "nftables fence of node $node ($ip) on $host failed" >&2; exit 1; }
echo "node $node ($ip) cut off on $host"

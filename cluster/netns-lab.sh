#!/usr/bin/env bash
# A lab where each node has its own network namespace, joined by a bridge, so partitions can be
# made with `ip link` (or nftables inside a namespace). Needs root (CAP_NET_ADMIN).
#
#   netns-lab.sh up LAB N SUBNET      namespaces LAB-1..LAB-N, addresses SUBNET.11 ... SUBNET.(10+N),
#                                     the bridge LAB-br with SUBNET.1 (the host side, for admin calls)
#   netns-lab.sh exec LAB I CMD...    run CMD in node I's namespace
#   netns-lab.sh isolate LAB I        cut node I off from everyone (its bridge port goes down)
#   netns-lab.sh heal LAB I           put it back
#   netns-lab.sh cut LAB I J          node I's packets to node J are dropped (one way; cut J I too
#                                     for both); the host (admin calls) still reaches both
#   netns-lab.sh uncut LAB I J        undo it
#   netns-lab.sh down LAB N           remove everything
#
# Example: a 3-node cluster, leader isolated:
#   sudo cluster/netns-lab.sh up qs 3 10.77.0
#   sudo cluster/netns-lab.sh exec qs 1 quorumsign node run --config node-1.toml &   # etc.
#   sudo cluster/netns-lab.sh isolate qs 1; ...; sudo cluster/netns-lab.sh heal qs 1
set -euo pipefail
die() { echo "netns-lab: $*" >&2; exit 2; }
[ "$#" -ge 2 ] || die "usage: netns-lab.sh up|exec|isolate|heal|cut|uncut|down LAB ..."
cmd=$1 lab=$2
case "$lab" in ''|*[!a-z0-9]*) die "LAB must be short lowercase letters and digits: $lab" ;; esac
[ "${#lab}" -le 8 ] || die "LAB must be at most 8 characters (interface names are short)"
num() { case "$1" in ''|*[!0-9]*) die "not a number: $1" ;; esac; }
case "$cmd" in
up)
    [ "$#" -eq 4 ] || die "usage: netns-lab.sh up LAB N SUBNET"
    n=$3 subnet=$4; num "$n"
    [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "SUBNET is three octets, e.g. 10.77.0"
    ip link add "$lab-br" type bridge
    ip addr add "$subnet.1/24" dev "$lab-br"
    ip link set "$lab-br" up
    for i in $(seq 1 "$n"); do
        ip netns add "$lab-$i"
        ip link add "$lab-v$i" type veth peer name eth0 netns "$lab-$i"
        ip link set "$lab-v$i" master "$lab-br" up
        ip netns exec "$lab-$i" ip link set lo up
        ip netns exec "$lab-$i" ip addr add "$subnet.$((10 + i))/24" dev eth0
        ip netns exec "$lab-$i" ip link set eth0 up
    done
    ;;
exec)
    [ "$#" -ge 4 ] || die "usage: netns-lab.sh exec LAB I CMD..."
    i=$3; num "$i"; shift 3
    exec ip netns exec "$lab-$i" "$@"
    ;;
isolate|heal)
    [ "$#" -eq 3 ] || die "usage: netns-lab.sh $cmd LAB I"
    i=$3; num "$i"
    ip link set "$lab-v$i" "$([ "$cmd" = isolate ] && echo down || echo up)"
    ;;
cut|uncut)
    [ "$#" -eq 4 ] || die "usage: netns-lab.sh $cmd LAB I J"
    i=$3 j=$4; num "$i"; num "$j"
    to=$(ip netns exec "$lab-$j" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
    [ -n "$to" ] || die "node $j has no address"
    if [ "$cmd" = cut ]; then
        ip netns exec "$lab-$i" ip route replace blackhole "$to/32"
    else
        ip netns exec "$lab-$i" ip route del blackhole "$to/32" 2>/dev/null || true
    fi
    ;;
down)
    [ "$#" -eq 3 ] || die "usage: netns-lab.sh down LAB N"
    n=$3; num "$n"
    for i in $(seq 1 "$n"); do ip netns del "$lab-$i" 2>/dev/null || true; done
    ip link del "$lab-br" 2>/dev/null || true
    ;;
*) die "unknown command $cmd" ;;
esac

#!/bin/sh
# Lab fence: records the fence in DIR/fenced-node-NODE; fails while DIR/fail exists.
# Usage (as fence.command): ["fence-file.sh", "DIR"]; quorumsign appends NODE ADDRESS TERM REASON.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-file.sh DIR NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
dir=$1 node=$2 addr=$3 term=$4 reason=$5
case "$node" in ''|*[!0-9]*) echo "bad node id: $node" >&2; exit 2 ;; esac
case "$term" in ''|*[!0-9]*) echo "bad term: $term" >&2; exit 2 ;; esac
[ -d "$dir" ] || { echo "no such directory: $dir" >&2; exit 2; }
if [ -e "$dir/fail" ]; then
    echo "lab fence refused: $(cat "$dir/fail")" >&2
    exit 1
fi
printf 'node=%s address=%s term=%s by=%s reason=%s\n' "$node" "$addr" "$term" "${QS_FENCE_BY:-?}" "$reason" >> "$dir/fenced-node-$node"
echo "node $node fenced (lab file)"

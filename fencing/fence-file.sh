#!/bin/sh
# Lab fence: records the fence in DIR/fenced-node-NODE; fails while DIR/fail exists.
# Usage (as fence.command): ["fence-file.sh", "DIR"]; quorumsign appends NODE ADDRESS TERM REASON.
set -eu
if [ "$#" -ne 5 ]; then
    echo "usage: fence-file.sh DIR NODE ADDRESS TERM REASON (got $# arguments)" >&2
    exit 2
fi
# shellcheck source=fence-args.sh
. "$(dirname "$0")/fence-args.sh"
dir=$1
shift
addr=$2
fence_args "$@"
[ -d "$dir" ] || { echo "no such directory: $dir" >&2; exit 2; }
if [ -e "$dir/fail" ]; then
    echo "lab fence refused: $(cat "$dir/fail")" >&2
    exit 1
fi
by=${QS_FENCE_BY:-?}
case "$by" in '' | *[!0-9?]*) by='?' ;; esac
printf 'node=%s address=%s term=%s by=%s reason=%s\n' "$fence_node" "$addr" "$fence_term" "$by" "$fence_reason" >> "$dir/fenced-node-$fence_node"
echo "node $fence_node fenced (lab file)"

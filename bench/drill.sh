#!/usr/bin/env bash
# Drill benchmark: N planned failovers (`quorumsign drill failover`) on a local 3-node cluster;
# prints each run's time from the command to the new serial validated on every node, and the
# median; then three hsm-loss drills and their publication gaps. Usage: bash bench/drill.sh [RUNS] (default 10). Needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
qs=target/release/quorumsign
dir=$(mktemp -d)
"$qs" demo --dir "$dir" --port 17800 > "$dir/demo.out" 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null; wait $demo 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do grep -q 'Press Ctrl-C' "$dir/demo.out" 2>/dev/null && break; sleep 0.1; done
grep -q 'Press Ctrl-C' "$dir/demo.out" || { echo "demo cluster did not start" >&2; cat "$dir/demo.out" >&2; exit 1; }
times=()
for i in $(seq 1 "$runs"); do
    out=$("$qs" drill failover --json --admin 127.0.0.1:17901)
    ms=$(printf '%s' "$out" | python3 -c '
import json,sys
r=json.load(sys.stdin)
assert r["ok"], r
print(next(s["at_ms"] for s in r["steps"] if s["step"]=="published by the new leader"))')
    echo "run $i: $ms ms"
    times+=("$ms")
    sleep 1
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "drill failover median: " a[int((NR+1)/2)] " ms over " NR " runs (min " a[1] ", max " a[NR] ")"}'
gaps=()
for i in 1 2 3; do
    out=$("$qs" drill hsm-loss --json --admin 127.0.0.1:17901)
    gap=$(printf '%s' "$out" | python3 -c '
import json,sys
r=json.load(sys.stdin)
assert r["ok"], r
print(next(s["detail"].split()[0] for s in r["steps"] if s["step"]=="publication gap"))')
    echo "hsm-loss $i: publication gap $gap ms"
    gaps+=("$gap")
    sleep 2
done
printf '%s\n' "${gaps[@]}" | sort -n | awk '{a[NR]=$1} END {print "drill hsm-loss median gap: " a[int((NR+1)/2)] " ms over " NR " runs"}'

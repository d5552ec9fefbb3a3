#!/usr/bin/env bash
# The main job on the embedded default (soft keys, no HSM): generate a KSK and a ZSK,
# sign examples/example.zone with NSEC3, validate the result, print the DS for the parent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/demo}"
cargo build --release --quiet
q=target/release/quorumsign
rm -rf "$out" && mkdir -p "$out"
echo "== keys"
$q keys generate --zone example --keystore "dir:$out/keys" --role ksk --algorithm 13
$q keys generate --zone example --keystore "dir:$out/keys" --role zsk --algorithm 13
echo "== sign (NSEC3, RFC 9276 defaults)"
$q sign --zone example --input examples/example.zone --output "$out/example.zone.signed" \
    --keystore "dir:$out/keys" --cache "$out/example.cache"
echo "== re-sign with the signature cache (nothing changed: nothing is signed again)"
$q sign --zone example --input examples/example.zone --output "$out/example.zone.signed" \
    --keystore "dir:$out/keys" --cache "$out/example.cache"
echo "== verify"
$q ds --zone example --keystore "dir:$out/keys" > "$out/ds"
$q verify --zone example --trust-anchor "$out/ds" "$out/example.zone.signed"
if command -v dnssec-verify >/dev/null; then dnssec-verify -q -o example. "$out/example.zone.signed" && echo "dnssec-verify: ok"; fi
echo "== DS for the parent"
cat "$out/ds"
echo "signed zone: $out/example.zone.signed"

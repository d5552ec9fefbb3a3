//! Deterministic synthetic zones for tests and benchmarks.
//!
//! - TLD-like: `n` delegations, each with two NS records; ~30 % carry a DS record and
//!   ~10 % have in-bailiwick name servers with glue (A and AAAA).
//! - flat: `n` hosts, each with an A and a TXT record.
//!
//! The same (kind, n, seed) always gives the same bytes.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Tld,
    Flat,
}

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Writes the zone text for `origin` (with trailing dot) into a string.
pub fn zone_text(shape: Shape, origin: &str, n: usize, seed: u64) -> String {
    let mut s = String::with_capacity(n * 120 + 512);
    let mut rng = Rng(seed);
    writeln!(s, "$ORIGIN {origin}\n$TTL 86400").unwrap();
    writeln!(
        s,
        "@ 3600 IN SOA ns1.nic.{origin} hostmaster.nic.{origin} 2026112201 1800 900 604800 3600"
    )
    .unwrap();
    writeln!(
        s,
        "@ IN NS ns1.nic\n@ IN NS ns2.nic\nns1.nic IN A 192.0.2.1\nns2.nic IN AAAA 2001:db8::1"
    )
    .unwrap();
    for i in 0..n {
        let r = rng.next();
        let label = label(i, r);
        match shape {
            Shape::Tld => {
                if r.is_multiple_of(10) {
                    writeln!(s, "{label} IN NS ns1.{label}\n{label} IN NS ns2.{label}").unwrap();
                    writeln!(
                        s,
                        "ns1.{label} IN A 198.51.{}.{}\nns2.{label} IN AAAA 2001:db8:{:x}::53",
                        (r >> 8) & 255,
                        (r >> 16) & 255,
                        (r >> 24) & 0xffff
                    )
                    .unwrap();
                } else {
                    let a = (r >> 32) % 1000;
                    writeln!(
                        s,
                        "{label} IN NS ns{}.dns-host{}.net.\n{label} IN NS ns{}.dns-host{}.net.",
                        a % 4,
                        a,
                        (a + 1) % 4,
                        a
                    )
                    .unwrap();
                }
                if (r >> 4) % 10 < 3 {
                    let d1 = rng.next();
                    let d2 = rng.next();
                    let d3 = rng.next();
                    let d4 = rng.next();
                    writeln!(
                        s,
                        "{label} IN DS {} 13 2 {d1:016X}{d2:016X}{d3:016X}{d4:016X}",
                        r & 0xffff
                    )
                    .unwrap();
                }
            }
            Shape::Flat => {
                writeln!(
                    s,
                    "{label} IN A 10.{}.{}.{}",
                    (r >> 8) & 255,
                    (r >> 16) & 255,
                    (r >> 24) & 255
                )
                .unwrap();
                writeln!(s, "{label} IN TXT \"host {i} token {:x}\"", r >> 32).unwrap();
            }
        }
    }
    s
}

fn label(i: usize, r: u64) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let mut l = String::with_capacity(16);
    let mut x = r;
    for _ in 0..(4 + (r % 6) as usize) {
        l.push(ALPHA[(x % 26) as usize] as char);
        x /= 26;
    }
    write!(l, "{i}").unwrap();
    l
}

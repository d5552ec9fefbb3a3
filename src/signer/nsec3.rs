//! NSEC3 (RFC 5155) with the RFC 9276 defaults: no extra iterations, empty salt.

use std::collections::HashSet;

use data_encoding::BASE32HEX_NOPAD;

use crate::zone::rdata::type_bitmap;
use crate::zone::{Name, Node, NodeKind, Rrset, Zone, rtype};

pub use crate::zone::nsec3::{Nsec3Params, hash, hashed_owner};

pub fn nsec3param_rdata(p: &Nsec3Params) -> Vec<u8> {
    let mut v = vec![1, 0];
    v.extend_from_slice(&p.iterations.to_be_bytes());
    v.push(p.salt.len() as u8);
    v.extend_from_slice(&p.salt);
    v
}

/// NSEC3 rdata (RFC 5155 §3.2): hash algorithm 1, the opt-out flag, `p`'s iterations and
/// salt, the next hashed owner `next` and the type bit map `bitmap`.
pub fn rdata(p: &Nsec3Params, next: &[u8], bitmap: &[u8]) -> Vec<u8> {
    let mut rd = Vec::with_capacity(8 + p.salt.len() + next.len() + bitmap.len());
    rd.push(1);
    rd.push(p.opt_out as u8);
    rd.extend_from_slice(&p.iterations.to_be_bytes());
    rd.push(p.salt.len() as u8);
    rd.extend_from_slice(&p.salt);
    rd.push(next.len() as u8);
    rd.extend_from_slice(next);
    rd.extend_from_slice(bitmap);
    rd
}

/// Types an NSEC3 at `node` lists (RFC 5155 §7.1).
pub fn node_types(node: &Node) -> Vec<u16> {
    if node.kind == NodeKind::BelowCut {
        return Vec::new();
    }
    let mut t = super::authoritative_types(node);
    // An insecure delegation has no RRSIG at its name (its NS RRset is not signed).
    if node.kind != NodeKind::Delegation || node.has(rtype::DS) {
        t.push(rtype::RRSIG);
    }
    t
}

/// Builds the NSEC3 chain: one node per hashed owner, in hash order.
pub fn build(zone: &Zone, p: &Nsec3Params, ttl: u32) -> Result<Vec<Node>, String> {
    let existing: HashSet<&[u8]> = zone.nodes.iter().map(|n| n.name.as_wire()).collect();
    let mut entries: Vec<([u8; 20], Vec<u16>)> = Vec::with_capacity(zone.nodes.len());
    let mut ents: HashSet<Name> = HashSet::new();
    for node in &zone.nodes {
        let included = match node.kind {
            NodeKind::BelowCut => false,
            NodeKind::Delegation => !p.opt_out || node.has(rtype::DS),
            _ => true,
        };
        if !included {
            continue;
        }
        entries.push((hash(&node.name, p), node_types(node)));
        let mut up = node.name.parent();
        while let Some(a) = up {
            if !a.is_subdomain_of(&zone.origin)
                || a == zone.origin
                || existing.contains(a.as_wire())
                || ents.contains(&a)
            {
                break;
            }
            up = a.parent();
            ents.insert(a);
        }
    }
    for e in &ents {
        entries.push((hash(e, p), Vec::new()));
    }
    entries.sort_unstable_by_key(|a| a.0);
    for w in entries.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!(
                "NSEC3 hash collision on {}; choose another salt",
                BASE32HEX_NOPAD.encode(&w[0].0)
            ));
        }
    }
    let n = entries.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (h, types) = &entries[i];
        let next = &entries[(i + 1) % n].0;
        let rd = rdata(p, next, &type_bitmap(&mut types.clone()));
        out.push(Node {
            name: hashed_owner(h, &zone.origin),
            kind: NodeKind::Auth,
            rrsets: vec![Rrset {
                rtype: rtype::NSEC3,
                ttl,
                rdatas: crate::zone::Rdatas::one(&rd),
            }],
            sigs: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5155_appendix_a_hash() {
        // RFC 5155 Appendix A: example, salt aabbccdd, 12 iterations.
        let p = Nsec3Params {
            iterations: 12,
            salt: vec![0xaa, 0xbb, 0xcc, 0xdd],
            opt_out: false,
        };
        let n = Name::parse(b"example.", None).unwrap();
        assert_eq!(
            BASE32HEX_NOPAD.encode(&hash(&n, &p)).to_ascii_lowercase(),
            "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"
        );
        let a = Name::parse(b"a.example.", None).unwrap();
        assert_eq!(
            BASE32HEX_NOPAD.encode(&hash(&a, &p)).to_ascii_lowercase(),
            "35mthgpgcu1qg68fab165klnsnk3dpvl"
        );
    }
}

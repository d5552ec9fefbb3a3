//! AXFR (RFC 5936) and IXFR (RFC 1995) out, TSIG-signed on every message.
//!
//! IXFR comes from the zone's journal of deltas; when the journal does not reach the
//! client's serial the answer is the whole zone in AXFR form, as RFC 1995 §4 allows.

use std::sync::Arc;

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::answer::Rr;
use super::view::View;
use super::{Auth, XFR_MESSAGE_BYTES, acl_allows, error, response_edns, send, served, to_record};
use crate::node::Node;
use crate::replica::state::{Delta, RrsetVal};
use crate::signer::cache::serial_le;
use crate::zone::{Name, rtype};

fn rrset(out: &mut Vec<Rr>, owner: &Name, t: u16, v: &RrsetVal, with_data: bool) {
    if with_data {
        for d in &v.rdatas {
            out.push(Rr {
                owner: owner.clone(),
                rtype: t,
                ttl: v.ttl,
                rdata: Arc::from(&d[..]),
            });
        }
    }
    for s in &v.sigs {
        out.push(Rr {
            owner: owner.clone(),
            rtype: rtype::RRSIG,
            ttl: v.ttl,
            rdata: s.clone(),
        });
    }
}

fn soa_rr(origin: &Name, v: &RrsetVal) -> Option<Rr> {
    Some(Rr {
        owner: origin.clone(),
        rtype: rtype::SOA,
        ttl: v.ttl,
        rdata: Arc::from(&v.rdatas.first()?[..]),
    })
}

/// The whole served version in AXFR order: SOA, everything else, SOA.
pub fn axfr_records(v: &View<'_>, origin: &Name) -> Option<Vec<Rr>> {
    let soa = v.get(origin, rtype::SOA)?;
    let first = soa_rr(origin, soa)?;
    let mut out = vec![first.clone()];
    for ((owner, t), val) in v.all() {
        rrset(&mut out, &owner.0, *t, val, *t != rtype::SOA);
    }
    out.push(first);
    Some(out)
}

/// What one delta removes and adds, record by record.
fn delta_records(d: &Delta, origin: &Name) -> Option<(Rr, Vec<Rr>, Rr, Vec<Rr>)> {
    let mut old_soa = None;
    let mut new_soa = None;
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for ((owner, t), before, after) in &d.changes {
        let owner = &owner.0;
        if *t == rtype::SOA && owner == origin {
            old_soa = before.as_ref().and_then(|b| soa_rr(origin, b));
            new_soa = after.as_ref().and_then(|a| soa_rr(origin, a));
        }
        let data = *t != rtype::SOA;
        match (before, after) {
            (Some(b), Some(a)) if b.ttl == a.ttl => {
                for x in &b.rdatas {
                    if data && !a.rdatas.contains(x) {
                        removed.push(rr(owner, *t, b.ttl, x));
                    }
                }
                for x in &b.sigs {
                    if !a.sigs.contains(x) {
                        removed.push(rr(owner, rtype::RRSIG, b.ttl, x));
                    }
                }
                for x in &a.rdatas {
                    if data && !b.rdatas.contains(x) {
                        added.push(rr(owner, *t, a.ttl, x));
                    }
                }
                for x in &a.sigs {
                    if !b.sigs.contains(x) {
                        added.push(rr(owner, rtype::RRSIG, a.ttl, x));
                    }
                }
            }
            (b, a) => {
                if let Some(b) = b {
                    rrset(&mut removed, owner, *t, b, data);
                }
                if let Some(a) = a {
                    rrset(&mut added, owner, *t, a, data);
                }
            }
        }
    }
    Some((old_soa?, removed, new_soa?, added))
}

fn rr(owner: &Name, t: u16, ttl: u32, d: &[u8]) -> Rr {
    Rr {
        owner: owner.clone(),
        rtype: t,
        ttl,
        rdata: Arc::from(d),
    }
}

/// IXFR records from `client` to the served version, or `None` when the journal cannot.
pub fn ixfr_records(deltas: &[Delta], origin: &Name, new_soa: Rr) -> Option<Vec<Rr>> {
    let mut out = vec![new_soa.clone()];
    for d in deltas {
        let (old, removed, new, added) = delta_records(d, origin)?;
        out.push(old);
        out.extend(removed);
        out.push(new);
        out.extend(added);
    }
    out.push(new_soa);
    Some(out)
}

/// Splits records into messages of at most `XFR_MESSAGE_BYTES` (estimated uncompressed).
fn chunks(rrs: Vec<Rr>) -> Vec<Vec<Rr>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for r in rrs {
        let s = r.owner.as_wire().len() + 10 + r.rdata.len();
        if size + s > XFR_MESSAGE_BYTES && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += s;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn client_serial(request: &Request) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

pub async fn transfer<R: ResponseHandler>(
    node: &Node,
    rh: &mut R,
    request: &Request,
    qname: &Name,
    qtype: u16,
    auth: &Auth,
) -> ResponseInfo {
    let src = request.src();
    let what = if qtype == u16::from(RecordType::AXFR) {
        "AXFR"
    } else {
        "IXFR"
    };
    let zone = qname.to_text();
    let Some(key) = auth.key_name() else {
        tracing::warn!(%src, zone, "refused {what}: the request is not TSIG-signed");
        return error(rh, request, ResponseCode::Refused, auth).await;
    };
    let acl = node.sm.with(|st| {
        st.zones
            .get(&zone)
            .and_then(|z| z.config.as_ref())
            .map(|c| c.transfer.clone())
    });
    let Some(acl) = acl else {
        tracing::warn!(%src, zone, "refused {what}: not a zone of this cluster");
        return error(rh, request, ResponseCode::NotAuth, auth).await;
    };
    if !acl.iter().any(|e| acl_allows(e, src.ip(), &key)) {
        tracing::warn!(%src, zone, key, "refused {what}: no transfer ACL entry allows this address and key");
        return error(rh, request, ResponseCode::Refused, auth).await;
    }
    if request.protocol() == Protocol::Udp {
        // Transfers go over TCP (RFC 1995 §2 allows UDP IXFR; we ask the client to retry).
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.truncation = true;
        meta.authoritative = true;
        let edns = response_edns(request);
        return match send(
            rh,
            request,
            meta,
            edns.as_ref(),
            &[],
            &[],
            &[],
            auth,
            None,
            false,
        )
        .await
        {
            Ok((i, _)) => i,
            Err(_) => error(rh, request, ResponseCode::ServFail, auth).await,
        };
    }
    let client = if what == "IXFR" {
        client_serial(request)
    } else {
        None
    };
    let origin = qname.clone();
    let built = node.sm.with(|st| {
        let z = st.zones.get(&zone)?;
        let (serial, token, overlay) = served(node, &zone, z)?;
        let v = View {
            content: &z.content,
            overlay: overlay.as_deref(),
        };
        let soa = soa_rr(&origin, v.get(&origin, rtype::SOA)?)?;
        if let Some(c) = client {
            if serial_le(serial, c) {
                return Some((serial, "up to date", vec![soa]));
            }
            let deltas = z.deltas_from(|d| d.from_serial == c).map(|ds| {
                ds.iter()
                    .take_while(|d| d.token <= token)
                    .cloned()
                    .collect::<Vec<_>>()
            });
            if let Some(ds) = deltas
                && ds.last().is_some_and(|d| d.token == token)
                && let Some(recs) = ixfr_records(&ds, &origin, soa.clone())
            {
                return Some((serial, "incremental", recs));
            }
        }
        axfr_records(&v, &origin).map(|r| (serial, "full", r))
    });
    let Some((serial, kind, records)) = built else {
        tracing::warn!(%src, zone, "refused {what}: no validated version to serve yet");
        return error(rh, request, ResponseCode::ServFail, auth).await;
    };
    let count = records.len();
    let msgs = chunks(records);
    let n = msgs.len();
    let edns = response_edns(request);
    let mut prior: Option<Vec<u8>> = None;
    let mut last = None;
    for (i, m) in msgs.into_iter().enumerate() {
        let recs: Vec<_> = m.iter().map(to_record).collect();
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        match send(
            rh,
            request,
            meta,
            if i == 0 { edns.as_ref() } else { None },
            &recs,
            &[],
            &[],
            auth,
            prior.as_deref(),
            i > 0,
        )
        .await
        {
            Ok((info, mac)) => {
                prior = mac;
                last = Some(info);
            }
            Err(e) => {
                tracing::warn!(%src, zone, "{what} aborted after {i} of {n} messages: {e}");
                return error(rh, request, ResponseCode::ServFail, auth).await;
            }
        }
    }
    tracing::info!(%src, zone, serial, key, kind, records = count, messages = n, "{what} out");
    last.expect("at least one message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::state::Owner;

    fn name(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    fn soa(serial: u32) -> RrsetVal {
        let mut d = b"\x02ns\x07example\x00\x04host\x07example\x00".to_vec();
        d.extend_from_slice(&serial.to_be_bytes());
        d.extend_from_slice(&[0; 16]);
        RrsetVal {
            ttl: 3600,
            rdatas: vec![d.into_boxed_slice()],
            sigs: vec![Arc::from(&format!("sig{serial}").as_bytes()[..])],
        }
    }

    #[test]
    fn ixfr_lists_removed_then_added_between_the_soas() {
        let origin = name("example.");
        let a = |ip: u8| RrsetVal {
            ttl: 300,
            rdatas: vec![vec![192, 0, 2, ip].into_boxed_slice()],
            sigs: vec![Arc::from(&[ip][..])],
        };
        let d = Delta {
            from_serial: 1,
            to_serial: 2,
            changes: vec![
                (
                    (Owner(origin.clone()), rtype::SOA),
                    Some(soa(1)),
                    Some(soa(2)),
                ),
                (
                    (Owner(name("www.example.")), rtype::A),
                    Some(a(1)),
                    Some(a(2)),
                ),
                ((Owner(name("new.example.")), rtype::A), None, Some(a(3))),
            ],
            ..Default::default()
        };
        let cur = soa_rr(&origin, &soa(2)).unwrap();
        let recs = ixfr_records(&[d], &origin, cur.clone()).unwrap();
        let types: Vec<u16> = recs.iter().map(|r| r.rtype).collect();
        // SOA(2) | SOA(1) RRSIG(SOA 1) A(www 1) RRSIG | SOA(2) RRSIG(SOA 2) A(www 2) RRSIG A(new) RRSIG | SOA(2)
        assert_eq!(types, vec![6, 6, 46, 1, 46, 6, 46, 1, 46, 1, 46, 6]);
        assert_eq!(recs[1].rdata[..], soa(1).rdatas[0][..]);
        assert_eq!(recs[3].rdata[..], [192, 0, 2, 1]);
        assert_eq!(recs[7].rdata[..], [192, 0, 2, 2]);
        assert_eq!(recs.last().unwrap(), &cur);
    }
}

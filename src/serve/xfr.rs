//! AXFR (RFC 5936) and IXFR (RFC 1995) out, TSIG-signed on every message.
//!
//! IXFR comes from the zone's journal of deltas; when the journal does not reach the
//! client's serial the answer is the whole zone in AXFR form, as RFC 1995 §4 allows.

use std::sync::Arc;

use hickory_proto::rr::{RData, RecordType};
use hickory_server::server::Request;

use super::answer::{Rr, push_rrset};
use super::{Auth, Source, XFR_MESSAGE_BYTES, acl_allows};
use crate::dns::tsig::{self, TsigKey};
use crate::replica::state::{Delta, RrsetVal};
use crate::replica::view::View;
use crate::zone::serial;
use crate::zone::{Name, rtype};

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
        push_rrset(&mut out, &owner.0, *t, val, *t != rtype::SOA, true);
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
                    push_rrset(&mut removed, owner, *t, b, data, true);
                }
                if let Some(a) = a {
                    push_rrset(&mut added, owner, *t, a, data, true);
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

fn client_serial(request: &Request) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Builds transfer messages as wire bytes: the question (the zone) at offset 12, so every
/// owner name is written as its labels below the origin plus a pointer to it.
pub struct Encoder {
    id: u16,
    origin: Name,
    head: Vec<u8>,
    cur: Vec<u8>,
    count: u16,
}

impl Encoder {
    pub fn new(id: u16, origin: &Name, qtype: u16) -> Encoder {
        let mut head = Vec::with_capacity(12 + origin.as_wire().len() + 4);
        head.extend_from_slice(&id.to_be_bytes());
        head.extend_from_slice(&0x8400u16.to_be_bytes()); // QR, AA
        head.extend_from_slice(&1u16.to_be_bytes());
        head.extend_from_slice(&[0; 6]);
        head.extend_from_slice(origin.as_wire());
        head.extend_from_slice(&qtype.to_be_bytes());
        head.extend_from_slice(&1u16.to_be_bytes());
        Encoder {
            id,
            origin: origin.clone(),
            cur: head.clone(),
            head,
            count: 0,
        }
    }

    /// Adds one record; returns a finished message when this one would not fit.
    pub fn push(&mut self, owner: &Name, t: u16, ttl: u32, rdata: &[u8]) -> Option<Vec<u8>> {
        let o = owner.as_wire();
        let below = o.len().saturating_sub(self.origin.as_wire().len());
        let size = below + 2 + 10 + rdata.len();
        let full =
            (self.cur.len() + size > XFR_MESSAGE_BYTES || self.count == u16::MAX) && self.count > 0;
        let out = if full { self.finish() } else { None };
        self.cur.extend_from_slice(&o[..below]);
        self.cur.extend_from_slice(&0xC00Cu16.to_be_bytes());
        self.cur.extend_from_slice(&t.to_be_bytes());
        self.cur.extend_from_slice(&1u16.to_be_bytes());
        self.cur.extend_from_slice(&ttl.to_be_bytes());
        self.cur
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.cur.extend_from_slice(rdata);
        self.count += 1;
        out
    }

    /// The message under construction, if it holds any record.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut m = std::mem::replace(&mut self.cur, self.head.clone());
        m[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.count = 0;
        Some(m)
    }

    pub fn id(&self) -> u16 {
        self.id
    }
}

/// Where transfer messages go: a TCP connection.
#[async_trait::async_trait]
pub trait Sink: Send {
    async fn send(&mut self, message: &[u8]) -> Result<(), String>;
}

/// Signs (when the request was) and sends the messages of a transfer in order.
struct Sender<'a, S: Sink> {
    sink: &'a mut S,
    key: Option<(TsigKey, Vec<u8>)>,
    first: bool,
    sent: usize,
}

impl<S: Sink> Sender<'_, S> {
    async fn send(&mut self, mut m: Vec<u8>) -> Result<(), String> {
        if let Some((key, prior)) = &mut self.key {
            let mac = tsig::sign(
                &mut m,
                key,
                Some(prior),
                !self.first,
                crate::runtime::wall(),
            );
            *prior = mac;
        }
        self.first = false;
        self.sent += 1;
        self.sink.send(&m).await
    }
}

/// Records per read of the state while a zone is transferred: the lock is taken for a
/// batch, then released while the batch is sent.
const BATCH_RRSETS: usize = 20_000;

/// An AXFR or IXFR over TCP, after TSIG (already verified into `auth`). Streams the zone in
/// batches; if the served version changes between batches the transfer is abandoned (the
/// client sees the connection close without the closing SOA and tries again).
pub async fn transfer_tcp<S: Sink>(
    node: &dyn Source,
    sink: &mut S,
    request: &Request,
    qname: &Name,
    qtype: u16,
    auth: &Auth,
) -> Result<(), String> {
    let src = request.src();
    let what = if qtype == u16::from(RecordType::AXFR) {
        "AXFR"
    } else {
        "IXFR"
    };
    let zone = qname.to_text();
    let id = request.metadata.id;
    let refuse = |code: u8| {
        let mut m = Encoder::new(id, qname, qtype).head;
        m[3] = code;
        m
    };
    let mut out = Sender {
        sink,
        key: match auth {
            Auth::Key(k, mac) => Some((k.clone(), mac.clone())),
            Auth::None => None,
        },
        first: true,
        sent: 0,
    };
    let Some(key) = auth.key_name() else {
        tracing::warn!(%src, zone, "refused {what}: the request is not TSIG-signed");
        return out.send(refuse(5)).await;
    };
    if node.transfers_stopped() {
        tracing::warn!(%src, zone, "refused {what}: this leader is self-fenced");
        return out.send(refuse(5)).await;
    }
    let acl = node.state().with(|st| {
        st.zones
            .get(&zone)
            .and_then(|z| z.config.as_ref())
            .map(|c| c.transfer.clone())
    });
    let Some(acl) = acl else {
        tracing::warn!(%src, zone, "refused {what}: not a zone of this cluster");
        return out.send(refuse(9)).await;
    };
    if !acl.iter().any(|e| acl_allows(e, src.ip(), &key)) {
        tracing::warn!(%src, zone, key, "refused {what}: no transfer ACL entry allows this address and key");
        return out.send(refuse(5)).await;
    }
    let client = if what == "IXFR" {
        client_serial(request)
    } else {
        None
    };
    let origin = qname.clone();
    let mut enc = Encoder::new(id, &origin, qtype);
    // First read: the served version, the opening SOA, and the whole answer when it is an
    // incremental one (small by construction).
    let first = node.state().with(|st| {
        let z = st.zones.get(&zone)?;
        let (serial, token, overlay) = node.served(&zone, z)?;
        let v = View {
            content: &z.content,
            overlay: overlay.as_deref(),
        };
        let soa = soa_rr(&origin, v.get(&origin, rtype::SOA)?)?;
        if let Some(c) = client {
            if serial::le(serial, c) {
                return Some((serial, token, soa.clone(), Some(("up to date", vec![soa]))));
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
                return Some((serial, token, soa, Some(("incremental", recs))));
            }
        }
        Some((serial, token, soa, None))
    });
    let Some((serial, token, soa, small)) = first else {
        tracing::warn!(%src, zone, "refused {what}: no validated version to serve yet");
        return out.send(refuse(2)).await;
    };
    let mut records = 0usize;
    let kind = match small {
        Some((kind, recs)) => {
            for r in &recs {
                if let Some(m) = enc.push(&r.owner, r.rtype, r.ttl, &r.rdata) {
                    out.send(m).await?;
                }
            }
            records = recs.len();
            kind
        }
        None => {
            // The whole zone, in batches.
            if let Some(m) = enc.push(&soa.owner, soa.rtype, soa.ttl, &soa.rdata) {
                out.send(m).await?;
            }
            records += 1;
            let mut cursor: Option<(crate::replica::state::Owner, u16)> = None;
            loop {
                let batch = node.state().with(|st| {
                    let z = st.zones.get(&zone)?;
                    let (_, t, overlay) = node.served(&zone, z)?;
                    if t != token {
                        return None;
                    }
                    let v = View {
                        content: &z.content,
                        overlay: overlay.as_deref(),
                    };
                    let it: Box<dyn Iterator<Item = _>> = match &cursor {
                        None => Box::new(v.all()),
                        Some(k) => Box::new(v.after(k)),
                    };
                    let mut msgs = Vec::new();
                    let mut last = None;
                    let mut n = 0;
                    for ((owner, t), val) in it.take(BATCH_RRSETS) {
                        if *t != rtype::SOA {
                            for d in &val.rdatas {
                                msgs.extend(enc.push(&owner.0, *t, val.ttl, d));
                                n += 1;
                            }
                        }
                        for sg in &val.sigs {
                            msgs.extend(enc.push(&owner.0, rtype::RRSIG, val.ttl, sg));
                            n += 1;
                        }
                        last = Some((owner.clone(), *t));
                    }
                    Some((msgs, last, n))
                });
                let Some((msgs, last, n)) = batch else {
                    tracing::warn!(%src, zone, serial, "{what} abandoned: the served version changed during the transfer");
                    return Err("the served version changed".into());
                };
                records += n;
                for m in msgs {
                    out.send(m).await?;
                }
                match last {
                    Some(k) => cursor = Some(k),
                    None => break,
                }
            }
            if let Some(m) = enc.push(&soa.owner, soa.rtype, soa.ttl, &soa.rdata) {
                out.send(m).await?;
            }
            records += 1;
            "full"
        }
    };
    if let Some(m) = enc.finish() {
        out.send(m).await?;
    }
    tracing::info!(%src, zone, serial, key, kind, records, messages = out.sent, "{what} out");
    Ok(())
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
            rdatas: crate::zone::Rdatas::one(&d),
            sigs: vec![Arc::from(&format!("sig{serial}").as_bytes()[..])],
        }
    }

    #[test]
    fn transfer_messages_parse_and_split_at_the_size_limit() {
        let origin = name("example.");
        let mut enc = Encoder::new(7, &origin, 252);
        let mut msgs = Vec::new();
        let big = vec![7u8; 1000];
        for i in 0..130 {
            let owner = name(&format!("host{i}.example."));
            msgs.extend(enc.push(&owner, 16, 300, &big));
        }
        msgs.extend(enc.push(&origin, rtype::A, 60, &[192, 0, 2, 1]));
        msgs.extend(enc.finish());
        assert_eq!(
            msgs.len(),
            3,
            "131 records of ~1 KB make three messages of <= 60 KB"
        );
        let mut n = 0;
        for m in &msgs {
            assert!(m.len() <= XFR_MESSAGE_BYTES);
            let p = hickory_proto::op::Message::from_vec(m).unwrap();
            assert_eq!(p.metadata.id, 7);
            assert!(p.metadata.authoritative);
            assert_eq!(p.queries[0].name().to_string(), "example.");
            for r in &p.answers {
                let expect = if n == 130 {
                    "example.".to_string()
                } else {
                    format!("host{n}.example.")
                };
                assert_eq!(r.name.to_string(), expect);
                n += 1;
            }
        }
        assert_eq!(n, 131);
    }

    #[test]
    fn ixfr_lists_removed_then_added_between_the_soas() {
        let origin = name("example.");
        let a = |ip: u8| RrsetVal {
            ttl: 300,
            rdatas: crate::zone::Rdatas::one(&[192, 0, 2, ip]),
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

//! Transfers in: SOA and AXFR from a zone's hidden primary over TCP, TSIG-checked.
//!
//! A transfer is accepted only whole: it must start and end with the same SOA, every
//! message must carry a TSIG that verifies (when the zone has a key), and it must stay
//! within the zone's record limit. Anything else is an error naming what went wrong, and
//! the zone keeps its last good version.

use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::our_name;
use super::tsig::{self, TsigKey};
use super::{Remote, message, rand_id};
use crate::zone::{Name, rtype};

const CONNECT: Duration = Duration::from_secs(10);
/// Longest wait for one message of a transfer.
const READ: Duration = Duration::from_secs(30);

/// One record of a transfer: owner, type, TTL, rdata (names uncompressed).
pub type InRr = (Name, u16, u32, Box<[u8]>);

/// What a transfer brought.
pub enum Transfer {
    /// The whole zone (AXFR, or an IXFR answered in AXFR form).
    Full(Vec<InRr>),
    /// IXFR deltas, oldest first: (records removed, records added), SOAs included.
    Incremental(Vec<(Vec<InRr>, Vec<InRr>)>),
    /// The primary has nothing newer.
    UpToDate,
}

pub struct Fetched {
    pub serial: u32,
    /// The SOA refresh interval, seconds: how often the primary is asked.
    pub refresh: u32,
    pub transfer: Transfer,
    /// Records received (SOAs included).
    pub records: u64,
}

struct Conn {
    s: TcpStream,
    remote: Remote,
}

impl Conn {
    /// Sends the query `q` (id `id`, signed with `key` when given, its MAC in `prior`) and
    /// reads the one message that answers it, checked.
    async fn exchange(
        &mut self,
        q: &[u8],
        id: u16,
        key: Option<&TsigKey>,
        prior: &mut Option<Vec<u8>>,
        what: &str,
    ) -> Result<Message, String> {
        self.send(q).await?;
        let raw = self
            .recv()
            .await?
            .ok_or(format!("{what}: connection closed"))?;
        check(&raw, id, key, prior, true, what)
    }

    async fn open(remote: &Remote) -> Result<Conn, String> {
        let s = tokio::time::timeout(CONNECT, TcpStream::connect(remote.addr))
            .await
            .map_err(|_| format!("primary {}: connect timed out", remote.addr))?
            .map_err(|e| format!("primary {}: {e}", remote.addr))?;
        Ok(Conn {
            s,
            remote: remote.clone(),
        })
    }

    async fn send(&mut self, m: &[u8]) -> Result<(), String> {
        let mut b = (m.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(m);
        self.s
            .write_all(&b)
            .await
            .map_err(|e| format!("primary {}: {e}", self.remote.addr))
    }

    /// One message, or `None` when the primary closed the connection.
    async fn recv(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut len = [0u8; 2];
        match tokio::time::timeout(READ, self.s.read_exact(&mut len)).await {
            Err(_) => {
                return Err(format!(
                    "primary {}: no data for {READ:?}",
                    self.remote.addr
                ));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(Err(e)) => return Err(format!("primary {}: {e}", self.remote.addr)),
            Ok(Ok(_)) => {}
        }
        let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
        tokio::time::timeout(READ, self.s.read_exact(&mut m))
            .await
            .map_err(|_| format!("primary {}: message cut short (timeout)", self.remote.addr))?
            .map_err(|e| format!("primary {}: message cut short: {e}", self.remote.addr))?;
        Ok(Some(m))
    }
}

/// Checks one message of an exchange: id, TSIG chain, rcode. Returns it parsed.
fn check(
    raw: &[u8],
    id: u16,
    key: Option<&TsigKey>,
    prior: &mut Option<Vec<u8>>,
    first: bool,
    what: &str,
) -> Result<Message, String> {
    if raw.len() < 12 || raw[0..2] != id.to_be_bytes() {
        return Err(format!("{what}: answer with the wrong id"));
    }
    if let Some(k) = key {
        let (t, _) = tsig::verify(
            raw,
            std::slice::from_ref(k),
            prior.as_deref(),
            !first,
            crate::runtime::wall(),
        )
        .map_err(|e| format!("{what}: {}", e.reason))?;
        *prior = Some(t.mac);
    }
    let m = Message::from_vec(raw).map_err(|e| format!("{what}: malformed message: {e}"))?;
    let rcode = m.metadata.response_code;
    if rcode != hickory_proto::op::ResponseCode::NoError {
        return Err(format!("{what}: the primary answered {rcode}"));
    }
    Ok(m)
}

fn soa_serial(r: &hickory_proto::rr::Record) -> Option<u32> {
    match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    }
}

/// The primary's SOA serial for `zone`.
pub async fn serial(remote: &Remote, key: Option<&TsigKey>, zone: &Name) -> Result<u32, String> {
    let what = format!("SOA query to {} for {}", remote.addr, zone.to_text());
    let mut c = Conn::open(remote).await?;
    let id = rand_id();
    let mut q = message(id, 0, zone, rtype::SOA, None);
    let mut prior = key.map(|k| tsig::sign(&mut q, k, None, false, crate::runtime::wall()));
    let m = c.exchange(&q, id, key, &mut prior, &what).await?;
    m.answers
        .iter()
        .find_map(soa_serial)
        .ok_or(format!("{what}: no SOA in the answer"))
}

/// The rdatas of `qtype` at the apex of `zone`, asked over TCP (drills compare DNSKEY sets).
pub async fn apex_rdatas(remote: &Remote, zone: &Name, qtype: u16) -> Result<Vec<Vec<u8>>, String> {
    rrset(remote.addr, zone, qtype)
        .await
        .map(|(_, rdatas)| rdatas)
}

/// One RRset asked of an authoritative server over TCP: its TTL (`None` when the server
/// has no such RRset) and rdatas, sorted. Parent DS checks use it.
pub async fn rrset(
    addr: std::net::SocketAddr,
    owner: &Name,
    qtype: u16,
) -> Result<(Option<u32>, Vec<Vec<u8>>), String> {
    let answers = ask(addr, owner, qtype, false).await?;
    let mut ttl: Option<u32> = None;
    let mut out = Vec::new();
    for (_, rttl, d) in answers.into_iter().filter(|(t, _, _)| *t == qtype) {
        ttl = Some(ttl.map_or(rttl, |x: u32| x.max(rttl)));
        out.push(d);
    }
    out.sort();
    Ok((ttl, out))
}

/// The answer section for (`owner`, `qtype`) from `addr` over TCP, as (type, TTL, rdata);
/// with `dnssec`, the query sets the DO bit so RRSIGs come along.
pub async fn ask(
    addr: std::net::SocketAddr,
    owner: &Name,
    qtype: u16,
    dnssec: bool,
) -> Result<Vec<(u16, u32, Vec<u8>)>, String> {
    query(addr, owner, qtype, dnssec, false).await
}

/// As [`ask`], of a recursive resolver (recursion desired), without DNSSEC records.
pub async fn resolve(
    resolver: std::net::SocketAddr,
    owner: &Name,
    qtype: u16,
) -> Result<Vec<(u16, u32, Vec<u8>)>, String> {
    query(resolver, owner, qtype, false, true).await
}

async fn query(
    addr: std::net::SocketAddr,
    owner: &Name,
    qtype: u16,
    dnssec: bool,
    recursion: bool,
) -> Result<Vec<(u16, u32, Vec<u8>)>, String> {
    let what = format!("{addr}: {} type {qtype}", owner.to_text());
    let remote = Remote { addr, key: None };
    let mut c = Conn::open(&remote).await?;
    let id = rand_id();
    let mut q = message(id, 0, owner, qtype, None);
    if recursion {
        q[2] |= 0x01; // RD
    }
    if dnssec {
        q[11] = 1; // ARCOUNT
        q.push(0); // OPT at the root
        q.extend_from_slice(&41u16.to_be_bytes());
        q.extend_from_slice(&1232u16.to_be_bytes());
        q.extend_from_slice(&0x0000_8000u32.to_be_bytes()); // DO
        q.extend_from_slice(&0u16.to_be_bytes());
    }
    let m = c.exchange(&q, id, None, &mut None, &what).await?;
    m.answers
        .iter()
        .map(|r| in_rr(r).map(|(_, t, ttl, d)| (t, ttl, d.to_vec())))
        .collect()
}

/// AXFR of `zone`, or IXFR from `from` (our serial and SOA rdata) when given; refused
/// when it is not whole within `deadline` (a primary that trickles its answer, each
/// message just inside the per-message timeout, must not hold the leader for ever).
pub async fn transfer(
    remote: &Remote,
    key: Option<&TsigKey>,
    zone: &Name,
    max_records: u64,
    from: Option<(u32, &[u8])>,
    deadline: Duration,
) -> Result<Fetched, String> {
    let kind = if from.is_some() { "IXFR" } else { "AXFR" };
    let what = format!("{kind} from {} of {}", remote.addr, zone.to_text());
    match tokio::time::timeout(
        deadline,
        transfer_within(remote, key, zone, max_records, from, &what),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{what}: not complete within {} s (the transfer deadline, transfer_timeout_s)",
            deadline.as_secs()
        )),
    }
}

async fn transfer_within(
    remote: &Remote,
    key: Option<&TsigKey>,
    zone: &Name,
    max_records: u64,
    from: Option<(u32, &[u8])>,
    what: &str,
) -> Result<Fetched, String> {
    let what = what.to_string();
    let mut c = Conn::open(remote).await?;
    let id = rand_id();
    let mut q = match from {
        None => message(id, 0, zone, u16::from(RecordType::AXFR), None),
        Some((_, soa)) => {
            let mut rr = zone.as_wire().to_vec();
            rr.extend_from_slice(&rtype::SOA.to_be_bytes());
            rr.extend_from_slice(&1u16.to_be_bytes());
            rr.extend_from_slice(&0u32.to_be_bytes());
            rr.extend_from_slice(&(soa.len() as u16).to_be_bytes());
            rr.extend_from_slice(soa);
            message(id, 0, zone, u16::from(RecordType::IXFR), Some(&rr))
        }
    };
    let prior = key.map(|k| tsig::sign(&mut q, k, None, false, crate::runtime::wall()));
    c.send(&q).await?;
    let mut a = Assembler::new(id, key, prior, from.map(|(s, _)| s), max_records, what);
    loop {
        // After a lone newer SOA, a primary that will not send an IXFR stops there (it wants
        // an AXFR): do not wait the full read timeout for more.
        let next = if a.lone() {
            match tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
                Ok(r) => r?,
                Err(_) => return Err(a.lone_error()),
            }
        } else {
            c.recv().await?
        };
        let Some(raw) = next else {
            return Err(a.truncated());
        };
        if a.push(&raw)? {
            break;
        }
    }
    // Splitting a large IXFR into its deltas, or checking a large AXFR, takes a while.
    crate::runtime::blocking(|| a.finish())
}

/// Reads the messages of one AXFR or IXFR answer, in order, into a [`Fetched`]; no I/O,
/// so that a transfer stream can be checked (and fuzzed) on its own.
pub struct Assembler<'k> {
    id: u16,
    key: Option<&'k TsigKey>,
    prior: Option<Vec<u8>>,
    /// Our serial, for an IXFR.
    ours: Option<u32>,
    max_records: u64,
    what: String,
    recs: Vec<InRr>,
    serials: Vec<Option<u32>>,
    refresh: u32,
    n: usize,
}

impl<'k> Assembler<'k> {
    /// `prior`: the request's TSIG MAC when `key` signed it.
    pub fn new(
        id: u16,
        key: Option<&'k TsigKey>,
        prior: Option<Vec<u8>>,
        ours: Option<u32>,
        max_records: u64,
        what: String,
    ) -> Assembler<'k> {
        Assembler {
            id,
            key,
            prior,
            ours,
            max_records,
            what,
            recs: Vec::new(),
            serials: Vec::new(),
            refresh: 3600,
            n: 0,
        }
    }

    /// Only the new SOA so far, for an IXFR.
    pub fn lone(&self) -> bool {
        self.serials.len() == 1 && self.ours.is_some()
    }

    pub fn lone_error(&self) -> String {
        format!(
            "{}: answered with the SOA of serial {} alone",
            self.what,
            self.serials[0].unwrap_or(0)
        )
    }

    pub fn truncated(&self) -> String {
        format!(
            "{}: truncated transfer: the connection closed after {} records \
             without the closing SOA",
            self.what,
            self.recs.len()
        )
    }

    /// Whether the answer is complete once the messages so far are read.
    fn done(&self) -> bool {
        let serials = &self.serials;
        let Some(Some(new)) = serials.first().copied() else {
            return false;
        };
        match serials.get(1) {
            // A lone SOA ends the answer only when it says we are up to date.
            None => self.ours == Some(new),
            // AXFR form: ends with the second SOA.
            Some(None) => serials.iter().skip(1).any(|s| *s == Some(new)),
            Some(Some(s)) if *s == new => serials.len() == 2,
            // IXFR form: SOA(new), then (SOA old, deletions, SOA, additions)*, SOA(new).
            Some(Some(_)) => {
                let soas: Vec<u32> = serials[1..].iter().flatten().copied().collect();
                soas.len() >= 3 && soas.len() % 2 == 1 && soas.last() == Some(&new)
            }
        }
    }

    /// Takes one message; true when the answer is complete.
    pub fn push(&mut self, raw: &[u8]) -> Result<bool, String> {
        let what = &self.what;
        let m = check(raw, self.id, self.key, &mut self.prior, self.n == 0, what)?;
        self.n += 1;
        for r in &m.answers {
            let serial = soa_serial(r);
            if self.recs.is_empty() {
                match &r.data {
                    RData::SOA(soa) => self.refresh = soa.refresh as u32,
                    _ => return Err(format!("{what}: does not start with the SOA")),
                }
            }
            if self.recs.len() as u64 >= self.max_records.saturating_mul(2).max(16) {
                return Err(format!(
                    "{what}: more than {} records (the zone's limit)",
                    self.max_records
                ));
            }
            let rr =
                in_rr(r).map_err(|e| format!("{what}: record {}: {e}", self.recs.len() + 1))?;
            self.recs.push(rr);
            self.serials.push(serial);
        }
        Ok(self.done())
    }

    /// The answer, once [`push`](Self::push) said it is complete.
    pub fn finish(self) -> Result<Fetched, String> {
        let Assembler {
            mut recs,
            serials,
            what,
            max_records,
            ours,
            refresh,
            ..
        } = self;
        let Some(Some(new)) = serials.first().copied() else {
            return Err(format!("{what}: does not start with the SOA"));
        };
        let records = recs.len() as u64;
        let transfer = match serials.get(1) {
            None if ours == Some(new) => Transfer::UpToDate,
            None => {
                return Err(format!(
                    "{what}: answered with the SOA of serial {new} alone"
                ));
            }
            Some(None) => {
                recs.pop(); // the closing SOA
                if recs.len() as u64 > max_records {
                    return Err(format!(
                        "{what}: more than {max_records} records (the zone's limit)"
                    ));
                }
                Transfer::Full(recs)
            }
            Some(Some(s)) if *s == new => {
                recs.pop();
                Transfer::Full(recs)
            }
            Some(Some(_)) => {
                let mut deltas = Vec::new();
                let mut it = recs.into_iter().zip(serials).skip(1).peekable();
                while let Some((old_soa, Some(_))) = it.next() {
                    let mut del = vec![old_soa];
                    let mut add = Vec::new();
                    let mut adding = false;
                    while let Some((r, s)) = it.next() {
                        match (s, adding) {
                            (Some(_), false) => {
                                adding = true;
                                add.push(r);
                            }
                            (Some(_), true) => {
                                // The next delta's old SOA, or the closing SOA(new).
                                let last = it.peek().is_none();
                                if last {
                                    break;
                                }
                                deltas.push((std::mem::take(&mut del), std::mem::take(&mut add)));
                                del.push(r);
                                adding = false;
                            }
                            (None, false) => del.push(r),
                            (None, true) => add.push(r),
                        }
                    }
                    if !del.is_empty() || !add.is_empty() {
                        deltas.push((del, add));
                    }
                }
                Transfer::Incremental(deltas)
            }
        };
        Ok(Fetched {
            serial: new,
            refresh,
            transfer,
            records,
        })
    }
}

/// A received record with its rdata re-encoded without name compression.
fn in_rr(r: &hickory_proto::rr::Record) -> Result<InRr, String> {
    let owner = our_name(&r.name).ok_or("bad owner name")?;
    let mut rd = Vec::with_capacity(64);
    {
        let mut enc = BinEncoder::new(&mut rd);
        let mut enc = enc.with_name_encoding(NameEncoding::Uncompressed);
        r.data.emit(&mut enc).map_err(|e| e.to_string())?;
    }
    let t = u16::from(r.record_type());
    let rd = crate::zone::rdata::canonical(t, &rd).map_err(|e| e.to_string())?;
    Ok((owner, t, r.ttl, rd.into_boxed_slice()))
}

/// Master-file text of received records (rdata through our writer, so our parser reads it).
pub fn to_text<'a>(recs: impl Iterator<Item = (&'a Name, u16, u32, &'a [u8])>) -> Vec<u8> {
    let mut s = String::with_capacity(1 << 16);
    for (owner, t, ttl, rd) in recs {
        crate::zone::write::push_record(&mut s, owner, t, ttl, rd);
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record received in mixed case is held as the parser stores it, so an IXFR that
    /// removes it in the primary's case matches the replicated content's copy.
    #[test]
    fn received_rdata_is_held_in_canonical_case() {
        let rr = |target: &str| {
            let owner = hickory_proto::rr::Name::from_ascii("Sub.Example.").unwrap();
            let ns = hickory_proto::rr::Name::from_ascii(target).unwrap();
            let data = RData::NS(hickory_proto::rr::rdata::NS(ns));
            in_rr(&hickory_proto::rr::Record::from_rdata(owner, 300, data)).unwrap()
        };
        let mixed = rr("NS1.Sub.Example.");
        assert_eq!(mixed.0, Name::parse(b"sub.example.", None).unwrap());
        assert_eq!(mixed.3, rr("ns1.sub.example.").3);
        let parsed = Name::parse(b"NS1.sub.EXAMPLE.", None).unwrap();
        assert_eq!(&mixed.3[..], parsed.as_wire(), "as the parser stores it");
    }
}

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

use super::notify::{Remote, message, rand_id};
use super::our_name;
use super::tsig::{self, TsigKey};
use crate::node::now;
use crate::zone::{Name, rtype};

const CONNECT: Duration = Duration::from_secs(10);
/// Longest wait for one message of a transfer.
const READ: Duration = Duration::from_secs(30);

/// The signed zone's input as master-file text, and the primary's serial.
pub struct Fetched {
    pub serial: u32,
    /// The SOA refresh interval, seconds: how often the primary is asked.
    pub refresh: u32,
    pub text: Vec<u8>,
    pub records: u64,
}

struct Conn {
    s: TcpStream,
    remote: Remote,
}

impl Conn {
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
            now(),
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
    let mut prior = key.map(|k| tsig::sign(&mut q, k, None, false, now()));
    c.send(&q).await?;
    let raw = c
        .recv()
        .await?
        .ok_or(format!("{what}: connection closed"))?;
    let m = check(&raw, id, key, &mut prior, true, &what)?;
    m.answers
        .iter()
        .find_map(soa_serial)
        .ok_or(format!("{what}: no SOA in the answer"))
}

/// AXFR of `zone` from the primary, as master-file text.
pub async fn axfr(
    remote: &Remote,
    key: Option<&TsigKey>,
    zone: &Name,
    max_records: u64,
) -> Result<Fetched, String> {
    let what = format!("AXFR from {} of {}", remote.addr, zone.to_text());
    let mut c = Conn::open(remote).await?;
    let id = rand_id();
    let mut q = message(id, 0, zone, u16::from(RecordType::AXFR), None);
    let mut prior = key.map(|k| tsig::sign(&mut q, k, None, false, now()));
    c.send(&q).await?;
    let mut text = Vec::with_capacity(1 << 16);
    let mut first_serial: Option<u32> = None;
    let mut refresh = 3600;
    let mut records: u64 = 0;
    let mut n = 0usize;
    loop {
        let Some(raw) = c.recv().await? else {
            return Err(format!(
                "{what}: truncated transfer: the connection closed after {records} records \
                 without the closing SOA"
            ));
        };
        let m = check(&raw, id, key, &mut prior, n == 0, &what)?;
        n += 1;
        let count = m.answers.len();
        for (i, r) in m.answers.iter().enumerate() {
            let serial = soa_serial(r);
            match (first_serial, serial) {
                (None, Some(s)) => {
                    first_serial = Some(s);
                    if let RData::SOA(soa) = &r.data {
                        refresh = soa.refresh as u32;
                    }
                }
                (None, None) => return Err(format!("{what}: does not start with the SOA")),
                (Some(f), Some(s)) if records > 0 => {
                    if s != f {
                        return Err(format!(
                            "{what}: closing SOA serial {s} differs from the opening {f}"
                        ));
                    }
                    if i + 1 != count {
                        return Err(format!("{what}: records after the closing SOA"));
                    }
                    return Ok(Fetched {
                        serial: f,
                        refresh,
                        text,
                        records,
                    });
                }
                _ => {}
            }
            records += 1;
            if records > max_records {
                return Err(format!(
                    "{what}: more than {max_records} records (the zone's limit)"
                ));
            }
            push_text(&mut text, r).map_err(|e| format!("{what}: record {records}: {e}"))?;
        }
    }
}

/// Appends one record in master-file form (names uncompressed, rdata through our writer).
fn push_text(out: &mut Vec<u8>, r: &hickory_proto::rr::Record) -> Result<(), String> {
    let owner = our_name(&r.name).ok_or("bad owner name")?;
    let mut rd = Vec::with_capacity(64);
    {
        let mut enc = BinEncoder::new(&mut rd);
        let mut enc = enc.with_name_encoding(NameEncoding::Uncompressed);
        r.data.emit(&mut enc).map_err(|e| e.to_string())?;
    }
    let mut s = String::with_capacity(64 + rd.len() * 2);
    crate::zone::write::push_record(&mut s, &owner, u16::from(r.record_type()), r.ttl, &rd);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

//! The DNS client: what the signer asks other servers (a hidden primary's SOA and
//! transfers, a parent's DS, a resolver's answers) and the NOTIFYs it sends, with TSIG.
//! Used by ingest, by NOTIFY out and by the parent checks; it imports only the zone model.
//!
//! ```text
//!  client   SOA, AXFR/IXFR in (whole or refused), DS and other RRset queries
//!  tsig     RFC 8945 signing and verification (HMAC-SHA256/384/512)
//!  here     remotes (`ADDR:PORT [key NAME]`), query messages, NOTIFY out
//! ```

pub mod client;
pub mod tsig;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};

use crate::zone::Name;
use tsig::TsigKey;

/// Our name → hickory's.
pub fn hname(n: &Name) -> hickory_proto::rr::Name {
    hickory_proto::rr::Name::read(&mut BinDecoder::new(n.as_wire()))
        .unwrap_or_else(|_| hickory_proto::rr::Name::root())
}

/// hickory's name → ours.
pub fn our_name(n: &hickory_proto::rr::Name) -> Option<Name> {
    let mut n = n.clone();
    n.set_fqdn(true);
    let w = n.to_bytes().ok()?;
    Name::from_wire(&w).ok()
}

/// A `primary:ADDR:PORT [key NAME]` or notify target `ADDR:PORT [key NAME]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub addr: SocketAddr,
    pub key: Option<String>,
}

impl Remote {
    pub fn parse(s: &str) -> Result<Remote, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let (addr, key) = match parts.as_slice() {
            [a] => (*a, None),
            [a, "key", k] => (*a, Some(k.to_string())),
            _ => return Err(format!("{s:?}: expected ADDR:PORT or ADDR:PORT key NAME")),
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("{s:?}: address {addr:?}: {e} (expected IP:PORT)"))?;
        Ok(Remote { addr, key })
    }

    /// The key this remote uses, from the node's keyring.
    pub fn tsig<'a>(&self, keys: &'a [TsigKey]) -> Result<Option<&'a TsigKey>, String> {
        match &self.key {
            None => Ok(None),
            Some(k) => {
                let want = if k.ends_with('.') {
                    k.clone()
                } else {
                    format!("{k}.")
                };
                keys.iter()
                    .find(|t| t.name.to_text().eq_ignore_ascii_case(&want))
                    .map(Some)
                    .ok_or_else(|| format!("TSIG key {k} is not in this node's [[tsig]]"))
            }
        }
    }
}

/// The primary a zone's input names, if it is `primary:…`.
pub fn primary_of(input: &str) -> Option<Result<Remote, String>> {
    input.strip_prefix("primary:").map(Remote::parse)
}

/// A query message: `opcode` 0 (QUERY) or 4 (NOTIFY), one question, optional SOA in the
/// authority section (IXFR).
pub fn message(id: u16, opcode: u8, zone: &Name, qtype: u16, authority: Option<&[u8]>) -> Vec<u8> {
    let flags: u16 = (opcode as u16) << 11 | if opcode == 4 { 0x0400 } else { 0 };
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&(authority.is_some() as u16).to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(zone.as_wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some(rr) = authority {
        m.extend_from_slice(rr);
    }
    m
}

/// Sends one NOTIFY over UDP and waits for its answer (3 tries, 2 s each).
/// EDNS option (private-use range, RFC 6891 §9) carrying the fencing token of a NOTIFY:
/// term and log index of the version it announces, 8 octets each.
pub const TOKEN_OPTION: u16 = 65001;

/// Appends an OPT record with the fencing-token option and bumps ARCOUNT.
pub fn add_token(m: &mut Vec<u8>, token: (u64, u64)) {
    m.push(0); // root
    m.extend_from_slice(&41u16.to_be_bytes()); // OPT
    m.extend_from_slice(&1232u16.to_be_bytes()); // UDP payload size
    m.extend_from_slice(&0u32.to_be_bytes()); // extended rcode, version, flags
    m.extend_from_slice(&20u16.to_be_bytes()); // rdlength
    m.extend_from_slice(&TOKEN_OPTION.to_be_bytes());
    m.extend_from_slice(&16u16.to_be_bytes());
    m.extend_from_slice(&token.0.to_be_bytes());
    m.extend_from_slice(&token.1.to_be_bytes());
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Sends one NOTIFY carrying `token` (EDNS option [`TOKEN_OPTION`]) and waits for its answer.
pub async fn send_notify(
    target: &Remote,
    key: Option<&TsigKey>,
    zone: &Name,
    token: (u64, u64),
) -> Result<(), String> {
    let bind = if target.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(target.addr)
        .await
        .map_err(|e| format!("{}: {e}", target.addr))?;
    let id: u16 = rand_id();
    let mut m = message(id, 4, zone, crate::zone::rtype::SOA, None);
    add_token(&mut m, token);
    let mac = key.map(|k| tsig::sign(&mut m, k, None, false, crate::runtime::wall()));
    let mut last = String::new();
    for _ in 0..3 {
        sock.send(&m)
            .await
            .map_err(|e| format!("{}: {e}", target.addr))?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
            Err(_) => last = "no answer".into(),
            Ok(Err(e)) => last = e.to_string(),
            Ok(Ok(n)) => {
                let r = &buf[..n];
                if n < 12 || r[0..2] != id.to_be_bytes() || r[2] & 0x80 == 0 {
                    last = "malformed answer".into();
                    continue;
                }
                let rcode = r[3] & 0x0f;
                if rcode != 0 {
                    return Err(format!("answered {}", ResponseCode::from(0, rcode)));
                }
                if let (Some(k), Some(mac)) = (key, &mac) {
                    tsig::verify(
                        r,
                        std::slice::from_ref(k),
                        Some(mac),
                        false,
                        crate::runtime::wall(),
                    )
                    .map_err(|e| format!("answer's TSIG: {}", e.reason))?;
                }
                return Ok(());
            }
        }
    }
    Err(last)
}

pub fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    u16::from_be_bytes(b)
}

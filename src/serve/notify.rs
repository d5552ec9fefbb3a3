//! NOTIFY (RFC 1996): in from the hidden primary, out to the secondaries.
//!
//! Every node accepts a NOTIFY for a zone whose input is a primary (from that primary's
//! address, with its key when one is configured) and notes it; the leader fetches at its
//! next tick. NOTIFY out is sent by the leader only, and only while the version it
//! announces is still the zone's current one under its own term (the fencing token).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::tsig::{self, TsigKey};
use super::{Auth, error, reply};
use crate::node::Node;
use crate::zone::Name;

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

pub async fn incoming<R: ResponseHandler>(
    node: &Node,
    rh: &mut R,
    request: &Request,
    qname: &Name,
    auth: &Auth,
) -> ResponseInfo {
    let src = request.src();
    let zone = qname.to_text();
    let input = node.sm.with(|st| {
        st.zones
            .get(&zone)
            .and_then(|z| z.config.as_ref())
            .map(|c| c.input.clone())
    });
    let Some(Some(Ok(primary))) = input.as_deref().map(primary_of) else {
        tracing::warn!(%src, zone, "NOTIFY ignored: the zone does not take its input from a primary");
        return error(rh, request, ResponseCode::NotAuth, auth).await;
    };
    if primary.addr.ip().to_canonical() != src.ip().to_canonical() {
        tracing::warn!(%src, zone, primary = %primary.addr, "NOTIFY refused: not from the zone's primary");
        return error(rh, request, ResponseCode::Refused, auth).await;
    }
    if let Some(k) = &primary.key {
        let ok = auth.key_name().is_some_and(|a| {
            a.trim_end_matches('.')
                .eq_ignore_ascii_case(k.trim_end_matches('.'))
        });
        if !ok {
            tracing::warn!(%src, zone, "NOTIFY refused: not signed with key {k}");
            return error(rh, request, ResponseCode::Refused, auth).await;
        }
    }
    tracing::info!(%src, zone, "NOTIFY from the primary");
    node.local().notified.insert(zone);
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.authoritative = true;
    reply(rh, request, meta, &[], &[], &[], auth).await
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
pub fn add_token(m: &mut Vec<u8>, token: crate::replica::Token) {
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
    token: crate::replica::Token,
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

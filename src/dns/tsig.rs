//! TSIG (RFC 8945): HMAC over DNS messages, for transfers, NOTIFY and SOA queries.
//!
//! Works on wire bytes so the same code signs and checks requests, responses and every
//! message of a multi-message transfer (§5.3.1: each later message's MAC covers the MAC
//! before it and the timers only).

use aws_lc_rs::hmac;
use data_encoding::BASE64;

use crate::zone::Name;

/// TSIG record type.
pub const TSIG: u16 = 250;
/// TSIG errors (RFC 8945 §3).
pub const BADSIG: u16 = 16;
pub const BADKEY: u16 = 17;
pub const BADTIME: u16 = 18;
/// Seconds of clock difference accepted.
pub const FUDGE: u16 = 300;

#[derive(Clone)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: Name,
    alg: hmac::Algorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigKey({})", self.name.to_text())
    }
}

impl TsigKey {
    /// A key from its name, algorithm (`hmac-sha256` …) and base64 secret.
    pub fn new(name: &str, algorithm: &str, secret_b64: &str) -> Result<TsigKey, String> {
        let alg = match algorithm.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha1" => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            "hmac-sha224" => hmac::HMAC_SHA224,
            "hmac-sha256" => hmac::HMAC_SHA256,
            "hmac-sha384" => hmac::HMAC_SHA384,
            "hmac-sha512" => hmac::HMAC_SHA512,
            other => {
                return Err(format!(
                    "TSIG key {name}: algorithm {other:?} is not supported \
                     (hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512)"
                ));
            }
        };
        let secret = BASE64
            .decode(secret_b64.trim().as_bytes())
            .map_err(|e| format!("TSIG key {name}: secret is not base64: {e}"))?;
        if secret.is_empty() {
            return Err(format!("TSIG key {name}: empty secret"));
        }
        let fqdn = |s: &str| {
            let s = if s.ends_with('.') {
                s.to_string()
            } else {
                format!("{s}.")
            };
            Name::parse(s.as_bytes(), None).map_err(|e| format!("TSIG key name {s:?}: {e}"))
        };
        Ok(TsigKey {
            name: fqdn(name)?,
            algorithm: fqdn(&algorithm.to_ascii_lowercase())?,
            alg,
            secret,
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let k = hmac::Key::new(self.alg, &self.secret);
        let mut ctx = hmac::Context::with_key(&k);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }
}

/// The TSIG record at the end of a message, taken apart.
#[derive(Debug, Clone)]
pub struct TsigRr {
    /// Where the TSIG RR starts in the message.
    pub at: usize,
    pub key: Name,
    pub algorithm: Name,
    pub time: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub orig_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let l = *m.get(i)? as usize;
        if l == 0 {
            return Some(i + 1);
        }
        if l & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        if l & 0xC0 != 0 {
            return None;
        }
        i += 1 + l;
    }
}

fn u16_at(m: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]))
}

/// Finds the TSIG RR, which must be the last record of the message.
pub fn find(m: &[u8]) -> Option<TsigRr> {
    if m.len() < 12 {
        return None;
    }
    let qd = u16_at(m, 4)? as usize;
    let rrs = u16_at(m, 6)? as usize + u16_at(m, 8)? as usize + u16_at(m, 10)? as usize;
    if rrs == 0 {
        return None;
    }
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    for _ in 0..rrs - 1 {
        i = skip_name(m, i)?;
        let rdlen = u16_at(m, i + 8)? as usize;
        i += 10 + rdlen;
    }
    let at = i;
    // The key name and algorithm name are never compressed (RFC 8945 §4.2).
    let name_end = skip_name(m, i)?;
    let key = Name::from_wire(m.get(i..name_end)?).ok()?;
    if u16_at(m, name_end)? != TSIG {
        return None;
    }
    let rdlen = u16_at(m, name_end + 8)? as usize;
    let rd = m.get(name_end + 10..name_end + 10 + rdlen)?;
    if name_end + 10 + rdlen != m.len() {
        return None;
    }
    let alg_end = skip_name(rd, 0)?;
    let algorithm = Name::from_wire(rd.get(..alg_end)?).ok()?;
    let mut j = alg_end;
    let time = (u16_at(rd, j)? as u64) << 32
        | u32::from_be_bytes(rd.get(j + 2..j + 6)?.try_into().ok()?) as u64;
    j += 6;
    let fudge = u16_at(rd, j)?;
    let mac_len = u16_at(rd, j + 2)? as usize;
    let mac = rd.get(j + 4..j + 4 + mac_len)?.to_vec();
    j += 4 + mac_len;
    let orig_id = u16_at(rd, j)?;
    let error = u16_at(rd, j + 2)?;
    let other_len = u16_at(rd, j + 4)? as usize;
    let other = rd.get(j + 6..j + 6 + other_len)?.to_vec();
    Some(TsigRr {
        at,
        key,
        algorithm,
        time,
        fudge,
        mac,
        orig_id,
        error,
        other,
    })
}

fn variables(key: &TsigKey, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(key.name.as_wire());
    v.extend_from_slice(&255u16.to_be_bytes()); // class ANY
    v.extend_from_slice(&0u32.to_be_bytes()); // TTL
    v.extend_from_slice(key.algorithm.as_wire());
    v.extend_from_slice(&timers(time, fudge));
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

fn timers(time: u64, fudge: u16) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..2].copy_from_slice(&((time >> 32) as u16).to_be_bytes());
    t[2..6].copy_from_slice(&(time as u32).to_be_bytes());
    t[6..].copy_from_slice(&fudge.to_be_bytes());
    t
}

/// The message as it was before the TSIG RR was added: ARCOUNT one less, original ID.
fn unsigned_part(m: &[u8], t: &TsigRr) -> Vec<u8> {
    let mut b = m[..t.at].to_vec();
    b[0..2].copy_from_slice(&t.orig_id.to_be_bytes());
    let ar = u16::from_be_bytes([b[10], b[11]]).wrapping_sub(1);
    b[10..12].copy_from_slice(&ar.to_be_bytes());
    b
}

fn mac_prefix(prior: Option<&[u8]>) -> Vec<u8> {
    match prior {
        Some(p) => {
            let mut v = (p.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(p);
            v
        }
        None => Vec::new(),
    }
}

/// Why a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: u16,
    pub reason: String,
}

/// Checks a signed message. `prior` is the request MAC (for a response) or the previous
/// message's MAC (for a later message of a transfer, where only the timers are covered).
pub fn verify(
    m: &[u8],
    keys: &[TsigKey],
    prior: Option<&[u8]>,
    timers_only: bool,
    now: u64,
) -> Result<(TsigRr, TsigKey), Refusal> {
    let t = find(m).ok_or(Refusal {
        error: BADSIG,
        reason: "no TSIG record at the end of the message".into(),
    })?;
    let Some(key) = keys
        .iter()
        .find(|k| k.name == t.key && k.algorithm == t.algorithm)
    else {
        return Err(Refusal {
            error: BADKEY,
            reason: format!(
                "unknown TSIG key {} ({})",
                t.key.to_text(),
                t.algorithm.to_text()
            ),
        });
    };
    let body = unsigned_part(m, &t);
    let vars = if timers_only {
        timers(t.time, t.fudge).to_vec()
    } else {
        variables(key, t.time, t.fudge, t.error, &t.other)
    };
    let expect = key.mac(&[&mac_prefix(prior), &body, &vars]);
    if t.mac.len() != expect.len()
        || aws_lc_rs::constant_time::verify_slices_are_equal(&t.mac, &expect).is_err()
    {
        return Err(Refusal {
            error: BADSIG,
            reason: format!("TSIG key {}: MAC does not verify", t.key.to_text()),
        });
    }
    if now.abs_diff(t.time) > t.fudge as u64 {
        return Err(Refusal {
            error: BADTIME,
            reason: format!(
                "TSIG key {}: signed at {}, now {now}, fudge {}",
                t.key.to_text(),
                t.time,
                t.fudge
            ),
        });
    }
    Ok((t, key.clone()))
}

/// The MAC for message `m` (which does not hold its TSIG RR yet).
pub fn sign_mac(
    m: &[u8],
    key: &TsigKey,
    prior: Option<&[u8]>,
    timers_only: bool,
    time: u64,
    error: u16,
) -> Vec<u8> {
    let vars = if timers_only {
        timers(time, FUDGE).to_vec()
    } else {
        variables(key, time, FUDGE, error, &[])
    };
    key.mac(&[&mac_prefix(prior), m, &vars])
}

/// Signs `m` in place: appends the TSIG RR and bumps ARCOUNT. Returns the MAC.
pub fn sign(
    m: &mut Vec<u8>,
    key: &TsigKey,
    prior: Option<&[u8]>,
    timers_only: bool,
    time: u64,
) -> Vec<u8> {
    let mac = sign_mac(m, key, prior, timers_only, time, 0);
    let id = u16::from_be_bytes([m[0], m[1]]);
    let mut rd = key.algorithm.as_wire().to_vec();
    rd.extend_from_slice(&timers(time, FUDGE));
    rd.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rd.extend_from_slice(&mac);
    rd.extend_from_slice(&id.to_be_bytes());
    rd.extend_from_slice(&0u16.to_be_bytes());
    rd.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(key.name.as_wire());
    m.extend_from_slice(&TSIG.to_be_bytes());
    m.extend_from_slice(&255u16.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
    m.extend_from_slice(&rd);
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TsigKey {
        TsigKey::new(
            "xfr-key",
            "hmac-sha256",
            "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        )
        .unwrap()
    }

    fn query() -> Vec<u8> {
        // id 0x1234, one question: example. SOA IN
        let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x06\x00\x01");
        m
    }

    #[test]
    fn signed_request_verifies_and_tampering_is_caught() {
        let k = key();
        let mut m = query();
        let mac = sign(&mut m, &k, None, false, 1_000_000);
        let (t, _) = verify(&m, &[k.clone()], None, false, 1_000_100).unwrap();
        assert_eq!(t.mac, mac);
        // Wrong time.
        let e = verify(&m, &[k.clone()], None, false, 1_000_400).unwrap_err();
        assert_eq!(e.error, BADTIME);
        // A changed byte in the question.
        let mut bad = m.clone();
        bad[14] ^= 1;
        assert_eq!(
            verify(&bad, &[k.clone()], None, false, 1_000_000)
                .unwrap_err()
                .error,
            BADSIG
        );
        // An unknown key.
        let other = TsigKey::new("other", "hmac-sha256", "b3RoZXI=").unwrap();
        assert_eq!(
            verify(&m, &[other], None, false, 1_000_000)
                .unwrap_err()
                .error,
            BADKEY
        );
        // The wrong secret under the right name.
        let wrong = TsigKey::new("xfr-key", "hmac-sha256", "b3RoZXI=").unwrap();
        assert_eq!(
            verify(&m, &[wrong], None, false, 1_000_000)
                .unwrap_err()
                .error,
            BADSIG
        );
    }

    #[test]
    fn response_chain_covers_the_prior_mac() {
        let k = key();
        let mut req = query();
        let rmac = sign(&mut req, &k, None, false, 5);
        let mut r1 = query();
        r1[2] = 0x84;
        let m1 = sign(&mut r1, &k, Some(&rmac), false, 5);
        verify(&r1, &[k.clone()], Some(&rmac), false, 5).unwrap();
        let mut r2 = query();
        r2[2] = 0x84;
        sign(&mut r2, &k, Some(&m1), true, 6);
        verify(&r2, &[k.clone()], Some(&m1), true, 6).unwrap();
        // Out of order: the second message checked against the request MAC fails.
        assert!(verify(&r2, &[k.clone()], Some(&rmac), true, 6).is_err());
    }
}

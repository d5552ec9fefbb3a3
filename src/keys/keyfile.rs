//! BIND key files: `K<zone>+<alg>+<tag>.key` (the DNSKEY record) and `.private`
//! (`Private-key-format: v1.3`). dnssec-keygen, ldns-keygen and Knot's
//! `keymgr import-bind` read and write this format.

use std::collections::BTreeMap;

use data_encoding::BASE64;

use super::DnsKey;
use crate::zone::Name;
use crate::zone::rdata::{self, Tok};
use crate::zone::rtype;

/// The fields of a `.private` file, base64 values decoded.
#[derive(Default)]
pub struct PrivateFields {
    pub algorithm: u8,
    pub fields: BTreeMap<String, Vec<u8>>,
    pub timing: BTreeMap<String, String>,
}

impl std::fmt::Debug for PrivateFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateFields(algorithm {}, ***)", self.algorithm)
    }
}

const TIMING: &[&str] = &[
    "Created",
    "Publish",
    "Activate",
    "Inactive",
    "Delete",
    "Revoke",
    "SyncPublish",
    "SyncDelete",
];

/// Basename `K<zone>+<alg>+<tag>` as BIND names it.
pub fn basename(zone: &Name, key: &DnsKey) -> String {
    format!(
        "K{}+{:03}+{:05}",
        zone.to_text(),
        key.algorithm,
        key.key_tag()
    )
}

/// Parses a `.key` file: comments, then `owner [ttl] [IN] DNSKEY flags 3 alg key`.
pub fn parse_public(text: &str) -> Result<(Name, DnsKey), String> {
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let owner = Name::parse(toks[0].as_bytes(), None).map_err(|e| format!("bad owner: {e}"))?;
        let mut i = 1;
        while i < toks.len()
            && (toks[i].eq_ignore_ascii_case("IN") || toks[i].bytes().all(|b| b.is_ascii_digit()))
            && !toks[i].eq_ignore_ascii_case("DNSKEY")
        {
            i += 1;
            if i >= 3 {
                break;
            }
        }
        if toks.get(i).map(|t| t.eq_ignore_ascii_case("DNSKEY")) != Some(true) {
            return Err("no DNSKEY record in key file".into());
        }
        let rd: Vec<Tok<'_>> = toks[i + 1..]
            .iter()
            .map(|t| Tok {
                text: t.as_bytes(),
                quoted: false,
            })
            .collect();
        let wire = rdata::parse(rtype::DNSKEY, &rd, None).map_err(|e| e.0)?;
        let key = DnsKey::from_rdata(&wire).ok_or("malformed DNSKEY rdata")?;
        return Ok((owner, key));
    }
    Err("empty key file".into())
}

pub fn format_public(zone: &Name, key: &DnsKey, created: &str) -> String {
    let kind = if key.is_sep() {
        "key-signing"
    } else {
        "zone-signing"
    };
    format!(
        "; This is a {kind} key, keyid {}, for {}\n; Created: {created}\n{} IN DNSKEY {} 3 {} {}\n",
        key.key_tag(),
        zone,
        zone,
        key.flags,
        key.algorithm,
        BASE64.encode(&key.public_key)
    )
}

pub fn parse_private(text: &str) -> Result<PrivateFields, String> {
    let mut out = PrivateFields::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `Field: value`", n + 1))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "Private-key-format" => {
                if !v.starts_with("v1.") {
                    return Err(format!(
                        "line {}: unsupported Private-key-format {v}",
                        n + 1
                    ));
                }
            }
            "Algorithm" => {
                let num = v.split_whitespace().next().unwrap_or("");
                out.algorithm = num
                    .parse()
                    .map_err(|_| format!("line {}: bad Algorithm {num:?}", n + 1))?;
            }
            _ if TIMING.contains(&k) => {
                out.timing.insert(k.to_string(), v.to_string());
            }
            _ => {
                let b = BASE64
                    .decode(v.as_bytes())
                    .map_err(|_| format!("line {}: field {k} is not base64", n + 1))?;
                out.fields.insert(k.to_string(), b);
            }
        }
    }
    if out.algorithm == 0 {
        return Err("no Algorithm line".into());
    }
    Ok(out)
}

pub fn format_private(alg: u8, mnemonic: &str, fields: &[(&str, &[u8])], created: &str) -> String {
    let mut s = format!("Private-key-format: v1.3\nAlgorithm: {alg} ({mnemonic})\n");
    for (k, v) in fields {
        s.push_str(&format!("{k}: {}\n", BASE64.encode(v)));
    }
    s.push_str(&format!(
        "Created: {created}\nPublish: {created}\nActivate: {created}\n"
    ));
    s
}

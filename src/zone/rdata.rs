//! Record data: presentation form to canonical wire form and back.
//!
//! Every type quorumsign understands is described by a list of fields; parsing and
//! printing walk that list. Names inside rdata are lower-cased as RFC 4034 §6.2 asks for
//! the types that carry them here, so the stored rdata is already in canonical form.
//! Any type, known or not, may be given in the RFC 3597 generic form `\# len hex`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use data_encoding::{BASE32HEX_NOPAD, BASE64, HEXUPPER};

use super::name::{Name, unescape, wire_name_len};
use super::rtype::{self, *};

/// One token of a record's rdata in presentation form.
#[derive(Debug, Clone, Copy)]
pub struct Tok<'a> {
    pub text: &'a [u8],
    pub quoted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    U8,
    U16,
    U32,
    /// A TTL-like duration: seconds or BIND's `1h30m` form.
    Period,
    Name,
    /// A name whose case is kept (RFC 6840 §5.1: the NSEC Next Domain Name).
    NameKeepCase,
    Ipv4,
    Ipv6,
    /// One `<character-string>`.
    Str,
    /// One or more `<character-string>`s to the end.
    Strs,
    /// The rest of the tokens as one string without a length octet (CAA value, URI target).
    RawStrRest,
    Base64Rest,
    HexRest,
    TypeCovered,
    /// RRSIG timestamps: `YYYYMMDDHHmmSS` or seconds.
    Time,
    /// NSEC3 salt: hex with a length octet, `-` for empty.
    Salt,
    /// NSEC3 next hashed owner: base32hex with a length octet.
    Base32Len,
    Bitmap,
}

fn fields(t: u16) -> Option<&'static [Field]> {
    use Field::*;
    Some(match t {
        A => &[Ipv4],
        AAAA => &[Ipv6],
        NS | CNAME | PTR | DNAME => &[Name],
        SOA => &[Name, Name, U32, Period, Period, Period, Period],
        MX | AFSDB | KX => &[U16, Name],
        TXT | SPF => &[Strs],
        HINFO => &[Str, Str],
        RP => &[Name, Name],
        SRV => &[U16, U16, U16, Name],
        NAPTR => &[U16, U16, Str, Str, Str, Name],
        DS | CDS => &[U16, U8, U8, HexRest],
        SSHFP => &[U8, U8, HexRest],
        TLSA | SMIMEA => &[U8, U8, U8, HexRest],
        DNSKEY | CDNSKEY => &[U16, U8, U8, Base64Rest],
        RRSIG => &[TypeCovered, U8, U8, U32, Time, Time, U16, Name, Base64Rest],
        NSEC => &[NameKeepCase, Bitmap],
        NSEC3 => &[U8, U8, U16, Salt, Base32Len, Bitmap],
        NSEC3PARAM => &[U8, U8, U16, Salt],
        DHCID | OPENPGPKEY => &[Base64Rest],
        ZONEMD => &[U32, U8, U8, HexRest],
        CAA => &[U8, Str, RawStrRest],
        URI => &[U16, U16, RawStrRest],
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RdataError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RdataError> {
    Err(RdataError(msg.into()))
}

/// Parses rdata tokens of type `t` into canonical wire form.
pub fn parse(t: u16, toks: &[Tok<'_>], origin: Option<&Name>) -> Result<Vec<u8>, RdataError> {
    if let Some(first) = toks.first()
        && !first.quoted
        && first.text == b"\\#"
    {
        return parse_generic(t, &toks[1..]);
    }
    let Some(fields) = fields(t) else {
        return err(format!(
            "type {} is not supported in presentation form; write it in the RFC 3597 generic form (\\# <length> <hex>)",
            rtype::to_text(t)
        ));
    };
    let mut out = Vec::with_capacity(32);
    let mut i = 0usize;
    for (fi, f) in fields.iter().enumerate() {
        let rest = &toks[i.min(toks.len())..];
        let need = |i: usize| -> Result<&Tok<'_>, RdataError> {
            toks.get(i).ok_or_else(|| {
                RdataError(format!(
                    "{} rdata is missing field {}",
                    rtype::to_text(t),
                    fi + 1
                ))
            })
        };
        match f {
            Field::U8 => {
                let v = parse_num(need(i)?.text, t, u8::MAX as u64)?;
                out.push(v as u8);
                i += 1;
            }
            Field::U16 => {
                let v = parse_num(need(i)?.text, t, u16::MAX as u64)?;
                out.extend_from_slice(&(v as u16).to_be_bytes());
                i += 1;
            }
            Field::U32 => {
                let v = parse_num(need(i)?.text, t, u32::MAX as u64)?;
                out.extend_from_slice(&(v as u32).to_be_bytes());
                i += 1;
            }
            Field::Period => {
                let v = parse_period(need(i)?.text)
                    .ok_or_else(|| bad(t, need(i).unwrap().text, "a number of seconds"))?;
                out.extend_from_slice(&v.to_be_bytes());
                i += 1;
            }
            Field::Name => {
                let tok = need(i)?;
                let n = Name::parse(tok.text, origin).map_err(|e| {
                    RdataError(format!(
                        "bad name {:?} in {} rdata: {e}",
                        lossy(tok.text),
                        rtype::to_text(t)
                    ))
                })?;
                out.extend_from_slice(n.as_wire());
                i += 1;
            }
            Field::NameKeepCase => {
                let tok = need(i)?;
                let w = Name::parse_keep_case(tok.text, origin).map_err(|e| {
                    RdataError(format!(
                        "bad name {:?} in {} rdata: {e}",
                        lossy(tok.text),
                        rtype::to_text(t)
                    ))
                })?;
                out.extend_from_slice(&w);
                i += 1;
            }
            Field::Ipv4 => {
                let tok = need(i)?;
                let a: Ipv4Addr = std::str::from_utf8(tok.text)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(t, tok.text, "an IPv4 address"))?;
                out.extend_from_slice(&a.octets());
                i += 1;
            }
            Field::Ipv6 => {
                let tok = need(i)?;
                let a: Ipv6Addr = std::str::from_utf8(tok.text)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(t, tok.text, "an IPv6 address"))?;
                out.extend_from_slice(&a.octets());
                i += 1;
            }
            Field::Str => {
                push_char_string(&mut out, need(i)?.text, t)?;
                i += 1;
            }
            Field::Strs => {
                if rest.is_empty() {
                    return err(format!(
                        "{} rdata needs at least one string",
                        rtype::to_text(t)
                    ));
                }
                for tok in rest {
                    push_char_string(&mut out, tok.text, t)?;
                }
                i = toks.len();
            }
            Field::RawStrRest => {
                for (k, tok) in rest.iter().enumerate() {
                    if k > 0 {
                        out.push(b' ');
                    }
                    unescape_string(tok.text, &mut out, t)?;
                }
                i = toks.len();
            }
            Field::Base64Rest => {
                let joined: Vec<u8> = rest.iter().flat_map(|t| t.text.iter().copied()).collect();
                let v = BASE64
                    .decode(&joined)
                    .map_err(|_| bad(t, &joined, "base64"))?;
                out.extend_from_slice(&v);
                i = toks.len();
            }
            Field::HexRest => {
                let joined: Vec<u8> = rest.iter().flat_map(|t| t.text.iter().copied()).collect();
                let v = HEXUPPER
                    .decode(&joined.to_ascii_uppercase())
                    .map_err(|_| bad(t, &joined, "hex"))?;
                out.extend_from_slice(&v);
                i = toks.len();
            }
            Field::TypeCovered => {
                let tok = need(i)?;
                let v =
                    rtype::from_text(tok.text).ok_or_else(|| bad(t, tok.text, "a record type"))?;
                out.extend_from_slice(&v.to_be_bytes());
                i += 1;
            }
            Field::Time => {
                let tok = need(i)?;
                let v = parse_rrsig_time(tok.text)
                    .ok_or_else(|| bad(t, tok.text, "a YYYYMMDDHHmmSS time"))?;
                out.extend_from_slice(&v.to_be_bytes());
                i += 1;
            }
            Field::Salt => {
                let tok = need(i)?;
                if tok.text == b"-" {
                    out.push(0);
                } else {
                    let v = HEXUPPER
                        .decode(&tok.text.to_ascii_uppercase())
                        .map_err(|_| bad(t, tok.text, "hex salt"))?;
                    if v.len() > 255 {
                        return err("NSEC3 salt longer than 255 octets");
                    }
                    out.push(v.len() as u8);
                    out.extend_from_slice(&v);
                }
                i += 1;
            }
            Field::Base32Len => {
                let tok = need(i)?;
                let v = BASE32HEX_NOPAD
                    .decode(&tok.text.to_ascii_uppercase())
                    .map_err(|_| bad(t, tok.text, "base32hex"))?;
                out.push(v.len() as u8);
                out.extend_from_slice(&v);
                i += 1;
            }
            Field::Bitmap => {
                let mut types = Vec::with_capacity(rest.len());
                for tok in rest {
                    types.push(
                        rtype::from_text(tok.text)
                            .ok_or_else(|| bad(t, tok.text, "a record type"))?,
                    );
                }
                out.extend_from_slice(&type_bitmap(&mut types));
                i = toks.len();
            }
        }
    }
    if i < toks.len() {
        return err(format!(
            "{} rdata has {} unexpected trailing token(s), starting at {:?}",
            rtype::to_text(t),
            toks.len() - i,
            lossy(toks[i].text)
        ));
    }
    if out.len() > u16::MAX as usize {
        return err("rdata longer than 65535 octets");
    }
    if matches!(t, DS | CDS) {
        check_ds_digest(t, &out)?;
    }
    Ok(out)
}

/// RFC 4509 / RFC 6605: a DS digest has the length of its digest type.
fn check_ds_digest(t: u16, rd: &[u8]) -> Result<(), RdataError> {
    let want = match rd[3] {
        1 => 20,
        2 => 32,
        4 => 48,
        _ => return Ok(()),
    };
    if rd.len() - 4 != want {
        return err(format!(
            "{} digest type {} needs {want} octets of digest, found {}",
            rtype::to_text(t),
            rd[3],
            rd.len() - 4
        ));
    }
    Ok(())
}

fn parse_generic(t: u16, toks: &[Tok<'_>]) -> Result<Vec<u8>, RdataError> {
    let Some(len_tok) = toks.first() else {
        return err("RFC 3597 generic rdata needs a length");
    };
    let len = parse_num(len_tok.text, t, u16::MAX as u64)? as usize;
    let joined: Vec<u8> = toks[1..]
        .iter()
        .flat_map(|t| t.text.iter().copied())
        .collect();
    let v = HEXUPPER
        .decode(&joined.to_ascii_uppercase())
        .map_err(|_| bad(t, &joined, "hex"))?;
    if v.len() != len {
        return err(format!(
            "RFC 3597 generic rdata says {len} octets but has {}",
            v.len()
        ));
    }
    // A known type given generically must still be well formed; re-encode via wire check.
    if fields(t).is_some() {
        to_text(t, &v).map_err(|e| {
            RdataError(format!(
                "generic rdata is not valid {}: {e}",
                rtype::to_text(t)
            ))
        })?;
        return canonical(t, &v);
    }
    Ok(v)
}

/// Wire rdata of type `t` in the form the parser stores it: the names in it lower-cased
/// for the types RFC 4034 §6.2 lists (records received in a transfer keep the primary's
/// case, and an IXFR removes a record by its exact rdata).
pub fn canonical(t: u16, wire: &[u8]) -> Result<Vec<u8>, RdataError> {
    if fields(t).is_some()
        && matches!(
            t,
            NS | CNAME | PTR | DNAME | SOA | MX | AFSDB | KX | RP | SRV | NAPTR | RRSIG
        )
    {
        return lowercase_rdata_names(t, wire);
    }
    Ok(wire.to_vec())
}

/// Re-encodes rdata from wire form with the names lower-cased (RFC 4034 §6.2).
fn lowercase_rdata_names(t: u16, wire: &[u8]) -> Result<Vec<u8>, RdataError> {
    let fields = fields(t).expect("known type");
    let mut out = wire.to_vec();
    let mut pos = 0usize;
    for f in fields {
        let step =
            field_wire_len(*f, &wire[pos..]).ok_or_else(|| RdataError("truncated rdata".into()))?;
        if *f == Field::Name {
            out[pos..pos + step].copy_from_slice(
                Name::from_wire(&wire[pos..])
                    .map_err(|e| RdataError(e.to_string()))?
                    .as_wire(),
            );
        }
        pos += step;
        if pos >= wire.len() {
            break;
        }
    }
    Ok(out)
}

fn field_wire_len(f: Field, w: &[u8]) -> Option<usize> {
    Some(match f {
        Field::U8 => 1,
        Field::U16 | Field::TypeCovered => 2,
        Field::U32 | Field::Period | Field::Time | Field::Ipv4 => 4,
        Field::Ipv6 => 16,
        Field::Name | Field::NameKeepCase => wire_name_len(w).ok()?,
        Field::Str | Field::Salt | Field::Base32Len => 1 + *w.first()? as usize,
        _ => w.len(),
    })
}

fn bad(t: u16, text: &[u8], what: &str) -> RdataError {
    RdataError(format!(
        "{:?} in {} rdata is not {what}",
        lossy(text),
        rtype::to_text(t)
    ))
}

/// Input text for an error message, cut to `ERROR_TEXT_CHARS_MAX` characters so that a
/// binary or runaway token cannot flood the log.
pub fn lossy(b: &[u8]) -> String {
    const ERROR_TEXT_CHARS_MAX: usize = 64;
    let s = String::from_utf8_lossy(b);
    if s.chars().count() <= ERROR_TEXT_CHARS_MAX {
        return s.into_owned();
    }
    let mut t: String = s.chars().take(ERROR_TEXT_CHARS_MAX).collect();
    t.push('…');
    t
}

fn parse_num(text: &[u8], t: u16, max: u64) -> Result<u64, RdataError> {
    let s = std::str::from_utf8(text).map_err(|_| bad(t, text, "a number"))?;
    let v: u64 = s.parse().map_err(|_| bad(t, text, "a number"))?;
    if v > max {
        return err(format!(
            "{v} in {} rdata is larger than {max}",
            rtype::to_text(t)
        ));
    }
    Ok(v)
}

/// Seconds, or BIND's `1w2d3h4m5s` form (case-insensitive).
pub fn parse_period(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    if text.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(text).ok()?.parse().ok();
    }
    let mut total: u64 = 0;
    let mut cur: u64 = 0;
    let mut have_digit = false;
    for &c in text {
        if c.is_ascii_digit() {
            cur = cur.checked_mul(10)?.checked_add((c - b'0') as u64)?;
            have_digit = true;
            continue;
        }
        if !have_digit {
            return None;
        }
        let mult = match c.to_ascii_lowercase() {
            b'w' => 604_800,
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            b's' => 1,
            _ => return None,
        };
        total += cur * mult;
        cur = 0;
        have_digit = false;
    }
    if have_digit {
        total += cur;
    }
    u32::try_from(total).ok()
}

fn push_char_string(out: &mut Vec<u8>, text: &[u8], t: u16) -> Result<(), RdataError> {
    let at = out.len();
    out.push(0);
    unescape_string(text, out, t)?;
    let len = out.len() - at - 1;
    if len > 255 {
        return err(format!(
            "character-string in {} rdata is {len} octets; the limit is 255 (RFC 1035 §3.3)",
            rtype::to_text(t)
        ));
    }
    out[at] = len as u8;
    Ok(())
}

fn unescape_string(text: &[u8], out: &mut Vec<u8>, t: u16) -> Result<(), RdataError> {
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            let (b, used) =
                unescape(&text[i + 1..]).map_err(|_| bad(t, text, "a valid escaped string"))?;
            out.push(b);
            i += 1 + used;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Ok(())
}

/// RFC 4034 §4.1.2 type bit maps. Sorts and de-duplicates `types`.
pub fn type_bitmap(types: &mut Vec<u16>) -> Vec<u8> {
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < types.len() {
        let window = types[i] >> 8;
        let mut bits = [0u8; 32];
        let mut max_octet = 0usize;
        while i < types.len() && types[i] >> 8 == window {
            let low = (types[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            max_octet = low / 8;
            i += 1;
        }
        out.push(window as u8);
        out.push(max_octet as u8 + 1);
        out.extend_from_slice(&bits[..=max_octet]);
    }
    out
}

/// Decodes a type bit map into the sorted list of types.
pub fn bitmap_types(mut w: &[u8]) -> Option<Vec<u16>> {
    let mut types = Vec::new();
    let mut last_window: i32 = -1;
    while !w.is_empty() {
        let window = *w.first()? as i32;
        let len = *w.get(1)? as usize;
        if window <= last_window || len == 0 || len > 32 || w.len() < 2 + len {
            return None;
        }
        for (octet, &b) in w[2..2 + len].iter().enumerate() {
            for bit in 0..8 {
                if b & (0x80 >> bit) != 0 {
                    types.push(((window as u16) << 8) | (octet * 8 + bit) as u16);
                }
            }
        }
        last_window = window;
        w = &w[2 + len..];
    }
    Some(types)
}

/// Formats canonical wire rdata in presentation form; unknown types in RFC 3597 form.
pub fn to_text(t: u16, w: &[u8]) -> Result<String, RdataError> {
    let mut s = String::with_capacity(w.len() * 2);
    let Some(fields) = fields(t) else {
        write_generic(&mut s, w);
        return Ok(s);
    };
    let trunc = || RdataError(format!("truncated {} rdata", rtype::to_text(t)));
    let mut pos = 0usize;
    for (fi, f) in fields.iter().enumerate() {
        if fi > 0 {
            s.push(' ');
        }
        let rest = &w[pos.min(w.len())..];
        let step = field_wire_len(*f, rest).ok_or_else(trunc)?;
        if step > rest.len() {
            return Err(trunc());
        }
        let v = &rest[..step];
        match f {
            Field::U8 => write!(s, "{}", v[0]).unwrap(),
            Field::U16 => write!(s, "{}", u16::from_be_bytes([v[0], v[1]])).unwrap(),
            Field::U32 | Field::Period => {
                write!(s, "{}", u32::from_be_bytes([v[0], v[1], v[2], v[3]])).unwrap()
            }
            Field::Name => Name::from_wire(v).map_err(|_| trunc())?.write_text(&mut s),
            Field::NameKeepCase => super::name::write_wire_text(v, &mut s),
            Field::Ipv4 => write!(s, "{}", Ipv4Addr::new(v[0], v[1], v[2], v[3])).unwrap(),
            Field::Ipv6 => {
                write!(s, "{}", Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap())).unwrap()
            }
            Field::Str => write_char_string(&mut s, &v[1..]),
            Field::Strs => {
                let mut p = 0;
                let mut first = true;
                while p < v.len() {
                    let l = v[p] as usize;
                    if p + 1 + l > v.len() {
                        return Err(trunc());
                    }
                    if !first {
                        s.push(' ');
                    }
                    write_char_string(&mut s, &v[p + 1..p + 1 + l]);
                    first = false;
                    p += 1 + l;
                }
            }
            Field::RawStrRest => write_char_string(&mut s, v),
            Field::Base64Rest => s.push_str(&BASE64.encode(v)),
            Field::HexRest => s.push_str(&HEXUPPER.encode(v)),
            Field::TypeCovered => s.push_str(&rtype::to_text(u16::from_be_bytes([v[0], v[1]]))),
            Field::Time => s.push_str(&format_rrsig_time(u32::from_be_bytes([
                v[0], v[1], v[2], v[3],
            ]))),
            Field::Salt => {
                if v.len() == 1 {
                    s.push('-');
                } else {
                    s.push_str(&HEXUPPER.encode(&v[1..]));
                }
            }
            Field::Base32Len => s.push_str(&BASE32HEX_NOPAD.encode(&v[1..])),
            Field::Bitmap => {
                let types = bitmap_types(v).ok_or_else(trunc)?;
                for (k, ty) in types.iter().enumerate() {
                    if k > 0 {
                        s.push(' ');
                    }
                    s.push_str(&rtype::to_text(*ty));
                }
            }
        }
        pos += step;
    }
    if pos != w.len() {
        return Err(RdataError(format!(
            "{} rdata has {} trailing octets",
            rtype::to_text(t),
            w.len() - pos
        )));
    }
    Ok(s)
}

fn write_generic(s: &mut String, w: &[u8]) {
    write!(s, "\\# {}", w.len()).unwrap();
    if !w.is_empty() {
        s.push(' ');
        s.push_str(&HEXUPPER.encode(w));
    }
}

fn write_char_string(s: &mut String, v: &[u8]) {
    s.push('"');
    for &b in v {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => write!(s, "\\{b:03}").unwrap(),
        }
    }
    s.push('"');
}

/// RFC 4034 §3.2: `YYYYMMDDHHmmSS` in UTC, or a plain number of seconds.
pub fn parse_rrsig_time(text: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(text).ok()?;
    if s.len() != 14 {
        return s.parse().ok();
    }
    let num = |a: usize, b: usize| s[a..b].parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (h, mi, se) = (num(8, 10)?, num(10, 12)?, num(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = super::civil::to_days(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se;
    // Serial number arithmetic (RFC 4034 §3.1.5): keep the low 32 bits.
    Some(secs as u64 as u32)
}

pub fn format_rrsig_time(t: u32) -> String {
    let secs = t as i64;
    let (y, mo, d) = super::civil::from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}",
        r / 3600,
        (r / 60) % 60,
        r % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        s.split_whitespace()
            .map(|t| Tok {
                text: t.as_bytes(),
                quoted: false,
            })
            .collect()
    }

    #[test]
    fn round_trips() {
        let origin = Name::parse(b"example.", None).unwrap();
        for (t, text) in [
            (A, "192.0.2.1"),
            (AAAA, "2001:db8::1"),
            (MX, "10 mail.example."),
            (SOA, "ns.example. admin.example. 1 7200 3600 1209600 3600"),
            (
                DS,
                "12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
            ),
            (NSEC, "a.example. A NS SOA RRSIG NSEC DNSKEY TYPE65280"),
            (NSEC3, "1 1 0 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG"),
            (NSEC3PARAM, "1 0 0 AABB"),
            (
                RRSIG,
                "A 13 2 3600 20260101000000 20251201000000 12345 example. AAAA",
            ),
        ] {
            let w = parse(t, &toks(text), Some(&origin)).unwrap();
            assert_eq!(to_text(t, &w).unwrap(), text, "type {t}");
        }
    }

    #[test]
    fn generic_and_periods() {
        let w = parse(65280, &toks("\\# 4 0a000001"), None).unwrap();
        assert_eq!(w, [10, 0, 0, 1]);
        assert_eq!(to_text(65280, &w).unwrap(), "\\# 4 0A000001");
        assert_eq!(
            parse(A, &toks("\\# 4 0a000001"), None).unwrap(),
            [10, 0, 0, 1]
        );
        assert!(parse(65280, &toks("\\# 5 0a000001"), None).is_err());
        assert_eq!(parse_period(b"1h30m"), Some(5400));
        assert_eq!(parse_period(b"1W"), Some(604_800));
        assert_eq!(parse_rrsig_time(b"19700101000010"), Some(10));
        assert_eq!(format_rrsig_time(1_700_000_000), "20231114221320");
    }
}

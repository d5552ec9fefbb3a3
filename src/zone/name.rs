//! Domain names in canonical wire form.
//!
//! # Background
//! RFC 4034 §6.1 orders names by their labels from the right, each label compared as a
//! lower-cased octet string; §6.2 lower-cases owner names (and the names inside the rdata
//! of the types it lists) before signing. quorumsign keeps every name in that canonical
//! form from the moment it is parsed, so signing, hashing and comparing never have to
//! convert again.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// RFC 1035 §2.3.4: a name is at most 255 octets in wire form.
pub const NAME_BYTES_MAX: usize = 255;
/// RFC 1035 §2.3.4: a label is at most 63 octets.
pub const LABEL_BYTES_MAX: usize = 63;

/// An absolute domain name in lower-cased wire form (RFC 4034 §6.2).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Name(Arc<[u8]>);

/// Names read back (a snapshot, a log entry, an RPC frame) are checked like wire names:
/// found by fuzzing, a malformed one in a snapshot made the canonical ordering index past
/// its end.
impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let v: Vec<u8> = Vec::deserialize(d)?;
        match wire_name_len(&v) {
            Ok(n) if n == v.len() => Ok(Name(Arc::from(v))),
            _ => Err(serde::de::Error::custom(NameError::BadWire)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("empty label in name (RFC 1035 §2.3.1)")]
    EmptyLabel,
    #[error("label longer than {LABEL_BYTES_MAX} octets (RFC 1035 §2.3.4)")]
    LabelTooLong,
    #[error("name longer than {NAME_BYTES_MAX} octets (RFC 1035 §2.3.4)")]
    NameTooLong,
    #[error("bad escape in name")]
    BadEscape,
    #[error("relative name with no $ORIGIN in effect")]
    NoOrigin,
    #[error("malformed name in wire form")]
    BadWire,
}

impl Name {
    pub fn root() -> Name {
        Name(Arc::from(&[0u8][..]))
    }

    /// Wraps wire bytes, lower-casing them. Checks the wire structure.
    pub fn from_wire(wire: &[u8]) -> Result<Name, NameError> {
        let len = wire_name_len(wire)?;
        let mut v = wire[..len].to_vec();
        lowercase_wire(&mut v);
        Ok(Name(Arc::from(v)))
    }

    /// Parses a name in presentation form. `@` is the origin; a name without a trailing
    /// dot is relative to `origin`. The result is lower-cased.
    pub fn parse(text: &[u8], origin: Option<&Name>) -> Result<Name, NameError> {
        parse_wire(text, origin, true).map(|w| Name(Arc::from(w)))
    }

    /// Parses a name into wire form keeping its case: for the rdata fields that RFC 6840
    /// §5.1 takes out of RFC 4034 §6.2's lower-casing (the NSEC Next Domain Name).
    pub fn parse_keep_case(text: &[u8], origin: Option<&Name>) -> Result<Vec<u8>, NameError> {
        parse_wire(text, origin, false)
    }

    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// Labels from the left, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            wire: &self.0,
            pos: 0,
        }
    }

    /// Number of labels, not counting the root (the RRSIG Labels field counts this way).
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.len() >= 2 && self.0[0] == 1 && self.0[1] == b'*'
    }

    /// True when `self` equals `other` or lies below it.
    pub fn is_subdomain_of(&self, other: &Name) -> bool {
        let mut pos = 0usize;
        loop {
            if self.0[pos..] == other.0[..] {
                return true;
            }
            let len = self.0[pos] as usize;
            if len == 0 {
                return false;
            }
            pos += 1 + len;
        }
    }

    /// The name one label up, or `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        let skip = 1 + self.0[0] as usize;
        Some(Name(self.0[skip..].into()))
    }

    /// A new name with `label` in front of this one.
    pub fn prepend(&self, label: &[u8]) -> Result<Name, NameError> {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > LABEL_BYTES_MAX {
            return Err(NameError::LabelTooLong);
        }
        let mut v = Vec::with_capacity(self.0.len() + label.len() + 1);
        v.push(label.len() as u8);
        v.extend(label.iter().map(|b| b.to_ascii_lowercase()));
        v.extend_from_slice(&self.0);
        if v.len() > NAME_BYTES_MAX {
            return Err(NameError::NameTooLong);
        }
        Ok(Name(Arc::from(v)))
    }

    /// Appends an order-preserving key: comparing keys bytewise gives RFC 4034 §6.1 order.
    /// Labels are emitted right to left, each byte 0x00/0x01 escaped as 0x01 0x01/0x01 0x02,
    /// each label closed by 0x00, so a parent's key is a prefix of its children's keys.
    pub fn canonical_key_into(&self, out: &mut Vec<u8>) {
        let mut starts = [0u8; 128];
        let mut n = 0;
        let mut pos = 0usize;
        while self.0[pos] != 0 {
            starts[n] = pos as u8;
            n += 1;
            pos += 1 + self.0[pos] as usize;
        }
        for &s in starts[..n].iter().rev() {
            let s = s as usize;
            let len = self.0[s] as usize;
            for &b in &self.0[s + 1..s + 1 + len] {
                if b <= 1 {
                    out.push(1);
                    out.push(b + 1);
                } else {
                    out.push(b);
                }
            }
            out.push(0);
        }
    }

    pub fn canonical_key(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        self.canonical_key_into(&mut v);
        v
    }

    /// RFC 4034 §6.1 canonical ordering: labels compared from the right, each as an
    /// octet string (names are stored lower-cased), a shorter label first.
    pub fn cmp_canonical(&self, other: &Name) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        // Most names have few labels: small arrays first (this runs on every lookup).
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        if let (Some(na), Some(nb)) = (
            label_starts_small(&self.0, &mut a),
            label_starts_small(&other.0, &mut b),
        ) {
            return cmp_labels(&self.0, &a[..na], &other.0, &b[..nb]);
        }
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        let na = label_starts(&self.0, &mut a);
        let nb = label_starts(&other.0, &mut b);
        cmp_labels(&self.0, &a[..na], &other.0, &b[..nb])
    }
}

/// Compares two names by their label start offsets, labels from the right.
fn cmp_labels(x: &[u8], a: &[u8], y: &[u8], b: &[u8]) -> Ordering {
    {
        let (na, nb) = (a.len(), b.len());
        let (this, other) = (x, y);
        for (&sa, &sb) in a.iter().rev().zip(b.iter().rev()) {
            let la = &this[sa as usize + 1..sa as usize + 1 + this[sa as usize] as usize];
            let lb = &other[sb as usize + 1..sb as usize + 1 + other[sb as usize] as usize];
            match la.cmp(lb) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        na.cmp(&nb)
    }
}

impl Name {
    /// The first 16 bytes of [`Name::canonical_key`] as a number: sorting by it and then by
    /// [`Name::cmp_canonical`] gives canonical order without building keys.
    pub fn canonical_prefix(&self) -> u128 {
        let mut starts = [0u8; 128];
        let n = label_starts(&self.0, &mut starts);
        let mut out = [0u8; 16];
        let mut k = 0;
        'labels: for &s in starts[..n].iter().rev() {
            let s = s as usize;
            for &b in &self.0[s + 1..s + 1 + self.0[s] as usize] {
                let enc: &[u8] = if b <= 1 {
                    &[1, b + 1]
                } else {
                    std::slice::from_ref(&b)
                };
                for &e in enc {
                    if k == 16 {
                        break 'labels;
                    }
                    out[k] = e;
                    k += 1;
                }
            }
            if k == 16 {
                break;
            }
            out[k] = 0;
            k += 1;
        }
        u128::from_be_bytes(out)
    }

    /// Presentation form, absolute, with a trailing dot.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.0.len() + 4);
        self.write_text(&mut s);
        s
    }

    pub fn write_text(&self, out: &mut String) {
        write_wire_text(&self.0, out)
    }
}

/// Presentation form of a wire name, case as given.
pub fn write_wire_text(wire: &[u8], out: &mut String) {
    if wire.first() == Some(&0) {
        out.push('.');
        return;
    }
    for label in (Labels { wire, pos: 0 }) {
        for &b in label {
            push_escaped(out, b);
        }
        out.push('.');
    }
}

fn push_escaped(out: &mut String, b: u8) {
    match b {
        b'.' | b'\\' | b'"' | b';' | b'(' | b')' | b'@' | b'$' => {
            out.push('\\');
            out.push(b as char);
        }
        0x21..=0x7e => out.push(b as char),
        _ => {
            out.push('\\');
            out.push((b'0' + b / 100) as char);
            out.push((b'0' + (b / 10) % 10) as char);
            out.push((b'0' + b % 10) as char);
        }
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_canonical(other)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.to_text())
    }
}

pub struct Labels<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = self.wire[self.pos] as usize;
        if len == 0 {
            return None;
        }
        let label = &self.wire[self.pos + 1..self.pos + 1 + len];
        self.pos += 1 + len;
        Some(label)
    }
}

fn parse_wire(text: &[u8], origin: Option<&Name>, lower: bool) -> Result<Vec<u8>, NameError> {
    let fold = |b: u8| if lower { b.to_ascii_lowercase() } else { b };
    if text == b"@" {
        return origin.map(|o| o.0.to_vec()).ok_or(NameError::NoOrigin);
    }
    if text == b"." {
        return Ok(vec![0]);
    }
    let mut wire = Vec::with_capacity(text.len() + 2);
    let mut label_start = 0usize;
    wire.push(0);
    let mut i = 0usize;
    let mut absolute = false;
    while i < text.len() {
        let c = text[i];
        match c {
            b'.' => {
                close_label(&mut wire, label_start)?;
                label_start = wire.len();
                wire.push(0);
                if i + 1 == text.len() {
                    absolute = true;
                }
                i += 1;
            }
            b'\\' => {
                let (b, used) = unescape(&text[i + 1..])?;
                wire.push(fold(b));
                i += 1 + used;
            }
            _ => {
                wire.push(fold(c));
                i += 1;
            }
        }
    }
    if absolute {
        // The trailing dot left an open empty label: that is the root label.
        wire.truncate(label_start);
        wire.push(0);
    } else {
        close_label(&mut wire, label_start)?;
        let origin = origin.ok_or(NameError::NoOrigin)?;
        wire.extend_from_slice(&origin.0);
    }
    if wire.len() > NAME_BYTES_MAX {
        return Err(NameError::NameTooLong);
    }
    Ok(wire)
}

/// Offsets of each label's length octet, left to right; returns how many.
fn label_starts_small(wire: &[u8], out: &mut [u8; 16]) -> Option<usize> {
    let mut n = 0;
    let mut pos = 0usize;
    while wire[pos] != 0 {
        *out.get_mut(n)? = pos as u8;
        n += 1;
        pos += 1 + wire[pos] as usize;
    }
    Some(n)
}

fn label_starts(wire: &[u8], out: &mut [u8; 128]) -> usize {
    let mut n = 0;
    let mut pos = 0usize;
    while wire[pos] != 0 {
        out[n] = pos as u8;
        n += 1;
        pos += 1 + wire[pos] as usize;
    }
    n
}

fn close_label(wire: &mut [u8], start: usize) -> Result<(), NameError> {
    let len = wire.len() - start - 1;
    if len == 0 {
        return Err(NameError::EmptyLabel);
    }
    if len > LABEL_BYTES_MAX {
        return Err(NameError::LabelTooLong);
    }
    wire[start] = len as u8;
    Ok(())
}

/// Decodes the escape after a backslash: `\DDD` or `\X`. Returns the byte and input used.
pub fn unescape(rest: &[u8]) -> Result<(u8, usize), NameError> {
    match rest {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let v = (a - b'0') as u32 * 100 + (b - b'0') as u32 * 10 + (c - b'0') as u32;
            if v > 255 {
                return Err(NameError::BadEscape);
            }
            Ok((v as u8, 3))
        }
        [a, ..] if a.is_ascii_digit() => Err(NameError::BadEscape),
        [x, ..] => Ok((*x, 1)),
        [] => Err(NameError::BadEscape),
    }
}

/// Length of the uncompressed wire name at the start of `wire`.
pub fn wire_name_len(wire: &[u8]) -> Result<usize, NameError> {
    let mut pos = 0usize;
    loop {
        let len = *wire.get(pos).ok_or(NameError::BadWire)? as usize;
        if len > LABEL_BYTES_MAX {
            return Err(NameError::BadWire);
        }
        pos += 1 + len;
        if pos > NAME_BYTES_MAX {
            return Err(NameError::NameTooLong);
        }
        if len == 0 {
            return Ok(pos);
        }
        if pos > wire.len() {
            return Err(NameError::BadWire);
        }
    }
}

fn lowercase_wire(wire: &mut [u8]) {
    let mut pos = 0usize;
    while pos < wire.len() && wire[pos] != 0 {
        let len = wire[pos] as usize;
        wire[pos + 1..pos + 1 + len].make_ascii_lowercase();
        pos += 1 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    #[test]
    fn parse_escapes_and_case() {
        let origin = n("Example.");
        let a = Name::parse(b"A\\.b\\065", Some(&origin)).unwrap();
        assert_eq!(a.as_wire(), b"\x04a.ba\x07example\x00");
        assert_eq!(a.to_text(), "a\\.ba.example.");
        assert_eq!(Name::parse(b"@", Some(&origin)).unwrap(), origin);
        assert_eq!(Name::parse(b"x", None), Err(NameError::NoOrigin));
        assert_eq!(Name::parse(b"a..b.", None), Err(NameError::EmptyLabel));
    }

    #[test]
    fn rfc4034_canonical_order() {
        // The example list of RFC 4034 §6.1, in order.
        let names = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        let parsed: Vec<Name> = names.iter().map(|s| n(s)).collect();
        let mut sorted = parsed.clone();
        sorted.sort();
        assert_eq!(parsed, sorted);
        for w in parsed.windows(2) {
            assert!(w[0].canonical_key() < w[1].canonical_key());
            assert!(w[0].canonical_prefix() <= w[1].canonical_prefix());
        }
    }

    #[test]
    fn subdomain_and_parent() {
        assert!(n("a.b.example.").is_subdomain_of(&n("example.")));
        assert!(!n("ab.example.").is_subdomain_of(&n("b.example.")));
        assert_eq!(n("a.b.").parent().unwrap(), n("b."));
        assert!(n("*.x.").is_wildcard());
        assert_eq!(n("a.b.c.").label_count(), 3);
    }
}

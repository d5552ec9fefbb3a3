//! The rdatas of one RRset, in one shared allocation.
//!
//! Each rdata is stored as a 2-octet length and its octets (an rdata is at most 65535
//! octets, RFC 1035 §3.2.1), all in one `Arc<[u8]>`. Against a `Vec<Box<[u8]>>` this is one
//! allocation instead of one plus one per rdata (~40 bytes less per RRset of a TLD), and a
//! clone is a reference count: the replicated content and the windows of nodes a node
//! validates share their rdatas instead of copying them.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rdatas(Arc<[u8]>);

impl Default for Rdatas {
    fn default() -> Rdatas {
        Rdatas(Arc::from(&[][..]))
    }
}

impl Rdatas {
    /// An RRset of one rdata.
    pub fn one(d: &[u8]) -> Rdatas {
        Rdatas::from_slices([d])
    }

    /// The rdatas in the order given. Panics on an rdata over 65535 octets (no wire or
    /// presentation-format parser yields one).
    pub fn from_slices<'a>(rdatas: impl IntoIterator<Item = &'a [u8]> + Clone) -> Rdatas {
        let total: usize = rdatas.clone().into_iter().map(|d| d.len() + 2).sum();
        let mut blob = Vec::with_capacity(total);
        for d in rdatas {
            let n = u16::try_from(d.len()).expect("an rdata is at most 65535 octets");
            blob.extend_from_slice(&n.to_be_bytes());
            blob.extend_from_slice(d);
        }
        Rdatas(Arc::from(blob))
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.0 }
    }

    /// The number of rdatas (walks them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&[u8]> {
        self.iter().next()
    }

    pub fn last(&self) -> Option<&[u8]> {
        self.iter().last()
    }

    pub fn contains(&self, d: &[u8]) -> bool {
        self.iter().any(|x| x == d)
    }
}

/// The `i`th rdata (walks to it). Panics when there are fewer.
impl std::ops::Index<usize> for Rdatas {
    type Output = [u8];

    fn index(&self, i: usize) -> &[u8] {
        self.iter().nth(i).expect("rdata index in range")
    }
}

impl From<Vec<Box<[u8]>>> for Rdatas {
    fn from(v: Vec<Box<[u8]>>) -> Rdatas {
        Rdatas::from_slices(v.iter().map(|d| &d[..]))
    }
}

impl From<Vec<Vec<u8>>> for Rdatas {
    fn from(v: Vec<Vec<u8>>) -> Rdatas {
        Rdatas::from_slices(v.iter().map(|d| &d[..]))
    }
}

pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let [a, b, rest @ ..] = self.rest else {
            return None;
        };
        let n = u16::from_be_bytes([*a, *b]) as usize;
        let (d, rest) = rest.split_at(n);
        self.rest = rest;
        Some(d)
    }
}

impl<'a> IntoIterator for &'a Rdatas {
    type Item = &'a [u8];
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Rdatas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A sequence of byte strings: the encoding a `Vec<Vec<u8>>` has.
impl Serialize for Rdatas {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for d in self {
            seq.serialize_element(d)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Rdatas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rdatas, D::Error> {
        let v: Vec<Vec<u8>> = Vec::deserialize(d)?;
        if v.iter().any(|x| x.len() > u16::MAX as usize) {
            return Err(serde::de::Error::custom("an rdata over 65535 octets"));
        }
        Ok(Rdatas::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdatas_keep_order_and_content_and_encode_as_a_list_of_byte_strings() {
        let v: Vec<Vec<u8>> = vec![vec![1, 2, 3], vec![], vec![7; 300]];
        let r = Rdatas::from(v.clone());
        assert_eq!(r.len(), 3);
        assert_eq!(r.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), v);
        assert_eq!(r.first(), Some(&[1u8, 2, 3][..]));
        assert_eq!(r.last().map(<[u8]>::len), Some(300));
        assert!(r.contains(&[]) && !r.contains(&[1]));
        assert!(Rdatas::default().is_empty());
        assert_eq!(Rdatas::default().len(), 0);
        let bytes = crate::codec::encode(&r);
        assert_eq!(bytes, crate::codec::encode(&v));
        let back: Rdatas = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, r);
        let big: Vec<Vec<u8>> = vec![vec![0; 70_000]];
        assert!(crate::codec::decode::<Rdatas>(&crate::codec::encode(&big)).is_err());
    }
}

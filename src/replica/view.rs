//! What a node serves of a zone: the committed content as of the last version this node
//! validated.
//!
//! The state machine applies a version to the zone's content in place; the node validates
//! it afterwards. Until that check passes (or when it fails) the node serves the version
//! before, rebuilt by laying the journal's "before" RRsets over the content. A zone with no
//! validated version, or one the journal cannot take back, is not served at all.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::replica::Token;
use crate::replica::state::{Owner, RrsetVal, ZoneState};
use crate::zone::Name;

pub type Key = (Owner, u16);

/// RRsets that differ between the served version and the content: `None` where the
/// served version has no such RRset.
pub type Overlay = BTreeMap<Key, Option<RrsetVal>>;

/// The overlay that turns the content (at `current`) back into version `good`; `None` when
/// the journal no longer reaches back to it.
pub fn overlay(z: &ZoneState, good: Token) -> Option<Overlay> {
    let deltas = z.deltas_from(|d| d.from_token == good)?;
    let mut o = Overlay::new();
    // Newest first, so the oldest delta's "before" wins.
    for d in deltas.iter().rev() {
        for (key, before, _) in &d.changes {
            o.insert(key.clone(), before.clone());
        }
    }
    Some(o)
}

/// A read-only view of one served version.
pub struct View<'a> {
    pub content: &'a BTreeMap<Key, RrsetVal>,
    pub overlay: Option<&'a Overlay>,
}

impl<'a> View<'a> {
    pub fn get(&self, owner: &Name, t: u16) -> Option<&'a RrsetVal> {
        let key = (Owner(owner.clone()), t);
        if let Some(o) = self.overlay
            && let Some(v) = o.get(&key)
        {
            return v.as_ref();
        }
        self.content.get(&key)
    }

    /// The NSEC3 parameters of this version, from its NSEC3PARAM RRset at `origin`.
    pub fn nsec3_params(&self, origin: &Name) -> Option<crate::zone::nsec3::Nsec3Params> {
        let p = self.get(origin, crate::zone::rtype::NSEC3PARAM)?;
        crate::zone::nsec3::Nsec3Params::from_nsec3param(p.rdatas.first()?)
    }

    /// Entries from `start` on (inclusive), in canonical order.
    pub fn from(&self, start: &Key) -> impl Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a {
        self.range((Bound::Included(start.clone()), Bound::Unbounded), false)
    }

    /// Entries before `end` (exclusive), last first.
    pub fn before(&self, end: &Key) -> impl Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a {
        self.range((Bound::Unbounded, Bound::Excluded(end.clone())), true)
    }

    /// Entries after `start` (exclusive), in canonical order.
    pub fn after(&self, start: &Key) -> impl Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a {
        self.range((Bound::Excluded(start.clone()), Bound::Unbounded), false)
    }

    /// The whole version, last first.
    pub fn all_rev(&self) -> impl Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a {
        self.range((Bound::Unbounded, Bound::Unbounded), true)
    }

    /// The whole version, in canonical order.
    pub fn all(&self) -> impl Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a {
        self.range((Bound::Unbounded, Bound::Unbounded), false)
    }

    fn range(
        &self,
        r: (Bound<Key>, Bound<Key>),
        rev: bool,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a> {
        let content = self.content.range(r.clone());
        let Some(o) = self.overlay else {
            return if rev {
                Box::new(content.rev())
            } else {
                Box::new(content)
            };
        };
        let base = |it: Box<dyn Iterator<Item = (&'a Key, &'a RrsetVal)> + 'a>| {
            it.filter(move |(k, _)| !o.contains_key(*k))
        };
        let over = o.range(r).filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        if rev {
            Box::new(Merge {
                a: base(Box::new(content.rev())).peekable(),
                b: over.rev().peekable(),
                rev: true,
            })
        } else {
            Box::new(Merge {
                a: base(Box::new(content)).peekable(),
                b: over.peekable(),
                rev: false,
            })
        }
    }
}

/// Merges two iterators sorted the same way over disjoint keys.
struct Merge<
    'a,
    A: Iterator<Item = (&'a Key, &'a RrsetVal)>,
    B: Iterator<Item = (&'a Key, &'a RrsetVal)>,
> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    rev: bool,
}

impl<'a, A, B> Iterator for Merge<'a, A, B>
where
    A: Iterator<Item = (&'a Key, &'a RrsetVal)>,
    B: Iterator<Item = (&'a Key, &'a RrsetVal)>,
{
    type Item = (&'a Key, &'a RrsetVal);
    fn next(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((ka, _)), Some((kb, _))) => (ka < kb) != self.rev,
        };
        if take_a { self.a.next() } else { self.b.next() }
    }
}

/// The version a node serves of a zone, as its last validation left it.
#[derive(Clone)]
pub struct Served {
    pub token: Token,
    pub serial: u32,
    pub overlay: Option<Arc<Overlay>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::state::RrsetVal;

    fn k(n: &str, t: u16) -> Key {
        (Owner(Name::parse(n.as_bytes(), None).unwrap()), t)
    }
    fn v(ttl: u32) -> RrsetVal {
        RrsetVal {
            ttl,
            rdatas: Default::default(),
            sigs: vec![],
        }
    }

    #[test]
    fn overlay_hides_adds_and_restores_removed_rrsets_in_order() {
        let mut content = BTreeMap::new();
        for (n, ttl) in [("a.example.", 1), ("b.example.", 2), ("d.example.", 4)] {
            content.insert(k(n, 1), v(ttl));
        }
        let mut o = Overlay::new();
        o.insert(k("b.example.", 1), None); // added since the served version
        o.insert(k("c.example.", 1), Some(v(3))); // removed since
        o.insert(k("d.example.", 1), Some(v(40))); // changed since
        let view = View {
            content: &content,
            overlay: Some(&o),
        };
        let all: Vec<u32> = view.all().map(|(_, v)| v.ttl).collect();
        assert_eq!(all, vec![1, 3, 40]);
        let back: Vec<u32> = view
            .before(&k("d.example.", 1))
            .map(|(_, v)| v.ttl)
            .collect();
        assert_eq!(back, vec![3, 1]);
        assert!(
            view.get(&Name::parse(b"b.example.", None).unwrap(), 1)
                .is_none()
        );
        assert_eq!(
            view.get(&Name::parse(b"c.example.", None).unwrap(), 1)
                .unwrap()
                .ttl,
            3
        );
        let after: Vec<u32> = view
            .after(&k("a.example.", 1))
            .map(|(_, v)| v.ttl)
            .collect();
        assert_eq!(after, vec![3, 40]);
    }
}

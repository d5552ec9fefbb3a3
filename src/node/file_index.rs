//! A changed input file told apart from the last one by its pieces, without parsing it.
//!
//! The file is cut where its text says (`zone::parse::content_pieces`: before a line that
//! names a new owner and whose hash ends in nine zero bits, ~2,000 pieces at 1M
//! delegations), so an edit moves only the cuts next to it. The leader keeps, for the
//! file the current version was built from, each piece's SHA-256 (over its `$ORIGIN`,
//! `$TTL` and bytes) and the owners it names. A new file is cut and hashed (~0.2 s at 1M
//! delegations on two cores); only the pieces whose hash is new are parsed, and the
//! owners of the pieces that went and came are the owners that may have changed:
//!
//! ```text
//!   old:  [a b c] [d e f] [g h]        new:  [a b c] [d e' x f] [g h]
//!                    └── gone ──┘                   └── new ──┘   → owners d e f x
//! ```
//!
//! An owner named in more than one piece, an owner that moved to another piece, more than
//! a twentieth of the pieces new, no `$TTL` in force at a cut, `$INCLUDE`, or a piece that
//! does not parse on its own is left to the other paths.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use aws_lc_rs::digest;

use crate::node::input::{Content, made_by_signer};
use crate::replica::state::Owner;
use crate::zone::parse::{Piece, content_pieces, parse_one};
use crate::zone::{Name, ParseOptions, Parsed, Zone};

/// The low bits of a line's hash that must be zero for a cut before it.
const CUT_MASK: u64 = (1 << 9) - 1;

type PieceId = [u8; 32];

/// The pieces of the file a version was built from.
pub struct FileIndex {
    /// The input digest of that file (`Version::input_digest`).
    pub digest: [u8; 32],
    /// Each piece's owners and number of records, by the piece's hash.
    pieces: HashMap<PieceId, (Vec<Name>, usize)>,
    /// Owners named in more than one piece.
    split: HashSet<Name>,
}

fn piece_id(input: &[u8], p: &Piece) -> PieceId {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(p.origin.as_wire());
    ctx.update(&p.default_ttl.map_or([0; 5], |t| {
        let b = t.to_be_bytes();
        [1, b[0], b[1], b[2], b[3]]
    }));
    ctx.update(&input[p.start..p.end]);
    ctx.finish().as_ref().try_into().expect("32 octets")
}

/// The pieces of `input` with their hashes, hashed on all cores. `None` also when a piece
/// after the first starts with no `$TTL` in force: a record there without a TTL would take
/// the one before it, in another piece.
fn cut(input: &[u8], opts: &ParseOptions) -> Option<Vec<(Piece, PieceId)>> {
    use rayon::prelude::*;
    let pieces = content_pieces(input, opts, CUT_MASK)?;
    if pieces.iter().skip(1).any(|p| p.default_ttl.is_none()) {
        return None;
    }
    let ids: Vec<PieceId> = pieces.par_iter().map(|p| piece_id(input, p)).collect();
    Some(pieces.into_iter().zip(ids).collect())
}

/// The distinct owners of parsed records, in the order they first come.
fn owners_of(parsed: &Parsed) -> Vec<Name> {
    let mut seen = HashSet::new();
    parsed
        .records
        .iter()
        .filter(|r| seen.insert(r.owner.clone()))
        .map(|r| r.owner.clone())
        .collect()
}

impl FileIndex {
    /// How many pieces the file was cut into.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Cuts and parses the whole of `input` (whose digest is `digest`) for its owners.
    /// `None` when it cannot be cut or a piece does not parse on its own.
    pub fn build(
        input: &[u8],
        digest: [u8; 32],
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<FileIndex> {
        use rayon::prelude::*;
        let pieces = cut(input, opts)?;
        let owners: Vec<(Vec<Name>, usize)> = pieces
            .par_iter()
            .map(|(p, _)| {
                let r = parse_one(input, p, path, opts).ok()?;
                Some((owners_of(&r), r.records.len()))
            })
            .collect::<Option<_>>()?;
        if owners.iter().map(|(_, n)| n).sum::<usize>() > opts.limits.zone_records_max {
            return None;
        }
        let mut seen = HashSet::with_capacity(owners.iter().map(|(o, _)| o.len()).sum());
        let mut split = HashSet::new();
        for o in owners.iter().flat_map(|(o, _)| o) {
            if !seen.insert(o) {
                split.insert(o.clone());
            }
        }
        drop(seen);
        let mut map = HashMap::with_capacity(pieces.len());
        for ((_, id), o) in pieces.into_iter().zip(owners) {
            if map.insert(id, o).is_some() {
                return None; // two pieces alike: their owners are named twice anyway
            }
        }
        Some(FileIndex {
            digest,
            pieces: map,
            split,
        })
    }

    /// The new file `input` (with digest `digest`) against the one this index describes:
    /// its new pieces (and the apex's) parsed, and the owners that may have changed. No
    /// state is needed for this part; [`Prepared::finish`] then looks at the version's
    /// content. `None` for what the other paths must take (see the module's text).
    pub fn prepare(
        &self,
        input: &[u8],
        digest: [u8; 32],
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<Prepared> {
        let origin = &opts.origin;
        let pieces = cut(input, opts)?;
        let new_ids: HashSet<PieceId> = pieces.iter().map(|(_, id)| *id).collect();
        if new_ids.len() != pieces.len() {
            return None;
        }
        // Many pieces new (a `$TTL` changed at the top, edits all over): the bucket sums
        // compare that with a smaller zone.
        let fresh = pieces
            .iter()
            .filter(|(_, id)| !self.pieces.contains_key(id))
            .count();
        if fresh > pieces.len() / 20 + 2 {
            return None;
        }
        // Parse what is new, and the apex's pieces (the SOA carries the file's serial).
        let mut records = Vec::new();
        let mut new: HashMap<PieceId, (Vec<Name>, usize)> = HashMap::new();
        for (p, id) in &pieces {
            let known = self.pieces.get(id);
            if known.is_some_and(|(o, _)| !o.contains(origin)) {
                continue;
            }
            let r = parse_one(input, p, path, opts).ok()?;
            if known.is_none() {
                new.insert(*id, (owners_of(&r), r.records.len()));
            }
            records.extend(r.records);
        }
        let mut map: HashMap<PieceId, (Vec<Name>, usize)> = HashMap::with_capacity(pieces.len());
        for (_, id) in &pieces {
            let entry = match new.get(id) {
                Some(e) => e.clone(),
                None => self.pieces.get(id)?.clone(),
            };
            map.insert(*id, entry);
        }
        if map.values().map(|(_, n)| n).sum::<usize>() > opts.limits.zone_records_max {
            return None; // the whole parse says where
        }
        let gone: BTreeSet<Name> = self
            .pieces
            .iter()
            .filter(|(id, _)| !new_ids.contains(*id))
            .flat_map(|(_, (o, _))| o.iter().cloned())
            .collect();
        let mut came: BTreeSet<Name> = BTreeSet::new();
        for o in new.values().flat_map(|(o, _)| o) {
            // Named in two new pieces: its records come from both, but it may be in a
            // piece that stayed as well, which is not parsed.
            if !came.insert(o.clone()) && o != origin {
                return None;
            }
        }
        if gone
            .iter()
            .chain(&came)
            .any(|o| self.split.contains(o) && o != origin)
        {
            return None;
        }
        let (mini, _) = Zone::build(
            Parsed {
                records,
                warnings: Vec::new(),
            },
            origin,
            "changed pieces",
            &opts.limits,
        )
        .ok()?;
        let mut split = self.split.clone();
        split.retain(|o| !gone.contains(o) && !came.contains(o));
        Some(Prepared {
            origin: origin.clone(),
            mini,
            gone,
            came,
            index: FileIndex {
                digest,
                pieces: map,
                split,
            },
        })
    }
}

/// The small zone of the pieces that changed, the RRsets to compare, the new file's index.
pub type Compared = (Zone, Vec<(Name, u16)>, FileIndex);

/// A new file's pieces compared with the last file's, to be finished against the content
/// of the version built from the last file.
pub struct Prepared {
    origin: Name,
    mini: Zone,
    gone: BTreeSet<Name>,
    came: BTreeSet<Name>,
    index: FileIndex,
}

impl Prepared {
    /// The small zone, the RRsets at the owners that may have changed (the content's and
    /// the new file's), and the new file's index; `None` when an owner of a new piece is
    /// also named in a piece that stayed (it has records in the content but was in no
    /// piece that went).
    pub fn finish(self, content: &Content) -> Option<Compared> {
        let Prepared {
            origin,
            mini,
            gone,
            came,
            index,
        } = self;
        if came
            .iter()
            .any(|o| *o != origin && !gone.contains(o) && has_owner(content, o))
        {
            return None;
        }
        let mut touched: BTreeSet<(Name, u16)> = BTreeSet::new();
        for o in gone.iter().chain(&came).chain([&origin]) {
            if let Some(n) = mini.node(o) {
                touched.extend(n.rrsets.iter().map(|s| (o.clone(), s.rtype)));
            }
            let at = (Owner(o.clone()), 0)..=(Owner(o.clone()), u16::MAX);
            touched.extend(
                content
                    .range(at)
                    .filter(|((_, t), _)| !made_by_signer(*t))
                    .map(|((_, t), _)| (o.clone(), *t)),
            );
        }
        Some((mini, touched.into_iter().collect(), index))
    }
}

fn has_owner(content: &Content, o: &Name) -> bool {
    content
        .range((Owner(o.clone()), 0)..=(Owner(o.clone()), u16::MAX))
        .next()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::input::made_by_signer;
    use crate::replica::state::RrsetVal;
    use crate::zone::{Limits, rtype};

    const HOSTS: usize = 6000;

    fn text(edit: &dyn Fn(usize) -> Option<String>) -> String {
        let mut t = String::from(
            "$ORIGIN example.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n\
             @ IN NS ns1\nns1 IN A 192.0.2.1\n",
        );
        for i in 0..HOSTS {
            match edit(i) {
                Some(line) => t.push_str(&line),
                None => t.push_str(&format!(
                    "h{i} IN A 192.0.2.{}\nh{i} IN TXT \"{i}\"\n",
                    i % 250
                )),
            }
        }
        t
    }

    fn opts() -> ParseOptions {
        ParseOptions {
            origin: Name::parse(b"example.", None).unwrap(),
            limits: Limits::default(),
            keep_dnssec: false,
        }
    }

    /// The unsigned content of `text`, as a version built from it holds it.
    fn content(text: &str) -> Content {
        let o = opts();
        let parsed =
            crate::zone::parse::parse_file_bytes(text.as_bytes(), Path::new("z"), &o).unwrap();
        let (zone, _) = Zone::build(parsed, &o.origin, "z", &o.limits).unwrap();
        let mut c = Content::new();
        for n in &zone.nodes {
            for set in n.rrsets.iter().filter(|s| !made_by_signer(s.rtype)) {
                let v = RrsetVal {
                    ttl: set.ttl,
                    rdatas: set.rdatas.clone(),
                    sigs: Vec::new(),
                };
                c.insert((Owner(n.name.clone()), set.rtype), v);
            }
        }
        c
    }

    /// `new` against `old` through the index of `old`.
    fn compare(old: &str, new: &str) -> Option<Compared> {
        let o = opts();
        let index = FileIndex::build(old.as_bytes(), [1; 32], Path::new("z"), &o).unwrap();
        assert!(index.pieces.len() > 5, "{} pieces", index.pieces.len());
        let p = index.prepare(new.as_bytes(), [2; 32], Path::new("z"), &o)?;
        p.finish(&content(old))
    }

    fn name(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    #[test]
    fn only_the_pieces_that_changed_are_parsed_and_their_owners_compared() {
        let old = text(&|_| None);
        // The same text: only the apex.
        let (mini, touched, index) = compare(&old, &old).unwrap();
        assert!(
            touched.iter().all(|(o, _)| *o == name("example.")),
            "{touched:?}"
        );
        assert!(
            mini.nodes.len() < HOSTS / 2,
            "{} names parsed",
            mini.nodes.len()
        );
        assert_eq!(index.digest, [2; 32]);

        // One record changed: its piece, and nothing near the whole zone.
        let one =
            text(&|i| (i == 1000).then(|| "h1000 IN A 192.0.2.99\nh1000 IN TXT \"1000\"\n".into()));
        let (mini2, touched, _) = compare(&old, &one).unwrap();
        assert!(touched.contains(&(name("h1000.example."), rtype::A)));
        assert!(
            mini2.nodes.len() < HOSTS / 2,
            "{} names parsed",
            mini2.nodes.len()
        );
        let at = mini2
            .nodes
            .iter()
            .find(|n| n.name == name("h1000.example."))
            .unwrap();
        assert_eq!(at.rrsets[0].rdatas.first().unwrap(), &[192, 0, 2, 99]);

        // A name added, a name removed: both among the RRsets to compare.
        let added = text(&|i| {
            (i == 2000)
                .then(|| "h2000 IN A 192.0.2.1\nh2000 IN TXT \"2000\"\nnew IN A 192.0.2.7\n".into())
        });
        let (_, touched, _) = compare(&old, &added).unwrap();
        assert!(touched.contains(&(name("new.example."), rtype::A)));
        let removed = text(&|i| (i == 3000).then(String::new));
        let (mini, touched, next) = compare(&old, &removed).unwrap();
        assert!(touched.contains(&(name("h3000.example."), rtype::A)));
        assert!(touched.contains(&(name("h3000.example."), rtype::TXT)));
        assert!(!mini.nodes.iter().any(|n| n.name == name("h3000.example.")));
        // The new index describes the new file: compared with it, nothing moved.
        let p = next
            .prepare(removed.as_bytes(), [3; 32], Path::new("z"), &opts())
            .unwrap();
        let (_, touched, _) = p.finish(&content(&removed)).unwrap();
        assert!(
            touched.iter().all(|(o, _)| *o == name("example.")),
            "{touched:?}"
        );

        // An owner named again in another piece: left to the other paths.
        let again = format!("{old}h10 IN MX 10 mail\n");
        assert!(compare(&old, &again).is_none());
        // Edits all over the file: left to the bucket sums.
        let many = text(&|i| (i % 200 == 7).then(|| format!("h{i} IN A 192.0.2.251\n")));
        assert!(compare(&old, &many).is_none());
        // No $TTL: a record without a TTL after a cut would take the TTL before it.
        let untimed = old.replace("$TTL 300\n", "").replace(" IN ", " 300 IN ");
        let index = FileIndex::build(untimed.as_bytes(), [1; 32], Path::new("z"), &opts());
        assert!(index.is_none());
        // A piece that does not parse on its own: the whole parse says where.
        let bad = text(&|i| (i == 4000).then(|| "h4000 IN A 300.0.0.1\n".into()));
        assert!(compare(&old, &bad).is_none());
    }
}

//! A changed input file told apart from the last one by its pieces, without parsing it.
//!
//! The file is cut where its text says (`zone::parse::content_pieces`: before a line that
//! names a new owner and whose hash ends in nine zero bits, ~2,000 pieces at 1M
//! delegations), so an edit moves only the cuts next to it. The leader keeps, for the
//! file the current version was built from, each piece's SHA-256 (over its `$ORIGIN`,
//! `$TTL` and bytes), where it is, and the owners it names. A changed file is read once
//! in parts without being kept ([`FileIndex::scan`], ~10 ms at 1M delegations): the text
//! around its change is cut again and everything else is the last file's pieces, found
//! again; the whole file is cut only when that fails ([`FileIndex::prepare`], ~0.5 s).
//! Only the pieces whose hash is new are parsed, and the owners of the pieces that went
//! and came are the owners that may have changed:
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
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::ingest::held::{Content, made_by_signer};
use crate::ingest::scan::{self, Expect, Sums};
use crate::replica::state::Owner;
use crate::zone::parse::{Piece, content_pieces, content_pieces_from, parse_one};
use crate::zone::{Name, ParseOptions, Parsed, Zone};

/// The low bits of a line's hash that must be zero for a cut before it.
const CUT_MASK: u64 = (1 << 9) - 1;
/// Pieces past the last changed one a cut of the changed text may need to meet the old
/// cuts again (the line after a change may no longer name a new owner).
const RESYNC_PIECES: usize = 4;

type PieceId = [u8; 32];
/// Where a piece's bytes are: the text holding it, and the piece's place in that text.
type TextOf<'t> = dyn Fn(&Piece) -> Option<(&'t [u8], Piece)> + 't;

/// One piece of a file: where it is, its hash (with the `$ORIGIN` and `$TTL` in force),
/// and a quick sum of its bytes alone ([`scan::tag`]) to find it again.
#[derive(Clone, Debug)]
struct Span {
    piece: Piece,
    id: PieceId,
    tag: u128,
}

/// The pieces of the file a version was built from.
pub struct FileIndex {
    /// That file's sums; `sums.digest` is `Version::input_digest`.
    pub sums: Sums,
    /// The pieces in file order.
    order: Vec<Span>,
    /// Each piece's owners and number of records, by the piece's hash.
    pieces: HashMap<PieceId, Holds>,
    /// Owners named in more than one piece.
    split: HashSet<Name>,
}

/// A changed file read around its change: the pieces of the whole file (those before and
/// after the change are the last file's, found again by their sums), and the text of the
/// pieces that changed and of the apex's (with where each text starts).
pub struct Edit {
    spans: Vec<Span>,
    texts: Vec<(usize, Vec<u8>)>,
    /// How many bytes were read again around the change.
    pub read: usize,
}

/// The piece `p` of a text of which `input` holds the bytes from `at` on.
fn span(input: &[u8], at: usize, p: Piece) -> Span {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(p.origin.as_wire());
    ctx.update(&p.default_ttl.map_or([0; 5], |t| {
        let b = t.to_be_bytes();
        [1, b[0], b[1], b[2], b[3]]
    }));
    let bytes = &input[p.start - at..p.end - at];
    ctx.update(bytes);
    Span {
        id: ctx.finish().as_ref().try_into().expect("32 octets"),
        tag: scan::tag(bytes),
        piece: p,
    }
}

/// The pieces of `input` with their hashes, hashed on all cores. `None` also when a piece
/// after the first starts with no `$TTL` in force: a record there without a TTL would take
/// the one before it, in another piece.
fn cut(input: &[u8], opts: &ParseOptions) -> Option<Vec<Span>> {
    use rayon::prelude::*;
    let pieces = content_pieces(input, opts, CUT_MASK)?;
    if pieces.iter().skip(1).any(|p| p.default_ttl.is_none()) {
        return None;
    }
    Some(pieces.into_par_iter().map(|p| span(input, 0, p)).collect())
}

/// What a piece holds: its distinct owners (in the order they first come), how many
/// records, and whether the apex is among the owners.
#[derive(Clone)]
struct Holds {
    owners: Arc<[Name]>,
    records: usize,
    apex: bool,
}

fn holds(parsed: &Parsed, origin: &Name) -> Holds {
    let mut seen = HashSet::new();
    let owners: Arc<[Name]> = parsed
        .records
        .iter()
        .filter(|r| seen.insert(r.owner.clone()))
        .map(|r| r.owner.clone())
        .collect();
    Holds {
        apex: owners.contains(origin),
        owners,
        records: parsed.records.len(),
    }
}

impl FileIndex {
    /// How many pieces the file was cut into.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Cuts and parses the whole of `input` (whose sums are `sums`) for its owners.
    /// `None` when it cannot be cut or a piece does not parse on its own.
    pub fn build(input: &[u8], sums: Sums, path: &Path, opts: &ParseOptions) -> Option<FileIndex> {
        Self::build_keeping(input, sums, path, opts, false).map(|(i, _)| i)
    }

    /// [`FileIndex::build`], also handing back the records of the whole file in its order
    /// (as a parse of the whole file gives them): a read that needs both parses once.
    pub fn build_parsed(
        input: &[u8],
        sums: Sums,
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<(FileIndex, Parsed)> {
        let (index, parsed) = Self::build_keeping(input, sums, path, opts, true)?;
        Some((index, parsed.expect("kept")))
    }

    fn build_keeping(
        input: &[u8],
        sums: Sums,
        path: &Path,
        opts: &ParseOptions,
        keep: bool,
    ) -> Option<(FileIndex, Option<Parsed>)> {
        use rayon::prelude::*;
        let spans = cut(input, opts)?;
        let (owners, parts): (Vec<Holds>, Vec<Option<Parsed>>) = spans
            .par_iter()
            .map(|s| {
                let r = parse_one(input, &s.piece, path, opts).ok()?;
                Some((holds(&r, &opts.origin), keep.then_some(r)))
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .unzip();
        if owners.iter().map(|h| h.records).sum::<usize>() > opts.limits.zone_records_max {
            return None;
        }
        let parsed = keep.then(|| {
            let mut all = Parsed::default();
            all.records
                .reserve(owners.iter().map(|h| h.records).sum::<usize>());
            for p in parts.into_iter().flatten() {
                all.records.extend(p.records);
                all.warnings.extend(p.warnings);
            }
            all
        });
        let mut seen = HashSet::with_capacity(owners.iter().map(|h| h.owners.len()).sum());
        let mut split = HashSet::new();
        for o in owners.iter().flat_map(|h| h.owners.iter()) {
            if !seen.insert(o) {
                split.insert(o.clone());
            }
        }
        drop(seen);
        let mut map = HashMap::with_capacity(spans.len());
        for (s, o) in spans.iter().zip(owners) {
            if map.insert(s.id, o).is_some() {
                return None; // two pieces alike: their owners are named twice anyway
            }
        }
        let index = FileIndex {
            sums,
            order: spans,
            pieces: map,
            split,
        };
        Some((index, parsed))
    }

    /// The new file `input` (with sums `sums`) against the one this index describes:
    /// its new pieces (and the apex's) parsed, and the owners that may have changed. No
    /// state is needed for this part; [`Prepared::finish`] then looks at the version's
    /// content. `None` for what the other paths must take (see the module's text).
    pub fn prepare(
        &self,
        input: &[u8],
        sums: Sums,
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<Prepared> {
        let spans = cut(input, opts)?;
        self.compare(spans, &|p| Some((input, p.clone())), sums, path, opts)
    }

    /// [`FileIndex::prepare`] for a file read around its change ([`FileIndex::scan`]).
    pub fn prepare_edit(
        &self,
        edit: Edit,
        sums: Sums,
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<Prepared> {
        let Edit { spans, texts, .. } = edit;
        let text = |p: &Piece| {
            let (at, t) = texts
                .iter()
                .find(|(at, t)| p.start >= *at && p.end <= at + t.len())?;
            let mut q = p.clone();
            q.start -= at;
            q.end -= at;
            Some((&t[..], q))
        };
        self.compare(spans, &text, sums, path, opts)
    }

    /// Reads the changed file `file` (`len` bytes) once, in parts, without keeping it: its
    /// sums, and when it still holds most of the file this index describes, the [`Edit`]
    /// that tells what changed.
    ///
    /// ```text
    ///   old:  [p0][p1][p2][p3][p4][p5]            blocks shared from the start: p0 p1
    ///   new:  [p0][p1][p2'  ][p4][p5]             pieces found again, moved: p4 p5
    ///               └ cut again ┘                 from p1 until a cut meets an old one
    /// ```
    ///
    /// The pieces before the first block that differs are the old file's in place; those
    /// after the last piece that is not found at its old place moved by the change in
    /// length are the old file's, moved. The text between is cut again from the start of
    /// the piece before it (a cut depends on the line before) until a cut falls where an
    /// old piece, found again, begins with the same `$ORIGIN` and `$TTL`: from there the
    /// cuts are the old ones, so the pieces are exactly those a cut of the whole file makes.
    pub fn scan(&self, file: &File, len: usize) -> std::io::Result<(Sums, Option<Edit>)> {
        let delta = len as i64 - self.sums.len as i64;
        let moved = |s: &Span| {
            let a = s.piece.start as i64 + delta;
            let z = s.piece.end as i64 + delta;
            (a >= 0 && z <= len as i64).then_some((a as usize, z as usize))
        };
        // (The same length: the blocks say which pieces are where they were.)
        let mut at = Vec::new();
        let mut expect = Vec::new();
        for (j, s) in self.order.iter().enumerate() {
            if delta == 0 {
                continue;
            }
            if let Some((start, end)) = moved(s) {
                at.push(j);
                expect.push(Expect {
                    start,
                    end,
                    tag: s.tag,
                });
            }
        }
        let (sums, ok) = scan::scan(file, len, &expect)?;
        let mut found = vec![false; self.order.len()];
        for (j, ok) in at.into_iter().zip(ok) {
            found[j] = ok;
        }
        if delta == 0 {
            for (s, f) in self.order.iter().zip(&mut found) {
                *f = self.sums.same_blocks(&sums, s.piece.start, s.piece.end);
            }
        }
        let edit = self.edit(file, &sums, &found, delta)?;
        Ok((sums, edit))
    }

    fn edit(
        &self,
        file: &File,
        sums: &Sums,
        found: &[bool],
        delta: i64,
    ) -> std::io::Result<Option<Edit>> {
        let n = self.order.len();
        if n == 0 {
            return Ok(None);
        }
        let len = sums.len;
        let shared = self.sums.shared_start(sums);
        // The first piece not wholly shared, the piece before it (cut again from its start),
        // and the last piece not found again where it moved.
        // (At most the last piece: the one before it then ends with a newline, so its
        // start is still a cut even when the change extends the file's last line.)
        let k = self
            .order
            .partition_point(|s| s.piece.end <= shared)
            .min(n - 1);
        let r = k.saturating_sub(1);
        let last_changed = (k..n).rev().find(|&j| !found[j]).unwrap_or(r).max(r);
        let moved = |x: usize| x as i64 + delta;
        let hi = (last_changed + RESYNC_PIECES).min(n - 1);
        let from = self.order[r].piece.start;
        let to = moved(self.order[hi].piece.end);
        if to < from as i64 || to > len as i64 {
            return Ok(None);
        }
        let to = to as usize;
        let Some((base, text)) = scan::read_checked(file, from, to, sums)? else {
            return Ok(None);
        };
        let mut read = text.len();
        // The old piece that begins where a new cut falls, found again there, past the
        // change: from it on the cuts are the old ones. (`j >= last_changed`, and
        // `last_changed >= r`, so every old piece after `j` was found again.)
        let meets = |p: &Piece| {
            let old_end = p.start as i64 - delta;
            let j = self
                .order
                .partition_point(|s| (s.piece.end as i64) < old_end);
            (j < n
                && self.order[j].piece.end as i64 == old_end
                && j >= last_changed
                && j + 1 < n
                && self.order[j + 1].piece.origin == p.origin
                && self.order[j + 1].piece.default_ttl == p.default_ttl)
                .then_some(j + 1)
        };
        let mut resumes = None;
        let Some((cuts, stopped)) = content_pieces_from(
            &text[from - base..to - base],
            &self.order[r].piece,
            CUT_MASK,
            &mut |p| {
                resumes = meets(p);
                resumes.is_some()
            },
        ) else {
            return Ok(None);
        };
        if stopped.is_none() && to != len {
            return Ok(None); // the old cuts were not met within what was read
        }
        if cuts.iter().any(|p| p.start > 0 && p.default_ttl.is_none()) {
            return Ok(None);
        }
        let mut spans: Vec<Span> = self.order[..r].to_vec();
        spans.extend(cuts.into_iter().map(|p| span(&text, base, p)));
        if let (Some(j), Some(at)) = (resumes, stopped) {
            let lines = at.line as i64 - self.order[j].piece.line as i64;
            spans.extend(self.order[j..].iter().map(|s| {
                let mut s = s.clone();
                s.piece.start = moved(s.piece.start) as usize;
                s.piece.end = moved(s.piece.end) as usize;
                s.piece.line = (s.piece.line as i64 + lines) as u32;
                s
            }));
        }
        let mut texts = vec![(base, text)];
        // The apex's pieces are parsed too (the SOA carries the file's serial).
        for s in &spans {
            let apex = self.pieces.get(&s.id).is_some_and(|h| h.apex);
            let inside = texts
                .iter()
                .any(|(at, t)| s.piece.start >= *at && s.piece.end <= at + t.len());
            if apex && !inside {
                match scan::read_checked(file, s.piece.start, s.piece.end, sums)? {
                    Some(t) => {
                        read += t.1.len();
                        texts.push(t);
                    }
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(Edit { spans, texts, read }))
    }

    /// The new file's pieces against this index's: only new pieces (and the apex's) are
    /// parsed, through `text` (the text a piece is in, and the piece's place in it).
    fn compare<'t>(
        &self,
        spans: Vec<Span>,
        text: &TextOf<'t>,
        sums: Sums,
        path: &Path,
        opts: &ParseOptions,
    ) -> Option<Prepared> {
        let origin = &opts.origin;
        let new_ids: HashSet<PieceId> = spans.iter().map(|s| s.id).collect();
        if new_ids.len() != spans.len() {
            return None;
        }
        // Many pieces new (a `$TTL` changed at the top, edits all over): the bucket sums
        // compare that with a smaller zone.
        let fresh = spans
            .iter()
            .filter(|s| !self.pieces.contains_key(&s.id))
            .count();
        if fresh > spans.len() / 20 + 2 {
            return None;
        }
        // Parse what is new, and the apex's pieces (the SOA carries the file's serial).
        let mut records = Vec::new();
        let mut new: HashMap<PieceId, Holds> = HashMap::new();
        for s in &spans {
            let known = self.pieces.get(&s.id);
            if known.is_some_and(|h| !h.apex) {
                continue;
            }
            let (t, p) = text(&s.piece)?;
            let r = parse_one(t, &p, path, opts).ok()?;
            if known.is_none() {
                new.insert(s.id, holds(&r, origin));
            }
            records.extend(r.records);
        }
        let mut map: HashMap<PieceId, Holds> = HashMap::with_capacity(spans.len());
        for s in &spans {
            let entry = match new.get(&s.id) {
                Some(e) => e.clone(),
                None => self.pieces.get(&s.id)?.clone(),
            };
            map.insert(s.id, entry);
        }
        if map.values().map(|h| h.records).sum::<usize>() > opts.limits.zone_records_max {
            return None; // the whole parse says where
        }
        let gone: BTreeSet<Name> = self
            .pieces
            .iter()
            .filter(|(id, _)| !new_ids.contains(*id))
            .flat_map(|(_, h)| h.owners.iter().cloned())
            .collect();
        let mut came: BTreeSet<Name> = BTreeSet::new();
        for o in new.values().flat_map(|h| h.owners.iter()) {
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
                sums,
                order: spans,
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
    /// The new file's index alone (a standby keeping it for a takeover).
    pub fn into_index(self) -> FileIndex {
        self.index
    }

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
mod tests;

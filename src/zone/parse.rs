//! RFC 1035 §5 master files.
//!
//! # Usage
//! [`parse_file`] / [`parse_bytes`] turn a master file into a flat list of [`Record`]s in
//! canonical form; [`super::Zone::build`] then groups and checks them.
//!
//! # Background
//! Supported: `$ORIGIN`, `$TTL`, `$INCLUDE`, `@`, relative names, a blank owner meaning
//! "the previous owner", TTL and class in either order, BIND's `1h30m` periods, escapes
//! (`\.`, `\065`), quoted strings (where `;` is not a comment), multi-line parentheses and
//! RFC 3597 generic types and rdata.
//!
//! # Limitations
//! Classes other than IN are refused. `$GENERATE` is not supported.

use std::path::{Path, PathBuf};

use super::name::Name;
use super::rdata::{self, Tok};
use super::rtype;

/// Named limits on input; exceeding one is an error that names the limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub zone_records_max: usize,
    pub rrset_records_max: usize,
    pub include_depth_max: usize,
    /// Inputs at least this large are parsed in parallel chunks.
    pub parallel_parse_bytes_min: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            zone_records_max: 100_000_000,
            rrset_records_max: 4096,
            include_depth_max: 8,
            parallel_parse_bytes_min: 4 << 20,
        }
    }
}

/// One resource record in canonical form, with where it came from.
#[derive(Debug, Clone)]
pub struct Record {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Box<[u8]>,
    pub line: u32,
}

/// An error in the input, naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ZoneError {
    pub file: String,
    pub line: u32,
    pub msg: String,
}

/// A warning about the input: the data was accepted after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: u32,
    pub msg: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.msg)
    }
}

#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub origin: Name,
    pub limits: Limits,
    /// Keep RRSIG/NSEC/NSEC3/NSEC3PARAM (the validator) instead of dropping them (the signer).
    pub keep_dnssec: bool,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    pub warnings: Vec<Warning>,
}

pub fn parse_file(path: &Path, opts: &ParseOptions) -> Result<Parsed, ZoneError> {
    let mut out = Parsed::default();
    let mut st = State {
        origin: opts.origin.clone(),
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
    };
    parse_file_into(path, opts, &mut st, &mut out, 0)?;
    Ok(out)
}

/// Parses the bytes of the file at `path` (already read); `$INCLUDE` is relative to its
/// directory, as with [`parse_file`].
pub fn parse_file_bytes(
    input: &[u8],
    path: &Path,
    opts: &ParseOptions,
) -> Result<Parsed, ZoneError> {
    let mut out = Parsed::default();
    let mut st = State {
        origin: opts.origin.clone(),
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
    };
    let file = path.display().to_string();
    parse_into(input, &file, path.parent(), opts, &mut st, &mut out, 0)?;
    Ok(out)
}

pub fn parse_bytes(input: &[u8], file: &str, opts: &ParseOptions) -> Result<Parsed, ZoneError> {
    let mut out = Parsed::default();
    let mut st = State {
        origin: opts.origin.clone(),
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
    };
    parse_into(input, file, None, opts, &mut st, &mut out, 0)?;
    Ok(out)
}

struct State {
    origin: Name,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    last_owner: Option<Name>,
}

fn parse_file_into(
    path: &Path,
    opts: &ParseOptions,
    st: &mut State,
    out: &mut Parsed,
    depth: usize,
) -> Result<(), ZoneError> {
    let file = path.display().to_string();
    let input = std::fs::read(path).map_err(|e| ZoneError {
        file: file.clone(),
        line: 0,
        msg: format!("cannot read: {e}"),
    })?;
    parse_into(&input, &file, path.parent(), opts, st, out, depth)
}

fn parse_into(
    input: &[u8],
    file: &str,
    dir: Option<&Path>,
    opts: &ParseOptions,
    st: &mut State,
    out: &mut Parsed,
    depth: usize,
) -> Result<(), ZoneError> {
    let threads = rayon::current_num_threads();
    if depth == 0
        && threads > 1
        && input.len() >= opts.limits.parallel_parse_bytes_min
        && out.records.is_empty()
        && let Some(chunks) = split::plan(input, &st.origin, st.default_ttl, threads * 4)
        && let Some(parsed) = parse_chunks(input, &chunks, file, dir, opts)
    {
        *out = parsed;
        tracing::debug!(chunks = chunks.len(), "parsed {file} in parallel");
        if out.records.len() > opts.limits.zone_records_max {
            let line = out.records[opts.limits.zone_records_max].line;
            return Err(ZoneError {
                file: file.into(),
                line,
                msg: format!(
                    "zone has more than zone_records_max = {} records",
                    opts.limits.zone_records_max
                ),
            });
        }
        return Ok(());
    }
    parse_chunk(input, 1, file, dir, opts, st, out, depth)
}

/// Parses `input` in pieces of about `piece` bytes on all cores, handing each piece's
/// records to `each` and keeping none of them: a pass over a large zone that holds only
/// what `each` returns. `None` when the input cannot be split, a piece fails to parse, or
/// there are more than `zone_records_max` records: parse it whole for the exact error.
pub fn for_each_piece<T: Send>(
    input: &[u8],
    path: &Path,
    opts: &ParseOptions,
    piece: usize,
    each: impl Fn(Vec<Record>) -> T + Sync + Send,
) -> Option<Vec<T>> {
    use rayon::prelude::*;
    let pieces = (input.len() / piece.max(1)).max(rayon::current_num_threads() * 4);
    let chunks = split::plan(input, &opts.origin, None, pieces)?;
    let file = path.display().to_string();
    let records = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<Option<T>> = chunks
        .par_iter()
        .map(|c| {
            let out = parse_piece(input, c, &file, path.parent(), opts).ok()?;
            let n = records.fetch_add(out.records.len(), std::sync::atomic::Ordering::Relaxed);
            (n + out.records.len() <= opts.limits.zone_records_max).then(|| each(out.records))
        })
        .collect();
    out.into_iter().collect()
}

/// A piece of a master file that parses on its own: bytes `start..end`, from `line`, with
/// the `$ORIGIN` and `$TTL` in force there.
pub use split::Chunk as Piece;

/// Cuts `input` into pieces where the text itself says: before a line that names a new
/// owner and whose hash has the bits of `mask` clear. An edit moves only the cuts next to
/// it, so the pieces of two versions of a file can be told apart by their bytes. `None`
/// when the input cannot be cut (`$INCLUDE`, an unclosed quote).
pub fn content_pieces(input: &[u8], opts: &ParseOptions, mask: u64) -> Option<Vec<Piece>> {
    split::cut(input, &opts.origin, None, split::Cut::Content(mask))
}

/// [`content_pieces`] of `input` (whose first byte begins the piece `first` of a longer
/// text), up to the first cut where `stop` says the rest is known: the pieces before it
/// and the piece `stop` was shown, or `None` at the end of `input`. Positions and lines are
/// those of the longer text.
pub fn content_pieces_from(
    input: &[u8],
    first: &Piece,
    mask: u64,
    stop: &mut dyn FnMut(&Piece) -> bool,
) -> Option<(Vec<Piece>, Option<Piece>)> {
    let at = first.start;
    let shift = |mut p: Piece| {
        p.start += at;
        p.end += at;
        p
    };
    let first = Piece {
        start: 0,
        ..first.clone()
    };
    let (pieces, stopped) = split::cut_from(input, first, split::Cut::Content(mask), &mut |p| {
        stop(&shift(p.clone()))
    })?;
    Some((pieces.into_iter().map(shift).collect(), stopped.map(shift)))
}

/// The records of one piece of `input`.
pub fn parse_one(
    input: &[u8],
    piece: &Piece,
    path: &Path,
    opts: &ParseOptions,
) -> Result<Parsed, ZoneError> {
    parse_piece(
        input,
        piece,
        &path.display().to_string(),
        path.parent(),
        opts,
    )
}

/// One piece of a split input, parsed on its own.
fn parse_piece(
    input: &[u8],
    c: &split::Chunk,
    file: &str,
    dir: Option<&Path>,
    opts: &ParseOptions,
) -> Result<Parsed, ZoneError> {
    let mut st = State {
        origin: c.origin.clone(),
        default_ttl: c.default_ttl,
        last_ttl: None,
        last_owner: None,
    };
    let mut out = Parsed::default();
    parse_chunk(
        &input[c.start..c.end],
        c.line,
        file,
        dir,
        opts,
        &mut st,
        &mut out,
        0,
    )
    .map(|_| out)
}

/// Parses the chunks on all cores; `None` when any chunk fails, so that the caller parses
/// sequentially and reports exactly the first error in file order.
fn parse_chunks(
    input: &[u8],
    chunks: &[split::Chunk],
    file: &str,
    dir: Option<&Path>,
    opts: &ParseOptions,
) -> Option<Parsed> {
    use rayon::prelude::*;
    let parts: Vec<Result<Parsed, ZoneError>> = chunks
        .par_iter()
        .map(|c| parse_piece(input, c, file, dir, opts))
        .collect();
    let mut all = Parsed::default();
    all.records.reserve(
        parts
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.records.len()))
            .sum(),
    );
    for p in parts {
        let p = p.ok()?;
        all.records.extend(p.records);
        all.warnings.extend(p.warnings);
    }
    Some(all)
}

#[allow(clippy::too_many_arguments)]
fn parse_chunk(
    input: &[u8],
    start_line: u32,
    file: &str,
    dir: Option<&Path>,
    opts: &ParseOptions,
    st: &mut State,
    out: &mut Parsed,
    depth: usize,
) -> Result<(), ZoneError> {
    let mut lx = Lexer {
        input,
        pos: 0,
        line: start_line,
    };
    let mut toks: Vec<Tok<'_>> = Vec::with_capacity(16);
    // The owner text of the previous record and the origin it was read under, so that a
    // repeated owner shares one allocation.
    let mut last_owner_text: Vec<u8> = Vec::new();
    loop {
        let entry = lx.entry(&mut toks).map_err(|(line, msg)| ZoneError {
            file: file.into(),
            line,
            msg,
        })?;
        let Some((line, blank_owner)) = entry else {
            break;
        };
        let fail = |msg: String| ZoneError {
            file: file.into(),
            line,
            msg,
        };
        if !blank_owner && toks[0].text.first() == Some(&b'$') && !toks[0].quoted {
            directive(&toks, file, line, dir, opts, st, out, depth)?;
            last_owner_text.clear(); // $ORIGIN may have changed what a relative owner means
            continue;
        }
        let (owner, rest) = if blank_owner {
            let owner = st
                .last_owner
                .clone()
                .ok_or_else(|| fail("record with a blank owner but no previous owner".into()))?;
            (owner, &toks[..])
        } else {
            let owner = match &st.last_owner {
                Some(o) if toks[0].text == last_owner_text.as_slice() => o.clone(),
                _ => Name::parse(toks[0].text, Some(&st.origin)).map_err(|e| {
                    fail(format!(
                        "bad owner name {:?}: {e}",
                        rdata::lossy(toks[0].text)
                    ))
                })?,
            };
            last_owner_text.clear();
            last_owner_text.extend_from_slice(toks[0].text);
            (owner, &toks[1..])
        };
        st.last_owner = Some(owner.clone());
        let mut ttl = None;
        let mut i = 0;
        while i < rest.len() && i < 2 {
            let t = rest[i].text;
            if t.eq_ignore_ascii_case(b"IN") {
                i += 1;
            } else if t.eq_ignore_ascii_case(b"CH")
                || t.eq_ignore_ascii_case(b"HS")
                || (t.len() > 5 && t[..5].eq_ignore_ascii_case(b"CLASS"))
            {
                return Err(fail(format!(
                    "class {} is not supported; only IN",
                    rdata::lossy(t)
                )));
            } else if ttl.is_none() && t.first().is_some_and(u8::is_ascii_digit) {
                ttl = Some(
                    rdata::parse_period(t)
                        .ok_or_else(|| fail(format!("bad TTL {:?}", rdata::lossy(t))))?,
                );
                i += 1;
            } else {
                break;
            }
        }
        let Some(type_tok) = rest.get(i) else {
            return Err(fail("record has no type".into()));
        };
        let rtype = rtype::from_text(type_tok.text).ok_or_else(|| {
            fail(format!(
                "unknown record type {:?}",
                rdata::lossy(type_tok.text)
            ))
        })?;
        if !owner.is_subdomain_of(&opts.origin) {
            return Err(fail(format!(
                "{} is out of zone: not at or below {}",
                owner, opts.origin
            )));
        }
        if rtype::is_dnssec_output(rtype) && !opts.keep_dnssec {
            out.warnings.push(Warning {
                file: file.into(),
                line,
                msg: format!(
                    "dropped {} {} from the input: the signer makes its own",
                    owner,
                    rtype::to_text(rtype)
                ),
            });
            continue;
        }
        if rtype == rtype::OPT || (251..=255).contains(&rtype) {
            return Err(fail(format!(
                "{} is a meta type and cannot appear in a zone",
                rtype::to_text(rtype)
            )));
        }
        let data = rdata::parse(rtype, &rest[i + 1..], Some(&st.origin)).map_err(|e| fail(e.0))?;
        let ttl = match ttl {
            Some(t) => {
                st.last_ttl = Some(t);
                t
            }
            None => match (st.default_ttl, st.last_ttl, rtype) {
                (Some(t), _, _) | (None, Some(t), _) => t,
                (None, None, rtype::SOA) => {
                    // RFC 2308 §4 fallback: the SOA's MINIMUM field.
                    let t = u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap());
                    st.last_ttl = Some(t);
                    t
                }
                _ => return Err(fail("record has no TTL and no $TTL is in effect".into())),
            },
        };
        if out.records.len() >= opts.limits.zone_records_max {
            return Err(fail(format!(
                "zone has more than zone_records_max = {} records",
                opts.limits.zone_records_max
            )));
        }
        out.records.push(Record {
            owner,
            rtype,
            ttl,
            rdata: data.into_boxed_slice(),
            line,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn directive(
    toks: &[Tok<'_>],
    file: &str,
    line: u32,
    dir: Option<&Path>,
    opts: &ParseOptions,
    st: &mut State,
    out: &mut Parsed,
    depth: usize,
) -> Result<(), ZoneError> {
    let fail = |msg: String| ZoneError {
        file: file.into(),
        line,
        msg,
    };
    let d = toks[0].text;
    let arg = toks.get(1).map(|t| t.text);
    if d.eq_ignore_ascii_case(b"$ORIGIN") {
        let a = arg.ok_or_else(|| fail("$ORIGIN needs a name".into()))?;
        st.origin =
            Name::parse(a, Some(&st.origin)).map_err(|e| fail(format!("bad $ORIGIN: {e}")))?;
    } else if d.eq_ignore_ascii_case(b"$TTL") {
        let a = arg.ok_or_else(|| fail("$TTL needs a value".into()))?;
        st.default_ttl = Some(
            rdata::parse_period(a)
                .ok_or_else(|| fail(format!("bad $TTL {:?}", rdata::lossy(a))))?,
        );
    } else if d.eq_ignore_ascii_case(b"$INCLUDE") {
        if depth + 1 > opts.limits.include_depth_max {
            return Err(fail(format!(
                "$INCLUDE nested deeper than include_depth_max = {}",
                opts.limits.include_depth_max
            )));
        }
        let a = arg.ok_or_else(|| fail("$INCLUDE needs a file name".into()))?;
        let p = PathBuf::from(String::from_utf8_lossy(a).into_owned());
        let p = match dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        };
        let saved = st.origin.clone();
        if let Some(o) = toks.get(2) {
            st.origin = Name::parse(o.text, Some(&st.origin))
                .map_err(|e| fail(format!("bad $INCLUDE origin: {e}")))?;
        }
        parse_file_into(&p, opts, st, out, depth + 1)?;
        st.origin = saved;
    } else {
        return Err(fail(format!("unsupported directive {}", rdata::lossy(d))));
    }
    Ok(())
}

mod split {
    //! Finds places where a master file can be cut so that each piece parses on its own:
    //! the start of a line, outside parentheses and quotes, that names its owner. Tracks
    //! `$ORIGIN` and `$TTL` so each piece starts with the state in force there; gives up
    //! (sequential parsing) on `$INCLUDE`.

    use super::{Name, rdata};

    #[derive(Clone, Debug)]
    pub struct Chunk {
        pub start: usize,
        pub end: usize,
        pub line: u32,
        pub origin: Name,
        pub default_ttl: Option<u32>,
    }

    pub fn plan(
        input: &[u8],
        origin: &Name,
        default_ttl: Option<u32>,
        pieces: usize,
    ) -> Option<Vec<Chunk>> {
        cut(
            input,
            origin,
            default_ttl,
            Cut::Every(input.len() / pieces + 1),
        )
    }

    /// Where pieces end: about every `n` bytes, or where the text says (see
    /// [`super::content_pieces`]).
    pub enum Cut {
        Every(usize),
        Content(u64),
    }

    pub fn cut(
        input: &[u8],
        origin: &Name,
        default_ttl: Option<u32>,
        how: Cut,
    ) -> Option<Vec<Chunk>> {
        let first = Chunk {
            start: 0,
            end: input.len(),
            line: 1,
            origin: origin.clone(),
            default_ttl,
        };
        cut_from(input, first, how, &mut |_| false).map(|(c, _)| c)
    }

    /// [`cut`] from a place where a piece starts (`first`: its line, `$ORIGIN` and `$TTL`;
    /// `input` starts there), stopping before the first piece `stop` says to: the pieces
    /// before it, and that piece (its `end` is the input's).
    pub fn cut_from(
        input: &[u8],
        first: Chunk,
        how: Cut,
        stop: &mut dyn FnMut(&Chunk) -> bool,
    ) -> Option<(Vec<Chunk>, Option<Chunk>)> {
        let (step, mask) = match how {
            Cut::Every(n) => (n, None),
            Cut::Content(mask) => (0, Some(mask)),
        };
        let mut last_owner: &[u8] = &[];
        let (mut origin, mut ttl) = (first.origin.clone(), first.default_ttl);
        let (mut pos, mut line, mut depth) = (0usize, first.line, 0u32);
        let mut chunks = vec![Chunk {
            end: input.len(),
            ..first
        }];
        let mut next_cut = step;
        while pos < input.len() {
            let end = input[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(input.len(), |i| pos + i);
            let text = &input[pos..end];
            if depth == 0 {
                if text.first() == Some(&b'$') {
                    let mut w = text
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|t| !t.is_empty());
                    let d = w.next()?;
                    let arg = w.next();
                    if d.eq_ignore_ascii_case(b"$ORIGIN") {
                        origin = Name::parse(arg?, Some(&origin)).ok()?;
                    } else if d.eq_ignore_ascii_case(b"$TTL") {
                        ttl = Some(rdata::parse_period(arg?)?);
                    } else {
                        return None;
                    }
                } else if text.first().is_some_and(|b| !b" \t\r;(".contains(b))
                    && match mask {
                        None => pos >= next_cut,
                        Some(mask) => {
                            let owner = text
                                .split(|b| b.is_ascii_whitespace())
                                .next()
                                .unwrap_or_default();
                            let new = !owner.eq_ignore_ascii_case(last_owner);
                            last_owner = owner;
                            new && pos > chunks.last().expect("one").start
                                && crate::fnv1a(text.iter().copied()) & mask == 0
                        }
                    }
                {
                    chunks.last_mut().expect("one").end = pos;
                    let next = Chunk {
                        start: pos,
                        end: input.len(),
                        line,
                        origin: origin.clone(),
                        default_ttl: ttl,
                    };
                    if stop(&next) {
                        return Some((chunks, Some(next)));
                    }
                    chunks.push(next);
                    next_cut = pos + step;
                }
            }
            depth = scan_depth(text, depth)?;
            pos = end + 1;
            line += 1;
        }
        Some((chunks, None))
    }

    /// Parenthesis depth after `line`, skipping quoted strings, escapes and comments.
    /// `None` for a quote left open (the sequential parser reports it).
    fn scan_depth(line: &[u8], mut depth: u32) -> Option<u32> {
        let mut i = 0;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 1,
                b';' => break,
                b'(' => depth += 1,
                b')' => depth = depth.checked_sub(1)?,
                b'"' => {
                    i += 1;
                    while i < line.len() && line[i] != b'"' {
                        if line[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    if i >= line.len() {
                        return None;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Some(depth)
    }
}

struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    /// Reads the next logical entry (a record or directive, parentheses joined).
    /// Returns its first line and whether it began with blank space (no owner).
    fn entry(&mut self, toks: &mut Vec<Tok<'a>>) -> Result<Option<(u32, bool)>, (u32, String)> {
        toks.clear();
        let input = self.input;
        let mut depth = 0u32;
        let mut start_line = self.line;
        let mut blank = false;
        let mut at_line_start = true;
        loop {
            if self.pos >= input.len() {
                if depth > 0 {
                    return Err((
                        start_line,
                        "unbalanced '(': end of file inside parentheses".into(),
                    ));
                }
                return Ok(if toks.is_empty() {
                    None
                } else {
                    Some((start_line, blank))
                });
            }
            let c = input[self.pos];
            match c {
                b' ' | b'\t' | b'\r' => {
                    if at_line_start && toks.is_empty() && depth == 0 {
                        blank = true;
                    }
                    self.pos += 1;
                }
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if depth == 0 {
                        if !toks.is_empty() {
                            return Ok(Some((start_line, blank)));
                        }
                        start_line = self.line;
                        blank = false;
                        at_line_start = true;
                        continue;
                    }
                }
                b';' => {
                    while self.pos < input.len() && input[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    if depth == 0 {
                        return Err((self.line, "unbalanced ')'".into()));
                    }
                    depth -= 1;
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos + 1;
                    let mut p = start;
                    while p < input.len() && input[p] != b'"' {
                        if input[p] == b'\n' {
                            return Err((self.line, "newline inside a quoted string".into()));
                        }
                        p += if input[p] == b'\\' { 2 } else { 1 };
                    }
                    if p >= input.len() {
                        return Err((self.line, "unterminated quoted string".into()));
                    }
                    toks.push(Tok {
                        text: &input[start..p],
                        quoted: true,
                    });
                    self.pos = p + 1;
                }
                _ => {
                    let start = self.pos;
                    let mut p = start;
                    while p < input.len() {
                        match input[p] {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' => p += 2,
                            _ => p += 1,
                        }
                    }
                    let p = p.min(input.len());
                    toks.push(Tok {
                        text: &input[start..p],
                        quoted: false,
                    });
                    self.pos = p;
                }
            }
            if c != b' ' && c != b'\t' && c != b'\r' {
                at_line_start = false;
            }
        }
    }
}

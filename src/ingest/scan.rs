//! An input file read once in fixed-size parts, without keeping it: the digest that tells
//! one input from another, and which ranges of it hold the bytes they were expected to.
//!
//! The digest is SHA-256 over the file's length and the XXH3-128 of each 64 KiB block, so
//! it is made at memory speed on all cores, and any node reading the same bytes makes the
//! same one (the SHA-256 of a 110 MB file alone took ~60 ms, and the file was read into a
//! fresh 110 MB allocation before that). Block sums of two files also say how many bytes
//! from the start they share:
//!
//! ```text
//!   old blocks:  [a][b][c][d][e]
//!   new blocks:  [a][b][c'][d'][e'][f']     → the first 2 × 64 KiB are the old file's
//! ```
//!
//! XXH3 is not a cryptographic hash: two different files with the same block sums would
//! have to be made on purpose, by someone who can write the zone file anyway.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use aws_lc_rs::digest;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// The size of a block, the unit of the digest and of a shared start.
pub const BLOCK: usize = 64 << 10;
/// How much one read takes (a whole number of blocks).
const READ: usize = 4 * BLOCK;

/// A file's length, block sums and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    pub digest: [u8; 32],
    pub len: usize,
    blocks: Vec<u128>,
}

/// The sum of `bytes` as [`Expect::tag`] wants it.
pub fn tag(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

impl Sums {
    /// The sums of a file already read.
    pub fn of(bytes: &[u8]) -> Sums {
        use rayon::prelude::*;
        let blocks = bytes.par_chunks(BLOCK).map(tag).collect();
        Sums::from_blocks(bytes.len(), blocks)
    }

    fn from_blocks(len: usize, blocks: Vec<u128>) -> Sums {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"quorumsign input file: length, XXH3-128 of each 64 KiB block\n");
        ctx.update(&(len as u64).to_be_bytes());
        for b in &blocks {
            ctx.update(&b.to_le_bytes());
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(ctx.finish().as_ref());
        Sums {
            digest: d,
            len,
            blocks,
        }
    }

    /// How many bytes from the start `self`'s file and `other`'s are known to share.
    pub fn shared_start(&self, other: &Sums) -> usize {
        let same = self
            .blocks
            .iter()
            .zip(&other.blocks)
            .take_while(|(a, b)| a == b)
            .count();
        (same * BLOCK).min(self.len).min(other.len)
    }

    /// Whether the blocks over bytes `start..end` are the same in `self`'s file and in
    /// `other`'s, a file of the same length.
    pub fn same_blocks(&self, other: &Sums, start: usize, end: usize) -> bool {
        let (a, z) = (start / BLOCK, end.div_ceil(BLOCK));
        self.len == other.len && z <= self.blocks.len() && self.blocks[a..z] == other.blocks[a..z]
    }
}

/// A range of a file expected to hold bytes whose [`tag`] is `tag`.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub start: usize,
    pub end: usize,
    pub tag: u128,
}

/// Reads `len` bytes of `file` once, on all cores: its sums, and for each of `expect`
/// (ascending and not overlapping, inside the file) whether it holds what it should.
pub fn scan(file: &File, len: usize, expect: &[Expect]) -> io::Result<(Sums, Vec<bool>)> {
    use rayon::prelude::*;
    debug_assert!(expect.windows(2).all(|w| w[0].end <= w[1].start));
    let nblocks = len.div_ceil(BLOCK);
    let parts = rayon::current_num_threads().clamp(1, nblocks.max(1));
    let per = nblocks.div_ceil(parts).max(1);
    type Part = (Vec<u128>, Vec<u128>, Vec<bool>);
    let out: Vec<io::Result<Part>> = (0..parts)
        .into_par_iter()
        .map(|i| {
            let lo = (i * per * BLOCK).min(len);
            let hi = ((i + 1) * per * BLOCK).min(len);
            // The ranges that start in this part are checked by it, to their end.
            let a = expect.partition_point(|e| e.start < lo);
            let z = expect.partition_point(|e| e.start < hi);
            scan_part(file, len, lo, hi, &expect[a..z])
        })
        .collect();
    let mut blocks = Vec::with_capacity(nblocks);
    let mut past = Vec::new();
    let mut ok = Vec::with_capacity(expect.len());
    for part in out {
        let (b, p, o) = part?;
        past.push((blocks.len() + b.len(), p));
        blocks.extend(b);
        ok.extend(o);
    }
    // A range read past its part's end was read apart from the blocks there: the same
    // bytes both times, or the file changed while it was read.
    for (at, p) in past {
        if blocks.get(at..at + p.len()) != Some(&p[..]) {
            return Err(io::Error::other("the file changed while it was read"));
        }
    }
    Ok((Sums::from_blocks(len, blocks), ok))
}

/// Bytes `lo..hi` (block aligned at `lo`) as block sums, the sums of the blocks read past
/// `hi`, and `expect` read to their end.
fn scan_part(
    file: &File,
    len: usize,
    lo: usize,
    hi: usize,
    expect: &[Expect],
) -> io::Result<(Vec<u128>, Vec<u128>, Vec<bool>)> {
    let end = expect.last().map_or(hi, |e| {
        let whole = e.end.div_ceil(BLOCK).saturating_mul(BLOCK).min(len);
        whole.max(e.end).max(hi)
    });
    let mut buf = vec![0u8; READ.min(end - lo)];
    let mut blocks = Vec::with_capacity((hi - lo).div_ceil(BLOCK));
    let mut past = Vec::new();
    let mut ok = Vec::with_capacity(expect.len());
    let mut h = Xxh3::new();
    let mut e = 0;
    let mut pos = lo;
    while pos < end {
        let n = READ.min(end - pos);
        let b = &mut buf[..n];
        file.read_exact_at(b, pos as u64)?;
        let b = &buf[..n];
        if pos < hi {
            blocks.extend(b[..n.min(hi - pos)].chunks(BLOCK).map(tag));
        }
        if pos + n > hi {
            let from = hi.max(pos) - pos;
            past.extend(b[from..].chunks(BLOCK).map(tag));
        }
        while let Some(x) = expect.get(e) {
            if x.start >= pos + n {
                break;
            }
            let from = x.start.max(pos) - pos;
            let to = x.end.min(pos + n) - pos;
            if x.end > pos + n {
                h.update(&b[from..to]);
                break; // continued in the next read
            }
            let sum = if x.start >= pos {
                tag(&b[from..to]) // all in this read: at once, faster than streamed
            } else {
                h.update(&b[from..to]);
                h.digest128()
            };
            ok.push(sum == x.tag);
            h.reset();
            e += 1;
        }
        pos += n;
    }
    Ok((blocks, past, ok))
}

/// Bytes `start..end` of the file `sums` describes, read again with the whole blocks
/// around them and checked against their sums: `(where the bytes start, the bytes)`, or
/// `None` when the file no longer holds what was scanned.
pub fn read_checked(
    file: &File,
    start: usize,
    end: usize,
    sums: &Sums,
) -> io::Result<Option<(usize, Vec<u8>)>> {
    let a = start / BLOCK * BLOCK;
    let z = end.div_ceil(BLOCK).saturating_mul(BLOCK).min(sums.len);
    if a > z {
        return Ok(None);
    }
    let mut buf = vec![0u8; z - a];
    file.read_exact_at(&mut buf, a as u64)?;
    let same = buf
        .chunks(BLOCK)
        .zip(&sums.blocks[a / BLOCK..])
        .all(|(b, s)| tag(b) == *s);
    Ok(same.then_some((a, buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        let r = File::open(f.path()).unwrap();
        (f, r)
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    #[test]
    fn a_scan_gives_the_sums_of_the_bytes_and_checks_each_range() {
        for n in [
            0,
            1,
            BLOCK - 1,
            BLOCK,
            3 * BLOCK + 17,
            READ + 5,
            3 * READ + BLOCK / 2,
        ] {
            let b = bytes(n, 7);
            let (_t, f) = file_of(&b);
            // Ranges of every size, one of them wrong; over read and part boundaries.
            let mut expect = Vec::new();
            let mut at = 0;
            let mut step = 1;
            while at + step <= n {
                expect.push(Expect {
                    start: at,
                    end: at + step,
                    tag: tag(&b[at..at + step]) ^ u128::from(expect.len() == 3),
                });
                at += step + 1;
                step = step * 3 + 11;
            }
            let (sums, ok) = scan(&f, n, &expect).unwrap();
            assert_eq!(sums, Sums::of(&b), "{n} bytes");
            assert_eq!(ok.len(), expect.len());
            for (i, o) in ok.iter().enumerate() {
                assert_eq!(*o, i != 3, "range {i} of {n} bytes");
            }
        }
    }

    #[test]
    fn sums_tell_files_apart_and_say_what_they_share() {
        let a = bytes(5 * BLOCK + 100, 1);
        let mut b = a.clone();
        b[3 * BLOCK + 10] ^= 1;
        let (sa, sb) = (Sums::of(&a), Sums::of(&b));
        assert_ne!(sa.digest, sb.digest);
        assert_eq!(sa.shared_start(&sb), 3 * BLOCK);
        assert_eq!(sa.shared_start(&sa), a.len());
        // One byte more at the end: the last block differs, the rest is shared.
        let mut c = a.clone();
        c.push(b'x');
        let sc = Sums::of(&c);
        assert_ne!(sa.digest, sc.digest);
        assert_eq!(sa.shared_start(&sc), 5 * BLOCK);

        // Read again and checked; a file changed since its scan is refused.
        let (_t, f) = file_of(&b);
        let (at, got) = read_checked(&f, BLOCK + 5, 2 * BLOCK + 9, &sb)
            .unwrap()
            .unwrap();
        assert_eq!(at, BLOCK);
        assert_eq!(got, b[BLOCK..3 * BLOCK]);
        assert!(
            read_checked(&f, BLOCK + 5, 4 * BLOCK, &sa)
                .unwrap()
                .is_none()
        );
        assert!(read_checked(&f, 0, 10, &sa).unwrap().is_some());
    }
}

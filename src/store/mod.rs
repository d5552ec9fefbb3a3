//! The Raft log and vote, in sled.
//!
//! Trees: `log` (big-endian index → tagged entry) and `meta` (`vote`, `committed`,
//! `purged`, `format`). A vote is flushed to disk before `save_vote` returns; appended
//! entries are flushed before openraft is told they are (the `IOFlushed` callback), so
//! nothing is acknowledged to a leader that a crash could lose. tests/store.rs runs
//! openraft's conformance suite over this store (as it is, and with every entry spilled)
//! and a SIGKILL crash test over a real node.
//!
//! # Large entries
//! A version's stage entries are about 2 MiB each, hundreds of MiB for a 1M-delegation
//! zone. In sled's pages they were written about three times over (leaf pages of up to
//! 19 MB consolidated and rewritten as blobs), and the kernel's copying of those writes
//! was a fifth of the cluster's CPU while a version was staged. An entry of
//! [`SPILL_BYTES`] or more is written to a file of its own under `spill/`, named by its
//! index and the xxh3 of its bytes, and sled holds a pointer to it. The file is written
//! under a temporary name, fsynced, renamed and its directory fsynced before the pointer
//! is inserted, so a pointer sled has made durable always names a whole file. A file is
//! deleted only after the removal of its pointer is flushed; files no pointer names
//! (a crash between the two, or during a write) are deleted when the store is opened.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::OptionalSend;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};

use crate::replica::{TypeConfig, decode, encode};

/// Incarnations a store remembers.
pub const INCARNATIONS_KEPT: usize = 64;

/// Who a store is: see [`LogStore::begin_incarnation`].
#[derive(Debug, Clone, Default)]
pub struct StoreIdentity {
    /// Drawn when the store was first opened (hex).
    pub store: String,
    /// This opening's: a counter (high 32 bits) and a random number (low 32 bits).
    pub incarnation: u64,
    /// The last incarnations, this one last.
    pub history: Vec<u64>,
    /// The cluster has recorded this store for this node.
    pub adopted: bool,
}

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Where large entries are kept (see the module's documentation).
    spill: std::path::PathBuf,
    /// Entries whose encoding is at least this long are spilled.
    spill_from: usize,
    /// The entries appended last, as they were appended: replicating them to each
    /// follower and applying them reads them from here instead of decoding them from sled
    /// again (a version's stage entries share their records' bytes with these).
    recent: std::sync::Arc<std::sync::Mutex<Recent>>,
}

/// The newest entries of the log, in order and without gaps, up to [`RECENT_BYTES`] of
/// their encoded size; always a suffix of what is in sled.
#[derive(Default)]
struct Recent {
    entries: std::collections::BTreeMap<u64, (EntryOf<TypeConfig>, usize)>,
    bytes: usize,
}

/// How much of the log's end [`Recent`] holds, in encoded bytes (about 32 stage entries).
const RECENT_BYTES: usize = 64 << 20;

impl Recent {
    fn push(&mut self, idx: u64, e: EntryOf<TypeConfig>, len: usize) {
        // Appends follow the last entry (after a truncation when they replace some).
        if self
            .entries
            .last_key_value()
            .is_some_and(|(k, _)| k + 1 != idx)
        {
            self.clear();
        }
        self.entries.insert(idx, (e, len));
        self.bytes += len;
        while self.bytes > RECENT_BYTES {
            let Some((_, (_, n))) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= n;
        }
    }

    /// Drops the entries from index `from` on.
    fn truncate(&mut self, from: u64) {
        for (_, (_, n)) in self.entries.split_off(&from) {
            self.bytes -= n;
        }
    }

    /// Drops the entries up to index `upto`.
    fn purge(&mut self, upto: u64) {
        let keep = self.entries.split_off(&(upto + 1));
        let gone = std::mem::replace(&mut self.entries, keep);
        self.bytes -= gone.values().map(|(_, n)| n).sum::<usize>();
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Chaos runs (`fault_control`'s `disk = fsync-error`): every flush fails as an fsync that
/// returned EIO would. Nothing is acknowledged after a failed flush; openraft stops on the
/// storage error and the node exits (its pages may be lost: it must not go on).
static FSYNC_FAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the injected fsync errors on or off; returns whether they were on.
pub fn inject_fsync_errors(on: bool) -> bool {
    FSYNC_FAULT.swap(on, std::sync::atomic::Ordering::SeqCst)
}

fn fsync_fault() -> io::Result<()> {
    if FSYNC_FAULT.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other(
            "fsync of the Raft log failed: input/output error (injected by fault_control)",
        ));
    }
    Ok(())
}

/// The most an append request carries, in encoded entry bytes (one entry is always sent,
/// whatever its size).
const SEND_BYTES: usize = 4 << 20;

fn err(e: sled::Error) -> io::Error {
    io::Error::other(format!("sled: {e}"))
}

/// Entries whose encoding is at least this long live in files of their own.
pub const SPILL_BYTES: usize = 64 << 10;

/// The first byte of a value of the `log` tree: the entry's encoding follows…
const INLINE: u8 = 0;
/// …or a [`Spilled`] pointer to the file that holds it.
const SPILLED: u8 = 1;

/// The on-disk layout of the `log` tree's values (`meta`'s `format`): values written
/// before there was a `format` are untagged encodings, tagged [`INLINE`] at open.
const FORMAT: u32 = 2;

/// Where a spilled entry is: the file named by its index and `hash`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spilled {
    /// The entry's id, so the log's state is known without reading the file.
    log_id: LogIdOf<TypeConfig>,
    len: u64,
    /// xxh3-64 of the file's bytes.
    hash: u64,
}

fn spill_name(idx: u64, hash: u64) -> String {
    format!("{idx:020}-{hash:016x}")
}

/// The pointer a `log` tree value holds, when its entry is spilled.
fn spilled(v: &[u8]) -> io::Result<Option<Spilled>> {
    match v.split_first() {
        Some((&SPILLED, b)) => decode(b).map(Some),
        _ => Ok(None),
    }
}

/// The index a `log` tree key stands for.
fn index_of(k: &[u8]) -> io::Result<u64> {
    Ok(u64::from_be_bytes(k.try_into().map_err(io::Error::other)?))
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(tag);
    v.extend_from_slice(bytes);
    v
}

/// Writes `bytes` to `dir/name` durably: a temporary file, fsynced, then renamed (the
/// caller fsyncs `dir` before it relies on the name).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl LogStore {
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        LogStore::open_spilling(dir, SPILL_BYTES)
    }

    /// [`LogStore::open`], spilling entries from `spill_from` encoded bytes (0: all of
    /// them, for the conformance suite).
    pub fn open_spilling(dir: &Path, spill_from: usize) -> io::Result<LogStore> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // The log is read back only to replicate recent entries: a small page cache
            // (sled's default is 1 GiB per node).
            .cache_capacity(64 << 20)
            .open()
            .map_err(err)?;
        let spill = dir.join("spill");
        std::fs::create_dir_all(&spill)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", spill.display())))?;
        let store = LogStore {
            log: db.open_tree("log").map_err(err)?,
            meta: db.open_tree("meta").map_err(err)?,
            db,
            spill,
            spill_from,
            recent: Default::default(),
        };
        store.migrate()?;
        store.tidy()?;
        Ok(store)
    }

    /// Opens a new incarnation of this store: its identity (drawn the first time), a new
    /// incarnation number, and the last [`INCARNATIONS_KEPT`] incarnations, flushed before
    /// it returns. A copy of this store restored later holds an older history than the one
    /// the cluster has seen, which is how the node knows (`node::restore`).
    pub fn begin_incarnation(&self) -> io::Result<StoreIdentity> {
        let random = || {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b)
                .map(|_| u64::from_be_bytes(b))
                .map_err(|_| io::Error::other("no randomness"))
        };
        let store = match self.get_meta::<String>("store_id")? {
            Some(s) => s,
            None => {
                let s = format!("{:016x}{:016x}", random()?, random()?);
                self.put_meta("store_id", &s)?;
                s
            }
        };
        let mut history: Vec<u64> = self.get_meta("incarnations")?.unwrap_or_default();
        // A counter in the high half, so that an incarnation older than those remembered is
        // still known to be older; a random low half, so that two copies of one store that
        // both start again do not draw the same.
        let counter = history.last().map_or(1, |last| (last >> 32) + 1);
        let incarnation = (counter << 32) | (random()? & 0xffff_ffff);
        history.push(incarnation);
        if history.len() > INCARNATIONS_KEPT {
            history.drain(..history.len() - INCARNATIONS_KEPT);
        }
        self.put_meta("incarnations", &history)?;
        self.db.flush().map_err(err)?;
        Ok(StoreIdentity {
            store,
            incarnation,
            history,
            adopted: self.get_meta::<bool>("adopted")?.unwrap_or(false),
        })
    }

    /// The index of the last entry in the log (or the last one purged), read from the
    /// store itself: at start, before Raft has reported anything.
    pub fn last_index(&self) -> io::Result<Option<u64>> {
        if let Some((k, _)) = self.log.last().map_err(err)? {
            let b: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| io::Error::other("bad log key"))?;
            return Ok(Some(u64::from_be_bytes(b)));
        }
        Ok(self
            .get_meta::<LogIdOf<TypeConfig>>("purged")?
            .map(|p| p.index()))
    }

    /// Records that the cluster has seen this store (its identity is in the replicated
    /// state): from then on, another identity recorded for this node means this store is
    /// an old copy.
    pub fn adopt(&self) -> io::Result<()> {
        self.put_meta("adopted", &true)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// Tags the values of a log written before values were tagged.
    fn migrate(&self) -> io::Result<()> {
        if self.get_meta::<u32>("format")?.is_some() {
            return Ok(());
        }
        for item in self.log.iter() {
            let (k, v) = item.map_err(err)?;
            self.log.insert(k, tagged(INLINE, &v)).map_err(err)?;
        }
        self.put_meta("format", &FORMAT)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// After a crash: drops what a purge left behind, and the files no pointer names.
    fn tidy(&self) -> io::Result<()> {
        if let Some(p) = self.get_meta::<LogIdOf<TypeConfig>>("purged")? {
            for k in self.log.range(..=p.index().to_be_bytes()).keys() {
                self.log.remove(k.map_err(err)?).map_err(err)?;
            }
        }
        let named = |name: &str| -> io::Result<bool> {
            let Some((idx, hash)) = name.split_once('-') else {
                return Ok(false);
            };
            let (Ok(idx), Ok(hash)) = (idx.parse::<u64>(), u64::from_str_radix(hash, 16)) else {
                return Ok(false);
            };
            Ok(match self.log.get(idx.to_be_bytes()).map_err(err)? {
                Some(v) => spilled(&v)?.is_some_and(|s| s.hash == hash),
                None => false,
            })
        };
        for f in std::fs::read_dir(&self.spill)? {
            let f = f?;
            let name = f.file_name();
            if !named(&name.to_string_lossy())? {
                std::fs::remove_file(f.path())?;
            }
        }
        Ok(())
    }

    /// The `log` tree's value for entry `e`, its file written first when it is spilled;
    /// and the entry's encoded length.
    fn value_of(&self, e: &EntryOf<TypeConfig>) -> io::Result<(Vec<u8>, usize)> {
        let bytes = encode(e);
        let n = bytes.len();
        if n < self.spill_from {
            return Ok((tagged(INLINE, &bytes), n));
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        write_durably(&self.spill, &spill_name(e.index(), hash), &bytes)?;
        let ptr = Spilled {
            log_id: e.log_id(),
            len: n as u64,
            hash,
        };
        Ok((tagged(SPILLED, &encode(&ptr)), n))
    }

    /// The file of entry `idx`, spilled with `hash`.
    fn file_of(&self, idx: u64, hash: u64) -> std::path::PathBuf {
        self.spill.join(spill_name(idx, hash))
    }

    /// The entry a `log` tree value stands for (reading its file when it is spilled).
    fn entry_of(&self, idx: u64, v: &[u8]) -> io::Result<EntryOf<TypeConfig>> {
        match v.split_first() {
            Some((&INLINE, b)) => decode(b),
            Some((&SPILLED, b)) => {
                let s: Spilled = decode(b)?;
                let path = self.file_of(idx, s.hash);
                let bytes = std::fs::read(&path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("Raft log entry {idx}: {}: {e}", path.display()),
                    )
                })?;
                if bytes.len() as u64 != s.len || xxhash_rust::xxh3::xxh3_64(&bytes) != s.hash {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "Raft log entry {idx}: {} holds {} bytes that are not the {} written",
                            path.display(),
                            bytes.len(),
                            s.len
                        ),
                    ));
                }
                decode(&bytes)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Raft log entry {idx}: unknown value tag"),
            )),
        }
    }

    /// The encoded length of the entry a `log` tree value stands for.
    fn len_of(v: &[u8]) -> io::Result<usize> {
        Ok(spilled(v)?.map_or(v.len().saturating_sub(1), |s| s.len as usize))
    }

    /// The id of the entry a `log` tree value stands for (without reading a file).
    fn log_id_of(&self, idx: u64, v: &[u8]) -> io::Result<LogIdOf<TypeConfig>> {
        match spilled(v)? {
            Some(s) => Ok(s.log_id),
            None => Ok(self.entry_of(idx, v)?.log_id()),
        }
    }

    /// Removes the entries of `keys` from sled, flushes, then deletes their files.
    async fn remove(&self, keys: Vec<(sled::IVec, sled::IVec)>) -> io::Result<()> {
        let mut files = Vec::new();
        for (k, v) in keys {
            if let Some(s) = spilled(&v)? {
                files.push(self.file_of(index_of(&k)?, s.hash));
            }
            self.log.remove(k).map_err(err)?;
        }
        self.flush().await?;
        for f in files {
            // A file left behind is deleted at the next open.
            let _ = std::fs::remove_file(f);
        }
        Ok(())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        self.meta
            .get(key)
            .map_err(err)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> io::Result<()> {
        self.meta.insert(key, encode(v)).map_err(err)?;
        Ok(())
    }

    /// The entries in `range`, in order, stopping before the one that would take their
    /// encoded size over `max_bytes` (the first is always read).
    fn read(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: usize,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        crate::runtime::blocking(|| {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            {
                let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.entries.contains_key(&start) {
                    for (idx, (e, n)) in recent.entries.range(start..) {
                        if !range.contains(idx) || (!out.is_empty() && bytes + n > max_bytes) {
                            return Ok(out);
                        }
                        bytes += n;
                        out.push(e.clone());
                    }
                    // Past the newest entry: nothing more in sled either.
                    return Ok(out);
                }
            }
            for item in self.log.range(start.to_be_bytes()..) {
                let (k, v) = item.map_err(err)?;
                let idx = index_of(&k)?;
                let n = Self::len_of(&v)?;
                if !range.contains(&idx) || (!out.is_empty() && bytes + n > max_bytes) {
                    break;
                }
                bytes += n;
                out.push(self.entry_of(idx, &v)?);
            }
            Ok(out)
        })
    }

    async fn flush(&self) -> io::Result<()> {
        fsync_fault()?;
        if current_thread() {
            // The deterministic simulation: the flush happens in order, on its thread.
            self.db.flush().map_err(err)?;
        } else {
            self.db.flush_async().await.map_err(err)?;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        self.read(range, usize::MAX)
    }

    /// What one append request carries: entries from `start` up to `end` (exclusive), but
    /// no more than `SEND_BYTES` of them (at least one). A version travels as stage entries
    /// of about 2 MiB, and a new leader probes each follower's log by binary search with
    /// entries from the middle of its log: without a byte bound each probe would carry
    /// `max_payload_entries` of them, tens of MiB read, encoded and decoded before the
    /// follower's first answer.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        self.read(start..end, SEND_BYTES)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.get_meta("vote")
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged: Option<LogIdOf<TypeConfig>> = self.get_meta("purged")?;
        let last = match self.log.last().map_err(err)? {
            Some((k, v)) => Some(self.log_id_of(index_of(&k)?, &v)?),
            None => purged.clone(),
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.put_meta("vote", vote)?;
        self.flush().await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        self.put_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self
            .get_meta::<Option<LogIdOf<TypeConfig>>>("committed")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Encoding and inserting megabytes of entries is CPU work: keep it off the runtime
        // workers so that heartbeats go on meanwhile.
        crate::runtime::blocking(|| {
            let mut batch = sled::Batch::default();
            let mut kept = Vec::new();
            let mut any_spilled = false;
            for e in entries {
                let (v, n) = self.value_of(&e)?;
                any_spilled |= v.first() == Some(&SPILLED);
                let idx = e.index();
                kept.push((idx, n, e));
                batch.insert(&idx.to_be_bytes(), v);
            }
            // The files' names are durable before any pointer to them can be.
            if any_spilled {
                sync_dir(&self.spill)?;
            }
            // Under the lock, so a read never sees the cache ahead of or behind sled.
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            self.log.apply_batch(batch).map_err(err)?;
            for (idx, n, e) in kept {
                recent.push(idx, e, n);
            }
            Ok::<_, io::Error>(())
        })?;
        let db = self.db.clone();
        if current_thread() {
            callback.io_completed(fsync_fault().and_then(|()| db.flush().map(|_| ()).map_err(err)));
            return Ok(());
        }
        tokio::spawn(async move {
            let res = match fsync_fault() {
                Ok(()) => db.flush_async().await.map(|_| ()).map_err(err),
                Err(e) => Err(e),
            };
            callback.io_completed(res);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index() + 1);
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncate(from);
        let keys: Vec<_> = self
            .log
            .range(from.to_be_bytes()..)
            .collect::<Result<_, _>>()
            .map_err(err)?;
        self.remove(keys).await
    }

    async fn purge(&mut self, upto: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .purge(upto.index());
        self.put_meta("purged", &upto)?;
        self.flush().await?;
        let keys: Vec<_> = self
            .log
            .range(..=upto.index().to_be_bytes())
            .collect::<Result<_, _>>()
            .map_err(err)?;
        self.remove(keys).await
    }
}

/// On a current-thread runtime (the deterministic simulation's)?
fn current_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

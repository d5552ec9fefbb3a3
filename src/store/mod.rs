//! The Raft log and vote, in sled.
//!
//! Trees: `log` (big-endian index → bincode entry) and `meta` (`vote`, `committed`,
//! `purged`). A vote is flushed to disk before `save_vote` returns; appended entries are
//! flushed before openraft is told they are (the `IOFlushed` callback), so nothing is
//! acknowledged to a leader that a crash could lose. tests/store.rs runs openraft's
//! conformance suite over this store and a SIGKILL crash test over a real node.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::OptionalSend;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};

use crate::replica::{TypeConfig, decode, encode};

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
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

impl LogStore {
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // The log is read back only to replicate recent entries: a small page cache
            // (sled's default is 1 GiB per node).
            .cache_capacity(64 << 20)
            .open()
            .map_err(err)?;
        Ok(LogStore {
            log: db.open_tree("log").map_err(err)?,
            meta: db.open_tree("meta").map_err(err)?,
            db,
            recent: Default::default(),
        })
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
        crate::blocking(|| {
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
                let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(io::Error::other)?);
                if !range.contains(&idx) || (!out.is_empty() && bytes + v.len() > max_bytes) {
                    break;
                }
                bytes += v.len();
                out.push(decode(&v)?);
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
            Some((_, v)) => Some(decode::<EntryOf<TypeConfig>>(&v)?.log_id()),
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
        crate::blocking(|| {
            let mut batch = sled::Batch::default();
            let mut kept = Vec::new();
            for e in entries {
                let (idx, v) = (e.index(), encode(&e));
                kept.push((idx, v.len(), e));
                batch.insert(&idx.to_be_bytes(), v);
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
            .keys()
            .collect::<Result<_, _>>()
            .map_err(err)?;
        for k in keys {
            self.log.remove(k).map_err(err)?;
        }
        self.flush().await
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
            .keys()
            .collect::<Result<_, _>>()
            .map_err(err)?;
        for k in keys {
            self.log.remove(k).map_err(err)?;
        }
        Ok(())
    }
}

/// On a current-thread runtime (the deterministic simulation's)?
fn current_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

//! The openraft state machine over [`ClusterState`], with snapshots on disk.
//!
//! The state lives in memory; what makes it durable is the Raft log (in [`crate::store`])
//! plus the last snapshot, written to `DATA/snapshot` with temp + fsync + rename. After a
//! restart the snapshot is loaded and openraft re-applies the log entries after it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use super::state::ClusterState;
use super::{Command, Outcome, TypeConfig, decode_counted, encode};
use crate::zone::write::AtomicFile;

pub type Snapshot = SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

/// `DATA/snapshot`: the bincode of (meta, data as a byte sequence), written and read
/// piecewise so the encoded state (hundreds of MiB for a 1M-delegation zone) is never
/// copied: a whole-struct encode once held it three times while a snapshot was saved.
struct SnapshotFile {
    meta: SnapshotMetaOf<TypeConfig>,
    data: Vec<u8>,
}

/// Shared handle to the applied state; cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    pub state: Arc<RwLock<ClusterState>>,
    dir: PathBuf,
    /// Last applied log index, for whoever waits for an apply (validation, status).
    applied: watch::Sender<u64>,
}

impl StateMachine {
    /// Opens the state machine in `dir`, loading the last snapshot if there is one.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut state = ClusterState::default();
        let path = dir.join("snapshot");
        if let Some(file) = load_snapshot(&path)? {
            state = ClusterState::decode(&file.data)?;
        }
        let idx = state.last_applied.as_ref().map_or(0, |l| l.index());
        Ok(StateMachine {
            state: Arc::new(RwLock::new(state)),
            dir: dir.to_path_buf(),
            applied: watch::channel(idx).0,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state from async code: the wait for the lock (a large apply may hold it
    /// for seconds) must not stall a runtime worker thread.
    pub fn with<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        crate::runtime::blocking(|| f(&self.read()))
    }

    /// As [`with`](Self::with) for short reads (a DNS query): when the lock is free, read
    /// on this worker at once; only while an apply holds it, wait off the worker.
    pub fn with_quick<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        if let Ok(g) = self.state.try_read() {
            return f(&g);
        }
        crate::runtime::blocking(|| f(&self.read()))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ClusterState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let mut f = AtomicFile::create(&self.dir.join("snapshot"))?;
        f.write_all(&encode(meta))?;
        f.write_all(&encode(&(data.len() as u64)))?;
        f.write_all(data)?;
        f.commit()
    }

    fn load_file(&self) -> io::Result<Option<SnapshotFile>> {
        load_snapshot(&self.dir.join("snapshot"))
    }
}

fn load_snapshot(path: &Path) -> io::Result<Option<SnapshotFile>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut bytes = std::fs::read(path)?;
    let (meta, n) = decode_counted::<SnapshotMetaOf<TypeConfig>>(&bytes)?;
    let (len, m) = decode_counted::<u64>(&bytes[n..])?;
    if (n + m) as u64 + len != bytes.len() as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: holds {} bytes of state where its header says {len}",
                path.display(),
                bytes.len() - n - m
            ),
        ));
    }
    bytes.drain(..n + m); // moves the state down in place: no second copy
    Ok(Some(SnapshotFile { meta, data: bytes }))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let this = self.clone();
        crate::runtime::spawn_blocking(move || {
            let (data, meta) = {
                let st = this.read();
                let meta = SnapshotMetaOf::<TypeConfig> {
                    last_log_id: st.last_applied.clone(),
                    last_membership: st.membership.clone(),
                };
                (encode(&*st), meta)
            };
            this.save(&meta, &data)?;
            Ok(Snapshot {
                meta,
                snapshot: Cursor::new(data),
            })
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let st = self.read();
        Ok((st.last_applied.clone(), st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut last = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            // Applying a large version takes seconds and may wait for a reader (the leader
            // diffing, a validator): keep that off the runtime's worker threads, or
            // heartbeats stall and elections follow.
            let out = crate::runtime::blocking(|| {
                // A stage entry's changes are decoded before the state is locked.
                let decoded = match &entry.payload {
                    EntryPayload::Normal(Command::Stage { changes, .. }) => {
                        Some(changes.decode().map(super::state::Staged::new))
                    }
                    _ => None,
                };
                let mut st = self.write();
                st.last_applied = Some(log_id.clone());
                match entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(cmd) => st.apply_decoded(&log_id, cmd, decoded),
                    EntryPayload::Membership(m) => {
                        st.membership =
                            StoredMembershipOf::<TypeConfig>::new(Some(log_id.clone()), m);
                        Outcome::Done
                    }
                }
            });
            last = Some(log_id.index());
            if let Some(r) = responder {
                r.send(out);
            }
        }
        if let Some(i) = last {
            self.applied.send_replace(i);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let idx = crate::runtime::blocking(|| -> io::Result<u64> {
            let state = ClusterState::decode(&data)?;
            self.save(meta, &data)?;
            let idx = state.last_applied.as_ref().map_or(0, |l| l.index());
            *self.write() = state;
            Ok(idx)
        })?;
        self.applied.send_replace(idx);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let this = self.clone();
        let file = crate::runtime::spawn_blocking(move || this.load_file())
            .await
            .map_err(io::Error::other)??;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Cursor::new(f.data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_file_reads_back_and_a_torn_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let meta = SnapshotMetaOf::<TypeConfig>::default();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        sm.save(&meta, &data).unwrap();
        let f = sm.load_file().unwrap().expect("saved");
        assert_eq!(f.data, data);
        assert_eq!(f.meta, meta);
        // The bytes are those of the (meta, data) pair encoded whole, as before.
        let whole = encode(&(meta.clone(), data.clone()));
        assert_eq!(std::fs::read(dir.path().join("snapshot")).unwrap(), whole);
        // A file cut short is refused, naming it.
        std::fs::write(dir.path().join("snapshot"), &whole[..whole.len() - 7]).unwrap();
        let e = sm.load_file().err().expect("torn file refused").to_string();
        assert!(e.contains("snapshot") && e.contains("4993"), "{e}");
    }
}

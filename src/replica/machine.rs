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
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::ClusterState;
use super::{Outcome, TypeConfig, decode, encode};
use crate::zone::write::AtomicFile;

pub type Snapshot = SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

#[derive(Serialize, Deserialize)]
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
        if path.exists() {
            let file: SnapshotFile = decode(&std::fs::read(&path)?)?;
            state = decode(&file.data)?;
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
        crate::blocking(|| f(&self.read()))
    }

    /// As [`with`](Self::with) for short reads (a DNS query): when the lock is free, read
    /// on this worker at once; only while an apply holds it, wait off the worker.
    pub fn with_quick<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        if let Ok(g) = self.state.try_read() {
            return f(&g);
        }
        crate::blocking(|| f(&self.read()))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ClusterState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let bytes = encode(&SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        });
        let mut f = AtomicFile::create(&self.dir.join("snapshot"))?;
        f.write_all(&bytes)?;
        f.commit()
    }

    fn load_file(&self) -> io::Result<Option<SnapshotFile>> {
        let path = self.dir.join("snapshot");
        if !path.exists() {
            return Ok(None);
        }
        decode(&std::fs::read(path)?).map(Some)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let this = self.clone();
        crate::node::spawn_blocking(move || {
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
            let out = crate::blocking(|| {
                let mut st = self.write();
                st.last_applied = Some(log_id.clone());
                match entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(cmd) => st.apply(&log_id, cmd),
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
        let idx = crate::blocking(|| -> io::Result<u64> {
            let state: ClusterState = decode(&data)?;
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
        let file = crate::node::spawn_blocking(move || this.load_file())
            .await
            .map_err(io::Error::other)??;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Cursor::new(f.data),
        }))
    }
}

//! The Raft store: openraft's conformance suite over sled + the snapshot-backed state
//! machine, and reopen checks (what was flushed is there after the store is reopened).

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use quorumsign::replica::TypeConfig;
use quorumsign::replica::machine::StateMachine;
use quorumsign::store::LogStore;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(&dir.path().join("raft")).unwrap();
        let sm = StateMachine::open(&dir.path().join("sm")).unwrap();
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_conformance_suite() {
    Suite::test_all(Builder).await.expect("conformance suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_and_entries_survive_reopen() {
    use openraft::alias::{EntryOf, VoteOf};
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    {
        let mut log = LogStore::open(&path).unwrap();
        log.save_vote(&VoteOf::<TypeConfig>::new(3, 2)).await.unwrap();
        let entries: Vec<EntryOf<TypeConfig>> = (1..=100)
            .map(|i| EntryOf::<TypeConfig>::new_blank(openraft::alias::LogIdOf::<TypeConfig>::new(openraft::impls::leader_id_adv::LeaderId { term: 3, node_id: 2 }, i)))
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }
    let mut log = LogStore::open(&path).unwrap();
    let vote = log.read_vote().await.unwrap().expect("vote kept");
    assert_eq!(vote, VoteOf::<TypeConfig>::new(3, 2));
    let got = log.try_get_log_entries(1..=100).await.unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got.last().unwrap().index(), 100);
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_log_id.unwrap().index(), 100);
}

//! The Raft store: openraft's conformance suite over sled + the snapshot-backed state
//! machine, and reopen checks (what was flushed is there after the store is reopened).

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use quorumsign::replica::TypeConfig;
use quorumsign::replica::machine::StateMachine;
use quorumsign::store::LogStore;
use tempfile::TempDir;

/// The id of entry `i` of a leader `node_id` in `term`.
fn log_id(term: u64, node_id: u64, i: u64) -> openraft::alias::LogIdOf<TypeConfig> {
    openraft::alias::LogIdOf::<TypeConfig>::new(
        openraft::impls::leader_id_adv::LeaderId { term, node_id },
        i,
    )
}

/// Opens the store at `path` again: the flush task of the store closed just before may
/// still hold the database for a moment after it has signalled.
fn reopen(path: &std::path::Path, spill_from: usize) -> LogStore {
    (0..100)
        .find_map(|_| {
            LogStore::open_spilling(path, spill_from).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        })
        .expect("store reopens")
}

/// Builds stores that spill entries from `spill_from` encoded bytes on.
struct Builder {
    spill_from: usize,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open_spilling(&dir.path().join("raft"), self.spill_from).unwrap();
        let sm = StateMachine::open(&dir.path().join("sm")).unwrap();
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_conformance_suite() {
    let b = Builder {
        spill_from: quorumsign::store::SPILL_BYTES,
    };
    Suite::test_all(b).await.expect("conformance suite");
}

/// The same suite with every entry in a file of its own (see `store`'s large entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_conformance_suite_every_entry_spilled() {
    Suite::test_all(Builder { spill_from: 0 })
        .await
        .expect("conformance suite, entries spilled");
}

/// Spilled entries: a truncation and a purge delete their files, files no entry names
/// are deleted at open, and a damaged file is refused with the entry and file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilled_entries_files_follow_the_log() {
    use openraft::alias::EntryOf;
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;

    let id = |i| log_id(2, 1, i);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let spill = path.join("spill");
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(&spill)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    {
        let mut log = LogStore::open_spilling(&path, 0).unwrap();
        let entries: Vec<EntryOf<TypeConfig>> = (1..=10)
            .map(|i| EntryOf::<TypeConfig>::new_blank(id(i)))
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        assert_eq!(files().len(), 10, "{:?}", files());
        log.truncate_after(Some(id(7))).await.unwrap();
        log.purge(id(3)).await.unwrap();
        let left = files();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left[0].starts_with("00000000000000000004-"), "{left:?}");
        assert!(left[3].starts_with("00000000000000000007-"), "{left:?}");
    }
    std::fs::write(spill.join("00000000000000000099-00000000000000ff"), b"x").unwrap();
    std::fs::write(
        spill.join("00000000000000000008-0000000000000001.tmp"),
        b"x",
    )
    .unwrap();
    let mut log = reopen(&path, 0);
    assert_eq!(files().len(), 4, "orphans deleted at open: {:?}", files());
    let got = log.try_get_log_entries(4..=7).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.index()).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_log_id.unwrap().index(), 7);
    assert_eq!(st.last_purged_log_id.unwrap().index(), 3);
    drop(log);
    let five = spill.join(
        files()
            .into_iter()
            .find(|f| f.starts_with("00000000000000000005-"))
            .unwrap(),
    );
    let mut bytes = std::fs::read(&five).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&five, bytes).unwrap();
    let mut log = reopen(&path, 0);
    let e = log
        .try_get_log_entries(4..=7)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Raft log entry 5") && e.contains(&five.display().to_string()),
        "{e}"
    );
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
        log.save_vote(&VoteOf::<TypeConfig>::new(3, 2))
            .await
            .unwrap();
        let entries: Vec<EntryOf<TypeConfig>> = (1..=100)
            .map(|i| EntryOf::<TypeConfig>::new_blank(log_id(3, 2, i)))
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }
    let mut log = reopen(&path, quorumsign::store::SPILL_BYTES);
    let vote = log.read_vote().await.unwrap().expect("vote kept");
    assert_eq!(vote, VoteOf::<TypeConfig>::new(3, 2));
    let got = log.try_get_log_entries(1..=100).await.unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got.last().unwrap().index(), 100);
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_log_id.unwrap().index(), 100);
}

/// What the log store hands openraft for one append request is bounded in bytes (always at
/// least one entry), so a new leader's probes of a follower's log cost a few MiB each
/// whatever `max_payload_entries` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_for_sending_is_bounded_in_bytes() {
    use openraft::alias::EntryOf;
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use quorumsign::replica::{Command, Origin};

    let big = |i, mib: f64| {
        EntryOf::<TypeConfig>::new_normal(
            log_id(1, 1, i),
            Command::Reload {
                name: "x".repeat((mib * 1048576.0) as usize),
                origin: Origin {
                    at: 0,
                    by: "test".into(),
                    command: "reload".into(),
                },
            },
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(&dir.path().join("raft")).unwrap();
    let mut entries: Vec<EntryOf<TypeConfig>> = (1..=10).map(|i| big(i, 1.5)).collect();
    entries.extend((11..=30).map(|i| EntryOf::<TypeConfig>::new_blank(log_id(1, 1, i))));
    entries.push(big(31, 6.0));
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();

    let indexes = |v: Vec<EntryOf<TypeConfig>>| v.iter().map(|e| e.index()).collect::<Vec<_>>();
    // Two entries of 1.5 MiB fit in 4 MiB, a third does not.
    assert_eq!(
        indexes(log.limited_get_log_entries(1, 11).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        indexes(log.limited_get_log_entries(4, 6).await.unwrap()),
        [4, 5]
    );
    // Small entries: the whole range.
    assert_eq!(
        indexes(log.limited_get_log_entries(11, 31).await.unwrap()),
        (11..=30).collect::<Vec<u64>>()
    );
    // An entry over the bound goes alone, and never after another one.
    assert_eq!(
        indexes(log.limited_get_log_entries(31, 32).await.unwrap()),
        [31]
    );
    assert_eq!(
        indexes(log.limited_get_log_entries(29, 32).await.unwrap()),
        [29, 30]
    );
    // What is read in full is unchanged.
    assert_eq!(log.try_get_log_entries(1..32).await.unwrap().len(), 31);
}

/// SIGKILL a process in the middle of heavy appends, five times over one store: every
/// index it reported as acknowledged (flushed) must be there, intact, after each restart.
#[test]
#[cfg_attr(
    not(feature = "testkit"),
    ignore = "drives `cluster store-torture`: --features testkit"
)]
fn acknowledged_appends_survive_sigkill() {
    use openraft::entry::RaftEntry;
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("raft");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut checked = 0;
    for round in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorumsign"))
            .args(["cluster", "store-torture", "--dir"])
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (mut acked, mut vote) = (0u64, 0u64);
        let kill_after = 40 + round * 37; // acknowledged batches before the kill
        let mut batches = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
                batches += 1;
                if batches == kill_after {
                    child.kill().unwrap(); // SIGKILL, mid-stream: more appends are in flight
                    break;
                }
            } else if let Some(t) = line.strip_prefix("vote ") {
                vote = t.parse().unwrap();
            }
        }
        child.wait().unwrap();
        assert!(acked > 0, "round {round}: nothing acknowledged");
        rt.block_on(async {
            let mut log = LogStore::open(&store).unwrap();
            let state = log.get_log_state().await.unwrap();
            let last = state.last_log_id.unwrap().index();
            assert!(
                last >= acked,
                "round {round}: acknowledged up to {acked}, store has up to {last}"
            );
            let got = log.try_get_log_entries(1..=acked).await.unwrap();
            assert_eq!(
                got.len() as u64,
                acked,
                "round {round}: entries missing below {acked}"
            );
            for (i, e) in got.iter().enumerate() {
                assert_eq!(e.index(), i as u64 + 1, "round {round}: entry out of place");
                // Every seventh is a large (spilled) entry; its content must be whole.
                let want = if e.index() % 7 == 0 { 96 << 10 } else { 512 };
                match &e.payload {
                    openraft::EntryPayload::Normal(quorumsign::replica::Command::Audit {
                        origin,
                    }) => assert_eq!(
                        origin.command.len(),
                        want,
                        "round {round}: entry {} damaged",
                        e.index()
                    ),
                    _ => panic!("round {round}: entry {} is not the one appended", e.index()),
                }
            }
            let v = log.read_vote().await.unwrap().expect("vote survives");
            assert!(
                v.leader_id().term >= vote,
                "round {round}: vote {} below acknowledged {vote}",
                v.leader_id().term
            );
        });
        checked = acked;
    }
    assert!(checked >= 1000, "the rounds appended {checked} entries");
}

/// A log written before its values were tagged (no `format` in `meta`) is read as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_untagged_format_is_migrated() {
    use openraft::alias::EntryOf;
    use openraft::entry::RaftEntry;
    use openraft::storage::{RaftLogReader, RaftLogStorage};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    {
        let db = sled::open(&path).unwrap();
        let log = db.open_tree("log").unwrap();
        for i in 1..=3u64 {
            let e = EntryOf::<TypeConfig>::new_blank(log_id(1, 1, i));
            log.insert(i.to_be_bytes(), quorumsign::replica::encode(&e))
                .unwrap();
        }
        db.flush().unwrap();
    }
    let mut log = LogStore::open(&path).unwrap();
    let got = log.try_get_log_entries(1..=3).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.index()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        log.get_log_state()
            .await
            .unwrap()
            .last_log_id
            .unwrap()
            .index(),
        3
    );
}

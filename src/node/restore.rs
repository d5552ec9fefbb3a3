//! A node restored from an older copy of its data dir (a VM snapshot, a backup, a disk
//! image rolled back) must not vote or acknowledge: Raft is safe only while every node
//! keeps what it acknowledged, and a node that forgot entries it acknowledged can help
//! elect a leader that never had them, which then publishes another content under a
//! published serial or forgets a committed key.
//!
//! ```text
//!  every opening of a store ─► identity (drawn once) + a new incarnation (history kept)
//!  at start ─► announced to every member, each keeps it durably (DATA/announced); the
//!              node is released only once a majority has kept it, so any later copy
//!              restored from before this start meets a member that knows better
//!  leader, every 2 s ─► StoreSeen: each member's identity, incarnation and the highest
//!                       index it acknowledged (replicated)
//!  every node, from its start and every 2 s ─► asks the others what they announced and
//!     their replicated state record of its own store ─► judge():
//!        another store recorded for it, once its own was recorded, ┐
//!          by a peer whose record reaches as far into the log      │
//!          as this node applied (a peer behind may still name the  │
//!          store a wiped node replaced)                            │
//!        an incarnation it never ran as (the copy is older)         ├─► held: no vote, no
//!        acknowledged up to N, holds less                           ┘   append, alarm
//!        nothing against it from a majority (itself included) ─► released
//!  node rejoin N ─► N wipes its store (kept aside under restored-TIME/) and stops; started
//!                   again it is blank and re-learns everything from the leader
//! ```
//! Limitations: a copy that loses only the last couple of seconds of acknowledgements,
//! before the leader recorded them and with no restart since, is not recognised by the
//! index; and a node whose every peer is stale cannot know better than they do.

use std::sync::Arc;
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;

use super::Node;
use crate::replica::{Command, NodeId, StoreRecord};
use crate::store::StoreIdentity;
use crate::transport::{Control, ControlReply, Held};

/// How often a node compares its store with what the others record of it.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often the leader records the members' stores.
const RECORD_EVERY: Duration = Duration::from_secs(2);

/// The marker `node rejoin` leaves in the data dir before the node stops.
pub const REJOIN_MARKER: &str = "REJOIN";
/// Where a node keeps what the others announced of their stores.
const ANNOUNCED: &str = "announced";

/// Node → (store, incarnation) it announced, and the index this node had applied then.
type Announced = std::collections::BTreeMap<NodeId, (String, u64, u64)>;

fn load_announced(node: &Node) -> Announced {
    super::kept::load(&node.cfg.data_dir.join(ANNOUNCED))
}

/// What node `of` last announced of its store to this node, and the index this node had
/// applied when it kept that.
pub fn announced(node: &Node, of: NodeId) -> Option<(String, u64, u64)> {
    let _guard = ANNOUNCE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    load_announced(node).remove(&of)
}

static ANNOUNCE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Keeps, durably, that node `from` runs as `store` / `incarnation` (temp file, fsync,
/// rename), then answers `Done`.
pub fn remember(node: &Node, from: NodeId, store: String, incarnation: u64) -> ControlReply {
    let _guard = ANNOUNCE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = load_announced(node);
    if all
        .get(&from)
        .is_some_and(|(s, i, _)| *s == store && *i == incarnation)
    {
        return ControlReply::Done;
    }
    all.insert(from, (store, incarnation, applied(node)));
    let path = node.cfg.data_dir.join(ANNOUNCED);
    match super::kept::save(&path, &all) {
        Ok(()) => ControlReply::Done,
        Err(e) => ControlReply::Failed(format!("{}: {e}", path.display())),
    }
}

/// Whether an announcement `a` by this node's own id, kept by a peer, shows this store to
/// be an older copy: another store announced since this one was recorded, or an
/// incarnation this copy never ran as. `behind`: the peer kept it before the index this
/// node has applied (see [`judge`]).
fn judge_announced(me: &StoreIdentity, a: &(String, u64, u64), behind: bool) -> Result<(), String> {
    let announced = StoreRecord {
        store: a.0.clone(),
        incarnation: a.1,
        acked: 0,
    };
    judge(me, 0, &announced, behind)
}

/// The index of the last entry this node applied.
fn applied(node: &Node) -> u64 {
    node.sm
        .with(|st| st.last_applied.as_ref().map_or(0, |l| l.index()))
}

/// Whether this store (`me`) can have run as `incarnation`: one it remembers, or one older
/// than all it remembers. `Err` when the incarnation is one it never had (a later start of
/// this store than the copy knows of).
fn ran_as(me: &StoreIdentity, incarnation: u64) -> Result<(), String> {
    let counter = |i: u64| i >> 32;
    if me.history.contains(&incarnation) {
        return Ok(());
    }
    let oldest = me.history.first().map_or(0, |i| counter(*i));
    if counter(incarnation) < oldest {
        return Ok(());
    }
    Err(format!(
        "store restored from an older copy: it ran as incarnation {:x} after this copy was made",
        incarnation
    ))
}

/// Whether `r`, what a peer's replicated state records of this node's store, shows that
/// this store (`me`, whose log ends at `holds`) is an older copy. `Err` says why.
///
/// `behind`: the peer's record reaches less far into the log than this node applied. Another
/// store in such a record proves nothing: it may be the store this one replaced (a wiped or
/// rejoined node), recorded before this one was. (A copy restored from before another store
/// was recorded has applied less than where that record was made, so a peer that knows of
/// it is never behind.)
pub fn judge(me: &StoreIdentity, holds: u64, r: &StoreRecord, behind: bool) -> Result<(), String> {
    if r.store != me.store {
        if me.adopted && !behind {
            return Err(format!(
                "store restored from an older copy: store {} was recorded for this node since, \
                 this is {}",
                r.store, me.store
            ));
        }
        // A new store (a wiped node re-learning) the leader has not recorded yet.
        return Ok(());
    }
    ran_as(me, r.incarnation)?;
    if r.acked > holds {
        return Err(format!(
            "store restored from an older copy: acknowledged up to {}, holds {holds}",
            r.acked
        ));
    }
    Ok(())
}

/// What this node knows of node `of`'s store: its applied state's record, updated by the
/// records in its log beyond what it applied (after a restart a node applies only what it
/// knew committed; the rest of its log is still what a leader saw of `of`); and the last
/// index that reflects.
pub async fn record_of(node: &Node, of: NodeId) -> (Option<StoreRecord>, u64) {
    use openraft::storage::RaftLogReader;
    let (mut record, applied) = node.sm.with(|st| {
        (
            st.stores.get(&of).cloned(),
            st.last_applied.as_ref().map(|l| l.index()),
        )
    });
    let mut as_of = applied.unwrap_or(0);
    let Some(store) = &node.log_store else {
        return (record, as_of);
    };
    let mut reader = store.clone();
    let entries = reader
        .try_get_log_entries(applied.map_or(0, |i| i + 1)..)
        .await
        .unwrap_or_default();
    for e in entries {
        as_of = as_of.max(e.log_id.index());
        if let openraft::EntryPayload::Normal(Command::StoreSeen { stores }) = e.payload {
            for (_, r) in stores.into_iter().filter(|(n, _)| *n == of) {
                record.get_or_insert_with(Default::default).update(r);
            }
        }
    }
    (record, as_of)
}

/// The index this node's log ends at, as Raft reports it or, before it does, as the
/// store holds it.
fn holds(node: &Node) -> Option<u64> {
    let reported = node.raft.metrics().borrow_watched().last_log_index;
    let stored = node
        .log_store
        .as_ref()
        .and_then(|s| s.last_index().ok().flatten());
    reported.max(stored)
}

/// Compares this node's store with what the other members record of it, from the start
/// and then every [`CHECK_EVERY`]; holds the node (see [`crate::transport::Hold`]) while
/// no majority has answered at the start, and for good once one answer shows the store
/// is an older copy.
pub async fn check(node: Arc<Node>) {
    let mut released = false;
    loop {
        let log_end = holds(&node);
        let blank = log_end.is_none();
        let log_end = log_end.unwrap_or(0);
        // The membership as this node's state holds it (Raft's metrics may not carry it yet
        // at start), and the peers of its config besides: a member added since this copy
        // was made is asked too.
        let (voters, members): (Vec<NodeId>, Vec<NodeId>) = node.sm.with(|st| {
            let ms = st.membership.membership();
            let mut members: Vec<NodeId> = ms.nodes().map(|(id, _)| *id).collect();
            members.extend(node.cfg.peers.iter().map(|p| p.id));
            members.sort();
            members.dedup();
            (ms.voter_ids().collect(), members)
        });
        let others: Vec<NodeId> = members.into_iter().filter(|id| *id != node.id).collect();
        let answers = node
            .ask_each(
                &others,
                Control::StoreRecord { of: node.id },
                Duration::from_secs(1),
            )
            .await;
        // How far this node's own state reaches: a peer's record short of it may be stale.
        let mine = applied(&node);
        let mut agree = 1;
        let mut agreeing = Vec::new();
        for (id, r) in answers {
            let (record, announced, as_of) = match r {
                Ok(ControlReply::StoreRecord {
                    record,
                    announced,
                    as_of,
                }) => (record, announced, as_of),
                _ => continue,
            };
            // A blank store has nothing to be an older copy of.
            let assess = |holds: u64| -> Result<(), String> {
                if blank {
                    return Ok(());
                }
                if let Some(r) = &record {
                    judge(&node.identity, holds, r, as_of < mine)?;
                }
                if let Some(a) = &announced {
                    judge_announced(&node.identity, a, a.2 < mine)?;
                }
                Ok(())
            };
            // A contrary answer is judged again with the log end read after it arrived: a
            // record committed meanwhile may name an index this node took meanwhile too.
            let verdict =
                assess(log_end).or_else(|_| assess(holds(&node).unwrap_or(0).max(log_end)));
            if verdict.is_ok() {
                agreeing.push(id);
            }
            match verdict {
                Ok(()) if voters.contains(&id) => agree += 1,
                Ok(()) => {}
                Err(why) => {
                    let why = format!("{why} (as node {id} records it)");
                    {
                        let mut h = node.hold.lock().unwrap_or_else(|e| e.into_inner());
                        let held = Some(Held::Restored(why.clone()));
                        if *h != held {
                            tracing::error!(
                                "ALARM: {why}; this node grants no vote and acknowledges nothing: \
                                 run `quorumsign node rejoin {}`",
                                node.id
                            );
                        }
                        *h = held;
                    }
                    // Nor does it stand for election: a held node's higher terms would only
                    // depose the leader the others follow.
                    node.raft.runtime_config().elect(false);
                    // Held for good: the node stays as it is for the operator to see.
                    return hold_forever(node).await;
                }
            }
        }
        // Released once a majority (this node included) found nothing against this store and
        // keeps this incarnation: a copy restored later meets one of them.
        let kept = if released {
            0
        } else {
            announce(&node, &agreeing).await
        };
        if !released
            && (kept + 1 > voters.len() / 2 || voters.len() <= 1)
            && (blank || agree > voters.len() / 2)
        {
            released = true;
            *node.hold.lock().unwrap_or_else(|e| e.into_inner()) = None;
            node.raft.runtime_config().elect(true);
            tracing::info!(
                answers = agree - 1,
                "store check passed: no member records a newer state of this store"
            );
        }
        adopt(&node);
        tokio::time::sleep(if released {
            CHECK_EVERY
        } else {
            Duration::from_millis(300)
        })
        .await;
    }
}

/// Announces this node's store and incarnation to `to`; how many kept it.
async fn announce(node: &Arc<Node>, to: &[NodeId]) -> usize {
    let req = Control::Announce {
        store: node.identity.store.clone(),
        incarnation: node.identity.incarnation,
    };
    node.ask_each(to, req, Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|(_, r)| matches!(r, Ok(ControlReply::Done)))
        .count()
}

async fn hold_forever(_node: Arc<Node>) {
    std::future::pending::<()>().await
}

/// Marks the store as recorded by the cluster once this node's applied state names it.
fn adopt(node: &Node) {
    if node.adopted.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let recorded = node.sm.with(|st| {
        st.stores
            .get(&node.id)
            .is_some_and(|r| r.store == node.identity.store)
    });
    if recorded
        && let Some(store) = &node.log_store
        && store.adopt().is_ok()
    {
        node.adopted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The leader's side: every [`RECORD_EVERY`], each member's store identity (asked over the
/// node transport) and the highest index the leader saw it acknowledge, committed when an
/// identity changed or an acknowledgement moved by more than the record's own entry.
pub async fn record(node: Arc<Node>) {
    loop {
        tokio::time::sleep(RECORD_EVERY).await;
        if node.may_publish().is_err() {
            continue;
        }
        let m = node.raft.metrics().borrow_watched().clone();
        let members: Vec<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let known = node.sm.with(|st| st.stores.clone());
        let others: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|id| *id != node.id)
            .collect();
        let mine = (
            node.id,
            node.identity.store.clone(),
            node.identity.incarnation,
        );
        let theirs = node
            .ask_each(&others, Control::Identity, Duration::from_secs(1))
            .await
            .into_iter()
            .filter_map(|(id, r)| match r {
                Ok(ControlReply::Identity { store, incarnation }) => Some((id, store, incarnation)),
                _ => None,
            });
        let mut seen = Vec::new();
        for (id, store, incarnation) in std::iter::once(mine).chain(theirs) {
            // The leader's own log end may not be flushed yet: only what followers
            // acknowledged (flushed) is recorded.
            let acked = if id == node.id {
                0
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index())
            };
            let record = StoreRecord {
                store,
                incarnation,
                acked,
            };
            let news = match known.get(&id) {
                None => true,
                Some(k) => {
                    k.store != record.store
                        || k.incarnation != record.incarnation
                        || record.acked > k.acked + 1
                }
            };
            if news {
                seen.push((id, record));
            }
        }
        if !seen.is_empty() {
            let _ = node
                .raft
                .client_write(Command::StoreSeen { stores: seen })
                .await;
        }
    }
}

/// At start, before the stores are opened: a data dir that `node rejoin` marked has its
/// store and state moved aside (kept under `restored-UNIXTIME/`), so the node starts blank.
pub fn wipe_if_marked(data_dir: &std::path::Path) -> Result<(), String> {
    let marker = data_dir.join(REJOIN_MARKER);
    if !marker.exists() {
        return Ok(());
    }
    let aside = data_dir.join(format!("restored-{}", crate::runtime::wall()));
    std::fs::create_dir_all(&aside).map_err(|e| format!("{}: {e}", aside.display()))?;
    for d in ["raft", "state"] {
        let from = data_dir.join(d);
        if from.exists() {
            std::fs::rename(&from, aside.join(d))
                .map_err(|e| format!("{} -> {}: {e}", from.display(), aside.display()))?;
        }
    }
    std::fs::remove_file(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
    tracing::warn!(
        kept = %aside.display(),
        "rejoin: this node's store and state were moved aside; it starts blank and re-learns \
         everything from the leader"
    );
    Ok(())
}

/// This node's answer to `node rejoin`: marks the data dir and stops the process (its
/// supervisor starts it again; see [`wipe_if_marked`]).
pub fn rejoin(node: &Arc<Node>, force: bool) -> ControlReply {
    if node.is_leader() {
        return ControlReply::Failed("this node is the leader; hand over first".into());
    }
    let held = node.hold.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let regressed = matches!(held, Some(Held::Restored(_)));
    if !regressed && !force {
        return ControlReply::Failed(format!(
            "node {}'s store is not known to be restored from an older copy ({}); \
             --force wipes it anyway",
            node.id,
            held.as_ref()
                .map_or("it checks out".to_string(), |h| h.to_string())
        ));
    }
    let marker = node.cfg.data_dir.join(REJOIN_MARKER);
    let why = held.map_or("forced by an operator".to_string(), |h| h.to_string());
    if let Err(e) = std::fs::write(&marker, &why) {
        return ControlReply::Failed(format!("{}: {e}", marker.display()));
    }
    tracing::warn!(
        "rejoin requested ({why}): stopping; started again, this node re-learns its store"
    );
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::process::exit(75);
    });
    ControlReply::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Incarnation `counter` with random part `r`.
    fn inc(counter: u64, r: u64) -> u64 {
        (counter << 32) | r
    }

    /// Store `aa`, remembering incarnations 5, 6 and 7 (this opening).
    fn me(adopted: bool) -> StoreIdentity {
        StoreIdentity {
            store: "aa".into(),
            incarnation: inc(7, 70),
            history: vec![inc(5, 50), inc(6, 60), inc(7, 70)],
            adopted,
        }
    }

    fn rec(store: &str, incarnation: u64, acked: u64) -> StoreRecord {
        StoreRecord {
            store: store.into(),
            incarnation,
            acked,
        }
    }

    #[test]
    fn an_announcement_kept_by_a_peer_shows_an_older_copy() {
        assert!(judge_announced(&me(true), &("aa".into(), inc(7, 70), 9), false).is_ok());
        assert!(judge_announced(&me(true), &("aa".into(), inc(5, 50), 9), false).is_ok());
        assert!(judge_announced(&me(true), &("aa".into(), inc(7, 72), 9), false).is_err());
        assert!(judge_announced(&me(true), &("bb".into(), inc(1, 1), 9), false).is_err());
        assert!(judge_announced(&me(false), &("bb".into(), inc(1, 1), 9), false).is_ok());
    }

    #[test]
    fn a_copy_is_known_by_incarnation_index_or_identity() {
        // What the cluster saw of this very store, up to what it holds: fine.
        assert!(judge(&me(true), 13, &rec("aa", inc(6, 60), 13), false).is_ok());
        assert!(judge(&me(true), 13, &rec("aa", inc(7, 70), 10), false).is_ok());
        // Older than all it remembers: nothing to say.
        assert!(judge(&me(true), 13, &rec("aa", inc(2, 9), 10), false).is_ok());
        // It acknowledged more than it holds.
        let e = judge(&me(true), 11, &rec("aa", inc(6, 60), 13), false).unwrap_err();
        assert!(e.contains("acknowledged up to 13, holds 11"), "{e}");
        // It ran as an incarnation this copy never had: the same counter drawn by another
        // start (the store started again after the copy), or a later counter.
        let e = judge(&me(true), 13, &rec("aa", inc(7, 71), 5), false).unwrap_err();
        assert!(e.contains(&format!("{:x}", inc(7, 71))), "{e}");
        assert!(judge(&me(true), 13, &rec("aa", inc(8, 1), 5), false).is_err());
        assert!(judge(&me(true), 13, &rec("aa", inc(6, 61), 5), false).is_err());
        // Another store was recorded for this node after this one was.
        assert!(judge(&me(true), 13, &rec("bb", inc(1, 1), 1), false).is_err());
        // A new store not yet recorded (a wiped node re-learning): fine.
        assert!(judge(&me(false), 13, &rec("bb", inc(1, 1), 20), false).is_ok());
    }
}

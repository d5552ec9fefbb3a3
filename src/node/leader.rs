//! The leader's signing loop.
//!
//! ```text
//!  every tick, while leader, per zone:
//!   keys  ── key-lifecycle engine (kasp): generate what it asks for (AddKey, exists once
//!            committed), commit its evaluation (KeyEval) when records move
//!            (sign with: DNSKEY iff DK ∈ {R,O}, DNSKEY RRset iff KR ∈ {R,O}, data iff RS ∈ {R,O})
//!   due?  ── new input digest | zone reload | keys changed | a signature inside the refresh
//!            window | no version yet
//!   sign  ── parse input, next serial, signature cache from the replicated content,
//!            sign_zone (reuses every cached signature that is not due), publish gate
//!   diff  ── RRset changes against the current version, content hash after them
//!   propose Stage × n (bounded) then Publish{base = current hash}
//! ```
//! Only committed keys sign; a node that loses leadership mid-run gets its Publish refused
//! by Raft (not committed) or by the state machine (base moved).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Node, RunReport};
use crate::ingest::held::{Content, Held, chained_digest, made_by_signer};
use crate::ingest::index::{Edit, FileIndex};
use crate::ingest::scan::Sums;
use crate::keys::{KeyId, RrsigHeader};
use crate::replica::state::{Owner, ZoneState, hex};
use crate::replica::{
    Command, KeyRecord, NodeId, Outcome, Part, RrsetChange, RrsetVal, Version, ZoneConfig,
};
use crate::signer::cache::{CacheEntry, CachedRrsig};
use crate::signer::{Denial, Nsec3Params, SignOptions, SignatureCache, SignedZone, sign_zone};
use crate::zone::{Limits, Name, ParseOptions, Parsed, Zone, rtype};

/// Versions of at least this many changed RRsets hand their build's memory back after
/// proposing (see [`crate::runtime::mem::trim`]).
const TRIM_AFTER_CHANGES: u64 = crate::runtime::mem::LARGE as u64;

/// Largest encoded size of one `Stage` entry, roughly.
const STAGE_BYTES: usize = 2 << 20;
/// Longest wait before a failed signing run is tried again.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why no version was built.
enum BuildError {
    /// The input or the result is wrong: wait until the input changes.
    Input(String),
    /// Something that may pass (the keystore failed, the current version moved): retry.
    Transient(String),
    /// The changes alone cannot make the version (a zone cut moved over existing names,
    /// the keys changed…): the next run builds from the whole zone, at once.
    Whole(&'static str),
}

impl From<String> for BuildError {
    fn from(e: String) -> BuildError {
        BuildError::Input(e)
    }
}

impl From<&str> for BuildError {
    fn from(e: &str) -> BuildError {
        BuildError::Input(e.into())
    }
}

#[derive(Default, Clone)]
struct Memo {
    stat: Option<(SystemTime, u64)>,
    digest: [u8; 32],
    /// An input that was refused (parse, limits, publish gate): not retried until it changes.
    failed: Option<[u8; 32]>,
    /// A build that failed for a passing reason (a keystore fault, a concurrent version):
    /// retried at this time, the wait doubling from 1 s up to [`RETRY_MAX`].
    retry: Option<(Instant, Duration)>,
    /// A primary's zone as records (an IXFR updates them), its serial, when the primary
    /// was last asked, and how often to ask (its SOA refresh).
    input: Option<Held>,
    /// The RRsets the IXFRs since the input at `base` changed: a build from a delta signs
    /// only those. `None` after a whole transfer (the next build compares everything).
    delta: Option<InputDelta>,
    primary_serial: Option<u32>,
    polled: Option<Instant>,
    refresh: Duration,
    /// The last failed transfer: when, and why (retried after `RETRY_FAILED`).
    fetch_failed: Option<(Instant, String)>,
    /// The zone reload the last transfer answered (a new reload fetches at once).
    reload_tried: u64,
    /// The input this memo is about (`zone set` may change it: then it starts afresh).
    input_of: String,
    /// An IXFR could not be applied: the next transfer is a whole one.
    force_axfr: bool,
    /// The whole transfer (by digest) a build was last tried from as a delta against the
    /// current version: tried once, then the next build reads the whole zone.
    whole_as_delta: Option<[u8; 32]>,
    /// The same for a changed input file.
    file_as_delta: Option<[u8; 32]>,
    /// The pieces of the input file the current version was built from (a changed file
    /// is compared with them first: [`crate::ingest::index`]).
    files: Arc<std::sync::Mutex<FileIndexes>>,
    /// Parent actions already logged: (key, submit?).
    parent_told: HashSet<(KeyId, bool)>,
    /// When the parent's servers were last asked, and what was wrong then.
    parent_asked: Option<Instant>,
    parent_note: Option<String>,
}

impl Memo {
    /// What a node that does not lead keeps: the input's index.
    fn standby(&self) -> Memo {
        Memo {
            input_of: self.input_of.clone(),
            files: self.files.clone(),
            ..Default::default()
        }
    }
}

/// On a node that does not lead, a zone whose input is a file: the index of the current
/// version's input file (when the file here is that input), made from the last index
/// around the file's change, or from the whole file (~2 s of CPU at 1M) when there is none
/// or the change is too large. It is made in the background, on threads that yield to
/// everything else (the check of the version among them): this node takes over at once
/// if elected meanwhile. A file that is not (yet) the current version's input is left
/// alone until it changes again.
fn standby_index(node: &Arc<Node>, zone: &str, memo: &mut Memo) {
    // Before the zone's first version, its input is indexed ahead (while the leader
    // signs it, not while this node checks it): `want` is then the file as it is.
    let found = node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let cfg = z.config.clone()?;
        Some((cfg, z.current.as_ref().map(|v| v.input_digest)))
    });
    let Some((cfg, want)) = found else {
        return;
    };
    let Some(path) = cfg.input.strip_prefix("file:").map(str::to_string) else {
        return;
    };
    if memo.input_of != cfg.input {
        *memo = Memo {
            input_of: cfg.input.clone(),
            ..Default::default()
        };
    }
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    let stat = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    let (index, generation) = {
        let Ok(mut g) = memo.files.lock() else { return };
        let indexed = match want {
            Some(digest) => g.current.as_ref().is_some_and(|i| i.sums.digest == digest),
            None => g.current.is_some(),
        };
        if g.standby_busy || indexed {
            return;
        }
        // Read already: not the current version's input, or its index could not be made.
        if g.standby_seen
            .is_some_and(|(s, d, made)| s == stat && (Some(d) != want || !made))
        {
            return;
        }
        g.standby_busy = true;
        (g.current.clone(), g.generation)
    };
    let Ok(origin) = Name::parse(zone.as_bytes(), None) else {
        return;
    };
    let popts = parse_options(origin, &cfg);
    let files = memo.files.clone();
    let zone = zone.to_string();
    tokio::spawn(async move {
        let t = Instant::now();
        let made = crate::runtime::spawn_blocking(move || {
            standby_pool().install(|| -> std::io::Result<_> {
                let p = std::path::Path::new(&path);
                let (sums, read) = read_file(&path, index.as_deref())?;
                if want.is_some_and(|d| d != sums.digest) {
                    return Ok((sums.digest, None, "read"));
                }
                let digest = sums.digest;
                let (b, sums) = match read {
                    FileRead::Edit(e) => {
                        let index = index.as_deref().expect("an edit is read through an index");
                        if let Some(pr) = index.prepare_edit(e, sums, p, &popts) {
                            return Ok((digest, Some(pr.into_index()), "around its change"));
                        }
                        // Too large a change for the index: the whole file.
                        let (sums, read) = read_file(&path, None)?;
                        match read {
                            FileRead::Whole(b) if sums.digest == digest => (b, sums),
                            _ => return Ok((sums.digest, None, "whole")),
                        }
                    }
                    FileRead::Whole(b) => (b, sums),
                };
                Ok((digest, FileIndex::build(&b, sums, p, &popts), "whole"))
            })
        })
        .await;
        let Ok(mut g) = files.lock() else { return };
        g.standby_busy = false;
        let Ok(Ok((read, next, how))) = made else {
            return;
        };
        g.standby_seen = Some((stat, read, next.is_some()));
        // (Unless this node became leader and made its own index meanwhile.)
        if let Some(next) = next.filter(|_| g.generation == generation) {
            tracing::info!(
                zone,
                how,
                pieces = next.len(),
                ms = t.elapsed().as_millis() as u64,
                "standby: input file indexed for a takeover"
            );
            g.current = Some(Arc::new(next));
        }
    });
}

/// Threads for a standby's index of the input, at the lowest CPU priority (nice 19): it
/// runs while the leader builds the next version and the followers check it, on the
/// same cores in a lab, and must not delay them.
fn standby_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| crate::runtime::niced_pool("standby", 19))
}

/// The index of the file the current version was built from, and the one of the file the
/// version being built comes from (it becomes current once that version is published).
#[derive(Default)]
struct FileIndexes {
    current: Option<Arc<FileIndex>>,
    pending: Option<FileIndex>,
    /// Counts the indexes this node made as leader (a standby's index made meanwhile is
    /// dropped).
    generation: u64,
    /// A standby is making an index ([`standby_index`]).
    standby_busy: bool,
    /// The file a standby read last: its size and mtime, its digest, and whether an index
    /// was made of it (not read again until it changes, or a version built from it is
    /// current).
    standby_seen: Option<((SystemTime, u64), [u8; 32], bool)>,
}

/// A changed input file as read: whole, or around its change (see [`FileIndex::scan`]).
enum FileRead {
    Whole(Vec<u8>),
    Edit(Edit),
}

/// What changed in a primary's zone since the input with digest `base`.
#[derive(Clone)]
struct InputDelta {
    base: [u8; 32],
    rrsets: std::collections::BTreeSet<(Owner, u16)>,
}

/// What a build starts from.
enum Input {
    /// A file input that did not change since the last read: read it again.
    Reread,
    /// A primary's zone as master-file text, and the digest of the records held.
    Text(Vec<u8>, [u8; 32]),
    /// A changed input file: its sums, its text (or the text around its change), whether
    /// to compare it with the current version first (see [`crate::ingest::index`] and
    /// [`crate::ingest::delta`]), and the file's index.
    File {
        sums: Sums,
        read: FileRead,
        compare: bool,
        files: Arc<std::sync::Mutex<FileIndexes>>,
    },
    /// Only `changed` RRsets differ from the current version's input: `text` holds every
    /// record at their owners and at the apex; `digest` is the new input's.
    Delta {
        text: Vec<u8>,
        changed: Vec<(Name, u16)>,
        digest: [u8; 32],
        /// What found the changes: "IXFR changes", or "transfer compared" (a whole
        /// transfer compared with the current version's content).
        how: &'static str,
    },
}

/// How long a failed transfer from a primary waits before the next try (a NOTIFY does not).
const RETRY_FAILED: Duration = Duration::from_secs(10);

pub async fn run(node: Arc<Node>) {
    let mut memo: HashMap<String, Memo> = HashMap::new();
    let mut started: Option<u64> = None;
    let mut fence_try: Option<(Instant, String)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(node.cfg.signer.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            started = None;
            fence_try = None;
            if node.cfg.witness {
                memo.clear();
                continue;
            }
            // A standby keeps only the index of the file the current version was built
            // from, and keeps it up to date: as leader it reads a changed file around its
            // change at once instead of comparing the whole of it (~11 s at 1M).
            let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
            memo.retain(|z, _| zones.contains(z));
            for zone in zones {
                let m = memo.entry(zone.clone()).or_default();
                *m = m.standby();
                standby_index(&node, &zone, m);
            }
            continue;
        }
        // A witness never signs: it hands leadership on at once. A leader whose keystore
        // fails its readiness test-sign does the same.
        let keys_lost = {
            let l = node.local();
            l.readiness
                .problems
                .iter()
                .find(|p| p.starts_with("key "))
                .cloned()
        };
        if node.cfg.witness || keys_lost.is_some() {
            let why = keys_lost.unwrap_or_else(|| "witness".into());
            if let Err(e) = hand_over(&node, &why).await {
                tracing::warn!("leader cannot sign ({why}); hand-over: {e}");
            }
            continue;
        }
        let term = {
            use openraft::type_config::async_runtime::WatchReceiver;
            node.raft.metrics().borrow_watched().current_term
        };
        // Self-fencing (see `watch_lease`): without recent quorum acknowledgements, no signing;
        // a leader that lost its quorum in this term resumes only as a follower.
        if node.may_publish().is_err() {
            continue;
        }
        // A leader whose wall clock disagrees with every other voter that answers would
        // sign with wrong inception and expiration times: it hands over instead.
        if let Err(why) = clock_agrees(&node).await {
            if node.local().clock_alarm.as_deref() != Some(why.as_str()) {
                tracing::error!("ALARM: {why}; not signing, handing leadership over");
            }
            node.local().clock_alarm = Some(why.clone());
            if let Err(e) = hand_over(&node, &why).await {
                tracing::warn!("leader with a wrong clock; hand-over: {e}");
            }
            continue;
        }
        if node.local().clock_alarm.take().is_some() {
            tracing::info!("clock agrees with the other voters again");
        }
        // (Also when it won a later election before following anyone: it must rejoin first.)
        if node.local().fenced_term.is_some_and(|t| t <= term) {
            if let Err(e) = hand_over(&node, "lost its quorum in this term").await {
                tracing::warn!("self-fenced leader, quorum back; hand-over: {e}");
            }
            continue;
        }
        // A new term: fence the predecessor when it did not hand over, then start.
        if started != Some(term) {
            let began = Instant::now();
            if let Err(e) = ensure_fenced(&node, term, &mut fence_try).await {
                node.local().fence_block = Some(e);
                continue;
            }
            if propose(
                &node,
                Command::LeaderStart {
                    node: node.id,
                    term,
                },
            )
            .await
            .is_err()
            {
                continue;
            }
            started = Some(term);
            node.local().fence_block = None;
            tracing::info!(
                term,
                ms = began.elapsed().as_millis() as u64,
                "leading: predecessor fenced, LeaderStart committed"
            );
        }
        let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
        for zone in zones {
            if node.may_publish().is_err() {
                break;
            }
            let m = memo.entry(zone.clone()).or_default();
            if let Err(e) = step(&node, &zone, m).await {
                tracing::warn!(zone, "signing: {e}");
                node.local().last_run.insert(
                    zone.clone(),
                    RunReport {
                        at: node.now(),
                        error: Some(e),
                        ..Default::default()
                    },
                );
            }
        }
    }
}

/// A leader that must not sign (a witness, or one whose keystore is lost) gives leadership
/// to the most caught-up ready signer (readiness from each member's status), keeping a
/// clean handover that was meant for it.
/// How long a clock comparison is reused: the signing loop compares once per tick, and
/// nothing is signed or committed on an older comparison.
const CLOCK_FRESH: Duration = Duration::from_millis(250);

/// Whether this node's wall clock agrees, within `max_clock_skew_s`, with a majority of the
/// voters (see [`compare_clocks`]); a comparison younger than [`CLOCK_FRESH`] is reused.
async fn clock_agrees(node: &Arc<Node>) -> Result<(), String> {
    let last = node.local().clock_checked.clone();
    if let Some((at, _, r)) = last
        && at.elapsed() < CLOCK_FRESH
        && clock_steady(node).is_ok()
    {
        return r;
    }
    let r = compare_clocks(node).await;
    node.local().clock_checked = Some((Instant::now(), node.now(), r.clone()));
    r
}

/// Whether the wall clock moved with the monotonic one since the last comparison with the
/// voters (within 2 s): a jump in between (even within `CLOCK_FRESH`) means what was
/// signed since may carry wrong inception and expiration times.
fn clock_steady(node: &Node) -> Result<(), String> {
    let Some((at, wall, _)) = node.local().clock_checked else {
        return Err("the clock was never compared with the other voters'".into());
    };
    let expect = wall + at.elapsed().as_secs();
    let t = node.now();
    if t.abs_diff(expect) > 2 {
        return Err(format!(
            "the wall clock jumped {:+} s since it was compared with the other voters'",
            t as i64 - expect as i64
        ));
    }
    Ok(())
}

/// Compares this leader's wall clock with the other voters' over the node transport. Fails
/// closed: it passes only when a majority of the voters (this one included) answered and
/// agree with this clock within `max_clock_skew_s`.
async fn compare_clocks(node: &Arc<Node>) -> Result<(), String> {
    let voters = node.voters();
    let skew = node.cfg.signer.max_clock_skew_s;
    let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != node.id).collect();
    let answers = node
        .ask_each(
            &others,
            crate::transport::Control::Time,
            Duration::from_secs(1),
        )
        .await;
    let mine = node.now();
    let need = voters.len() / 2 + 1;
    let (mut agree, mut off, mut silent) = (1, Vec::new(), Vec::new());
    for (v, r) in answers {
        match r {
            Ok(crate::transport::ControlReply::Time(t)) if t.abs_diff(mine) <= skew => agree += 1,
            Ok(crate::transport::ControlReply::Time(t)) => {
                off.push(format!("node {v} {:+} s", mine as i64 - t as i64))
            }
            Ok(r) => silent.push(format!("node {v}: {r:?}")),
            Err(e) => silent.push(e),
        }
    }
    if agree >= need {
        return Ok(());
    }
    Err(format!(
        "clock check failed: {agree} of {} voters (this one included) agree within \
         max_clock_skew_s = {skew}, a majority needs {need}; differing: [{}]; no answer: [{}]",
        voters.len(),
        off.join(", "),
        silent.join("; ")
    ))
}

async fn hand_over(node: &Arc<Node>, why: &str) -> Result<(), String> {
    let handover = node.sm.with(|st| st.handover);
    let voters = node.voters();
    let others: Vec<u64> = voters.iter().copied().filter(|v| *v != node.id).collect();
    let answers = node
        .ask_each(
            &others,
            crate::transport::Control::Status,
            Duration::from_secs(2),
        )
        .await;
    let mut silent = 0;
    let candidates = answers
        .into_iter()
        .filter_map(|(id, r)| {
            let Ok(crate::transport::ControlReply::Status(b)) = r else {
                silent += 1;
                return None;
            };
            let s: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            (s["readiness"]["ready"] == true && s["witness"] != true && s["store_check"].is_null())
                .then(|| (id, s["last_applied"].as_u64().unwrap_or(0)))
        })
        .max_by_key(|(_, applied)| *applied);
    // No member answered: the voter Raft knows to be most caught up, rather than a
    // leader that keeps leading without signing.
    let fallback = || {
        use openraft::type_config::async_runtime::WatchReceiver;
        let m = node.raft.metrics().borrow_watched().clone();
        m.replication.as_ref().and_then(|r| {
            others
                .iter()
                .filter_map(|v| r.get(v).map(|l| (*v, l.as_ref().map(|l| l.index()))))
                .max_by_key(|(_, i)| *i)
                .map(|(v, _)| (v, 0))
        })
    };
    let candidates = match candidates {
        None if silent > 0 && silent == others.len() => fallback(),
        c => c,
    };
    let Some((to, _)) = candidates else {
        return Err("no ready signer to hand over to; waiting".into());
    };
    let from = match handover {
        Some((f, t)) if t == node.id => f,
        _ => node.id,
    };
    propose(node, Command::Handover { from, to }).await?;
    node.raft
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(to, "handed leadership to node {to} ({why})");
    if node.cfg.witness {
        tracing::info!(to, "witness handed leadership to node {to}");
    }
    Ok(())
}

/// How long a leader blocked by a failed fence waits before running the hook again.
const FENCE_RETRY: Duration = Duration::from_secs(10);

/// Fences the last leader when it is another node that neither handed over to this one nor
/// has been fenced since its term began. `Err` while signing must wait.
async fn ensure_fenced(
    node: &Arc<Node>,
    term: u64,
    last_try: &mut Option<(Instant, String)>,
) -> Result<(), String> {
    let (last, handover, fenced, addr) = node.sm.with(|st| {
        let addr = st.last_leader.and_then(|(n, _)| {
            st.membership
                .membership()
                .nodes()
                .find(|(id, _)| **id == n)
                .map(|(_, a)| a.raft.clone())
        });
        (st.last_leader, st.handover, st.fenced.clone(), addr)
    });
    let Some((prev, prev_term)) = last else {
        return Ok(());
    };
    if prev == node.id
        || handover == Some((prev, node.id))
        || fenced.get(&prev).is_some_and(|t| *t >= prev_term)
    {
        return Ok(());
    }
    let Some(cfg) = node.cfg.fence.clone() else {
        tracing::warn!(
            prev,
            "no fence hook configured: node {prev} (leader in term {prev_term}) is not fenced"
        );
        return Ok(());
    };
    if let Some((at, why)) = last_try
        && at.elapsed() < FENCE_RETRY
    {
        return Err(why.clone());
    }
    let reason = format!(
        "node {} leads term {term}; node {prev} led term {prev_term} and did not hand over",
        node.id
    );
    let address = addr.unwrap_or_default();
    tracing::warn!(
        prev,
        term,
        "fencing node {prev} ({address}) before signing: {reason}"
    );
    let (c, me, a, r) = (cfg.clone(), node.id, address.clone(), reason.clone());
    let outcome =
        crate::runtime::spawn_blocking(move || crate::fence::run_hook(&c, me, prev, &a, term, &r))
            .await
            .map_err(|e| e.to_string())?;
    let cmd = Command::Fenced {
        target: prev,
        ok: outcome.ok,
        outcome: outcome.summary.clone(),
        origin: crate::replica::Origin {
            at: node.now(),
            by: format!("node {}", node.id),
            command: format!("fence node {prev} ({address}) in term {term}"),
        },
    };
    propose(node, cmd).await?;
    if outcome.ok {
        tracing::info!(prev, "node {prev} fenced: {}", outcome.summary);
        *last_try = None;
        return Ok(());
    }
    let why = format!("fence of node {prev} failed: {}", outcome.summary);
    if cfg.on_failure == "sign" {
        tracing::error!(prev, "{why}; signing anyway (fence.on_failure = \"sign\")");
        return Ok(());
    }
    tracing::error!(
        prev,
        "{why}; not signing until a fence succeeds (retry in {FENCE_RETRY:?}) or an operator \
         confirms it: quorumsign node fence {prev} --manual"
    );
    *last_try = Some((Instant::now(), why.clone()));
    Err(why)
}

/// `changes` cut into parts of about [`STAGE_BYTES`] (at least one part, perhaps empty),
/// each encoded once, on all cores.
fn encode_parts(changes: Vec<RrsetChange>) -> Vec<Part> {
    use rayon::prelude::*;
    let mut cuts = vec![0];
    let mut bytes = 0usize;
    for (i, c) in changes.iter().enumerate() {
        bytes += c.owner.as_wire().len()
            + c.val.as_ref().map_or(0, |v| {
                v.rdatas.iter().map(|d| d.len() + 4).sum::<usize>()
                    + v.sigs.iter().map(|d| d.len() + 4).sum::<usize>()
            });
        if bytes >= STAGE_BYTES {
            cuts.push(i + 1);
            bytes = 0;
        }
    }
    if cuts.len() == 1 || *cuts.last().expect("one cut") != changes.len() {
        cuts.push(changes.len());
    }
    cuts.par_windows(2)
        .map(|w| Part::encode(&changes[w[0]..w[1]]))
        .collect()
}

async fn propose(node: &Node, cmd: Command) -> Result<Outcome, String> {
    let what = cmd.to_string();
    match node.raft.client_write(cmd).await {
        Ok(r) => match r.data {
            Outcome::Refused(m) => Err(format!("{what}: refused: {m}")),
            o => Ok(o),
        },
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Entries proposed together: pipelined, but bounded (8 × ~2 MiB).
const PROPOSE_WINDOW: usize = 8;

/// Proposes `cmds` in order, in pipelined windows; the outcome of the last, or the first
/// refusal.
async fn propose_all(node: &Node, cmds: Vec<Command>) -> Result<Outcome, String> {
    use futures::StreamExt;
    let mut last = Outcome::Done;
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let window: Vec<Command> = cmds.by_ref().take(PROPOSE_WINDOW).collect();
        let n = window.len();
        let mut results = node
            .raft
            .client_write_many(window)
            .await
            .map_err(|e| format!("propose: {e}"))?;
        let mut seen = 0;
        while let Some(r) = results.next().await {
            seen += 1;
            match r.map_err(|e| format!("propose: {e}"))? {
                Ok(resp) => match resp.response {
                    Outcome::Refused(m) => return Err(format!("refused: {m}")),
                    o => last = o,
                },
                Err(e) => return Err(format!("propose: {e}")),
            }
        }
        if seen != n {
            return Err(format!("propose: {seen} of {n} entries answered"));
        }
    }
    Ok(last)
}

fn input_path(cfg: &ZoneConfig) -> Result<&str, String> {
    cfg.input
        .strip_prefix("file:")
        .ok_or_else(|| format!("zone {}: input {:?} is not file:PATH", cfg.name, cfg.input))
}

async fn step(node: &Arc<Node>, zone: &str, memo: &mut Memo) -> Result<(), String> {
    let found = node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let cfg = z.config.clone()?;
        let records: Vec<KeyRecord> = st.zone_keys(zone).cloned().collect();
        Some((
            cfg,
            z.current.clone(),
            z.reload_seq,
            z.keyset.clone(),
            records,
        ))
    });
    let Some((cfg, current, reload_seq, keyset, records)) = found else {
        return Ok(());
    };
    if memo.input_of != cfg.input {
        *memo = Memo {
            input_of: cfg.input.clone(),
            ..Default::default()
        };
    }
    // Nothing is evaluated, committed or signed on a clock the other voters disagree with.
    clock_agrees(node).await?;
    // Key changes the current version shows start their waits now that this leader sees
    // it committed; the engine holds them until then.
    if let Some(v) = &current
        && keyset
            .keys
            .values()
            .any(|k| k.pending.iter().any(|p| *p != 0 && *p <= v.keyset_seq))
    {
        let at = node.kasp_now();
        let seq = v.keyset_seq;
        if let Outcome::Refused(e) = propose(
            node,
            Command::KeysShown {
                zone: zone.into(),
                seq,
                at,
            },
        )
        .await?
        {
            return Err(e);
        }
        tracing::info!(zone, seq, at, "key changes shown by the published version");
        return Ok(());
    }
    let Some(keyset) =
        keys_step(node, zone, &cfg, current.as_ref(), keyset, &records, memo).await?
    else {
        return Ok(()); // keys were made; the next tick puts them to use
    };
    let policy = cfg.synced_policy();
    let keys: Vec<KeyRecord> = records
        .into_iter()
        .filter(|r| {
            keyset.keys.get(&r.id).is_some_and(|k| {
                let u = k.usage();
                u.publish || u.sign_dnskey || u.sign_data
            })
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let usage: std::collections::BTreeMap<KeyId, crate::kasp::KeyUse> = keyset
        .keys
        .values()
        .filter(|k| keys.iter().any(|r| r.id == k.id))
        .map(|k| (k.id, k.usage()))
        .collect();
    let cds = cds_keys(&keyset, &policy);
    let keyset_seq = keyset.seq;
    let file_input = match crate::dns::primary_of(&cfg.input) {
        Some(primary) => {
            let reload = current.as_ref().is_some_and(|v| v.reload_seq != reload_seq);
            let fresh_reload = reload && memo.reload_tried != reload_seq;
            memo.reload_tried = reload_seq;
            fetch_from_primary(node, zone, &primary?, current.as_ref(), fresh_reload, memo).await?;
            None
        }
        None => read_if_changed(zone, &cfg, memo).await?,
    };
    let t = node.now() as u32;
    let mut key_ids: Vec<KeyId> = keys.iter().map(|k| k.id).collect();
    key_ids.sort();
    let refresh_due = current
        .as_ref()
        .is_some_and(|v| v.min_expiration < t.saturating_add(cfg.refresh_s));
    let due = match &current {
        None => Some("first version"),
        Some(v) if v.input_digest != memo.digest => Some("input changed"),
        Some(v) if v.reload_seq != reload_seq => Some("reload"),
        Some(v) if v.keys != key_ids || v.keyset_seq != keyset_seq => Some("key set changed"),
        Some(_) if refresh_due => Some("signatures due"),
        Some(_) => None,
    };
    let Some(reason) = due else {
        return Ok(());
    };
    if memo.failed == Some(memo.digest) && !refresh_due {
        return Ok(());
    }
    if memo.retry.is_some_and(|(at, _)| Instant::now() < at) {
        return Ok(());
    }
    let started = Instant::now();
    let n = node.clone();
    let z = zone.to_string();
    let cur = current.clone();
    let quick_ok = !refresh_due
        && current
            .as_ref()
            .is_some_and(|v| v.keys == key_ids && v.keyset_seq == keyset_seq);
    let kasp = KaspUse {
        usage,
        cds,
        dnskey_ttl: policy.dnskey_ttl,
        keyset_seq,
    };
    let input_serial = memo.primary_serial;
    let input = match (file_input, &memo.input) {
        (Some((sums, read)), _) => {
            // Compared piece by piece once per input; a build from that which fails
            // (a keystore fault, a key change) is retried from the whole file.
            let compare = quick_ok && memo.file_as_delta != Some(memo.digest);
            if compare {
                memo.file_as_delta = Some(memo.digest);
            }
            // (Read around its change but not compared: the build reads it whole and
            // checks that it is what was read.)
            Input::File {
                sums,
                read,
                compare,
                files: memo.files.clone(),
            }
        }
        (None, Some(_)) => primary_input(node, zone, memo, current.as_ref(), quick_ok).await?,
        (None, None) => Input::Reread,
    };
    let file_input = cfg.input.starts_with("file:");
    let built = crate::runtime::spawn_blocking(move || {
        build_version(
            &n,
            &z,
            &cfg,
            cur,
            reload_seq,
            &keys,
            key_ids,
            input,
            input_serial,
            quick_ok,
            kasp,
        )
    })
    .await
    .map_err(|e| e.to_string())?;
    let (changes, version) = match built {
        Ok(x) => x,
        Err(BuildError::Input(e)) => {
            memo.failed = Some(memo.digest);
            node.local()
                .alarms
                .insert(zone.into(), format!("last input refused: {e}"));
            return Err(e);
        }
        Err(BuildError::Whole(how)) => {
            // The delta was taken (`primary_input`) or tried once (`whole_as_delta`,
            // `file_as_delta`): the next tick reads the whole zone.
            tracing::info!(
                zone,
                input = how,
                "these changes need the whole zone: building from it next"
            );
            return Ok(());
        }
        Err(BuildError::Transient(e)) => {
            // (The file may have changed while it was read: read it again.)
            memo.stat = None;
            let wait = memo
                .retry
                .map_or(Duration::from_secs(1), |(_, w)| (w * 2).min(RETRY_MAX));
            memo.retry = Some((Instant::now() + wait, wait));
            node.local().alarms.insert(
                zone.into(),
                format!("signing failed: {e}; retrying in {} s", wait.as_secs()),
            );
            return Err(format!("{e}; retrying in {} s", wait.as_secs()));
        }
    };
    memo.failed = None;
    memo.retry = None;
    let base = current.as_ref().map(|v| v.hash);
    let upload = (node.now() << 20) ^ (node.id & 0xfffff) ^ started.elapsed().as_nanos() as u64;
    let n_changes = changes.len() as u64;
    let parts = crate::runtime::spawn_blocking(move || encode_parts(changes))
        .await
        .map_err(|e| e.to_string())?;
    let mut cmds: Vec<Command> = parts
        .into_iter()
        .enumerate()
        .map(|(part, changes)| Command::Stage {
            zone: zone.into(),
            upload,
            part: part as u32,
            changes,
        })
        .collect();
    let parts = cmds.len() as u32;
    // Signed on a clock that jumped since it was compared (inception and expiration
    // would be off): not proposed; the next tick compares again and builds anew.
    clock_steady(node).map_err(|e| format!("{e}: the version is not proposed"))?;
    let (serial, signed, reused) = (version.serial, version.signed, version.reused);
    cmds.push(Command::Publish {
        zone: zone.into(),
        upload,
        parts,
        base,
        version,
    });
    // Recorded before proposing: when this node applies the version, its checker knows
    // the version was built (and gated) here.
    node.local().last_run.insert(
        zone.into(),
        RunReport {
            at: node.now(),
            serial,
            ..Default::default()
        },
    );
    let out = propose_all(node, cmds).await?;
    if n_changes >= TRIM_AFTER_CHANGES {
        crate::runtime::mem::trim(); // the build's transients are gone: give their pages back
    }
    let rss_mib = crate::runtime::mem::rss_for(n_changes as usize);
    let ms = started.elapsed().as_millis() as u64;
    if let Outcome::Published { token, .. } = out {
        tracing::info!(
            zone,
            serial,
            reason,
            signed,
            reused,
            changes = n_changes,
            ms,
            token = format!("{}:{}", token.0, token.1),
            rss_mib,
            "published"
        );
        tokio::spawn(super::publish::after_publish(
            node.clone(),
            zone.to_string(),
            serial,
            token,
        ));
        if file_input {
            index_file(&memo.files, memo.digest);
        }
    }
    node.local().last_run.insert(
        zone.into(),
        RunReport {
            at: node.now(),
            serial,
            ms,
            signed,
            reused,
            changes: n_changes,
            error: None,
        },
    );
    Ok(())
}

/// After a version built from the input file with digest `digest` is published, the index
/// of that file (made by the build) becomes current.
fn index_file(files: &std::sync::Mutex<FileIndexes>, digest: [u8; 32]) {
    let Ok(mut g) = files.lock() else { return };
    if let Some(p) = g.pending.take().filter(|p| p.sums.digest == digest) {
        g.current = Some(Arc::new(p));
        g.generation += 1;
    }
}

/// What a build of a primary's zone starts from: the RRsets the IXFRs changed since the
/// current version's input (new and removed ones too), or those a whole transfer differs
/// in from the content, else the whole zone as text. Either way the next delta counts
/// from this input.
async fn primary_input(
    node: &Arc<Node>,
    zone: &str,
    memo: &mut Memo,
    current: Option<&Version>,
    quick_ok: bool,
) -> Result<Input, String> {
    let digest = memo.digest;
    let delta = memo.delta.replace(InputDelta {
        base: digest,
        rrsets: Default::default(),
    });
    if quick_ok
        && let (Some(d), Some(cur)) = (delta, current)
        && d.base == cur.input_digest
        && !d.rrsets.is_empty()
        && let Ok(origin) = Name::parse(zone.as_bytes(), None)
    {
        let held = memo.input.as_ref().expect("a primary's zone is held");
        // (Names or types that came or went are built the same way: `shape_sign`.)
        let text = node.sm.with(|st| {
            let z = st.zones.get(zone)?;
            let apex = Owner(origin);
            let owners: std::collections::BTreeSet<&Owner> =
                d.rrsets.iter().map(|(o, _)| o).chain([&apex]).collect();
            Some(held.text_at(&z.content, owners.into_iter()))
        });
        if let Some(text) = text {
            // (`delta_changes` leaves out the SOA and what the signer makes.)
            let changed = d.rrsets.iter().map(|(o, t)| (o.0.clone(), *t)).collect();
            return Ok(Input::Delta {
                text,
                changed,
                digest,
                how: "IXFR changes",
            });
        }
    }
    // A whole transfer compared with the current version's content: only the RRsets that
    // differ are rendered and signed, as after an IXFR (at 1M delegations the whole zone
    // as text, parsed again, took the leader's memory to ~2 GiB).
    if quick_ok
        && current.is_some()
        && memo.whole_as_delta != Some(digest)
        && let Some(held) = memo.input.as_ref().filter(|h| h.is_whole())
        && let Ok(origin) = Name::parse(zone.as_bytes(), None)
    {
        memo.whole_as_delta = Some(digest);
        let apex = Owner(origin);
        // A walk over the whole content: off the runtime's workers (see `transfer_if_newer`).
        let text = crate::runtime::blocking(|| {
            node.sm.with(|st| {
                let z = st.zones.get(zone)?;
                let changed = held.changed_against(&z.content)?;
                let owners: std::collections::BTreeSet<&Owner> =
                    changed.iter().map(|(o, _)| o).chain([&apex]).collect();
                let text = held.text_at(&z.content, owners.into_iter());
                Some((changed, text))
            })
        });
        if let Some((changed, text)) = text {
            tracing::info!(
                zone,
                changed = changed.len(),
                "whole transfer compared: building from the RRsets that differ"
            );
            return Ok(Input::Delta {
                text,
                changed: changed.into_iter().map(|(o, t)| (o.0, t)).collect(),
                digest,
                how: "transfer compared",
            });
        }
    }
    // The whole zone, rendered off the runtime (a large zone takes a while).
    let held = memo.input.take().expect("a primary's zone is held");
    let (n, z) = (node.clone(), zone.to_string());
    let (held, text) = crate::runtime::spawn_blocking(move || {
        let text = if held.is_whole() {
            held.text(&Content::new())
        } else {
            with_content(&n, &z, |c| held.text(c))
        };
        (held, text)
    })
    .await
    .map_err(|e| e.to_string())?;
    memo.input = Some(held);
    Ok(Input::Text(text, digest))
}

/// Runs `f` on `zone`'s replicated content (empty when the zone is gone).
fn with_content<R>(node: &Node, zone: &str, f: impl FnOnce(&Content) -> R) -> R {
    node.sm.with(|st| {
        let empty = Content::new();
        f(st.zones.get(zone).map_or(&empty, |z| &z.content))
    })
}

/// How a zone's input is parsed: its origin, the zone's record limit, DNSSEC records
/// dropped.
fn parse_options(origin: Name, cfg: &ZoneConfig) -> ParseOptions {
    ParseOptions {
        origin,
        limits: Limits {
            zone_records_max: cfg.max_records.min(usize::MAX as u64) as usize,
            ..Limits::default()
        },
        keep_dnssec: false,
    }
}

/// Reads the file at `path` with its sums: through `index` (the last file's) around its
/// change when that finds one, else whole.
fn read_file(path: &str, index: Option<&FileIndex>) -> std::io::Result<(Sums, FileRead)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    if let Some(index) = index {
        let (sums, edit) = index.scan(&f, len)?;
        if let Some(e) = edit {
            return Ok((sums, FileRead::Edit(e)));
        }
    }
    let mut b = Vec::with_capacity(len);
    f.read_to_end(&mut b)?;
    Ok((Sums::of(&b), FileRead::Whole(b)))
}

/// A file input: read only when its size or mtime moved; the bytes then go on to the
/// build, which parses exactly what was summed. With the index of the last file, it is
/// read once in parts and only the text around its change is kept ([`FileIndex::scan`]).
async fn read_if_changed(
    zone: &str,
    cfg: &ZoneConfig,
    memo: &mut Memo,
) -> Result<Option<(Sums, FileRead)>, String> {
    let path = input_path(cfg)?.to_string();
    let meta = std::fs::metadata(&path).map_err(|e| format!("zone {zone}: input {path}: {e}"))?;
    let stat = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    if memo.stat == Some(stat) {
        return Ok(None);
    }
    let index = memo.files.lock().ok().and_then(|g| g.current.clone());
    let p = path.clone();
    let t = Instant::now();
    let (sums, read) = crate::runtime::spawn_blocking(move || read_file(&p, index.as_deref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("zone {zone}: input {path}: {e}"))?;
    let (how, kept) = match &read {
        FileRead::Whole(b) => ("whole", b.len()),
        FileRead::Edit(e) => ("around its change", e.read),
    };
    tracing::info!(
        zone,
        how,
        kept,
        ms = t.elapsed().as_millis() as u64,
        "input file read"
    );
    memo.digest = sums.digest;
    memo.stat = Some(stat);
    Ok(Some((sums, read)))
}

/// A primary's zone: asks for its SOA when notified, when its refresh interval has passed
/// or on reload, and transfers it when the serial moved (or nothing is held yet). A serial
/// that goes backwards, or a transfer that fails, is an error and nothing changes.
async fn fetch_from_primary(
    node: &Node,
    zone: &str,
    primary: &crate::dns::Remote,
    current: Option<&Version>,
    reload: bool,
    memo: &mut Memo,
) -> Result<(), String> {
    let apex = Owner(Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?);
    // A new leader starts from the input the current version was made from (replicated),
    // so it can re-sign even while the primary is unreachable: nothing is copied but the
    // apex, the content is the rest.
    if memo.input.is_none()
        && let Some(cur) = current
    {
        let held = node.sm.with(|st| {
            st.zones
                .get(zone)
                .map(|z| Held::over(apex.clone(), &z.content, cur.input_serial))
        });
        if let Some(held) = held {
            memo.input = Some(held);
            memo.digest = cur.input_digest;
            memo.delta = Some(InputDelta {
                base: cur.input_digest,
                rrsets: Default::default(),
            });
            memo.primary_serial = Some(cur.input_serial);
        }
    }
    // A whole transfer stops being held once a version built from it is published.
    if let (Some(held), Some(cur)) = (memo.input.as_mut(), current)
        && held.is_whole()
        && cur.input_digest == memo.digest
    {
        held.lean();
    }
    let notified = node.local().notified.remove(zone);
    if let Some((at, why)) = &memo.fetch_failed
        && at.elapsed() < RETRY_FAILED
        && !notified
        && !reload
    {
        return Err(why.clone());
    }
    let poll_due = memo.polled.is_none_or(|t| t.elapsed() >= memo.refresh);
    if memo.input.is_some() && !notified && !poll_due && !reload {
        return Ok(());
    }
    memo.polled = Some(Instant::now());
    if memo.refresh.is_zero() {
        memo.refresh = Duration::from_secs(60);
    }
    let why = if notified {
        "NOTIFY"
    } else if reload {
        "reload"
    } else {
        "refresh"
    };
    let published = current.map(|v| v.input_serial);
    match transfer_if_newer(node, zone, &apex, primary, reload, published, memo, why).await {
        Ok(()) => {
            memo.fetch_failed = None;
            Ok(())
        }
        Err(e) => {
            memo.fetch_failed = Some((Instant::now(), e.clone()));
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn transfer_if_newer(
    node: &Node,
    zone: &str,
    apex: &Owner,
    primary: &crate::dns::Remote,
    reload: bool,
    published: Option<u32>,
    memo: &mut Memo,
    why: &str,
) -> Result<(), String> {
    use crate::dns::client;
    let key = primary.tsig(&node.tsig)?.cloned();
    let origin = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    let serial = client::serial(primary, key.as_ref(), &origin).await?;
    // Backwards from the input of the published version (or, before one exists, from the
    // last transfer); "nothing new" against the last transfer.
    let known = published.or(memo.primary_serial).filter(|s| *s != 0);
    let backwards = |k: u32, s: u32| {
        format!(
            "zone {zone}: the primary's serial went backwards from {k} to {s}; keeping the \
             last good version"
        )
    };
    if let Some(k) = known {
        if !crate::zone::serial::le(k, serial) {
            return Err(backwards(k, serial));
        }
    }
    if memo.primary_serial == Some(serial) && memo.input.is_some() && !reload {
        return Ok(());
    }
    let max = node
        .sm
        .with(|st| {
            st.zones
                .get(zone)
                .and_then(|z| z.config.as_ref())
                .map(|c| c.max_records)
        })
        .unwrap_or(u64::MAX);
    // IXFR from what we hold when we hold it; AXFR on reload, or when the IXFR fails.
    let from = match (&memo.input, memo.primary_serial) {
        (Some(held), Some(ps)) if !reload && !memo.force_axfr => held.soa(ps).map(|soa| (ps, soa)),
        _ => None,
    };
    let ixfr = from.as_ref().map(|(ps, soa)| (*ps, &soa[..]));
    let deadline = Duration::from_secs(node.cfg.signer.transfer_timeout_s);
    let f = match client::transfer(primary, key.as_ref(), &origin, max, ixfr, deadline).await {
        Ok(f) => f,
        Err(e) if ixfr.is_some() => {
            tracing::warn!(zone, "{e}; trying AXFR");
            client::transfer(primary, key.as_ref(), &origin, max, None, deadline).await?
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = known
        && !crate::zone::serial::le(k, f.serial)
    {
        return Err(backwards(k, f.serial));
    }
    let kind = match f.transfer {
        client::Transfer::UpToDate => {
            memo.primary_serial = Some(f.serial);
            return Ok(());
        }
        client::Transfer::Full(recs) => {
            // Seconds for a large zone: off the runtime's workers, or the Raft heartbeats
            // they also carry stall and the followers elect another leader (seen at 1M).
            let (held, digest) = crate::runtime::blocking(|| {
                let held = Held::whole(apex.clone(), recs);
                let digest = held.digest();
                (held, digest)
            });
            memo.digest = digest;
            memo.input = Some(held);
            memo.delta = None;
            memo.force_axfr = false;
            "AXFR"
        }
        client::Transfer::Incremental(deltas) => {
            let held = memo
                .input
                .as_mut()
                .ok_or("IXFR without a zone to apply it to")?;
            let from = memo.primary_serial.unwrap_or(0);
            let digest = chained_digest(&memo.digest, &deltas);
            let applied = with_content(node, zone, |c| held.apply(c, deltas, from));
            match applied {
                Ok(touched) => {
                    if let Some(d) = &mut memo.delta {
                        d.rrsets.extend(touched);
                    }
                }
                Err(e) => {
                    // The zone is held as it was, so it can still be re-signed; the next
                    // transfer is a whole one.
                    memo.force_axfr = true;
                    memo.polled = None;
                    return Err(format!("zone {zone}: {e}; the next transfer is a full one"));
                }
            }
            memo.digest = digest;
            "IXFR"
        }
    };
    tracing::info!(
        zone,
        serial = f.serial,
        records = f.records,
        kind,
        reason = why,
        "transferred from the primary"
    );
    memo.refresh = Duration::from_secs(f.refresh.clamp(1, 86_400) as u64);
    memo.primary_serial = Some(f.serial);
    Ok(())
}

pub fn denial_of(cfg: &ZoneConfig) -> Result<Denial, String> {
    Ok(match cfg.denial.as_str() {
        "nsec" => Denial::Nsec,
        "nsec3" | "nsec3-optout" => Denial::Nsec3(Nsec3Params {
            iterations: 0,
            salt: Vec::new(),
            opt_out: cfg.denial == "nsec3-optout",
        }),
        d => {
            return Err(format!(
                "denial {d:?}: expected nsec, nsec3 or nsec3-optout"
            ));
        }
    })
}

/// Sets the SOA serial (the SOA rdata ends with serial, refresh, retry, expire, minimum).
fn set_serial(zone: &mut Zone, serial: u32) {
    let soa = zone
        .apex_mut()
        .rrsets
        .iter_mut()
        .find(|r| r.rtype == rtype::SOA)
        .expect("zone has a SOA");
    let mut d = soa
        .rdatas
        .first()
        .expect("a SOA RRset has its record")
        .to_vec();
    crate::zone::set_soa_serial(&mut d, serial);
    soa.rdatas = crate::zone::Rdatas::one(&d);
}

/// The signature cache a new run reuses: every RRSIG of the current version.
pub fn cache_from(z: &ZoneState, origin: &Name, keys: &[KeyRecord]) -> SignatureCache {
    cache_of(z.content.iter(), z.content.len(), origin, keys)
}

/// The signature cache of the RRsets at `owners` only.
fn cache_at(
    z: &ZoneState,
    owners: &HashSet<&Name>,
    origin: &Name,
    keys: &[KeyRecord],
) -> SignatureCache {
    let sets = owners.iter().flat_map(|o| {
        z.content
            .range((Owner((*o).clone()), 0)..=(Owner((*o).clone()), u16::MAX))
    });
    cache_of(sets, owners.len() * 4, origin, keys)
}

fn cache_of<'a>(
    sets: impl Iterator<Item = (&'a (Owner, u16), &'a RrsetVal)>,
    n: usize,
    origin: &Name,
    keys: &[KeyRecord],
) -> SignatureCache {
    let by_tag: HashMap<(u16, u8), KeyId> =
        keys.iter().map(|k| ((k.tag, k.algorithm), k.id)).collect();
    let mut cache = SignatureCache {
        origin: Some(origin.clone()),
        entries: HashMap::with_capacity(n),
    };
    for ((owner, t), v) in sets {
        if v.sigs.is_empty() {
            continue;
        }
        let rrsigs = v
            .sigs
            .iter()
            .filter_map(|s| {
                let (h, _) = RrsigHeader::parse(s)?;
                Some(CachedRrsig {
                    key: *by_tag.get(&(h.key_tag, h.algorithm))?,
                    inception: h.inception,
                    expiration: h.expiration,
                    rdata: s.clone(),
                })
            })
            .collect();
        cache.entries.insert(
            (owner.0.clone(), *t),
            CacheEntry {
                digest: SignatureCache::digest(&owner.0, *t, v.ttl, &v.rdatas),
                rrsigs,
            },
        );
    }
    cache
}

/// The RRsets of a signed zone with their RRSIGs (consumes it: nothing is copied).
pub fn entries_of(signed: SignedZone) -> Vec<((Owner, u16), RrsetVal)> {
    use rayon::prelude::*;
    let SignedZone { zone, nsec3, .. } = signed;
    // Each node on its own, on all cores; the collected order is the nodes' order.
    let of = |node: crate::zone::Node| {
        let covered: Vec<u16> = node
            .sigs
            .iter()
            .map(|(_, s)| RrsigHeader::parse(s).map_or(0, |(h, _)| h.type_covered))
            .collect();
        let mut out = Vec::with_capacity(node.rrsets.len());
        for set in node.rrsets {
            let mut sigs: Vec<_> = node
                .sigs
                .iter()
                .zip(&covered)
                .filter(|(_, t)| **t == set.rtype)
                .map(|((_, s), _)| s.clone())
                .collect();
            sigs.shrink_to_fit(); // collected from a filter: room for four
            out.push((
                (Owner(node.name.clone()), set.rtype),
                RrsetVal {
                    ttl: set.ttl,
                    rdatas: set.rdatas,
                    sigs,
                },
            ));
        }
        out
    };
    let mut out: Vec<_> = zone.nodes.into_par_iter().flat_map_iter(of).collect();
    out.par_extend(nsec3.into_par_iter().flat_map_iter(of));
    out
}

#[allow(clippy::too_many_arguments)]
fn build_version(
    node: &Node,
    zone: &str,
    cfg: &ZoneConfig,
    current: Option<Version>,
    reload_seq: u64,
    keys: &[KeyRecord],
    key_ids: Vec<KeyId>,
    input: Input,
    input_serial: Option<u32>,
    quick_ok: bool,
    kasp: KaspUse,
) -> Result<(Vec<RrsetChange>, Version), BuildError> {
    let origin = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    let path = cfg.input.strip_prefix("file:").unwrap_or(&cfg.input);
    let popts = parse_options(origin.clone(), cfg);
    let t_start = Instant::now();
    let read_whole = || -> Result<(Vec<u8>, Sums), BuildError> {
        let b = std::fs::read(input_path(cfg)?)
            .map_err(|e| format!("zone {zone}: input {path}: {e}"))?;
        let sums = Sums::of(&b);
        Ok((b, sums))
    };
    let mut edit = None;
    let mut around_change = false;
    let (input, input_digest, mut delta, what, compare, files, sums) = match input {
        Input::Reread => {
            let (b, sums) = read_whole()?;
            (b, sums.digest, None, path, false, None, Some(sums))
        }
        Input::Text(b, d) => (b, d, None, path, false, None, None),
        Input::File {
            sums,
            read,
            compare,
            files,
        } => {
            let b = match read {
                FileRead::Whole(b) => b,
                FileRead::Edit(e) => {
                    edit = Some(e);
                    around_change = true;
                    Vec::new()
                }
            };
            (b, sums.digest, None, path, compare, Some(files), Some(sums))
        }
        Input::Delta {
            text,
            changed,
            digest,
            how,
        } => (text, digest, Some((changed, how)), how, false, None, None),
    };
    // The pieces of the file against those of the file the current version was built
    // from: only new pieces are parsed; the state is read (locked) at the end only.
    let pieces = files.as_ref().filter(|_| compare).and_then(|f| {
        let base = current.as_ref()?.input_digest;
        let index = f.lock().ok()?.current.clone();
        let index = index.filter(|i| i.sums.digest == base)?;
        let sums = sums.clone()?;
        let path = std::path::Path::new(what);
        let (prepared, how) = match edit.take() {
            Some(e) => (
                index.prepare_edit(e, sums, path, &popts)?,
                "file edit compared",
            ),
            None => (
                index.prepare(&input, sums, path, &popts)?,
                "file pieces compared",
            ),
        };
        let (mini, touched, index) = node.sm.with(|st| {
            let z = st
                .zones
                .get(zone)
                .filter(|z| z.current.as_ref().is_some_and(|v| v.input_digest == base))?;
            prepared.finish(&z.content)
        })?;
        f.lock().ok()?.pending = Some(index);
        Some((mini, touched, how))
    });
    // Read around its change but not told apart that way: the whole file, which must be
    // what was read.
    let input = match (&pieces, &sums) {
        (None, Some(read)) if around_change => {
            let (b, again) = read_whole()?;
            if again.digest != read.digest {
                return Err(BuildError::Transient(format!(
                    "zone {zone}: input {path} changed while it was read"
                )));
            }
            b
        }
        _ => input,
    };
    let by_pieces = pieces.is_some();
    // Else the text is read twice without the state; the state is read (locked) only for
    // the version's sums and for the final comparison, on the same version.
    let compared = pieces.or_else(|| {
        compare
            .then(|| {
                use crate::ingest::delta::{compare, content_sums, differing};
                let token_of = |z: &ZoneState| z.current.as_ref().map(|v| v.token);
                let (token, want) = node.sm.with(|st| {
                    let z = st.zones.get(zone)?;
                    Some((token_of(z), content_sums(z, &origin)))
                })?;
                let path = std::path::Path::new(what);
                let (mini, differ) = differing(&input, path, &popts, &want)?;
                let changed = node.sm.with(|st| {
                    let z = st.zones.get(zone).filter(|z| token_of(z) == token)?;
                    compare(z, &origin, &mini, &differ)
                })?;
                Some((mini, changed, "file compared"))
            })
            .flatten()
    });
    // Not compared by its pieces: the file's pieces, for its next change (~2.5 s at 1M
    // delegations, once per file that is not). A file read whole is parsed by those
    // pieces, once for both.
    let index_files = |input: &[u8], keep: bool| -> Option<Parsed> {
        let f = files.as_ref().filter(|_| !by_pieces)?;
        let t = Instant::now();
        let (sums, path) = (
            sums.clone().expect("a file's sums"),
            std::path::Path::new(what),
        );
        let (index, parsed) = if keep {
            let (i, p) = FileIndex::build_parsed(input, sums, path, &popts)?;
            (i, Some(p))
        } else {
            (FileIndex::build(input, sums, path, &popts)?, None)
        };
        tracing::info!(
            zone,
            pieces = index.len(),
            ms = t.elapsed().as_millis() as u64,
            "input file indexed by its pieces"
        );
        if let Ok(mut g) = f.lock() {
            g.pending = Some(index);
        }
        parsed
    };
    let (mut unsigned, warnings) = match compared {
        Some((mini, changed, how)) => {
            index_files(&input, false);
            drop(input);
            delta = Some((changed, how));
            (mini, Vec::new())
        }
        None => {
            // The text is let go once parsed, before the records are built into the zone
            // (at 1M delegations 110 MiB, on top of the content the leader holds).
            let parsed = match index_files(&input, true) {
                Some(p) => p,
                None => {
                    crate::zone::parse::parse_file_bytes(&input, std::path::Path::new(what), &popts)
                        .map_err(|e| format!("zone {zone}: {e}"))?
                }
            };
            drop(input);
            Zone::build(parsed, &origin, what, &popts.limits)
                .map_err(|e| format!("zone {zone}: {e}"))?
        }
    };
    for w in warnings.iter().take(20) {
        tracing::warn!(zone, "{w}");
    }
    let (file_serial, _, _) = unsigned.soa();
    let input_serial = input_serial.unwrap_or(file_serial);
    // A zone removed and added again starts after the serial it was last published with:
    // a serial once published never carries another content.
    let last = current
        .as_ref()
        .map(|v| v.serial)
        .or_else(|| node.sm.with(|st| st.last_published(zone)));
    let serial = crate::zone::serial::next(&cfg.serial, last, file_serial, node.now())
        .map_err(|e| format!("zone {zone}: {e}"))?;
    set_serial(&mut unsigned, serial);
    let mut facts = facts_of(&unsigned);
    if let (Some(_), Some(cur)) = (&delta, &current) {
        // Only the changed RRsets are at hand: the largest TTL never shrinks on this path.
        facts.max_zone_ttl = facts.max_zone_ttl.max(cur.facts.max_zone_ttl);
    }
    let made = Made {
        keyset_seq: kasp.keyset_seq,
        facts,
        serial,
        input_serial,
        leader: node.id,
        input_digest,
        reload_seq,
        keys: key_ids,
    };
    let signing: Vec<Arc<dyn crate::hsm::SigningKey>> = keys
        .iter()
        .map(|k| node.keys.resolve(k))
        .collect::<Result<_, _>>()
        .map_err(BuildError::Transient)?;
    let t = node.now() as u32;
    let opts = SignOptions {
        now: t,
        inception_offset_s: cfg.inception_offset_s,
        validity_s: cfg.validity_s,
        jitter_s: cfg.jitter_s,
        refresh_s: cfg.refresh_s,
        denial: denial_of(cfg)?,
        dnskey_ttl: Some(kasp.dnskey_ttl),
        usage: kasp.usage,
        cds: kasp.cds,
    };
    let from_delta = delta.is_some();
    let how = delta.as_ref().map(|(_, how)| *how);
    if (quick_ok || from_delta)
        && let Some(cur) = &current
    {
        let t_parsed = Instant::now();
        let st = node.sm.read();
        let z = st.zones.get(zone).ok_or("zone removed")?;
        let (found, touched) = match delta {
            Some((changed, _)) => (
                delta_changes(z, &origin, &unsigned, changed.clone()),
                Some(changed),
            ),
            None => (same_shape_changes(z, &unsigned), None),
        };
        let mut quick = match found {
            Some(found) => quick_sign(z, &origin, &unsigned, found, &signing, &opts, keys)
                .map_err(BuildError::Transient)?
                .map(|(c, n)| (c, n, "same shape: only changed RRsets signed")),
            None => None,
        };
        if quick.is_none()
            && quick_ok
            && let Some(touched) = touched
        {
            quick = shape_sign(z, &origin, &unsigned, touched, &signing, &opts)
                .map_err(BuildError::Transient)?
                .map(|(c, n)| {
                    let what = "names or types came or went: the changed RRsets and the \
                                denial records around them signed";
                    (c, n, what)
                });
        }
        if let Some((changes, signed, what)) = quick {
            let hash = z.hash_after(changes.iter());
            let min_expiration = changes
                .iter()
                .flat_map(|c| c.val.iter().flat_map(|v| v.sigs.iter()))
                .filter_map(|s| RrsigHeader::parse(s).map(|(h, _)| h.expiration))
                .fold(cur.min_expiration, u32::min);
            tracing::info!(
                zone,
                serial,
                changes = changes.len(),
                signed,
                load_ms = (t_parsed - t_start).as_millis() as u64,
                quick_ms = t_parsed.elapsed().as_millis() as u64,
                input = how.unwrap_or("whole zone"),
                "version built ({what})"
            );
            let rrsets = changes.iter().fold(z.content.len() as i64, |n, c| {
                let had = z.content.contains_key(&(Owner(c.owner.clone()), c.rtype));
                n + c.val.is_some() as i64 - had as i64
            }) as u64;
            let reused = rrsets.saturating_sub(signed);
            let version = made.version(
                node.now(),
                hash,
                rrsets,
                changes.len() as u64,
                (signed, reused, 0),
                min_expiration,
            );
            return Ok((changes, version));
        }
    }
    if from_delta {
        // The delta holds a few owners, not the zone: never the full path.
        return Err(BuildError::Whole(how.unwrap_or("changes")));
    }
    let (cache, base_hash) = {
        let st = node.sm.read();
        let z = st.zones.get(zone).ok_or("zone removed")?;
        (cache_from(z, &origin, keys), z.hash)
    };
    let t_cache = Instant::now();
    let signed = sign_zone(unsigned, &signing, &opts, &cache, &|_, _| {})
        .map_err(|e| BuildError::Transient(e.to_string()))?;
    drop(cache);
    let t_signed = Instant::now();
    let report = signed.verify(t);
    if !report.valid {
        let f = &report.failures[0];
        return Err(BuildError::Input(format!(
            "publish gate: {} failure(s), first: {} {}: {}",
            report.failures.len(),
            f.owner,
            f.rtype,
            f.message
        )));
    }
    let stats = signed.stats;
    let t_gate = Instant::now();
    let entries = entries_of(signed);
    let st = node.sm.read();
    let z = st.zones.get(zone).ok_or("zone removed")?;
    if z.hash != base_hash {
        return Err(BuildError::Transient(
            "the current version changed while signing".into(),
        ));
    }
    // Merge-join in canonical order: the zone's nodes and the NSEC3 chain are two sorted
    // runs, which a stable sort merges in linear time.
    let mut entries = entries;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut changes = Vec::new();
    let mut resigned_unchanged = 0u64;
    let mut min_expiration = u32::MAX;
    let due_by = t.saturating_add(cfg.refresh_s);
    let expirations = |v: &RrsetVal| {
        v.sigs
            .iter()
            .filter_map(|s| RrsigHeader::parse(s).map(|(h, _)| h.expiration))
            .min()
    };
    let rrsets = entries.len() as u64;
    let mut old = z.content.iter().peekable();
    let gone = |k: &(Owner, u16)| RrsetChange {
        owner: k.0.0.clone(),
        rtype: k.1,
        val: None,
    };
    for (key, val) in entries {
        if let Some(e) = expirations(&val) {
            min_expiration = min_expiration.min(e);
        }
        while let Some((ok, _)) = old.next_if(|(ok, _)| **ok < key) {
            changes.push(gone(ok));
        }
        match old.next_if(|(ok, _)| **ok == key) {
            Some((_, o)) if *o == val => {}
            Some((_, o)) => {
                if o.ttl == val.ttl
                    && o.rdatas == val.rdatas
                    && key.1 != rtype::SOA
                    && expirations(o).is_some_and(|e| e >= due_by)
                {
                    resigned_unchanged += 1;
                }
                changes.push(RrsetChange {
                    owner: key.0.0,
                    rtype: key.1,
                    val: Some(val),
                });
            }
            None => changes.push(RrsetChange {
                owner: key.0.0,
                rtype: key.1,
                val: Some(val),
            }),
        }
    }
    for (ok, _) in old {
        changes.push(gone(ok));
    }
    let hash = z.hash_after_all(&changes);
    let ms = |a: Instant, b: Instant| (b - a).as_millis() as u64;
    let t_end = Instant::now();
    let rss_mib = crate::runtime::mem::rss_for(rrsets as usize);
    tracing::info!(
        zone,
        serial,
        changes = changes.len(),
        hash = hex(&hash[..8]),
        load_and_cache_ms = ms(t_start, t_cache),
        sign_ms = ms(t_cache, t_signed),
        gate_ms = ms(t_signed, t_gate),
        diff_ms = ms(t_gate, t_end),
        rss_mib,
        "version built"
    );
    let counts = (stats.signed as u64, stats.reused as u64, resigned_unchanged);
    let version = made.version(
        node.now(),
        hash,
        rrsets,
        changes.len() as u64,
        counts,
        min_expiration,
    );
    Ok((changes, version))
}

/// What every version built in one run shares.
struct Made {
    keyset_seq: u64,
    facts: crate::kasp::Facts,
    serial: u32,
    input_serial: u32,
    leader: u64,
    input_digest: [u8; 32],
    reload_seq: u64,
    keys: Vec<KeyId>,
}

impl Made {
    /// `counts`: RRsets signed, signatures reused, unchanged RRsets re-signed.
    fn version(
        self,
        at: u64,
        hash: [u8; 32],
        rrsets: u64,
        changes: u64,
        counts: (u64, u64, u64),
        min_expiration: u32,
    ) -> Version {
        Version {
            serial: self.serial,
            hash,
            token: (0, 0),
            published_at: at,
            leader: self.leader,
            rrsets,
            changes,
            signed: counts.0,
            reused: counts.1,
            resigned_unchanged: counts.2,
            input_digest: self.input_digest,
            reload_seq: self.reload_seq,
            keys: self.keys,
            min_expiration,
            input_serial: self.input_serial,
            keyset_seq: self.keyset_seq,
            facts: self.facts,
        }
    }
}

/// When `unsigned` has exactly the names and types of the current version and only the
/// content of some RRsets differs, those RRsets (owner, type); otherwise `None` and the
/// full path runs. Same shape means the NSEC/NSEC3 chain and every type bitmap stay.
fn same_shape_changes(z: &ZoneState, unsigned: &Zone) -> Option<Vec<(Name, u16)>> {
    let mut current = z.content.iter().filter(|((_, t), _)| !made_by_signer(*t));
    let mut changed = Vec::new();
    for node in &unsigned.nodes {
        for set in node.rrsets.iter().filter(|s| !made_by_signer(s.rtype)) {
            let ((owner, t), v) = current.next()?;
            if owner.0 != node.name || *t != set.rtype {
                return None;
            }
            if v.ttl != set.ttl || v.rdatas != set.rdatas {
                changed.push((node.name.clone(), set.rtype));
            }
        }
    }
    if current.next().is_some() {
        return None;
    }
    Some(changed)
}

/// Of the RRsets an IXFR touched (`mini` holds every record at their owners and the
/// apex), those whose content differs from the current version, and the SOA; `None` when
/// one appears or disappears (the shape changed).
fn delta_changes(
    z: &ZoneState,
    origin: &Name,
    mini: &Zone,
    touched: Vec<(Name, u16)>,
) -> Option<Vec<(Name, u16)>> {
    let mut changed = vec![(origin.clone(), rtype::SOA)];
    for (owner, t) in touched {
        if (t == rtype::SOA && owner == *origin) || made_by_signer(t) {
            continue;
        }
        let new = mini.node(&owner).and_then(|n| n.rrset(t));
        let old = z.content.get(&(Owner(owner.clone()), t));
        match (old, new) {
            (Some(o), Some(n)) if o.ttl == n.ttl && o.rdatas == n.rdatas => {}
            (Some(_), Some(_)) => changed.push((owner, t)),
            _ => return None,
        }
    }
    Some(changed)
}

/// Signs only the changed RRsets: a small zone of the apex and the changed names goes
/// through the signer with the current signatures as its cache; the new RRSIGs of the
/// changed RRsets are taken, each checked against the DNSKEY RRset before use.
#[allow(clippy::too_many_arguments)]
fn quick_sign(
    z: &ZoneState,
    origin: &Name,
    unsigned: &Zone,
    changed: Vec<(Name, u16)>,
    signing: &[Arc<dyn crate::hsm::SigningKey>],
    opts: &SignOptions,
    keys: &[KeyRecord],
) -> Result<Option<(Vec<RrsetChange>, u64)>, String> {
    use crate::zone::{Parsed, Record};
    let owners: HashSet<&Name> = changed.iter().map(|(o, _)| o).chain([origin]).collect();
    let mut records = Vec::new();
    for node in unsigned.nodes.iter().filter(|n| owners.contains(&n.name)) {
        for set in &node.rrsets {
            for d in &set.rdatas {
                records.push(Record {
                    owner: node.name.clone(),
                    rtype: set.rtype,
                    ttl: set.ttl,
                    rdata: Box::from(d),
                    line: 0,
                });
            }
        }
    }
    let (mini, _) = Zone::build(
        Parsed {
            records,
            warnings: Vec::new(),
        },
        origin,
        "changed RRsets",
        &Limits::default(),
    )
    .map_err(|e| e.to_string())?;
    let cache = cache_at(z, &owners, origin, keys);
    let signed = sign_zone(mini, signing, opts, &cache, &|_, _| {}).map_err(|e| e.to_string())?;
    let fresh: HashMap<(Owner, u16), RrsetVal> = entries_of(signed).into_iter().collect();
    let apex_keys = (Owner(origin.clone()), rtype::DNSKEY);
    if fresh.get(&apex_keys) != z.content.get(&apex_keys) {
        return Ok(None); // the DNSKEY RRset would change: the full path runs
    }
    let verifier = crate::validate::incremental::Keys::of(&z.content, origin)?;
    let t = opts.now;
    let mut out = Vec::with_capacity(changed.len());
    let mut signed_n = 0;
    for (owner, rt) in changed {
        let key = (Owner(owner.clone()), rt);
        let old = z.content.get(&key).ok_or("changed RRset vanished")?;
        let new = fresh.get(&key).ok_or_else(|| {
            format!(
                "{} {}: not in the signed subset",
                owner.to_text(),
                rtype::to_text(rt)
            )
        })?;
        let val = if old.sigs.is_empty() {
            RrsetVal {
                ttl: new.ttl,
                rdatas: new.rdatas.clone(),
                sigs: Vec::new(),
            }
        } else {
            verifier.check(&owner, rt, new, t)?;
            signed_n += 1;
            new.clone()
        };
        out.push(RrsetChange {
            owner,
            rtype: rt,
            val: Some(val),
        });
    }
    Ok(Some((out, signed_n)))
}

/// Names or types came or went: the RRsets that differ and the NSEC/NSEC3 records around
/// them, made and signed without the whole zone (`node::shape`); `None` when the change
/// needs the whole build. `mini` holds every record at the touched owners and the apex.
fn shape_sign(
    z: &ZoneState,
    origin: &Name,
    mini: &Zone,
    touched: Vec<(Name, u16)>,
    signing: &[Arc<dyn crate::hsm::SigningKey>],
    opts: &SignOptions,
) -> Result<Option<(Vec<RrsetChange>, u64)>, String> {
    let at = |o: &Name, t: u16| mini.node(o).and_then(|n| n.rrset(t));
    let soa = at(origin, rtype::SOA).ok_or("the changes lack the apex's SOA")?;
    let mut data = vec![(
        (origin.clone(), rtype::SOA),
        Some((soa.ttl, soa.rdatas.clone())),
    )];
    let touched: std::collections::BTreeSet<(Name, u16)> = touched.into_iter().collect();
    if touched.len() > SHAPE_CHANGES_MAX {
        return Ok(None);
    }
    for (owner, t) in touched {
        if (t == rtype::SOA && owner == *origin) || made_by_signer(t) {
            continue;
        }
        let new = at(&owner, t);
        let old = z.content.get(&(Owner(owner.clone()), t));
        match (old, new) {
            (Some(o), Some(n)) if o.ttl == n.ttl && o.rdatas == n.rdatas => {}
            (None, None) => {}
            (_, n) => data.push(((owner, t), n.map(|n| (n.ttl, n.rdatas.clone())))),
        }
    }
    let mut made = 0u64;
    let sign = |items: &[(&Name, &crate::zone::Rrset)]| {
        let cache = crate::signer::SignatureCache::default();
        let (sigs, n) = crate::signer::sign_rrsets(origin, items, signing, opts, &cache)
            .map_err(|e| e.to_string())?;
        made = n as u64;
        Ok(sigs)
    };
    let Some(changes) =
        crate::signer::incremental::apply(&z.content, origin, data, mini.denial_ttl(), sign)?
    else {
        return Ok(None);
    };
    // Every new RRSIG is verified as the follower will verify it.
    let verifier = crate::validate::incremental::Keys::of(&z.content, origin)?;
    let mut signed = 0;
    for c in &changes {
        if let Some(v) = c.val.as_ref().filter(|v| !v.sigs.is_empty()) {
            verifier.check(&c.owner, c.rtype, v, opts.now)?;
            signed += 1;
        }
    }
    debug_assert!(made >= signed);
    Ok(Some((changes, signed)))
}

/// More RRsets than this changed at once: the whole build (with the signature cache) is
/// the better path.
const SHAPE_CHANGES_MAX: usize = 100_000;

/// What the key-lifecycle engine decided for one version.
struct KaspUse {
    usage: std::collections::BTreeMap<KeyId, crate::kasp::KeyUse>,
    cds: Vec<KeyId>,
    dnskey_ttl: u32,
    keyset_seq: u64,
}

/// The TTLs the key-lifecycle waits depend on, measured on the unsigned zone.
fn facts_of(z: &Zone) -> crate::kasp::Facts {
    let (_, minimum, soa_ttl) = z.soa();
    let max_zone_ttl = z
        .nodes
        .iter()
        .flat_map(|n| &n.rrsets)
        .filter(|r| !made_by_signer(r.rtype))
        .map(|r| r.ttl)
        .max()
        .unwrap_or(0);
    crate::kasp::Facts {
        max_zone_ttl,
        soa_ttl,
        soa_minimum: minimum,
    }
}

/// CDS/CDNSKEY while the parent has something to do: the DS set it should hold.
fn cds_keys(set: &crate::kasp::KeySet, p: &crate::kasp::Policy) -> Vec<KeyId> {
    use crate::kasp::DS;
    if !p.cds || !crate::kasp::parent::waiting(set) {
        return Vec::new();
    }
    set.keys
        .values()
        .filter(|k| k.rec[DS].shown())
        .map(|k| k.id)
        .collect()
}

/// Runs the key-lifecycle engine for `zone`: makes the keys it asks for, commits its
/// evaluation when it changes something (or as a heartbeat for the clock check), and
/// reports the parent actions it wants. Returns the key set to sign with, or `None` when
/// keys were just made.
async fn keys_step(
    node: &Arc<Node>,
    zone: &str,
    cfg: &ZoneConfig,
    current: Option<&Version>,
    set: crate::kasp::KeySet,
    records: &[KeyRecord],
    memo: &mut Memo,
) -> Result<Option<crate::kasp::KeySet>, String> {
    use crate::kasp::Action;
    let policy = cfg.synced_policy();
    let facts = current.map(|v| v.facts).unwrap_or_default();
    let now = node.kasp_now();
    let set = match check_parent(node, zone, &policy, set, records, memo, now).await {
        Some(s) => s,
        None => return Ok(None),
    };
    let (_, ev) = crate::kasp::evaluate(&set, &policy, &facts, now);
    let mut made = false;
    let mut tags: Vec<(u16, u8)> = records.iter().map(|r| (r.tag, r.algorithm)).collect();
    for a in &ev.actions {
        match a {
            Action::Generate { role, algorithm } => {
                let rec = generate_unique(node, zone, *algorithm, role.name(), &tags).await?;
                tags.push((rec.tag, rec.algorithm));
                tracing::info!(zone, role = role.name(), tag = rec.tag, "key generated");
                match propose(node, Command::AddKey { key: rec }).await? {
                    Outcome::Refused(e) => return Err(e),
                    _ => made = true,
                }
            }
            Action::SubmitDs { key, tag } | Action::RetractDs { key, tag } => {
                let submit = matches!(a, Action::SubmitDs { .. });
                if memo.parent_told.insert((*key, submit)) {
                    let ds = records
                        .iter()
                        .find(|r| r.id == *key)
                        .and_then(|r| crate::keys::DnsKey::from_rdata(&r.dnskey))
                        .and_then(|d| {
                            let origin = Name::parse(zone.as_bytes(), None).ok()?;
                            d.ds_rdata(&origin, 2)
                        })
                        .and_then(|d| crate::zone::rdata::to_text(rtype::DS, &d).ok())
                        .unwrap_or_default();
                    tracing::warn!(
                        zone,
                        tag,
                        ds,
                        "{}",
                        if submit {
                            "parent: submit this DS"
                        } else {
                            "parent: withdraw this DS"
                        }
                    );
                }
            }
        }
    }
    let mut notes = ev.notes.clone();
    notes.extend(memo.parent_note.clone());
    node.local().keys_notes.insert(zone.into(), notes);
    if made {
        return Ok(None);
    }
    let heartbeat = (policy.max_clock_jump / 4).clamp(60, 86_400);
    // Notes are replicated too (any node's `keys show` says why the engine waits); they
    // change only when a reason does.
    if !ev.changes_state() && ev.notes == set.notes && now < set.last_eval.saturating_add(heartbeat)
    {
        return Ok(Some(set));
    }
    propose(
        node,
        Command::KeyEval {
            zone: zone.into(),
            now,
            facts,
        },
    )
    .await?;
    for t in &ev.transitions {
        tracing::info!(zone, "key {t}");
    }
    Ok(node
        .sm
        .with(|st| st.zones.get(zone).map(|z| z.keyset.clone())))
}

/// Asks the parent's servers about the DS of keys that wait on it (at most every
/// `parent_check_interval`, shortened by the drill clock) and commits what they agree on.
/// Returns the key set after that, or `None` when a commit failed (this node may have
/// lost leadership).
async fn check_parent(
    node: &Arc<Node>,
    zone: &str,
    policy: &crate::kasp::Policy,
    set: crate::kasp::KeySet,
    records: &[KeyRecord],
    memo: &mut Memo,
    now: u64,
) -> Option<crate::kasp::KeySet> {
    use crate::kasp::parent;
    if (policy.parent_servers.is_empty() && policy.parent_resolver.is_empty())
        || !parent::waiting(&set)
    {
        return Some(set);
    }
    let every = Duration::from_secs(
        (policy.parent_check_interval as u64 / node.cfg.signer.kasp_time_scale.max(1)).max(1),
    );
    if memo.parent_asked.is_some_and(|t| t.elapsed() < every) {
        return Some(set);
    }
    memo.parent_asked = Some(Instant::now());
    let origin = Name::parse(zone.as_bytes(), None).ok()?;
    let servers = match parent::servers(policy, &origin).await {
        Ok(s) => s,
        Err(e) => {
            memo.parent_note = Some(format!("parent servers: {e}; waiting"));
            return Some(set);
        }
    };
    let view = parent::ask(&servers, &origin).await;
    if !view.agree {
        let said: Vec<String> = view
            .servers
            .iter()
            .map(|(a, r)| match r {
                Ok(ds) => format!("{a}: {} DS", ds.len()),
                Err(e) => format!("{a}: {e}"),
            })
            .collect();
        memo.parent_note = Some(format!(
            "parent servers do not agree (or did not all answer): {}; waiting",
            said.join("; ")
        ));
        return Some(set);
    }
    memo.parent_note = None;
    if let Some(ttl) = view
        .ttl
        .filter(|t| *t > policy.ds_ttl.max(set.ds_ttl_observed))
    {
        tracing::warn!(
            zone,
            served = ttl,
            configured = policy.ds_ttl,
            "the parent serves the DS with a TTL above the policy's ds_ttl; the engine waits the served one"
        );
    }
    let events = parent::observations(
        &set,
        &view,
        &origin,
        |id| {
            records
                .iter()
                .find(|r| r.id == *id)
                .map(|r| r.dnskey.clone())
        },
        now,
    );
    for event in events {
        tracing::info!(zone, "parent: {event}");
        let cmd = Command::KeyEvent {
            zone: zone.into(),
            event,
            origin: None,
        };
        match propose(node, cmd).await {
            Ok(Outcome::Refused(e)) => tracing::warn!(zone, "parent observation refused: {e}"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(zone, "parent observation: {e}");
                return None;
            }
        }
    }
    node.sm
        .with(|st| st.zones.get(zone).map(|z| z.keyset.clone()))
}

/// Makes a key whose tag no other key of the zone has (of the same algorithm): a
/// colliding one is discarded and made again.
async fn generate_unique(
    node: &Arc<Node>,
    zone: &str,
    alg: u8,
    role: &str,
    taken: &[(u16, u8)],
) -> Result<KeyRecord, String> {
    for _ in 0..8 {
        let n = node.clone();
        let (z, r) = (zone.to_string(), role.to_string());
        let rec = crate::runtime::spawn_blocking(move || n.keys.generate(&z, alg, &r))
            .await
            .map_err(|e| e.to_string())??;
        if !taken.contains(&(rec.tag, rec.algorithm)) {
            return Ok(rec);
        }
        tracing::warn!(
            zone,
            tag = rec.tag,
            "new key's tag collides with a key of the zone; made again"
        );
    }
    Err(format!(
        "zone {zone}: 8 new keys in a row had colliding tags"
    ))
}

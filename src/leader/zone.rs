//! One zone's run on the leader: what is due (first version, new input, reload, key
//! change, signatures near expiry), the build, the proposal, and what is remembered
//! between runs ([`Memo`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::build::{Build, BuildError, KaspUse, build_version, cds_keys};
use super::duty::{clock_agrees, clock_steady};
use super::engine::{self, Built, Decision, Phase};
use super::input::{
    FileIndexes, Input, InputDelta, fetch_from_primary, primary_input, read_if_changed,
};
use super::keys::keys_step;
use super::propose::{encode_parts, propose, propose_all};
use crate::ingest::held::Held;
use crate::keys::KeyId;
use crate::node::{Node, RunReport};
use crate::replica::{Command, KeyRecord, Outcome};

/// Versions of at least this many changed RRsets hand their build's memory back after
/// proposing (see [`crate::runtime::mem::trim`]).
pub(super) const TRIM_AFTER_CHANGES: u64 = crate::runtime::mem::LARGE as u64;

/// What the leader remembers of a zone between its runs. A zone's input is a file or a
/// hidden primary; each has its own part, the other stays at its default.
#[derive(Default, Clone)]
pub(super) struct Memo {
    /// The input this memo is about (`zone set` may change it: then it starts afresh).
    pub(super) input_of: String,
    /// The digest of the input as last read.
    pub(super) digest: [u8; 32],
    /// How the last build ended: a refused input, or a back-off after a passing failure.
    pub(super) phase: Phase,
    pub(super) file: FileInput,
    pub(super) primary: PrimaryInput,
    pub(super) parent: ParentChecks,
}

/// A zone whose input is a file.
#[derive(Default, Clone)]
pub(super) struct FileInput {
    /// The file's mtime and size when last read (unchanged: not read again).
    pub(super) stat: Option<(SystemTime, u64)>,
    /// The changed file (by digest) a build was last tried from by comparing it with the
    /// current version: tried once, then the next build reads the whole file.
    pub(super) as_delta: Option<[u8; 32]>,
    /// The pieces of the file the current version was built from (a changed file is
    /// compared with them first: [`crate::ingest::index`]).
    pub(super) indexes: Arc<std::sync::Mutex<FileIndexes>>,
}

/// A zone whose input is a hidden primary.
#[derive(Default, Clone)]
pub(super) struct PrimaryInput {
    /// The primary's zone as records (an IXFR updates them).
    pub(super) held: Option<Held>,
    /// The RRsets the IXFRs since the input at `base` changed: a build from a delta signs
    /// only those. `None` after a whole transfer (the next build compares everything).
    pub(super) delta: Option<InputDelta>,
    /// The primary's serial as last transferred.
    pub(super) serial: Option<u32>,
    /// When the primary was last asked, and how often to ask (its SOA refresh).
    pub(super) polled: Option<Instant>,
    pub(super) refresh: Duration,
    /// The last failed transfer: when, and why (retried after `RETRY_FAILED`).
    pub(super) failed: Option<(Instant, String)>,
    /// The zone reload the last transfer answered (a new reload fetches at once).
    pub(super) reload_tried: u64,
    /// An IXFR could not be applied: the next transfer is a whole one.
    pub(super) force_axfr: bool,
    /// The whole transfer (by digest) a build was last tried from as a delta against the
    /// current version: tried once, then the next build reads the whole zone.
    pub(super) whole_as_delta: Option<[u8; 32]>,
}

/// The checks of the parent's DS.
#[derive(Default, Clone)]
pub(super) struct ParentChecks {
    /// Parent actions already logged: (key, submit?).
    pub(super) told: HashSet<(KeyId, bool)>,
    /// When the parent's servers were last asked, and what was wrong then.
    pub(super) asked: Option<Instant>,
    pub(super) note: Option<String>,
}

impl Memo {
    /// What a node that does not lead keeps: the input's index.
    pub(super) fn standby(&self) -> Memo {
        Memo {
            input_of: self.input_of.clone(),
            file: FileInput {
                indexes: self.file.indexes.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub(super) async fn step(node: &Arc<Node>, zone: &str, memo: &mut Memo) -> Result<(), String> {
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
            let fresh_reload = reload && memo.primary.reload_tried != reload_seq;
            memo.primary.reload_tried = reload_seq;
            fetch_from_primary(node, zone, &primary?, current.as_ref(), fresh_reload, memo).await?;
            None
        }
        None => read_if_changed(zone, &cfg, memo).await?,
    };
    let t = node.now() as u32;
    let mut key_ids: Vec<KeyId> = keys.iter().map(|k| k.id).collect();
    key_ids.sort();
    let shown = current.as_ref().map(|v| engine::Current {
        input_digest: v.input_digest,
        reload_seq: v.reload_seq,
        keys: v.keys.clone(),
        keyset_seq: v.keyset_seq,
        min_expiration: v.min_expiration,
    });
    let facts = engine::ZoneFacts {
        current: shown.as_ref(),
        input: memo.digest,
        reload_seq,
        keys: &key_ids,
        keyset_seq,
        refresh_s: cfg.refresh_s,
        now: t,
    };
    let refresh_due = facts.signatures_due();
    let reason = match engine::decide(&facts, memo.phase, Instant::now()) {
        Decision::Build(r) => r.as_str(),
        Decision::Nothing | Decision::NotBefore(_) => return Ok(()),
    };
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
    let input_serial = memo.primary.serial;
    let input = match (file_input, &memo.primary.held) {
        (Some((sums, read)), _) => {
            // Compared piece by piece once per input; a build from that which fails
            // (a keystore fault, a key change) is retried from the whole file.
            let compare = quick_ok && memo.file.as_delta != Some(memo.digest);
            if compare {
                memo.file.as_delta = Some(memo.digest);
            }
            // (Read around its change but not compared: the build reads it whole and
            // checks that it is what was read.)
            Input::File {
                sums,
                read,
                compare,
                files: memo.file.indexes.clone(),
            }
        }
        (None, Some(_)) => primary_input(node, zone, memo, current.as_ref(), quick_ok).await?,
        (None, None) => Input::Reread,
    };
    let file_input = cfg.input.starts_with("file:");
    let build = Build {
        zone: z,
        cfg,
        current: cur,
        reload_seq,
        keys,
        key_ids,
        input,
        input_serial,
        quick_ok,
        kasp,
    };
    let built = crate::runtime::spawn_blocking(move || build_version(&n, build))
        .await
        .map_err(|e| e.to_string())?;
    let (changes, version) = match built {
        Ok(x) => x,
        Err(BuildError::Input(e)) => {
            memo.phase = memo
                .phase
                .after(Built::Refused, memo.digest, Instant::now());
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
            memo.file.stat = None;
            memo.phase = memo
                .phase
                .after(Built::Passing, memo.digest, Instant::now());
            let Phase::Backoff { wait, .. } = memo.phase else {
                unreachable!("a passing failure backs off")
            };
            node.local().alarms.insert(
                zone.into(),
                format!("signing failed: {e}; retrying in {} s", wait.as_secs()),
            );
            return Err(format!("{e}; retrying in {} s", wait.as_secs()));
        }
    };
    memo.phase = memo
        .phase
        .after(Built::Proposed, memo.digest, Instant::now());
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
            token = %token,
            rss_mib,
            "published"
        );
        tokio::spawn(crate::leader::publish::after_publish(
            node.clone(),
            zone.to_string(),
            serial,
            token,
        ));
        if file_input {
            index_file(&memo.file.indexes, memo.digest);
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
pub(super) fn index_file(files: &std::sync::Mutex<FileIndexes>, digest: [u8; 32]) {
    let Ok(mut g) = files.lock() else { return };
    if let Some(p) = g.pending.take().filter(|p| p.sums.digest == digest) {
        g.current = Some(Arc::new(p));
        g.generation += 1;
    }
}

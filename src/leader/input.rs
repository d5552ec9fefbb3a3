//! The leader's side of ingest: reading a changed input file, asking a hidden primary,
//! and keeping what it holds between runs (the parsing and comparing is [`crate::ingest`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::zone::Memo;
use crate::ingest::held::{Content, Held, chained_digest};
use crate::ingest::index::{Edit, FileIndex};
use crate::ingest::scan::Sums;
use crate::node::Node;
use crate::replica::state::Owner;
use crate::replica::{Version, ZoneConfig};
use crate::zone::{Limits, Name, ParseOptions};

/// On a node that does not lead, a zone whose input is a file: the index of the current
/// version's input file (when the file here is that input), made from the last index
/// around the file's change, or from the whole file (~2 s of CPU at 1M) when there is none
/// or the change is too large. It is made in the background, on threads that yield to
/// everything else (the check of the version among them): this node takes over at once
/// if elected meanwhile. A file that is not (yet) the current version's input is left
/// alone until it changes again.
pub(super) fn standby_index(node: &Arc<Node>, zone: &str, memo: &mut Memo) {
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
        let Ok(mut g) = memo.file.indexes.lock() else {
            return;
        };
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
    let files = memo.file.indexes.clone();
    let zone = zone.to_string();
    tokio::spawn(async move {
        let t = Instant::now();
        let made = crate::runtime::spawn_blocking(move || {
            crate::runtime::standby_pool().install(|| -> std::io::Result<_> {
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

/// The index of the file the current version was built from, and the one of the file the
/// version being built comes from (it becomes current once that version is published).
#[derive(Default)]
pub(super) struct FileIndexes {
    pub(super) current: Option<Arc<FileIndex>>,
    pub(super) pending: Option<FileIndex>,
    /// Counts the indexes this node made as leader (a standby's index made meanwhile is
    /// dropped).
    pub(super) generation: u64,
    /// A standby is making an index ([`standby_index`]).
    pub(super) standby_busy: bool,
    /// The file a standby read last: its size and mtime, its digest, and whether an index
    /// was made of it (not read again until it changes, or a version built from it is
    /// current).
    pub(super) standby_seen: Option<((SystemTime, u64), [u8; 32], bool)>,
}

/// A changed input file as read: whole, or around its change (see [`FileIndex::scan`]).
pub(super) enum FileRead {
    Whole(Vec<u8>),
    Edit(Edit),
}

/// What changed in a primary's zone since the input with digest `base`.
#[derive(Clone)]
pub(super) struct InputDelta {
    pub(super) base: [u8; 32],
    pub(super) rrsets: std::collections::BTreeSet<(Owner, u16)>,
}

/// What a build starts from.
pub(super) enum Input {
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
pub(super) const RETRY_FAILED: Duration = Duration::from_secs(10);

pub(super) fn input_path(cfg: &ZoneConfig) -> Result<&str, String> {
    cfg.input
        .strip_prefix("file:")
        .ok_or_else(|| format!("zone {}: input {:?} is not file:PATH", cfg.name, cfg.input))
}

/// What a build of a primary's zone starts from: the RRsets the IXFRs changed since the
/// current version's input (new and removed ones too), or those a whole transfer differs
/// in from the content, else the whole zone as text. Either way the next delta counts
/// from this input.
pub(super) async fn primary_input(
    node: &Arc<Node>,
    zone: &str,
    memo: &mut Memo,
    current: Option<&Version>,
    quick_ok: bool,
) -> Result<Input, String> {
    let digest = memo.digest;
    let delta = memo.primary.delta.replace(InputDelta {
        base: digest,
        rrsets: Default::default(),
    });
    if quick_ok
        && let (Some(d), Some(cur)) = (delta, current)
        && d.base == cur.input_digest
        && !d.rrsets.is_empty()
        && let Ok(origin) = Name::parse(zone.as_bytes(), None)
    {
        let held = memo
            .primary
            .held
            .as_ref()
            .expect("a primary's zone is held");
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
        && memo.primary.whole_as_delta != Some(digest)
        && let Some(held) = memo.primary.held.as_ref().filter(|h| h.is_whole())
        && let Ok(origin) = Name::parse(zone.as_bytes(), None)
    {
        memo.primary.whole_as_delta = Some(digest);
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
    let held = memo.primary.held.take().expect("a primary's zone is held");
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
    memo.primary.held = Some(held);
    Ok(Input::Text(text, digest))
}

/// Runs `f` on `zone`'s replicated content (empty when the zone is gone).
pub(super) fn with_content<R>(node: &Node, zone: &str, f: impl FnOnce(&Content) -> R) -> R {
    node.sm.with(|st| {
        let empty = Content::new();
        f(st.zones.get(zone).map_or(&empty, |z| &z.content))
    })
}

/// How a zone's input is parsed: its origin, the zone's record limit, DNSSEC records
/// dropped.
pub(super) fn parse_options(origin: Name, cfg: &ZoneConfig) -> ParseOptions {
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
pub(super) fn read_file(
    path: &str,
    index: Option<&FileIndex>,
) -> std::io::Result<(Sums, FileRead)> {
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
pub(super) async fn read_if_changed(
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
    if memo.file.stat == Some(stat) {
        return Ok(None);
    }
    let index = memo
        .file
        .indexes
        .lock()
        .ok()
        .and_then(|g| g.current.clone());
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
    memo.file.stat = Some(stat);
    Ok(Some((sums, read)))
}

/// A primary's zone: asks for its SOA when notified, when its refresh interval has passed
/// or on reload, and transfers it when the serial moved (or nothing is held yet). A serial
/// that goes backwards, or a transfer that fails, is an error and nothing changes.
pub(super) async fn fetch_from_primary(
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
    if memo.primary.held.is_none()
        && let Some(cur) = current
    {
        let held = node.sm.with(|st| {
            st.zones
                .get(zone)
                .map(|z| Held::over(apex.clone(), &z.content, cur.input_serial))
        });
        if let Some(held) = held {
            memo.primary.held = Some(held);
            memo.digest = cur.input_digest;
            memo.primary.delta = Some(InputDelta {
                base: cur.input_digest,
                rrsets: Default::default(),
            });
            memo.primary.serial = Some(cur.input_serial);
        }
    }
    // A whole transfer stops being held once a version built from it is published.
    if let (Some(held), Some(cur)) = (memo.primary.held.as_mut(), current)
        && held.is_whole()
        && cur.input_digest == memo.digest
    {
        held.lean();
    }
    let notified = node.local().notified.remove(zone);
    if let Some((at, why)) = &memo.primary.failed
        && at.elapsed() < RETRY_FAILED
        && !notified
        && !reload
    {
        return Err(why.clone());
    }
    let poll_due = memo
        .primary
        .polled
        .is_none_or(|t| t.elapsed() >= memo.primary.refresh);
    if memo.primary.held.is_some() && !notified && !poll_due && !reload {
        return Ok(());
    }
    memo.primary.polled = Some(Instant::now());
    if memo.primary.refresh.is_zero() {
        memo.primary.refresh = Duration::from_secs(60);
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
            memo.primary.failed = None;
            Ok(())
        }
        Err(e) => {
            memo.primary.failed = Some((Instant::now(), e.clone()));
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn transfer_if_newer(
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
    let known = published.or(memo.primary.serial).filter(|s| *s != 0);
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
    if memo.primary.serial == Some(serial) && memo.primary.held.is_some() && !reload {
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
    let from = match (&memo.primary.held, memo.primary.serial) {
        (Some(held), Some(ps)) if !reload && !memo.primary.force_axfr => {
            held.soa(ps).map(|soa| (ps, soa))
        }
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
            memo.primary.serial = Some(f.serial);
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
            memo.primary.held = Some(held);
            memo.primary.delta = None;
            memo.primary.force_axfr = false;
            "AXFR"
        }
        client::Transfer::Incremental(deltas) => {
            let held = memo
                .primary
                .held
                .as_mut()
                .ok_or("IXFR without a zone to apply it to")?;
            let from = memo.primary.serial.unwrap_or(0);
            let digest = chained_digest(&memo.digest, &deltas);
            let applied = with_content(node, zone, |c| held.apply(c, deltas, from));
            match applied {
                Ok(touched) => {
                    if let Some(d) = &mut memo.primary.delta {
                        d.rrsets.extend(touched);
                    }
                }
                Err(e) => {
                    // The zone is held as it was, so it can still be re-signed; the next
                    // transfer is a whole one.
                    memo.primary.force_axfr = true;
                    memo.primary.polled = None;
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
    memo.primary.refresh = Duration::from_secs(f.refresh.clamp(1, 86_400) as u64);
    memo.primary.serial = Some(f.serial);
    Ok(())
}

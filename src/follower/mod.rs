//! Every node's own checks: validate each version it applies, re-validate in full on a
//! schedule, and prove readiness (keystore reachable, test-sign with every active key).
//!
//! A version is validated incrementally when this node validated its predecessor and knows
//! what changed (the state keeps the RRsets each recent version touched): every changed
//! RRset's RRSIGs are verified, every changed NSEC/NSEC3 link is followed, the DNSKEY RRset
//! is verified; the rest is unchanged by content hash, which the state machine checked on
//! apply. A zone's first version, a gap, and the periodic re-validation are full.
//! A version that fails raises an alarm and the node keeps its last good version.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::node::{Node, Readiness};
use crate::replica::state::RrsetVal;
use crate::replica::state::{ZoneState, hex};
use crate::replica::view::{Key, Overlay, View};
use crate::replica::{KeyRecord, Token, Version};
use crate::validate::incremental::Refusal;
use crate::validate::{VerifyOptions, verify_source};
use crate::zone::{Name, rtype};

/// Largest zone validated in full on every version; bigger ones incrementally.
const FULL_EVERY_VERSION_MAX: usize = 20_000;

pub async fn run(node: Arc<Node>) {
    let mut applied = node.sm.subscribe();
    let mut last_full: HashMap<String, Instant> = HashMap::new();
    let mut readiness =
        tokio::time::interval(Duration::from_secs(node.cfg.signer.readiness_s.max(1)));
    let revalidate = Duration::from_secs(node.cfg.signer.revalidate_s.max(1));
    loop {
        tokio::select! {
            biased; // (the same choice in the same situation: the simulation replays)
            r = applied.changed() => if r.is_err() { return },
            _ = readiness.tick() => {
                let n = node.clone();
                if let Ok(r) = crate::runtime::spawn_blocking(move || check_readiness(&n)).await {
                    node.local().readiness = r;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let zones: Vec<(String, Version)> = node.sm.with(|st| {
            st.zones
                .iter()
                .filter_map(|(n, z)| z.current.clone().map(|v| (n.clone(), v)))
                .collect()
        });
        // A changed key set is checked at once, not at the next readiness tick.
        let active = node.sm.with(|st| st.keys.len());
        if active != node.local().readiness.keys_tested {
            let n = node.clone();
            if let Ok(r) = crate::runtime::spawn_blocking(move || check_readiness(&n)).await {
                node.local().readiness = r;
            }
        }
        for (zone, version) in zones {
            let (good, alarmed) = {
                let l = node.local();
                (
                    l.last_good.get(&zone).cloned(),
                    l.alarms.contains_key(&zone),
                )
            };
            if good.as_ref().is_some_and(|g| g.token != version.token) {
                node.local()
                    .behind
                    .entry(zone.clone())
                    .or_insert_with(tokio::time::Instant::now);
            }
            let stale = last_full
                .get(&zone)
                .is_none_or(|t| t.elapsed() >= revalidate);
            if good.as_ref().is_some_and(|g| g.token == version.token) && !stale {
                continue;
            }
            if alarmed && good.as_ref().is_some_and(|g| g.token == version.token) {
                continue;
            }
            // The leader checked a version it built before proposing it (publish gate, or
            // every new RRSIG on the same-shape path); followers validate it again here.
            let built_here = version.leader == node.id
                && node
                    .local()
                    .last_run
                    .get(&zone)
                    .is_some_and(|r| r.serial == version.serial && r.error.is_none());
            if built_here && good.as_ref().is_none_or(|g| g.token != version.token) {
                last_full.entry(zone.clone()).or_insert_with(Instant::now);
                let keep = accept(&mut node.local(), zone, version);
                keep_served(&node, keep).await;
                continue;
            }
            let n = node.clone();
            let (z, v, g) = (zone.clone(), version.clone(), good.clone());
            let began = Instant::now();
            let res =
                crate::runtime::spawn_blocking(move || validate(&n, &z, &v, g.as_ref(), stale))
                    .await;
            let res = res.unwrap_or_else(|e| Err(format!("validator crashed: {e}").into()));
            let keep = {
                let mut keep = None;
                let mut l = node.local();
                match res {
                    Ok(full) => {
                        if full {
                            last_full.insert(zone.clone(), Instant::now());
                            crate::runtime::mem::trim();
                        }
                        if good.as_ref().is_none_or(|g| g.token != version.token) {
                            // After a full check only.
                            let rrsets = if full { version.rrsets as usize } else { 0 };
                            let rss_mib = crate::runtime::mem::rss_for(rrsets);
                            tracing::info!(
                                zone,
                                serial = version.serial,
                                full,
                                ms = began.elapsed().as_millis() as u64,
                                rss_mib,
                                "version validated"
                            );
                        }
                        keep = accept(&mut l, zone, version);
                    }
                    Err(e @ CheckError::Superseded) => {
                        // A newer version arrived meanwhile: the next round validates that one.
                        tracing::debug!(zone, serial = version.serial, "{e}");
                    }
                    Err(CheckError::Invalid(e)) => {
                        tracing::error!(
                            zone,
                            serial = version.serial,
                            "ALARM: version does not validate on this node; keeping serial {}: {e}",
                            good.as_ref()
                                .map_or("none".into(), |g| g.serial.to_string())
                        );
                        l.alarms
                            .insert(zone, format!("serial {}: {e}", version.serial));
                    }
                }
                keep
            };
            keep_served(&node, keep).await;
        }
    }
}

/// Why a version was not accepted here.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// A newer version arrived while this one was checked: the next round takes that one.
    #[error("superseded while validating")]
    Superseded,
    /// The version is wrong here: what, where.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for CheckError {
    fn from(e: String) -> CheckError {
        CheckError::Invalid(e)
    }
}

impl From<&str> for CheckError {
    fn from(e: &str) -> CheckError {
        CheckError::Invalid(e.into())
    }
}

/// Makes a validated `version` the one this node serves for `zone`, unless this node
/// served the same serial with another content before: then it stops answering for the
/// zone and raises the alarm (the cluster's state is not what it published).
/// Returns what to keep in `DATA/served` when that changed: the caller writes it once the
/// lock on `l` is released (every DNS query takes that lock).
#[must_use]
fn accept(
    l: &mut crate::node::Local,
    zone: String,
    version: crate::replica::Version,
) -> Option<std::collections::BTreeMap<String, (u32, [u8; 32])>> {
    if let Some((serial, hash)) = l.served.get(&zone).copied()
        && serial == version.serial
        && hash != version.hash
    {
        let why = format!(
            "serial {serial} was served by this node with content {}, and the cluster now holds \
             {} under it: not answering for the zone",
            crate::replica::state::hex(&hash[..8]),
            crate::replica::state::hex(&version.hash[..8])
        );
        if l.conflicts.get(&zone) != Some(&why) {
            tracing::error!(zone, "ALARM: {why}");
        }
        l.alarms.insert(zone.clone(), why.clone());
        l.conflicts.insert(zone, why);
        return None;
    }
    l.conflicts.remove(&zone);
    l.alarms.remove(&zone);
    l.behind.remove(&zone);
    let changed = l.served.get(&zone) != Some(&(version.serial, version.hash));
    if changed {
        l.served
            .insert(zone.clone(), (version.serial, version.hash));
    }
    l.last_good.insert(zone, version);
    changed.then(|| l.served.clone())
}

/// Writes what this node served, off the async threads.
async fn keep_served(
    node: &Arc<Node>,
    served: Option<std::collections::BTreeMap<String, (u32, [u8; 32])>>,
) {
    if let Some(served) = served {
        let dir = node.cfg.data_dir.clone();
        let path = dir.join("served");
        let r =
            crate::runtime::spawn_blocking(move || crate::node::kept::save(&path, &served)).await;
        if let Err(e) = r.and_then(|r| r.map_err(|e| e.to_string())) {
            tracing::warn!("{}/served: {e}", dir.display());
        }
    }
}

/// Validates `version` of `zone` as this node holds it. Returns whether it was a full check.
fn validate(
    node: &Node,
    zone: &str,
    version: &Version,
    good: Option<&Version>,
    force_full: bool,
) -> Result<bool, CheckError> {
    let st = node.sm.read();
    let z = st.zones.get(zone).ok_or("zone removed")?;
    let cur = z.current.as_ref().ok_or("no version")?;
    if cur.token != version.token {
        return Err(CheckError::Superseded); // the next round takes the newer one
    }
    if z.hash != cur.hash {
        return Err(format!(
            "content hash {} is not the version's {}",
            hex(&z.hash[..8]),
            hex(&cur.hash[..8])
        )
        .into());
    }
    let origin = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    let touched = good.and_then(|g| {
        let since: Vec<_> = z
            .recent
            .iter()
            .filter(|(idx, _)| *idx > g.token.index)
            .collect();
        let first_known = z.recent.front().map(|(i, _)| *i)?;
        // Every version after the last good one must be in `recent`.
        let gap = z
            .history
            .iter()
            .any(|v| v.token.index > g.token.index && v.token.index < first_known);
        (!gap && !since.is_empty()).then(|| {
            since
                .iter()
                .flat_map(|(_, t)| t.iter().cloned())
                .collect::<BTreeSet<(Name, u16)>>()
        })
    });
    let full = force_full || touched.is_none() || z.content.len() <= FULL_EVERY_VERSION_MAX;
    let t = node.now() as u32;
    if !full {
        let touched = touched.as_ref().expect("touched");
        match crate::validate::incremental::check(&z.content, &origin, touched, t) {
            Ok(()) => return Ok(false),
            // A chain too sparse around the changes for a bounded walk: the full check.
            Err(e @ Refusal::TooSparse) => {
                tracing::info!(zone, serial = version.serial, "{e}: checking in full");
            }
            Err(e @ Refusal::Invalid(_)) => return Err(e.to_string().into()),
        }
    }
    // A version new to this node is checked through the private scalars of the keys
    // it holds (sealed soft keys), about three times faster; the periodic re-check of
    // a version already good here uses the public keys, as an outside validator would.
    let fresh = good.is_none_or(|g| g.token != version.token);
    let records: Vec<KeyRecord> = if fresh {
        st.zone_keys(zone).cloned().collect()
    } else {
        Vec::new()
    };
    let rrsets = z.content.len();
    drop(st);
    // Opened with the state released (unsealing a key is deliberately slow).
    let private_keys = private_keys(node, &records);
    let opts = VerifyOptions {
        now: t,
        trust_anchors: Vec::new(),
        signatures_prechecked: false,
        private_keys,
    };
    let state = NodeZone(node, zone);
    let src = Pinned::new(&state, version.token, origin, WINDOW)?;
    let report =
        crate::runtime::validator_pool().install(|| verify_source(&src, &opts, &|_, _| {}));
    if src.lost.load(Ordering::Relaxed) {
        return Err(CheckError::Superseded);
    }
    let rss_mib = crate::runtime::mem::rss_for(rrsets);
    tracing::info!(zone, rss_mib, "full check done");
    if !report.valid {
        let f = &report.failures[0];
        return Err(format!(
            "{} failure(s), first: {} {}: {}",
            report.failures.len(),
            f.owner,
            f.rtype,
            f.message
        )
        .into());
    }
    Ok(true)
}

/// One version of a zone's content as the validator reads it: nodes made a window at a
/// time, sharing the content's names, rdatas and signatures, the state's read lock held
/// only while a window is made. A full check of 1M delegations takes ~25 s and needs no
/// model of the whole zone beside the content (that was ~270 MiB, ~460 MiB resident);
/// a version applied meanwhile is looked through with the journal's "before" RRsets
/// ([`overlay`]), as the node serves it.
struct Pinned<'a> {
    state: &'a dyn StateOf,
    token: Token,
    origin: Name,
    apex: crate::zone::Node,
    nodes: usize,
    window_size: usize,
    /// The journal no longer reaches back to the version (or the zone is gone).
    lost: AtomicBool,
}

/// Nodes per window: enough for the validator's threads, a few MB of model at a time.
const WINDOW: usize = 16_384;

/// Where a [`Pinned`] reads the zone's state, under whatever lock guards it.
trait StateOf: Sync {
    fn with(&self, f: &mut dyn FnMut(Option<&ZoneState>));
}

/// A zone of this node's replicated state.
struct NodeZone<'a>(&'a Node, &'a str);

impl StateOf for NodeZone<'_> {
    fn with(&self, f: &mut dyn FnMut(Option<&ZoneState>)) {
        let st = self.0.sm.read();
        f(st.zones.get(self.1))
    }
}

impl<'a> Pinned<'a> {
    fn new(
        state: &'a dyn StateOf,
        token: Token,
        origin: Name,
        window_size: usize,
    ) -> Result<Self, CheckError> {
        let mut out = Err(CheckError::Invalid("zone removed".into()));
        state.with(&mut |z| {
            if let Some(z) = z {
                out = Pinned::apex_of(z, token, &origin).map(|(apex, nodes)| Pinned {
                    state,
                    token,
                    origin: origin.clone(),
                    apex,
                    nodes,
                    window_size,
                    lost: AtomicBool::new(false),
                });
            }
        });
        out
    }

    /// The apex node, and about how many nodes there are.
    fn apex_of(
        z: &ZoneState,
        token: Token,
        origin: &Name,
    ) -> Result<(crate::zone::Node, usize), CheckError> {
        if z.current.as_ref().map(|c| c.token) != Some(token) {
            return Err(CheckError::Superseded);
        }
        let mut apex = crate::zone::Node {
            name: origin.clone(),
            kind: crate::zone::NodeKind::Apex,
            rrsets: Vec::new(),
            sigs: Vec::new(),
        };
        let first = z.content.keys().next().map(|(o, _)| o.0.clone());
        for ((o, t), v) in &z.content {
            if Some(&o.0) != first.as_ref() {
                break;
            }
            add_rrset(&mut apex, *t, v);
        }
        if first.as_ref() != Some(origin) || !apex.has(rtype::SOA) {
            return Err(format!("no SOA record at the zone apex {origin}").into());
        }
        if apex.rrset(rtype::SOA).is_some_and(|s| s.rdatas.len() != 1) {
            return Err(format!("{origin} has more than one SOA record").into());
        }
        Ok((apex, z.content.len()))
    }

    /// The next window after `after` (the last RRset of the window before), with the key
    /// of its own last RRset; `None` when the version is out of reach.
    fn window(
        &self,
        after: Option<&Key>,
        kinds: &mut crate::zone::Classifier,
        seen: &mut Option<(Token, Overlay)>,
    ) -> Option<(Vec<crate::zone::Node>, Option<Key>)> {
        let mut out = None;
        self.state
            .with(&mut |z| out = z.and_then(|z| self.window_in(z, after, kinds, seen)));
        out
    }

    fn window_in(
        &self,
        z: &ZoneState,
        after: Option<&Key>,
        kinds: &mut crate::zone::Classifier,
        seen: &mut Option<(Token, Overlay)>,
    ) -> Option<(Vec<crate::zone::Node>, Option<Key>)> {
        let cur = z.current.as_ref()?.token;
        // The overlay grows with each version applied since the last window (the oldest
        // "before" of an RRset wins): the check is lost only when more versions than the
        // journal keeps come between two windows, not during the whole check.
        let (seen_at, o) = seen.get_or_insert_with(|| (self.token, Overlay::new()));
        if *seen_at != cur {
            let deltas = z.deltas_from(|d| d.from_token == *seen_at)?;
            for d in deltas {
                for (key, before, _) in &d.changes {
                    o.entry(key.clone()).or_insert_with(|| before.clone());
                }
            }
            *seen_at = cur;
        }
        let view = View {
            content: &z.content,
            overlay: seen.as_ref().filter(|(_, o)| !o.is_empty()).map(|(_, o)| o),
        };
        let entries: Box<dyn Iterator<Item = (&Key, &RrsetVal)>> = match after {
            None => Box::new(view.all()),
            Some(k) => Box::new(view.after(k)),
        };
        let mut nodes: Vec<crate::zone::Node> = Vec::with_capacity(self.window_size);
        let mut last = None;
        for ((owner, t), v) in entries {
            if nodes.last().is_none_or(|n| n.name != owner.0) {
                if nodes.len() == self.window_size {
                    break;
                }
                if let Some(done) = nodes.last_mut() {
                    kinds.mark(done);
                }
                nodes.push(crate::zone::Node {
                    name: owner.0.clone(),
                    kind: crate::zone::NodeKind::Auth,
                    rrsets: Vec::new(),
                    sigs: Vec::new(),
                });
            }
            add_rrset(nodes.last_mut().expect("pushed above"), *t, v);
            last = Some((owner.clone(), *t));
        }
        if let Some(done) = nodes.last_mut() {
            kinds.mark(done);
        }
        Some((nodes, last))
    }
}

/// Adds the RRset (and its signatures) of the content to `node`.
fn add_rrset(node: &mut crate::zone::Node, t: u16, v: &RrsetVal) {
    if !v.rdatas.is_empty() {
        node.rrsets.push(crate::zone::Rrset {
            rtype: t,
            ttl: v.ttl,
            rdatas: v.rdatas.clone(),
        });
    }
    node.sigs.extend(v.sigs.iter().map(|s| (v.ttl, s.clone())));
}

impl crate::validate::Source for Pinned<'_> {
    fn origin(&self) -> &Name {
        &self.origin
    }
    fn apex(&self) -> &crate::zone::Node {
        &self.apex
    }
    fn node_count(&self) -> usize {
        self.nodes
    }
    fn windows(&self, f: &mut dyn FnMut(&[crate::zone::Node])) {
        let mut kinds = crate::zone::Classifier::default();
        let (mut after, mut seen) = (None, None);
        loop {
            let Some((nodes, last)) = self.window(after.as_ref(), &mut kinds, &mut seen) else {
                self.lost.store(true, Ordering::Relaxed);
                return;
            };
            if nodes.is_empty() {
                return;
            }
            f(&nodes);
            after = last;
        }
    }
}

/// Checkers through the private scalar of each key in `records` this node holds.
fn private_keys(
    node: &Node,
    records: &[KeyRecord],
) -> Vec<Arc<crate::keys::ecdsa_check::ScalarVerifier>> {
    records
        .iter()
        .filter_map(|rec| {
            let k = node.keys.resolve(rec).ok()?;
            crate::hsm::scalar_verifier(&*k)?.ok().map(Arc::new)
        })
        .collect()
}

/// [`crate::validate::incremental::check`] of a zone state, its refusal as text (tests).
#[cfg(test)]
pub(crate) fn incremental(
    z: &ZoneState,
    origin: &Name,
    touched: &BTreeSet<(Name, u16)>,
    now: u32,
) -> Result<(), String> {
    crate::validate::incremental::check(&z.content, origin, touched, now).map_err(|e| e.to_string())
}

/// Can this node sign right now with every key of the cluster (in use or pooled for a
/// roll)? Each key signs a probe and the signature is verified against the key's DNSKEY.
pub fn check_readiness(node: &Node) -> Readiness {
    let keys: Vec<KeyRecord> = node.sm.read().keys.to_vec();
    let mut problems = Vec::new();
    let mut key_problems = Vec::new();
    if node.cfg.witness {
        problems.push("witness: votes, never signs".to_string());
    }
    let probe = format!("quorumsign readiness probe {} {}", node.id, node.now());
    for rec in keys.iter().filter(|_| !node.cfg.witness) {
        let r = node.keys.resolve(rec).and_then(|k| {
            let sig = k.sign(probe.as_bytes()).map_err(|e| e.to_string())?;
            let v = k.dnskey().verifier().map_err(|e| e.to_string())?;
            if v.verify(probe.as_bytes(), &sig) {
                Ok(())
            } else {
                Err("test signature does not verify".into())
            }
        });
        if let Err(e) = r {
            key_problems.push(format!("key {} of {}: {e}", rec.tag, rec.zone));
        }
    }
    problems.extend(key_problems.iter().cloned());
    let fence = match &node.cfg.fence {
        None => "none configured".to_string(),
        Some(f) => match crate::fence::check_hook(f) {
            Ok(()) => format!("{} (executable)", f.command[0]),
            Err(e) => {
                problems.push(e.clone());
                e
            }
        },
    };
    Readiness {
        fence,
        ready: problems.is_empty(),
        checked_at: node.now(),
        keys_tested: keys.len(),
        problems,
        key_problems,
    }
}

#[cfg(test)]
mod tests;

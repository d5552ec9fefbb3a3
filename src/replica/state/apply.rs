//! Applying the commands to the replicated state: staging and publishing versions, keys,
//! members, the audit log.

use std::collections::BTreeMap;

use super::*;
use crate::replica::{Command, LogId, Origin, Outcome, Token};
use crate::zone::Name;

impl ZoneState {
    /// The unsigned zone this version was made from (the content without what the signer
    /// adds), in presentation form: a new leader's input when the input is a primary it
    /// has not transferred from yet.
    pub fn to_unsigned_text(&self) -> String {
        use crate::zone::rtype;
        let mut out = String::with_capacity(self.content.len() * 64);
        for ((owner, t), v) in &self.content {
            if matches!(
                *t,
                rtype::DNSKEY | rtype::NSEC | rtype::NSEC3 | rtype::NSEC3PARAM | rtype::RRSIG
            ) {
                continue;
            }
            for d in &v.rdatas {
                crate::zone::write::push_record(&mut out, &owner.0, *t, v.ttl, d);
            }
        }
        out
    }

    /// The signed zone in presentation form, in canonical order.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.content.len() * 200);
        for ((owner, t), v) in &self.content {
            for d in &v.rdatas {
                crate::zone::write::push_record(&mut out, &owner.0, *t, v.ttl, d);
            }
            for s in &v.sigs {
                crate::zone::write::push_record(
                    &mut out,
                    &owner.0,
                    crate::zone::rtype::RRSIG,
                    v.ttl,
                    s,
                );
            }
        }
        out
    }

    /// The content hash the zone would have after `changes`, without changing anything.
    pub fn hash_after<'a>(&self, changes: impl Iterator<Item = &'a RrsetChange>) -> [u8; 32] {
        self.shifted(self.digest_sums(changes))
    }

    /// [`Self::hash_after`] of many changes, on all cores (the sum is order-free).
    pub fn hash_after_all(&self, changes: &[RrsetChange]) -> [u8; 32] {
        use rayon::prelude::*;
        let sums = changes
            .par_chunks(4096)
            .map(|ch| self.digest_sums(ch.iter()))
            .reduce(
                || ([0u8; 32], [0u8; 32]),
                |(mut a1, mut s1), (a2, s2)| {
                    hash_step(&mut a1, &a2, false);
                    hash_step(&mut s1, &s2, false);
                    (a1, s1)
                },
            );
        self.shifted(sums)
    }

    /// The sums of the digests `changes` add and of those they take away (what the
    /// content holds now for each RRset they name).
    fn digest_sums<'a>(
        &self,
        changes: impl Iterator<Item = &'a RrsetChange>,
    ) -> ([u8; 32], [u8; 32]) {
        digest_sums(changes, |c| {
            self.content.get(&(Owner(c.owner.clone()), c.rtype))
        })
    }

    /// The content hash moved by sums that [`Self::digest_sums`] made.
    pub(super) fn shifted(&self, (add, sub): ([u8; 32], [u8; 32])) -> [u8; 32] {
        let mut h = self.hash;
        hash_step(&mut h, &add, false);
        hash_step(&mut h, &sub, true);
        h
    }

    /// Applies `changes`, recording in `undo` what each replaced.
    pub(super) fn apply_changes(
        &mut self,
        changes: Vec<RrsetChange>,
        undo: &mut Vec<((Owner, u16), Option<RrsetVal>)>,
    ) {
        for c in changes {
            let key = (Owner(c.owner.clone()), c.rtype);
            let old = self.content.remove(&key);
            if let Some(old) = &old {
                hash_step(&mut self.hash, &rrset_digest(&c.owner, c.rtype, old), true);
            }
            if let Some(new) = c.val {
                hash_step(
                    &mut self.hash,
                    &rrset_digest(&c.owner, c.rtype, &new),
                    false,
                );
                self.content.insert(key.clone(), new);
            }
            undo.push((key, old));
        }
    }

    /// Fills empty content with `staged` (in strictly increasing key order): the map is
    /// built bottom-up, its nodes full, where one insert after another leaves them about
    /// half full (~60 bytes more per RRset).
    ///
    /// Each part becomes a map of its own, and maps of like size are merged as a binary
    /// counter carries (`append` of disjoint, ordered maps builds a full tree while it frees
    /// the two it consumes). Collecting all parts into one vector first, as
    /// `BTreeMap::from_iter` needs, held the whole version a second time plus a sort's
    /// scratch space: ~300 MiB at 1M delegations, on every node at once.
    pub(super) fn fill(&mut self, staged: Vec<Staged>) {
        type Map = BTreeMap<(Owner, u16), RrsetVal>;
        debug_assert!(self.content.is_empty());
        let mut stack: Vec<Map> = Vec::new();
        let mut last_owner: Option<Owner> = None;
        for part in staged {
            hash_step(&mut self.hash, &part.sum, false);
            let mut entries = Vec::with_capacity(part.changes.len());
            for c in part.changes {
                let Some(v) = c.val else { continue };
                // RRsets of one owner share its name (each arrived with its own copy).
                let owner = match &last_owner {
                    Some(o) if o.0 == c.owner => o.clone(),
                    _ => Owner(c.owner),
                };
                last_owner = Some(owner.clone());
                entries.push(((owner, c.rtype), v));
            }
            let mut map: Map = entries.into_iter().collect();
            while stack.last().is_some_and(|top| top.len() <= map.len()) {
                let mut earlier = stack.pop().expect("checked");
                earlier.append(&mut map);
                map = earlier;
            }
            stack.push(map);
        }
        let mut content = Map::new();
        while let Some(mut earlier) = stack.pop() {
            earlier.append(&mut content);
            content = earlier;
        }
        self.content = content;
    }

    /// Keeps what a version changed (before and after) in the journal, within its bounds.
    pub(super) fn record_delta(
        &mut self,
        undo: Vec<((Owner, u16), Option<RrsetVal>)>,
        token: Token,
        serial: u32,
    ) {
        let Some(prev) = &self.current else {
            self.journal.clear();
            return;
        };
        if undo.len() > JOURNAL_MAX_RRSETS {
            self.journal.clear();
            return;
        }
        let mut before: BTreeMap<(Owner, u16), Option<RrsetVal>> = BTreeMap::new();
        for (key, old) in undo {
            before.entry(key).or_insert(old);
        }
        let changes = before
            .into_iter()
            .map(|(key, old)| {
                let new = self.content.get(&key).cloned();
                (key, old, new)
            })
            .collect();
        self.journal.push(Delta {
            from_serial: prev.serial,
            to_serial: serial,
            from_token: prev.token,
            token,
            changes,
        });
        let mut total: usize = self.journal.iter().map(|d| d.changes.len()).sum();
        while self.journal.len() > HISTORY_MAX || total > JOURNAL_MAX_RRSETS {
            total -= self.journal.remove(0).changes.len();
        }
    }

    pub(super) fn undo(&mut self, undo: Vec<((Owner, u16), Option<RrsetVal>)>, hash: [u8; 32]) {
        for (key, old) in undo.into_iter().rev() {
            match old {
                Some(v) => {
                    self.content.insert(key, v);
                }
                None => {
                    self.content.remove(&key);
                }
            }
        }
        self.hash = hash;
    }
}

impl ClusterState {
    pub fn zone_keys(&self, zone: &str) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(move |k| k.zone == zone)
    }

    /// Applies one normal entry. `log_id` gives the fencing token of a publish.
    pub fn apply(&mut self, log_id: &LogId, cmd: Command) -> Outcome {
        self.apply_decoded(log_id, cmd, None)
    }

    /// [`Self::apply`], given the changes of a `Stage` entry already decoded (outside the
    /// state's lock: see `machine`); `None` decodes them here.
    pub fn apply_decoded(
        &mut self,
        log_id: &LogId,
        cmd: Command,
        decoded: Option<std::io::Result<Staged>>,
    ) -> Outcome {
        let token = Token::new(log_id.committed_leader_id().term, log_id.index());
        match cmd {
            Command::AddZone { zone, origin } => {
                let out = match self.zones.get(&zone.name) {
                    Some(z) if z.config.is_some() => {
                        Outcome::Refused(format!("zone {} already exists", zone.name))
                    }
                    None if self.keys.iter().any(|k| k.zone == zone.name) => {
                        Outcome::Refused(format!(
                            "zone {} was removed and its keys are kept retired: a security officer \
                         purges them first (keys purge {} --confirm {})",
                            zone.name, zone.name, zone.name
                        ))
                    }
                    _ => {
                        let name = zone.name.clone();
                        self.zones.insert(
                            name,
                            ZoneState {
                                config: Some(zone),
                                ..Default::default()
                            },
                        );
                        Outcome::Done
                    }
                };
                self.audit(token, origin, &out);
                out
            }
            Command::RemoveZone { name, origin } => {
                // The keys stay (retired with the zone) until a security officer purges
                // them: a removal by mistake is undone without a key roll.
                let out = if self.zones.remove(&name).is_some() {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("no zone {name}"))
                };
                self.audit(token, origin, &out);
                out
            }
            Command::SetZone { zone, origin } => {
                let out = match self.zones.get_mut(&zone.name) {
                    Some(z) if z.config.is_some() => {
                        // A new input is a reload: the next version is built from all of it.
                        if z.config.as_ref().is_some_and(|c| c.input != zone.input) {
                            z.reload_seq += 1;
                        }
                        z.config = Some(zone);
                        Outcome::Done
                    }
                    _ => Outcome::Refused(format!("no zone {}", zone.name)),
                };
                self.audit(token, origin, &out);
                out
            }
            Command::Reload { name, origin } => {
                let out = match self.zones.get_mut(&name) {
                    Some(z) => {
                        z.reload_seq += 1;
                        Outcome::Done
                    }
                    None => Outcome::Refused(format!("no zone {name}")),
                };
                self.audit(token, origin, &out);
                out
            }
            Command::AddKey { key } => {
                if !self.zones.contains_key(&key.zone) {
                    return Outcome::Refused(format!("no zone {}", key.zone));
                }
                if self.keys.iter().any(|k| k.id == key.id) {
                    return Outcome::Refused(format!("key {} exists", key.id));
                }
                let Some(role) = crate::kasp::Role::parse(&key.role) else {
                    return Outcome::Refused(format!("key {}: unknown role {}", key.id, key.role));
                };
                let z = self.zones.get_mut(&key.zone).expect("checked");
                if let Some(other) = z
                    .keyset
                    .keys
                    .values()
                    .find(|k| k.tag == key.tag && k.algorithm == key.algorithm)
                {
                    return Outcome::Refused(format!(
                        "key {}: tag {} collides with key {} of the zone",
                        key.id, key.tag, other.id
                    ));
                }
                z.keyset.keys.insert(
                    key.id,
                    crate::kasp::KeyState::new(key.id, key.tag, key.algorithm, role, key.created),
                );
                self.keys.push(key);
                Outcome::Done
            }
            Command::KeyEval { zone, now, facts } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let Some(policy) = z.config.as_ref().map(|c| c.synced_policy()) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let (set, ev) = crate::kasp::evaluate(&z.keyset, &policy, &facts, now);
                z.keyset = set;
                if !ev.purged.is_empty() {
                    self.keys.retain(|k| !ev.purged.contains(&k.id));
                }
                Outcome::Done
            }
            Command::KeysShown { zone, seq, at } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                if z.current.as_ref().is_none_or(|v| v.keyset_seq < seq) {
                    return Outcome::Refused(format!(
                        "{zone}: no published version shows key state {seq}"
                    ));
                }
                crate::kasp::engine::published(&mut z.keyset, seq, at);
                Outcome::Done
            }
            Command::KeyEvent {
                zone,
                event,
                origin,
            } => {
                let out = match self.zones.get_mut(&zone) {
                    None => Outcome::Refused(format!("no zone {zone}")),
                    Some(z) => match z.config.as_ref().map(|c| c.synced_policy()) {
                        None => Outcome::Refused(format!("no zone {zone}")),
                        Some(policy) => {
                            match crate::kasp::observe(&mut z.keyset, &policy, &event) {
                                Ok(_) => Outcome::Done,
                                Err(e) => Outcome::Refused(format!("zone {zone}: {e}")),
                            }
                        }
                    },
                };
                if let Some(origin) = origin {
                    self.audit(token, origin, &out);
                }
                out
            }
            Command::Stage {
                zone,
                upload,
                part,
                changes,
            } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                // One version is under construction at a time: the first part of an upload
                // drops whatever an earlier (perhaps deposed) leader left half-staged.
                if part == 0 {
                    z.staged.clear();
                }
                let parts = z.staged.entry(upload).or_default();
                if parts.len() as u32 != part {
                    return Outcome::Refused(format!(
                        "upload {upload}: part {part} out of order (have {})",
                        parts.len()
                    ));
                }
                match decoded.unwrap_or_else(|| changes.decode().map(Staged::new)) {
                    Ok(changes) => parts.push(changes),
                    Err(e) => {
                        return Outcome::Refused(format!("upload {upload}: part {part}: {e}"));
                    }
                }
                Outcome::Done
            }
            Command::Publish {
                zone,
                upload,
                parts,
                base,
                mut version,
            } => {
                let published = self
                    .published_hash(&zone, version.serial)
                    .filter(|h| *h != version.hash);
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let staged = z.staged.remove(&upload).unwrap_or_default();
                let current = z.current.as_ref().map(|v| v.hash);
                if current != base {
                    return Outcome::Refused(format!(
                        "zone {zone}: version built on {} but the current one is {}",
                        base.map_or("nothing".into(), |h| hex(&h[..8])),
                        current.map_or("nothing".into(), |h| hex(&h[..8]))
                    ));
                }
                if staged.len() as u32 != parts {
                    return Outcome::Refused(format!(
                        "zone {zone}: upload {upload} has {} of {parts} parts",
                        staged.len()
                    ));
                }
                if let Some(cur) = &z.current
                    && !crate::zone::serial::le(cur.serial, version.serial.wrapping_sub(1))
                {
                    return Outcome::Refused(format!(
                        "zone {zone}: serial {} does not follow {}",
                        version.serial, cur.serial
                    ));
                }
                if let Some(h) = published {
                    return Outcome::Refused(format!(
                        "zone {zone}: serial {} was published with content {}; it never carries \
                         another (the leader moves the serial forward)",
                        version.serial,
                        hex(&h[..8])
                    ));
                }
                let n_changes: usize = staged.iter().map(|p| p.changes.len()).sum();
                // What a version changed is kept for the validator's incremental check; a
                // version that changed more is validated in full, which an empty list says.
                let touched: Option<Vec<(Name, u16)>> =
                    (n_changes <= RECENT_TOUCHED_MAX).then(|| {
                        staged
                            .iter()
                            .flat_map(|p| &p.changes)
                            .map(|c| (c.owner.clone(), c.rtype))
                            .collect()
                    });
                let before = z.hash;
                // A first version (or a zone emptied) is built in one pass, with full B-tree
                // nodes and no undo list (`None`).
                let undo = if z.content.is_empty() && strictly_ordered(&staged) {
                    z.fill(staged);
                    let rss_mib = crate::runtime::mem::rss_for(n_changes);
                    tracing::info!(
                        zone,
                        rrsets = z.content.len(),
                        rss_mib,
                        "first version filled"
                    );
                    None
                } else {
                    let mut undo = Vec::with_capacity(n_changes);
                    for part in staged {
                        z.apply_changes(part.changes, &mut undo);
                    }
                    Some(undo)
                };
                if z.hash != version.hash {
                    let after = z.hash;
                    match undo {
                        Some(undo) => z.undo(undo, before),
                        None => {
                            z.content.clear();
                            z.hash = before;
                        }
                    }
                    return Outcome::Refused(format!(
                        "zone {zone}: content hash after applying is {}, the leader announced {}",
                        hex(&after[..8]),
                        hex(&version.hash[..8])
                    ));
                }
                match undo {
                    Some(undo) => z.record_delta(undo, token, version.serial),
                    None => z.journal.clear(),
                }
                match touched {
                    Some(touched) => {
                        z.recent.push_back((token.index, touched));
                        while z.recent.len() > RECENT_MAX {
                            z.recent.pop_front();
                        }
                    }
                    None => z.recent.clear(),
                }
                debug_assert_eq!(z.hash, version.hash);
                version.token = token;
                version.rrsets = z.content.len() as u64;
                z.history.push_back(version.clone());
                while z.history.len() > HISTORY_MAX {
                    z.history.pop_front();
                }
                z.current = Some(version.clone());
                let p = self.published.entry(zone.clone()).or_default();
                p.push_back((version.serial, version.hash));
                while p.len() > PUBLISHED_KEPT {
                    p.pop_front();
                }
                Outcome::Published {
                    serial: version.serial,
                    token,
                }
            }
            Command::Audit { origin } => {
                self.audit(token, origin, &Outcome::Done);
                Outcome::Done
            }
            Command::LeaderStart { node, term } => {
                self.last_leader = Some((node, term));
                self.handover = None;
                Outcome::Done
            }
            Command::Handover { from, to } => {
                self.handover = Some((from, to));
                Outcome::Done
            }
            Command::Fenced {
                target,
                ok,
                outcome,
                mut origin,
            } => {
                if ok {
                    self.fenced.insert(target, token.term);
                }
                origin.command = format!("{} — {}", origin.command, outcome);
                let out = if ok {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("fence of node {target} failed"))
                };
                self.audit(token, origin, &out);
                Outcome::Done
            }
            Command::Unfence { target, origin } => {
                let out = if self.fenced.remove(&target).is_some() {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("node {target} is not fenced"))
                };
                self.audit(token, origin, &out);
                out
            }
            Command::StoreSeen { stores } => {
                for (node, record) in stores {
                    self.stores.entry(node).or_default().update(record);
                }
                Outcome::Done
            }
            Command::PurgeKeys { zone, origin } => {
                let out = if self.zones.contains_key(&zone) {
                    Outcome::Refused(format!(
                        "zone {zone} is still signed: remove it first (zone remove)"
                    ))
                } else if !self.keys.iter().any(|k| k.zone == zone) {
                    Outcome::Refused(format!("no retired keys of zone {zone}"))
                } else {
                    self.keys.retain(|k| k.zone != zone);
                    Outcome::Done
                };
                self.audit(token, origin, &out);
                out
            }
        }
    }

    pub(super) fn audit(&mut self, token: Token, origin: Origin, out: &Outcome) {
        self.audit.push_back(AuditRecord {
            term: token.term,
            index: token.index,
            origin,
            outcome: match out {
                Outcome::Refused(m) => format!("refused: {m}"),
                _ => "ok".into(),
            },
        });
        while self.audit.len() > AUDIT_MAX {
            self.audit.pop_front();
        }
    }
}

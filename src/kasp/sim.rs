//! The rollover simulator: runs the engine against a modelled parent on simulated time,
//! records what the zone and the parent published, and checks that history against
//! modelled validator caches.
//!
//! # The cache model
//! A version of an RRset published at `p` and replaced at `q` may be fetched by a
//! validator at any moment from `p` until `q` + propagation (a lagging secondary), and is
//! then cached for the TTL it was served with. Three RRsets matter: the DS set at the
//! parent, the DNSKEY RRset, and zone data (the longest TTL in the zone). A validator may
//! hold any three versions whose cache intervals overlap; an instant is bogus when some
//! such combination has a DS set but no path DS → DNSKEY (signed by that key) → data
//! signature. Before the first DNSKEY, a validator may hold a cached "no DNSKEY" answer
//! for the negative TTL.

use std::collections::{BTreeMap, BTreeSet};

use super::engine::{evaluate, observe, published};
use super::{Action, Event, Facts, KeySet, KeyState, Policy, Role, St};
use crate::keys::KeyId;

/// What the child zone published in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildVersion {
    pub at: u64,
    pub dnskeys: BTreeSet<KeyId>,
    pub dnskey_signers: BTreeSet<KeyId>,
    pub data_signers: BTreeSet<KeyId>,
    pub dnskey_ttl: u32,
    pub sig_ttl: u32,
}

impl ChildVersion {
    pub fn of(set: &KeySet, at: u64) -> ChildVersion {
        let mut v = ChildVersion {
            at,
            dnskeys: BTreeSet::new(),
            dnskey_signers: BTreeSet::new(),
            data_signers: BTreeSet::new(),
            dnskey_ttl: set.ttls.map_or(0, |t| t.dnskey),
            sig_ttl: set.ttls.map_or(0, |t| t.sig),
        };
        for k in set.keys.values() {
            let u = k.usage();
            if u.publish {
                v.dnskeys.insert(k.id);
            }
            if u.sign_dnskey {
                v.dnskey_signers.insert(k.id);
            }
            if u.sign_data {
                v.data_signers.insert(k.id);
            }
        }
        v
    }

    fn same_content(&self, o: &ChildVersion) -> bool {
        self.dnskeys == o.dnskeys
            && self.dnskey_signers == o.dnskey_signers
            && self.data_signers == o.data_signers
            && self.dnskey_ttl == o.dnskey_ttl
            && self.sig_ttl == o.sig_ttl
    }
}

/// A DS set at the parent: visible from `earliest` on at some server, at every server by
/// `latest`, served with `ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentVersion {
    pub ds: BTreeSet<KeyId>,
    pub earliest: u64,
    pub latest: u64,
    pub ttl: u32,
}

/// Everything published, in time order.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub child: Vec<ChildVersion>,
    pub parent: Vec<ParentVersion>,
    /// Child propagation delay and negative TTL (for the cached "no DNSKEY").
    pub propagation: u64,
    pub negative_ttl: u32,
}

impl History {
    /// Records a child version if it differs from the last one.
    pub fn child_version(&mut self, v: ChildVersion) {
        if self.child.last().is_some_and(|l| l.same_content(&v)) {
            return;
        }
        self.child.push(v);
    }

    /// Records what one of several servers answers: a new version is appended; an older
    /// one seen again (a server that lags) is not a new version but must not come later
    /// than `propagation` (+ `slack` for the observer's own delay) after the version that
    /// superseded it was first seen. Err names the late answer.
    pub fn served(&mut self, v: ChildVersion, slack: u64) -> Result<(), String> {
        if self.child.last().is_some_and(|l| l.same_content(&v)) {
            return Ok(());
        }
        let Some(j) = self.child.iter().rposition(|c| c.same_content(&v)) else {
            self.child.push(v);
            return Ok(());
        };
        let next = self.child[j + 1].at;
        if v.at > next.saturating_add(self.propagation).saturating_add(slack) {
            return Err(format!(
                "the version first served at {} was served again at {}, {} s after the version \
                 that superseded it (propagation delay {} s)",
                self.child[j].at,
                v.at,
                v.at - next,
                self.propagation
            ));
        }
        Ok(())
    }
}

/// An instant at which a validator could see a bogus answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bogus {
    pub at: u64,
    pub what: String,
}

/// Checks every combination of versions a validator could hold at once.
pub fn check(h: &History) -> Vec<Bogus> {
    const END: u64 = u64::MAX;
    // (start, end of caching, index) per RRset; index None: nothing published yet.
    let mut dnskey: Vec<(u64, u64, Option<usize>)> = Vec::new();
    let mut data: Vec<(u64, u64, Option<usize>)> = Vec::new();
    let first = h.child.first().map_or(END, |v| v.at);
    dnskey.push((
        0,
        first
            .saturating_add(h.propagation)
            .saturating_add(h.negative_ttl as u64),
        None,
    ));
    data.push((0, first, None));
    for (i, v) in h.child.iter().enumerate() {
        let next = h.child.get(i + 1).map_or(END, |n| n.at);
        let gone = next.saturating_add(h.propagation);
        dnskey.push((v.at, gone.saturating_add(v.dnskey_ttl as u64), Some(i)));
        data.push((v.at, gone.saturating_add(v.sig_ttl as u64), Some(i)));
    }
    let mut ds: Vec<(u64, u64, usize)> = Vec::new();
    for (i, v) in h.parent.iter().enumerate() {
        let next = h.parent.get(i + 1).map_or(END, |n| n.latest);
        ds.push((v.earliest, next.saturating_add(v.ttl as u64), i));
    }
    let mut out = Vec::new();
    for &(ds0, ds1, di) in &ds {
        let d = &h.parent[di];
        if d.ds.is_empty() {
            continue;
        }
        for &(k0, k1, ki) in &dnskey {
            // Intervals are half-open: a record cached at f for TTL is gone at f + TTL.
            if k0 >= ds1 || ds0 >= k1 {
                continue;
            }
            let (a0, a1) = (ds0.max(k0), ds1.min(k1));
            let Some(ki) = ki else {
                out.push(Bogus {
                    at: a0,
                    what: "a DS at the parent while a validator may hold a cached \"no DNSKEY\""
                        .into(),
                });
                continue;
            };
            let k = &h.child[ki];
            let anchored =
                d.ds.iter()
                    .any(|id| k.dnskeys.contains(id) && k.dnskey_signers.contains(id));
            if !anchored {
                out.push(Bogus {
                    at: a0,
                    what: format!(
                        "DS set published at {} and DNSKEY RRset of {}: no DS matches a DNSKEY that signs the RRset",
                        d.earliest, k.at
                    ),
                });
                continue;
            }
            for &(s0, s1, si) in &data {
                if s0 >= a1 || a0 >= s1 {
                    continue;
                }
                let ok = match si {
                    None => false,
                    Some(si) => h.child[si]
                        .data_signers
                        .iter()
                        .any(|id| k.dnskeys.contains(id)),
                };
                if !ok {
                    out.push(Bogus {
                        at: a0.max(s0),
                        what: format!(
                            "DNSKEY RRset of {} with data of {}: no data signature by a key in that DNSKEY RRset",
                            k.at,
                            si.map_or("before signing".to_string(), |i| h.child[i].at.to_string())
                        ),
                    });
                }
            }
        }
    }
    out.sort_by_key(|b| b.at);
    out
}

/// The modelled world around the engine.
#[derive(Debug, Clone)]
pub struct World {
    pub policy: Policy,
    pub facts: Facts,
    /// The DS TTL the parent really serves.
    pub parent_ttl: u32,
    /// The TTL the checker reports (normally `parent_ttl`; a lower one models a signer
    /// that trusts its configuration, as in the .nz incident).
    pub reported_ttl: Option<u32>,
    /// From a submission (or retraction) to the parent's first server having it.
    pub parent_delay: u64,
    /// From the first parent server to all of them.
    pub parent_spread: u64,
    /// How often the parent is checked.
    pub check_interval: u64,
    /// The parent ignores submissions.
    pub parent_deaf: bool,
    /// Keys are backed up as soon as they are made.
    pub backup_at_once: bool,
}

impl World {
    pub fn new(policy: Policy, facts: Facts) -> World {
        World {
            parent_ttl: policy.ds_ttl,
            reported_ttl: None,
            parent_delay: 600,
            parent_spread: 300,
            check_interval: policy.parent_check_interval as u64,
            parent_deaf: false,
            backup_at_once: true,
            policy,
            facts,
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: u64,
    pub text: String,
}

/// A simulated run.
pub struct Run {
    pub set: KeySet,
    pub history: History,
    pub timeline: Vec<Line>,
    /// Every record transition, with its time.
    pub transitions: Vec<(u64, super::Transition)>,
    /// DS observations made by the checker: (time, event).
    pub observed: Vec<(u64, Event)>,
    /// Submissions and retractions: (time, key, submit?).
    pub parent_actions: Vec<(u64, KeyId, bool)>,
    pub evaluations: u64,
    next_key: u64,
    parent_ds: BTreeSet<KeyId>,
    /// (time at the first server, key, add?)
    parent_queue: Vec<(u64, KeyId, bool)>,
    next_check: u64,
    wake: Option<u64>,
}

impl Run {
    pub fn new(set: KeySet, start: u64, world: &World) -> Run {
        let mut history = History {
            propagation: world.policy.propagation_delay as u64,
            negative_ttl: world.facts.soa_ttl.min(world.facts.soa_minimum),
            ..Default::default()
        };
        let parent_ds: BTreeSet<KeyId> = set
            .keys
            .values()
            .filter(|k| matches!(k.rec[super::DS], St::O | St::U))
            .map(|k| k.id)
            .collect();
        history.parent.push(ParentVersion {
            ds: parent_ds.clone(),
            earliest: 0,
            latest: 0,
            ttl: world.parent_ttl,
        });
        if !set.keys.is_empty() {
            history.child_version(ChildVersion::of(&set, 0));
        }
        Run {
            next_key: set.keys.len() as u64 + 1,
            set,
            history,
            timeline: Vec::new(),
            transitions: Vec::new(),
            observed: Vec::new(),
            parent_actions: Vec::new(),
            evaluations: 0,
            parent_ds,
            parent_queue: Vec::new(),
            next_check: start,
            wake: None,
        }
    }

    fn note(&mut self, at: u64, text: String) {
        self.timeline.push(Line { at, text });
    }

    /// A new key, as the leader would make it (ids and tags are unique in the run).
    pub fn make_key(&mut self, role: Role, algorithm: u8, at: u64, backed_up: bool) -> KeyId {
        let n = self.next_key;
        self.next_key += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id[8] = algorithm;
        let id = KeyId(id);
        let mut k = KeyState::new(id, (n as u16).wrapping_mul(7919), algorithm, role, at);
        k.backed_up = backed_up;
        self.set.keys.insert(id, k);
        id
    }

    /// Runs from `start` to `end`; returns the time reached.
    pub fn run(&mut self, world: &mut World, start: u64, end: u64) -> u64 {
        let mut now = start;
        let mut guard = 0u64;
        while now <= end && guard < 1_000_000 {
            guard += 1;
            self.step(world, now);
            let mut next = now.saturating_add(86_400);
            let waiting = super::parent::waiting(&self.set);
            if waiting {
                next = next.min(self.next_check);
            }
            if let Some(t) = self.wake {
                next = next.min(t);
            }
            if let Some(t) = self.parent_queue.iter().map(|q| q.0).min() {
                next = next.min(t);
            }
            now = next.max(now + 1);
        }
        now
    }

    /// One evaluation at `now`, with the parent and the checker around it.
    pub fn step(&mut self, world: &mut World, now: u64) {
        // The parent acts.
        let due: Vec<(u64, KeyId, bool)> = self
            .parent_queue
            .iter()
            .filter(|q| q.0 <= now)
            .copied()
            .collect();
        self.parent_queue.retain(|q| q.0 > now);
        for (t, id, add) in due {
            let changed = if add {
                self.parent_ds.insert(id)
            } else {
                self.parent_ds.remove(&id)
            };
            if changed {
                self.history.parent.push(ParentVersion {
                    ds: self.parent_ds.clone(),
                    earliest: t,
                    latest: t + world.parent_spread,
                    ttl: world.parent_ttl,
                });
                let tag = self.set.keys.get(&id).map_or(0, |k| k.tag);
                self.note(
                    t,
                    format!(
                        "parent {} DS of key {tag}",
                        if add { "publishes" } else { "withdraws" }
                    ),
                );
            }
        }
        // The checker: what every parent server agrees on.
        if now >= self.next_check {
            self.next_check = now + world.check_interval.max(1);
            let everywhere = |id: &KeyId, h: &History| -> Option<bool> {
                let last = h.parent.last()?;
                if last.latest > now {
                    return None; // servers disagree
                }
                Some(last.ds.contains(id))
            };
            let ids: Vec<KeyId> = self.set.keys.keys().copied().collect();
            for id in ids {
                let k = &self.set.keys[&id];
                let ev = match (k.rec[super::DS], k.parent, everywhere(&id, &self.history)) {
                    (St::R, super::Parent::Unknown | super::Parent::Gone { .. }, Some(true)) => {
                        Some(Event::DsSeen {
                            key: id,
                            ttl: world.reported_ttl.unwrap_or(world.parent_ttl),
                            at: now,
                        })
                    }
                    (St::U, super::Parent::Unknown | super::Parent::Seen { .. }, Some(false)) => {
                        Some(Event::DsGone { key: id, at: now })
                    }
                    _ => None,
                };
                if let Some(e) = ev {
                    match observe(&mut self.set, &world.policy, &e) {
                        Ok(m) => self.note(now, m),
                        Err(m) => self.note(now, format!("refused: {m}")),
                    }
                    self.observed.push((now, e));
                }
            }
        }
        let tags = tags(&self.set);
        let (set, ev) = evaluate(&self.set, &world.policy, &world.facts, now);
        self.evaluations += 1;
        self.set = set;
        for (id, g) in &ev.goals {
            let tag = tags.get(id).copied().unwrap_or(0);
            let what = match g {
                super::Goal::Active => "is introduced",
                super::Goal::Retire => "is retired",
                super::Goal::Pool => "returns to the pool",
            };
            self.note(now, format!("key {tag} {what}"));
        }
        for t in &ev.transitions {
            self.note(now, t.to_string());
            self.transitions.push((now, t.clone()));
        }
        for id in &ev.purged {
            let tag = tags.get(id).copied().unwrap_or(0);
            self.note(now, format!("key {tag} purged"));
        }
        for a in &ev.actions {
            match a {
                Action::Generate { role, algorithm } => {
                    let id = self.make_key(*role, *algorithm, now, world.backup_at_once);
                    let tag = self.set.keys[&id].tag;
                    self.note(now, format!("generate {} tag {tag}", role.name()));
                }
                Action::SubmitDs { key, tag } => {
                    if !world.parent_deaf
                        && !self.parent_ds.contains(key)
                        && !self.parent_queue.iter().any(|q| q.1 == *key && q.2)
                    {
                        self.note(now, format!("submit DS of key {tag}"));
                        self.parent_actions.push((now, *key, true));
                        self.parent_queue
                            .push((now + world.parent_delay, *key, true));
                    }
                }
                Action::RetractDs { key, tag } => {
                    if !world.parent_deaf
                        && self.parent_ds.contains(key)
                        && !self.parent_queue.iter().any(|q| q.1 == *key && !q.2)
                    {
                        self.note(now, format!("retract DS of key {tag}"));
                        self.parent_actions.push((now, *key, false));
                        self.parent_queue
                            .push((now + world.parent_delay, *key, false));
                    }
                }
            }
        }
        // The leader publishes a version showing the new states (or new TTLs) at once.
        let seq = self.set.seq;
        let had_pending = self
            .set
            .keys
            .values()
            .any(|k| k.pending.iter().any(|p| *p != 0));
        published(&mut self.set, seq, now);
        self.history.child_version(ChildVersion::of(&self.set, now));
        self.wake = ev.next;
        if had_pending {
            self.wake = Some(self.wake.map_or(now + 1, |w| w.min(now + 1)));
        }
        if ev
            .actions
            .iter()
            .any(|a| matches!(a, Action::Generate { .. }))
        {
            self.wake = Some(now + 1);
        }
    }
}

/// Keys in the timeline by tag, for printing.
pub fn tags(set: &KeySet) -> BTreeMap<KeyId, u16> {
    set.keys.values().map(|k| (k.id, k.tag)).collect()
}

//! The rollover engine: [`evaluate`] moves records between states, [`observe`] records
//! what the parent, the backup process and operators report, [`published`] starts the
//! waits of changes once a version shows them.
//!
//! A transition passes, in order: the parent gate (DS R→O needs the DS seen, U→H needs it
//! gone), policy approval (which record a roll type introduces first), the backup gate,
//! the timing gate (waits from the record's last change, over every TTL caches may still
//! hold), and DNSSEC approval (each rule that holds before still holds after: a chain of
//! trust exists; per algorithm the DNSKEY RRset is signed under a DS; per algorithm zone
//! data is signed under a published DNSKEY).
//!
//! # Determinism
//! Keys are visited in `KeyId` order, time is the `now` argument (UTC seconds, saturating
//! arithmetic), and nothing else is read: the leader and every follower that applies the
//! same committed evaluation reach the same state.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::{Policy, audit};
use super::{
    Action, DK, DS, Eval, Event, Facts, Goal, KR, KeySet, KeyState, Parent, RECORDS, RS, Role, St,
    TtlKind, TtlWas, Ttls,
};
use crate::keys::KeyId;

/// How long old TTLs are remembered after their caches must have expired.
const TTL_HISTORY_KEEP: u64 = 30 * 86_400;

/// Evaluates the key set at `now`. Returns the new set and what happened; the input set
/// is left unchanged, so the leader can evaluate speculatively and commit only changes.
pub fn evaluate(set: &KeySet, p: &Policy, f: &Facts, now: u64) -> (KeySet, Eval) {
    let mut s = set.clone();
    let mut ev = Eval::default();
    if now < s.last_eval {
        ev.notes.push(format!(
            "clock anomaly: now {now} is before the last evaluation {}; no key changes until the clock passes it",
            s.last_eval
        ));
        s.notes = ev.notes.clone();
        return (s, ev);
    }
    if s.last_eval > 0
        && now - s.last_eval > p.max_clock_jump
        && s.clock_hold.is_none()
        && !s.keys.is_empty()
    {
        s.clock_hold = Some(format!(
            "clock jumped {} s forward (from {} to {now}), more than max_clock_jump {} s: \
             waits are held until an operator runs `quorumsign keys clock-ok`",
            now - s.last_eval,
            s.last_eval,
            p.max_clock_jump
        ));
    }
    update_ttls(&mut s, p, f, now);
    let findings = audit(p, f, None, Some(s.ds_ttl_observed).filter(|t| *t > 0));
    let unsafe_: Vec<&str> = findings
        .iter()
        .filter(|x| x.unsafe_)
        .map(|x| x.text.as_str())
        .collect();
    // Before the zone's first version its TTLs are unknown: no roll starts (the first
    // keys still come in), and there is nothing to report yet.
    let measured = f.soa_ttl != 0 || f.max_zone_ttl != 0;
    for w in unsafe_.iter().filter(|_| measured) {
        ev.notes
            .push(format!("policy check: {w}; no new roll starts until fixed"));
    }
    if s.ds_ttl_observed > p.ds_ttl {
        ev.notes.push(format!(
            "WARNING: the parent serves the DS with TTL {} s, above ds_ttl = {} s: DS waits use {} s",
            s.ds_ttl_observed, p.ds_ttl, s.ds_ttl_observed
        ));
    }
    start_rolls(&mut s, p, now, unsafe_.is_empty(), &mut ev);
    sweep(&mut s, p, now, &mut ev);
    purge(&mut s, p, now, &mut ev);
    for k in s.keys.values() {
        if k.rec[DS] == St::R && !matches!(k.parent, Parent::Seen { .. }) {
            ev.actions.push(Action::SubmitDs {
                key: k.id,
                tag: k.tag,
            });
        }
        if k.rec[DS] == St::U && !matches!(k.parent, Parent::Gone { .. }) {
            ev.actions.push(Action::RetractDs {
                key: k.id,
                tag: k.tag,
            });
        }
    }
    backup_alarm(&s, p, now, &mut ev);
    for k in s.keys.values() {
        let life = p.lifetime(k.role);
        let due = match (k.goal, k.active_since, k.hidden_since) {
            (Goal::Active, Some(a), _) if life > 0 => Some(a.saturating_add(life)),
            (Goal::Retire, _, Some(h)) => Some(h.saturating_add(p.purge_after)),
            _ => None,
        };
        if let Some(t) = due.filter(|t| *t > now) {
            ev.next = Some(ev.next.map_or(t, |n| n.min(t)));
        }
    }
    if let Some(h) = &s.clock_hold {
        ev.notes.push(h.clone());
    }
    s.notes = set.notes.clone();
    s.last_eval = set.last_eval;
    ev.changed = s != *set;
    s.last_eval = now;
    s.notes = ev.notes.clone();
    (s, ev)
}

/// The keys the zone needs, pool refills, and rolls due by lifetime or by request.
fn start_rolls(s: &mut KeySet, p: &Policy, now: u64, may_roll: bool, ev: &mut Eval) {
    let alg = p.algorithm;
    let usable = |k: &KeyState, role: Role| {
        k.goal == Goal::Pool
            && k.role == role
            && k.algorithm == alg
            && (k.backed_up || !p.require_backup)
    };
    for &role in p.roles() {
        let active: Vec<KeyId> = s
            .keys
            .values()
            .filter(|k| k.goal == Goal::Active && k.role == role && k.algorithm == alg)
            .map(|k| k.id)
            .collect();
        let due = active.iter().any(|id| {
            let k = &s.keys[id];
            let life = p.lifetime(role);
            life > 0
                && k.active_since
                    .is_some_and(|a| now >= a.saturating_add(life))
        }) || s.roll_requested.contains(&role);
        // One roll of a role at a time: the previous one finishes first.
        let rolling = s
            .keys
            .values()
            .any(|k| k.goal == Goal::Retire && k.role == role && !k.all_hidden());
        // A roll starts only when none of the records it moves is still moving in any
        // key (a half-finished roll of the same records would be left without the
        // predecessor its successor's safety relied on).
        let moving = |recs: &[usize]| {
            s.keys
                .values()
                .any(|k| recs.iter().any(|&r| matches!(k.rec[r], St::R | St::U)))
        };
        let mine: Vec<usize> = (0..4).filter(|&r| role.has(r)).collect();
        let converting = active.is_empty() && !s.keys.is_empty();
        let busy = if converting {
            moving(&[DS, DK, KR, RS])
        } else {
            moving(&mine)
        };
        if busy && (converting || due) {
            ev.notes.push(format!(
                "{} roll waits until the keys' records in motion settle",
                role.name()
            ));
        }
        let want_new = (active.is_empty() && !busy) || (due && !rolling && may_roll && !busy);
        if due && rolling {
            ev.notes.push(format!(
                "{} roll due: waits for the previous {} roll to finish",
                role.name(),
                role.name()
            ));
        }
        if !want_new {
            continue;
        }
        let pick = s.keys.values().find(|k| usable(k, role)).map(|k| k.id);
        match pick {
            Some(id) => {
                let k = s.keys.get_mut(&id).expect("picked");
                k.goal = Goal::Active;
                k.active_since = Some(now);
                ev.goals.push((id, Goal::Active));
                for old in active {
                    s.keys.get_mut(&old).expect("active").goal = Goal::Retire;
                    ev.goals.push((old, Goal::Retire));
                }
                s.roll_requested.remove(&role);
            }
            None => {
                if p.require_backup
                    && s.keys
                        .values()
                        .any(|k| k.goal == Goal::Pool && k.role == role && k.algorithm == alg)
                {
                    ev.notes.push(format!(
                        "a new {} is needed but no pooled {} is backed up: run `quorumsign backup prepare` and `backup commit`",
                        role.name(),
                        role.name()
                    ));
                } else {
                    ev.actions.push(Action::Generate {
                        role,
                        algorithm: alg,
                    });
                }
            }
        }
    }
    // Keys of another algorithm or role retire once the policy's keys are all active.
    let complete = p.roles().iter().all(|&role| {
        s.keys
            .values()
            .any(|k| k.goal == Goal::Active && k.role == role && k.algorithm == alg)
    });
    if complete {
        let stale: Vec<KeyId> = s
            .keys
            .values()
            .filter(|k| {
                k.goal == Goal::Active && (k.algorithm != alg || !p.roles().contains(&k.role))
            })
            .map(|k| k.id)
            .collect();
        for id in stale {
            s.keys.get_mut(&id).expect("stale").goal = Goal::Retire;
            ev.goals.push((id, Goal::Retire));
        }
    }
    // The pool: keys for the rolls within the lookahead.
    for &role in p.roles() {
        let life = p.lifetime(role);
        let mut target = if life > 0 && p.key_pool_lookahead > 0 {
            p.key_pool_lookahead.div_ceil(life)
        } else {
            0
        };
        if p.require_backup {
            target = target.max(1);
        }
        // Keys already asked for (to become active) count toward the pool.
        let asked = ev
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Generate { role: r, .. } if *r == role))
            .count() as u64;
        let have = s
            .keys
            .values()
            .filter(|k| k.goal == Goal::Pool && k.role == role && k.algorithm == alg)
            .count() as u64
            + asked;
        for _ in have..target {
            ev.actions.push(Action::Generate {
                role,
                algorithm: alg,
            });
        }
    }
}

/// Moves records until nothing more may move at `now`.
fn sweep(s: &mut KeySet, p: &Policy, now: u64, ev: &mut Eval) {
    let ids: Vec<KeyId> = s.keys.keys().copied().collect();
    let mut moved: BTreeSet<(KeyId, usize)> = BTreeSet::new();
    let mut introduced = [false; 4];
    let mut next_at: Option<u64> = None;
    let mut blocked: BTreeMap<(KeyId, usize), String> = BTreeMap::new();
    loop {
        let mut progressed = false;
        for id in &ids {
            for r in 0..4 {
                let Some(k) = s.keys.get(id) else { continue };
                if k.rec[r] == St::NA || moved.contains(&(*id, r)) {
                    continue;
                }
                let target = if k.goal == Goal::Active { St::O } else { St::H };
                let next = match (k.rec[r], target) {
                    (St::H | St::U, St::O) => St::R,
                    (St::R, St::O) => St::O,
                    (St::O | St::R, St::H) => St::U,
                    (St::U, St::H) => St::H,
                    _ => continue,
                };
                match gate(s, p, k, r, next, now, &introduced) {
                    Err(Blocked::Until(t, why)) => {
                        next_at = Some(next_at.map_or(t, |n| n.min(t)));
                        blocked.insert((*id, r), why);
                    }
                    Err(Blocked::Because(why)) => {
                        blocked.insert((*id, r), why);
                    }
                    Ok(()) => {
                        apply(s, *id, r, next, now, ev);
                        moved.insert((*id, r));
                        blocked.remove(&(*id, r));
                        if next == St::R {
                            introduced[r] = true;
                        }
                        progressed = true;
                    }
                }
            }
        }
        if !progressed {
            break;
        }
    }
    for ((id, r), why) in blocked {
        if let Some(k) = s.keys.get(&id) {
            ev.notes
                .push(format!("key {} {}: {why}", k.tag, RECORDS[r]));
        }
    }
    ev.next = next_at;
}

enum Blocked {
    Until(u64, String),
    Because(String),
}

fn gate(
    s: &KeySet,
    p: &Policy,
    k: &KeyState,
    r: usize,
    next: St,
    now: u64,
    introduced: &[bool; 4],
) -> Result<(), Blocked> {
    let timed = matches!(next, St::O | St::H);
    if timed && k.pending[r] != 0 {
        return Err(Blocked::Because(format!(
            "{} waits for the version that shows it to be published",
            k.rec[r]
        )));
    }
    // (a) the parent
    if r == DS && next == St::O && !matches!(k.parent, Parent::Seen { .. }) {
        return Err(Blocked::Because(
            "rumoured: waits until every parent server serves the DS".into(),
        ));
    }
    if r == DS && next == St::H && !matches!(k.parent, Parent::Gone { .. }) {
        return Err(Blocked::Because(
            "unretentive: waits until no parent server serves the DS".into(),
        ));
    }
    // (b) policy approval
    if next == St::R {
        policy_approval(s, p, k, r).map_err(Blocked::Because)?;
    }
    // Every algorithm with a published DNSKEY signs the DNSKEY RRset and the zone data
    // (RFC 4035 §2.2): its last signer stops only after its last DNSKEY is withdrawn.
    if next == St::U && (r == RS || r == KR) {
        let others_sign = s
            .keys
            .values()
            .any(|o| o.id != k.id && o.algorithm == k.algorithm && o.rec[r].shown());
        let published = s
            .keys
            .values()
            .any(|o| o.algorithm == k.algorithm && o.rec[DK].shown());
        if !others_sign && published {
            return Err(Blocked::Because(format!(
                "{} → unretentive waits until no DNSKEY of algorithm {} is published",
                k.rec[r], k.algorithm
            )));
        }
    }
    // (e) backups
    if p.require_backup && matches!(next, St::R | St::O) && !k.backed_up {
        return Err(Blocked::Because(
            "the key is not backed up (require_backup)".into(),
        ));
    }
    // (d) timing
    if timed {
        if let Some(h) = &s.clock_hold {
            return Err(Blocked::Because(format!("held: {h}")));
        }
        if next == St::H && introduced[r] {
            return Err(Blocked::Because(
                "a successor was introduced in this evaluation; hidden at the next".into(),
            ));
        }
        let at = ready_at(s, p, k, r, next);
        if now < at {
            return Err(Blocked::Until(
                at,
                format!("{} → {next} at {}", k.rec[r], crate::zone::civil::utc(at)),
            ));
        }
    }
    // (c) DNSSEC approval
    dnssec_approval(s, k, r, next)
}

fn policy_approval(s: &KeySet, p: &Policy, k: &KeyState, r: usize) -> Result<(), String> {
    let alg = k.algorithm;
    let others = || s.keys.values().filter(move |o| o.id != k.id);
    let good_ksk = others()
        .any(|o| o.algorithm == alg && o.role.is_ksk() && o.rec[DS] == St::O && o.rec[DK] == St::O);
    let good_zsk = others().any(|o| o.algorithm == alg && o.rec[DK] == St::O && o.rec[RS] == St::O);
    match r {
        DS if !p.double_ds() && (k.rec[DK] != St::O || k.rec[KR] != St::O) => {
            Err("hidden: double-KSK roll submits the DS once the DNSKEY is omnipresent".into())
        }
        DK if p.double_ds() && k.role.is_ksk() && k.rec[DS] != St::O && good_ksk => {
            Err("hidden: double-DS roll publishes the DNSKEY once the new DS is omnipresent".into())
        }
        KR if k.rec[DK] == St::H => Err("hidden: signs the DNSKEY RRset once published".into()),
        RS if p.pre_publication() && k.rec[DK] != St::O && good_zsk => {
            Err("hidden: ZSK pre-publication signs once the DNSKEY is omnipresent".into())
        }
        _ => Ok(()),
    }
}

/// Waits from the record's last change until caches can no longer hold what it replaced.
fn ready_at(s: &KeySet, p: &Policy, k: &KeyState, r: usize, next: St) -> u64 {
    let t = s.ttls.unwrap_or_default();
    let c = k.changed[r];
    let end = |kind: TtlKind, cur: u32| cache_end(s, c, kind, cur);
    match r {
        DS => {
            let ttl = t.ds.max(s.ds_ttl_observed);
            let base = end(TtlKind::Ds, ttl).saturating_add(p.parent_propagation_delay as u64);
            if next == St::O {
                base.saturating_add(p.parent_registration_delay as u64)
            } else {
                base
            }
        }
        DK | KR => {
            let mut e = end(TtlKind::Dnskey, t.dnskey);
            let first = !s.keys.values().any(|o| o.rec[DK] == St::O);
            if next == St::O && first {
                e = e.max(end(TtlKind::Negative, t.negative));
            }
            let margin = if next == St::O {
                p.publish_safety
            } else {
                p.retire_safety
            };
            e.saturating_add(p.propagation_delay as u64)
                .saturating_add(margin as u64)
        }
        _ => end(TtlKind::Sig, t.sig).saturating_add(p.propagation_delay as u64),
    }
}

/// When caches of what a record's change at `c` replaced have expired: versions served
/// with the current TTL up to `c`, and versions served with any older TTL until it was
/// replaced (kept in the history until those caches are gone).
fn cache_end(s: &KeySet, c: u64, kind: TtlKind, cur: u32) -> u64 {
    s.ttl_history
        .iter()
        .filter(|h| h.kind == kind)
        .map(|h| h.until.saturating_add(h.ttl as u64))
        .fold(c.saturating_add(cur as u64), u64::max)
}

fn dnssec_approval(s: &KeySet, k: &KeyState, r: usize, next: St) -> Result<(), Blocked> {
    let mut after = s.keys.clone();
    after.get_mut(&k.id).expect("key").rec[r] = next;
    let links_after = relink(&after, &s.links, k.id, r, next);
    let alg = k.algorithm;
    let checks: [(
        &str,
        fn(&BTreeMap<KeyId, KeyState>, &BTreeSet<(u8, KeyId, KeyId)>, u8) -> bool,
    ); 3] = [
        (
            "no DS would remain at the parent (chain of trust)",
            |ks, _, _| rule1(ks),
        ),
        (
            "the DNSKEY RRset would not be signed by a key with a DS in every cache",
            rule2,
        ),
        (
            "zone data would not be signed by a DNSKEY in every cache",
            rule3,
        ),
    ];
    for (why, rule) in checks {
        if rule(&s.keys, &s.links, alg) && !rule(&after, &links_after, alg) {
            return Err(Blocked::Because(format!(
                "{} → {next} refused: {why}",
                k.rec[r]
            )));
        }
    }
    Ok(())
}

/// Whether some link (record, predecessor, successor) between keys of `alg` is in a
/// state `swap` accepts as a safe hand-over of that record.
fn linked(
    keys: &BTreeMap<KeyId, KeyState>,
    links: &BTreeSet<(u8, KeyId, KeyId)>,
    alg: u8,
    swap: impl Fn(usize, &KeyState, &KeyState) -> bool,
) -> bool {
    links
        .iter()
        .any(|(t, pi, si)| match (keys.get(pi), keys.get(si)) {
            (Some(p), Some(s)) if p.algorithm == alg && s.algorithm == alg => {
                swap(*t as usize, p, s)
            }
            _ => false,
        })
}

fn rule1(keys: &BTreeMap<KeyId, KeyState>) -> bool {
    keys.values().any(|k| matches!(k.rec[DS], St::O | St::R))
}

fn rule2(keys: &BTreeMap<KeyId, KeyState>, links: &BTreeSet<(u8, KeyId, KeyId)>, alg: u8) -> bool {
    let ks = || keys.values().filter(|k| k.algorithm == alg);
    let triple = |k: &KeyState| (k.rec[DS], k.rec[DK], k.rec[KR]);
    if ks().any(|k| triple(k) == (St::O, St::O, St::O)) {
        return true;
    }
    let pair = linked(keys, links, alg, |t, p, s| match t {
        DS => triple(p) == (St::U, St::O, St::O) && triple(s) == (St::R, St::O, St::O),
        DK => {
            p.rec[DS] == St::O
                && p.rec[DK] == St::U
                && matches!(p.rec[KR], St::U | St::O)
                && s.rec[DS] == St::O
                && s.rec[DK] == St::R
                && matches!(s.rec[KR], St::R | St::O)
        }
        KR => triple(p) == (St::O, St::O, St::U) && triple(s) == (St::O, St::O, St::R),
        _ => false,
    });
    if pair {
        return true;
    }
    ks().filter(|k| !matches!(k.rec[DS], St::H | St::NA))
        .all(|k| ks().any(|m| m.rec[DS] == k.rec[DS] && m.rec[DK] == St::O && m.rec[KR] == St::O))
}

fn rule3(keys: &BTreeMap<KeyId, KeyState>, links: &BTreeSet<(u8, KeyId, KeyId)>, alg: u8) -> bool {
    let ks = || keys.values().filter(|k| k.algorithm == alg);
    let pairof = |k: &KeyState| (k.rec[DK], k.rec[RS]);
    if ks().any(|k| pairof(k) == (St::O, St::O)) {
        return true;
    }
    let pair = linked(keys, links, alg, |t, p, s| match t {
        DK => pairof(p) == (St::U, St::O) && pairof(s) == (St::R, St::O),
        RS => pairof(p) == (St::O, St::U) && pairof(s) == (St::O, St::R),
        _ => false,
    });
    if pair {
        return true;
    }
    let matched = ks()
        .filter(|k| !matches!(k.rec[DK], St::H | St::NA))
        .all(|k| ks().any(|m| m.rec[DK] == k.rec[DK] && m.rec[RS] == St::O));
    matched || ks().all(|k| matches!(k.rec[DS], St::H | St::NA))
}

/// The links after record `r` of `key` moves to `next`: a record going unretentive links
/// to each key of its algorithm whose same record is rumoured; a successor reaching
/// omnipresent, or a predecessor reaching hidden, ends the link.
fn relink(
    keys: &BTreeMap<KeyId, KeyState>,
    links: &BTreeSet<(u8, KeyId, KeyId)>,
    key: KeyId,
    r: usize,
    next: St,
) -> BTreeSet<(u8, KeyId, KeyId)> {
    let mut out: BTreeSet<(u8, KeyId, KeyId)> = links
        .iter()
        .filter(|(t, p, s)| {
            let t = *t as usize;
            match (keys.get(p), keys.get(s)) {
                (Some(p), Some(s)) => s.rec[t] != St::O && p.rec[t] != St::H,
                _ => false,
            }
        })
        .copied()
        .collect();
    if next == St::U {
        let p = &keys[&key];
        for s in keys.values() {
            if s.id == key || s.algorithm != p.algorithm || s.rec[r] != St::R {
                continue;
            }
            let ok = match r {
                DS | RS => s.rec[DK] == St::O,
                _ => {
                    (p.rec[DS] == St::O && s.rec[DS] == St::O)
                        || (p.rec[RS] == St::O && s.rec[RS] == St::O)
                }
            };
            if ok {
                out.insert((r as u8, key, s.id));
            }
        }
    }
    out
}

fn apply(s: &mut KeySet, id: KeyId, r: usize, next: St, now: u64, ev: &mut Eval) {
    s.seq += 1;
    let seq = s.seq;
    let k = s.keys.get_mut(&id).expect("key");
    let from = k.rec[r];
    k.rec[r] = next;
    k.changed[r] = now;
    k.pending[r] = if matches!(next, St::R | St::U) {
        seq
    } else {
        0
    };
    if r == DS && matches!(next, St::R | St::U) {
        k.parent = Parent::Unknown;
    }
    let tag = k.tag;
    if k.all_hidden() {
        k.hidden_since.get_or_insert(now);
    } else {
        k.hidden_since = None;
    }
    s.links = relink(&s.keys, &s.links, id, r, next);
    ev.transitions.push(super::Transition {
        key: id,
        tag,
        record: r,
        from,
        to: next,
    });
}

fn purge(s: &mut KeySet, p: &Policy, now: u64, ev: &mut Eval) {
    let gone: Vec<KeyId> = s
        .keys
        .values()
        .filter(|k| {
            k.goal == Goal::Retire
                && k.all_hidden()
                && k.hidden_since
                    .is_some_and(|h| now >= h.saturating_add(p.purge_after))
        })
        .map(|k| k.id)
        .collect();
    for id in gone {
        s.keys.remove(&id);
        s.links.retain(|(_, a, b)| *a != id && *b != id);
        ev.purged.push(id);
    }
}

fn backup_alarm(s: &KeySet, p: &Policy, now: u64, ev: &mut Eval) {
    if p.backup_alarm_days == 0 {
        return;
    }
    let need = p.backup_alarm_days as u64 * 86_400;
    for &role in p.roles() {
        let life = p.lifetime(role);
        if life == 0 {
            continue;
        }
        let left = s
            .keys
            .values()
            .filter(|k| k.goal == Goal::Active && k.role == role && k.algorithm == p.algorithm)
            .filter_map(|k| k.active_since)
            .map(|a| a.saturating_add(life).saturating_sub(now))
            .max()
            .unwrap_or(0);
        let pooled = s
            .keys
            .values()
            .filter(|k| {
                k.goal == Goal::Pool && k.role == role && k.algorithm == p.algorithm && k.backed_up
            })
            .count() as u64;
        let covered = left.saturating_add(pooled.saturating_mul(life));
        if covered < need {
            ev.notes.push(format!(
                "ALARM backup: backed-up {} keys cover {} days of rolls, fewer than backup_alarm_days = {}",
                role.name(),
                covered / 86_400,
                p.backup_alarm_days
            ));
        }
    }
}

fn update_ttls(s: &mut KeySet, p: &Policy, f: &Facts, now: u64) {
    let cur = p.ttls(f);
    if let Some(old) = s.ttls {
        let pairs = [
            (TtlKind::Dnskey, old.dnskey, cur.dnskey),
            (TtlKind::Sig, old.sig, cur.sig),
            (TtlKind::Ds, old.ds, cur.ds),
            (TtlKind::Negative, old.negative, cur.negative),
        ];
        for (kind, was, is) in pairs {
            if was != is {
                s.ttl_history.push(TtlWas {
                    until: now,
                    kind,
                    ttl: was,
                });
            }
        }
    }
    s.ttl_history
        .retain(|h| h.until.saturating_add(h.ttl as u64 + TTL_HISTORY_KEEP) > now);
    s.ttls = Some(Ttls { ..cur });
}

/// Records an observation or operator decision. Refuses (with the reason) one that does
/// not fit the key's state, e.g. a "DS gone" for a DS every cache holds.
pub fn observe(s: &mut KeySet, p: &Policy, e: &Event) -> Result<String, String> {
    match e {
        Event::DsSeen { key, ttl, at } => {
            let k = key_mut(s, key)?;
            match k.rec[DS] {
                St::R | St::O => {
                    let first = !matches!(k.parent, Parent::Seen { .. });
                    k.parent = Parent::Seen { at: *at, ttl: *ttl };

                    if first && k.rec[DS] == St::R {
                        k.changed[DS] = *at;
                        k.pending[DS] = 0;
                    }
                    let mut msg = format!("DS of key {} seen at the parent (TTL {ttl})", k.tag);
                    if first {
                        s.seq += 1; // CDS/CDNSKEY follow what the parent has
                    }
                    msg.push_str(&ds_ttl_seen(s, p, *ttl));
                    Ok(msg)
                }
                st => Err(format!(
                    "DS of key {} is {st} here (not submitted): the parent should not serve it",
                    k.tag
                )),
            }
        }
        Event::DsGone { key, at } => {
            let k = key_mut(s, key)?;
            match k.rec[DS] {
                St::U => {
                    let first = !matches!(k.parent, Parent::Gone { .. });
                    if first {
                        k.parent = Parent::Gone { at: *at };
                        k.changed[DS] = *at;
                        k.pending[DS] = 0;
                    }
                    let msg = format!("DS of key {} gone from the parent", k.tag);
                    if first {
                        s.seq += 1;
                    }
                    Ok(msg)
                }
                st => Err(format!(
                    "DS of key {} is {st}: refusing \"DS gone\" (only a withdrawn DS can be gone)",
                    k.tag
                )),
            }
        }
        Event::BackupCommit { keys, .. } => {
            for id in keys {
                key_mut(s, id)?;
            }
            for id in keys {
                key_mut(s, id)?.backed_up = true;
            }
            Ok(format!("{} keys backed up", keys.len()))
        }
        Event::Rollover { role } => {
            if !p.roles().contains(role) {
                return Err(format!(
                    "the policy has no {} (csk = {})",
                    role.name(),
                    p.csk
                ));
            }
            s.roll_requested.insert(*role);
            Ok(format!("{} rollover requested", role.name()))
        }
        Event::ClockOk => {
            s.clock_hold = None;
            Ok("clock confirmed; waits resume".into())
        }
        Event::DsTtlSeen { ttl } => Ok(format!(
            "parent DS TTL {ttl} s observed{}",
            ds_ttl_seen(s, p, *ttl)
        )),
    }
}

/// A version built from key set `seq` was published at `at`: the waits of every change
/// it shows start now.
/// Remembers a DS TTL the parent serves; a warning when it is above the configured one.
fn ds_ttl_seen(s: &mut KeySet, p: &Policy, ttl: u32) -> String {
    s.ds_ttl_observed = s.ds_ttl_observed.max(ttl);
    if ttl > p.ds_ttl {
        format!(
            "; WARNING: the parent serves TTL {ttl} s, the policy says ds_ttl = {} s: waits use {ttl} s",
            p.ds_ttl
        )
    } else {
        String::new()
    }
}

fn key_mut<'a>(s: &'a mut KeySet, id: &KeyId) -> Result<&'a mut KeyState, String> {
    s.keys
        .get_mut(id)
        .ok_or_else(|| format!("no key {id} in this zone"))
}

pub fn published(s: &mut KeySet, seq: u64, at: u64) {
    for k in s.keys.values_mut() {
        for r in 0..4 {
            if k.pending[r] != 0 && k.pending[r] <= seq {
                k.pending[r] = 0;
                k.changed[r] = at;
            }
        }
    }
}

//! The key-lifecycle engine against the rollover simulator: the ten properties of
//! shared/KASP.md §4, and random policies, TTLs and delays with no bogus instant.

use quorumsign::kasp::sim::{History, Run, World, check};
use quorumsign::kasp::{
    DK, DS, Event, Facts, Goal, KR, KeySet, Policy, RS, Role, St, Transition, evaluate, observe,
};
use quorumsign::keys::KeyId;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
const T0: u64 = 1_800_000_000;

/// KASP.md §4 defaults: TTLkey 1 h, DprpC 5 min, safety margins 10 min, DprpP 1 h, Dreg 0.
fn policy() -> Policy {
    Policy {
        zsk_lifetime: 0,
        ksk_lifetime: 0,
        dnskey_ttl: 3600,
        ds_ttl: 3600,
        propagation_delay: 300,
        publish_safety: 600,
        retire_safety: 600,
        parent_propagation_delay: 3600,
        parent_registration_delay: 0,
        ..Policy::default()
    }
}

fn facts(max_ttl: u32) -> Facts {
    Facts {
        max_zone_ttl: max_ttl,
        soa_ttl: 3600,
        soa_minimum: 3600,
    }
}

/// A zone signed from scratch and run until its keys are settled.
fn steady(world: &mut World) -> (Run, u64) {
    let mut run = Run::new(KeySet::default(), T0, world);
    let now = run.run(world, T0, T0 + 30 * DAY);
    for k in run.set.keys.values() {
        assert_eq!(k.goal, Goal::Active, "{}", k.describe());
        for r in 0..4 {
            assert!(
                matches!(k.rec[r], St::O | St::NA),
                "{} record {r} is {} after 30 days",
                k.describe(),
                k.rec[r]
            );
        }
    }
    assert_no_bogus(&run.history);
    (run, now)
}

fn assert_no_bogus(h: &History) {
    let bogus = check(h);
    assert!(
        bogus.is_empty(),
        "bogus instants: {:?}\nchild versions: {:#?}\nparent versions: {:#?}",
        &bogus[..bogus.len().min(5)],
        h.child,
        h.parent
    );
}

/// When `key`'s record `r` first moved to `to` at or after `from`.
fn when(run: &Run, key: KeyId, r: usize, to: St, from: u64) -> u64 {
    run.transitions
        .iter()
        .find(|(t, x): &&(u64, Transition)| {
            *t >= from && x.key == key && x.record == r && x.to == to
        })
        .map(|(t, _)| *t)
        .unwrap_or_else(|| {
            panic!(
                "key {key} record {r} never reached {to}; timeline:\n{}",
                timeline(run)
            )
        })
}

fn timeline(run: &Run) -> String {
    run.timeline
        .iter()
        .map(|l| format!("{:>10} {}\n", l.at as i64 - T0 as i64, l.text))
        .collect()
}

fn active(run: &Run, role: Role) -> KeyId {
    run.set
        .keys
        .values()
        .find(|k| k.role == role && k.goal == Goal::Active)
        .map(|k| k.id)
        .expect("an active key")
}

fn newest(run: &Run, role: Role, not: KeyId) -> KeyId {
    run.transitions
        .iter()
        .rev()
        .find(|(_, t)| t.key != not && run.set.keys.get(&t.key).is_some_and(|k| k.role == role))
        .map(|(_, t)| t.key)
        .expect("a successor")
}

fn seen_at(run: &Run, key: KeyId) -> u64 {
    run.observed
        .iter()
        .find(|(_, e)| matches!(e, Event::DsSeen { key: k, .. } if *k == key))
        .map(|(t, _)| *t)
        .expect("DS seen")
}

fn gone_at(run: &Run, key: KeyId) -> u64 {
    run.observed
        .iter()
        .find(|(_, e)| matches!(e, Event::DsGone { key: k, .. } if *k == key))
        .map(|(t, _)| *t)
        .expect("DS gone")
}

fn roll(run: &mut Run, world: &mut World, role: Role, now: u64, days: u64) -> u64 {
    observe(&mut run.set, &world.policy, &Event::Rollover { role }).expect("rollover");
    run.run(world, now, now + days * DAY)
}

#[test]
fn p1_zsk_pre_publication_waits_for_the_largest_ttl() {
    let mut w = World::new(policy(), facts(7 * DAY as u32));
    let (mut run, t) = steady(&mut w);
    let old = active(&run, Role::Zsk);
    roll(&mut run, &mut w, Role::Zsk, t, 30);
    let new = newest(&run, Role::Zsk, old);
    let dk_r = when(&run, new, DK, St::R, t);
    let dk_o = when(&run, new, DK, St::O, t);
    assert!(dk_r <= t + 2, "the roll starts at once");
    assert_eq!(
        dk_o,
        dk_r + HOUR + 15 * 60,
        "new DNSKEY omnipresent after TTLkey + DprpC + safety"
    );
    let t1 = when(&run, new, RS, St::R, t);
    assert!(t1 >= dk_o);
    assert_eq!(when(&run, old, RS, St::U, t), t1, "signatures swap at once");
    assert!(when(&run, old, RS, St::H, t) >= t1 + 7 * DAY + 300);
    assert!(when(&run, old, DK, St::U, t) >= t1 + 7 * DAY + 300);
    assert_no_bogus(&run.history);
}

#[test]
fn p2_ksk_roll_waits_for_the_ds_ttl_the_parent_serves_not_the_configured_one() {
    // .nz, 2023: configured DS TTL 1 h, the parent serves 1 d.
    let mut w = World::new(policy(), facts(HOUR as u32));
    w.parent_ttl = DAY as u32;
    let (mut run, t) = steady(&mut w);
    let old = active(&run, Role::Ksk);
    roll(&mut run, &mut w, Role::Ksk, t, 20);
    let new = newest(&run, Role::Ksk, old);
    let seen = seen_at(&run, new);
    assert!(when(&run, new, DS, St::O, t) >= seen + DAY + HOUR);
    let gone = gone_at(&run, old);
    assert!(when(&run, old, DS, St::H, t) >= gone + DAY + HOUR);
    assert!(when(&run, old, DK, St::U, t) >= seen + DAY + HOUR);
    assert!(when(&run, old, KR, St::U, t) >= seen + DAY + HOUR);
    assert_no_bogus(&run.history);
    assert!(
        run.set.notes.is_empty() || run.set.ds_ttl_observed == DAY as u32,
        "the observed TTL is remembered"
    );

    // The same roll by a signer that believes the configuration: the simulator finds the
    // validators that still hold the old DS with the old KSK gone.
    let mut w = World::new(policy(), facts(HOUR as u32));
    w.parent_ttl = DAY as u32;
    w.reported_ttl = Some(HOUR as u32);
    let mut run = Run::new(KeySet::default(), T0, &w);
    let t = run.run(&mut w, T0, T0 + 30 * DAY);
    roll(&mut run, &mut w, Role::Ksk, t, 20);
    assert!(
        !check(&run.history).is_empty(),
        "an engine that waits 3600 s must be caught by the simulator"
    );
}

#[test]
fn p3_double_ds_publishes_the_new_dnskey_after_its_ds() {
    let mut p = policy();
    p.ksk_roll = "double-ds".into();
    let mut w = World::new(p, facts(HOUR as u32));
    let (mut run, t) = steady(&mut w);
    let old = active(&run, Role::Ksk);
    roll(&mut run, &mut w, Role::Ksk, t, 20);
    let new = newest(&run, Role::Ksk, old);
    let ds_o = when(&run, new, DS, St::O, t);
    assert!(when(&run, new, DK, St::R, t) >= ds_o);
    let keys_o = when(&run, new, DK, St::O, t).max(when(&run, new, KR, St::O, t));
    assert!(when(&run, old, DS, St::U, t) >= keys_o);
    assert_no_bogus(&run.history);
}

#[test]
fn p4_csk_roll_keeps_the_old_csk_until_ds_and_signatures_are_settled() {
    let mut p = policy();
    p.csk = true;
    let mut w = World::new(p, facts(2 * DAY as u32));
    w.parent_ttl = DAY as u32;
    let (mut run, t) = steady(&mut w);
    let old = active(&run, Role::Csk);
    roll(&mut run, &mut w, Role::Csk, t, 30);
    let new = newest(&run, Role::Csk, old);
    let seen = seen_at(&run, new);
    let swap = when(&run, new, RS, St::R, t);
    let withdrawn = when(&run, old, DK, St::U, t);
    assert!(withdrawn >= seen + DAY + HOUR);
    assert!(withdrawn >= swap + 2 * DAY + 300);
    assert_no_bogus(&run.history);
}

#[test]
fn p5_algorithm_roll_8_to_13_is_the_conservative_kind() {
    let mut p = policy();
    p.algorithm = 8;
    let mut w = World::new(p, facts(HOUR as u32));
    let (mut run, t) = steady(&mut w);
    w.policy.algorithm = 13;
    let end = run.run(&mut w, t, t + 30 * DAY);
    let alg = |id: &KeyId| run.set.keys.get(id).map(|k| k.algorithm);
    let by = |a: u8, role: Role| -> KeyId {
        run.transitions
            .iter()
            .map(|(_, x)| x.key)
            .find(|id| {
                run.set
                    .keys
                    .get(id)
                    .is_some_and(|k| k.algorithm == a && k.role == role)
            })
            .unwrap_or_else(|| panic!("a key of algorithm {a}:\n{}", timeline(&run)))
    };
    let (k13, z13) = (by(13, Role::Ksk), by(13, Role::Zsk));
    let ds13 = when(&run, k13, DS, St::R, t);
    assert!(ds13 >= when(&run, k13, DK, St::O, t));
    assert!(ds13 >= when(&run, k13, KR, St::O, t));
    assert!(ds13 >= when(&run, z13, RS, St::O, t));
    assert!(
        when(&run, z13, RS, St::R, t) <= when(&run, z13, DK, St::R, t),
        "the new algorithm signs before its DNSKEY is published"
    );
    // The alg-8 keys are purged by now; read their transitions from the record.
    let old8: Vec<(KeyId, Role)> = run
        .transitions
        .iter()
        .filter(|(at, x)| *at < t && alg(&x.key).is_none())
        .map(|(_, x)| x.key)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| {
            let has_ds = run
                .transitions
                .iter()
                .any(|(_, x)| x.key == id && x.record == DS);
            (id, if has_ds { Role::Ksk } else { Role::Zsk })
        })
        .collect();
    assert_eq!(old8.len(), 2, "both alg-8 keys purged by {}", end - t);
    let k8 = old8.iter().find(|k| k.1 == Role::Ksk).unwrap().0;
    let z8 = old8.iter().find(|k| k.1 == Role::Zsk).unwrap().0;
    let ds8_h = when(&run, k8, DS, St::H, t);
    assert!(when(&run, k8, DK, St::U, t) >= ds8_h);
    assert!(when(&run, z8, DK, St::U, t) >= ds8_h);
    assert!(when(&run, z8, RS, St::U, t) >= ds8_h);
    let rs13_o = when(&run, z13, RS, St::O, t);
    let only13 = run
        .history
        .child
        .iter()
        .find(|v| {
            v.at >= t
                && !v.dnskeys.is_empty()
                && !v.dnskeys.contains(&k8)
                && !v.dnskeys.contains(&z8)
        })
        .expect("a DNSKEY RRset of alg-13 keys only")
        .at;
    assert!(only13 >= rs13_o);
    assert_no_bogus(&run.history);
}

#[test]
fn p6_replay_on_another_node_gives_the_same_state_actions_and_wakeup() {
    let mut p = policy();
    p.zsk_lifetime = 20 * DAY;
    p.ksk_lifetime = 60 * DAY;
    let mut w = World::new(p.clone(), facts(DAY as u32));
    let mut run = Run::new(KeySet::default(), T0, &w);
    let mut now = T0;
    let mut checked = 0;
    for step in 0..200u64 {
        now = run.run(&mut w, now, now + 2 * DAY + step * 977 % DAY);
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&run.set, cfg).unwrap();
        let (replica, _): (KeySet, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(replica, run.set);
        let at = now + step * 131;
        let (a, ea) = evaluate(&run.set, &p, &w.facts, at);
        let (b, eb) = evaluate(&replica, &p, &w.facts, at);
        assert_eq!(a, b, "step {step}");
        assert_eq!(ea, eb, "step {step}");
        let (c, ec) = evaluate(&a, &p, &w.facts, at);
        assert!(!ec.changes_state(), "re-evaluating at the same now: {ec:?}");
        assert_eq!(c.keys, a.keys);
        assert_eq!(ec.actions, ea.actions);
        assert_eq!(ec.next, ea.next);
        checked += 1;
    }
    assert_eq!(checked, 200);
    assert_no_bogus(&run.history);
}

#[test]
fn p7_clock_jumps_hold_or_order_transitions_and_backward_jumps_change_nothing() {
    let mut p = policy();
    p.max_clock_jump = 60 * DAY;
    let mut w = World::new(p.clone(), facts(HOUR as u32));
    let (mut run, t) = steady(&mut w);
    observe(&mut run.set, &p, &Event::Rollover { role: Role::Zsk }).unwrap();
    run.step(&mut w, t);
    run.step(&mut w, t + 1);
    let t = t + 1;
    let set = run.set.clone();
    let new = active(&run, Role::Zsk);
    assert_eq!(set.keys[&new].rec[DK], St::R);

    // +30 d within the limit: DK → O may fire, but nothing goes hidden in the same
    // evaluation that introduced its successor.
    let (_, ev) = evaluate(&set, &p, &w.facts, t + 30 * DAY);
    assert!(
        ev.transitions
            .iter()
            .any(|x| x.key == new && x.record == DK && x.to == St::O)
    );
    for x in ev.transitions.iter().filter(|x| x.to == St::H) {
        assert!(
            !ev.transitions
                .iter()
                .any(|y| y.record == x.record && y.to == St::R),
            "{x} in the evaluation that introduced a successor: {:?}",
            ev.transitions
        );
    }

    // +30 d past a 7 d limit: no O/H transition, and a clock anomaly.
    let mut strict = p.clone();
    strict.max_clock_jump = 7 * DAY;
    let (held, ev) = evaluate(&set, &strict, &w.facts, t + 30 * DAY);
    assert!(
        ev.transitions.iter().all(|x| matches!(x.to, St::R | St::U)),
        "{:?}",
        ev.transitions
    );
    assert!(held.clock_hold.is_some());
    assert!(ev.notes.iter().any(|n| n.contains("clock jumped")));
    let mut ok = held.clone();
    observe(&mut ok, &strict, &Event::ClockOk).unwrap();
    let (_, ev) = evaluate(&ok, &strict, &w.facts, t + 30 * DAY + 1);
    assert!(ev.transitions.iter().any(|x| x.key == new && x.to == St::O));

    // Backward: nothing moves.
    let (back, ev) = evaluate(&set, &p, &w.facts, t - HOUR);
    assert!(ev.transitions.is_empty() && ev.goals.is_empty());
    assert_eq!(back.keys, set.keys);
    assert!(ev.notes.iter().any(|n| n.contains("clock anomaly")));
}

#[test]
fn p8_a_lowered_ttl_still_waits_for_the_old_one() {
    let mut p = policy();
    p.dnskey_ttl = DAY as u32;
    let mut w = World::new(p, facts(HOUR as u32));
    let (mut run, t) = steady(&mut w);
    observe(
        &mut run.set,
        &w.policy,
        &Event::Rollover { role: Role::Zsk },
    )
    .unwrap();
    run.step(&mut w, t);
    run.step(&mut w, t + 1);
    let t = t + 1;
    let new = active(&run, Role::Zsk);
    assert_eq!(when(&run, new, DK, St::R, t), t);
    w.policy.dnskey_ttl = HOUR as u32;
    run.run(&mut w, t + 60, t + 10 * DAY);
    assert!(when(&run, new, DK, St::O, t) >= t + DAY + 300 + 600);
    assert_no_bogus(&run.history);
}

#[test]
fn p9_a_parent_that_never_publishes_keeps_the_old_ksk() {
    let mut w = World::new(policy(), facts(HOUR as u32));
    let (mut run, t) = steady(&mut w);
    let old = active(&run, Role::Ksk);
    w.parent_deaf = true;
    let end = roll(&mut run, &mut w, Role::Ksk, t, 60);
    let new = newest(&run, Role::Ksk, old);
    assert_eq!(run.set.keys[&new].rec[DS], St::R);
    assert_eq!(run.set.keys[&old].rec[DK], St::O);
    assert_eq!(run.set.keys[&old].rec[KR], St::O);
    let (_, ev) = evaluate(&run.set, &w.policy, &w.facts, end);
    assert!(
        ev.actions
            .iter()
            .any(|a| matches!(a, quorumsign::kasp::Action::SubmitDs { key, .. } if *key == new)),
        "the submission repeats"
    );
    if run.set.keys[&old].rec[DS] == St::O {
        let stray = Event::DsGone { key: old, at: end };
        assert!(observe(&mut run.set.clone(), &w.policy, &stray).is_err());
    } else {
        // double-KSK replaced the DS at once: the old DS is withdrawn but not gone.
        assert_eq!(run.set.keys[&old].rec[DS], St::U);
        let stray = Event::DsGone { key: new, at: end };
        assert!(observe(&mut run.set.clone(), &w.policy, &stray).is_err());
    }
    assert_no_bogus(&run.history);
}

#[test]
fn p10_first_signing_covers_negative_caching_of_the_dnskey() {
    let mut w = World::new(
        policy(),
        Facts {
            max_zone_ttl: HOUR as u32,
            soa_ttl: DAY as u32,
            soa_minimum: DAY as u32,
        },
    );
    let mut run = Run::new(KeySet::default(), T0, &w);
    run.run(&mut w, T0, T0 + 10 * DAY);
    let ksk = active(&run, Role::Ksk);
    let zsk = active(&run, Role::Zsk);
    let dk_o = when(&run, ksk, DK, St::O, T0);
    assert!(dk_o >= T0 + DAY + 300 + 600);
    let ds_r = when(&run, ksk, DS, St::R, T0);
    assert!(ds_r >= dk_o);
    assert!(ds_r >= when(&run, ksk, KR, St::O, T0));
    assert!(ds_r >= when(&run, zsk, RS, St::O, T0));
    assert_no_bogus(&run.history);
}

/// xorshift64*: the test's own generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

#[test]
fn random_policies_ttls_and_delays_never_give_a_bogus_instant() {
    let seeds: u64 = std::env::var("KASP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut rolls = 0;
    for seed in 1..=seeds {
        let mut g = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let ttls = [60u32, 300, 3600, 6 * 3600, 86_400, 2 * 86_400];
        let mut p = Policy {
            csk: g.next() % 3 == 0,
            ksk_roll: g.pick(&["double-ksk", "double-ds"]).into(),
            zsk_roll: g.pick(&["pre-publication", "double-signature"]).into(),
            zsk_lifetime: g.pick(&[0, DAY, 7 * DAY, 30 * DAY]),
            ksk_lifetime: g.pick(&[0, 10 * DAY, 45 * DAY, 90 * DAY]),
            dnskey_ttl: g.pick(&ttls),
            ds_ttl: g.pick(&ttls),
            propagation_delay: g.pick(&[0, 60, 300, 3600]),
            parent_propagation_delay: g.pick(&[0, 300, 3600, 7200]),
            parent_registration_delay: g.pick(&[0, 0, 3600]),
            publish_safety: g.pick(&[0, 600, 3600]),
            retire_safety: g.pick(&[0, 600, 3600]),
            purge_after: g.pick(&[DAY, 14 * DAY]),
            algorithm: g.pick(&[8, 13, 13, 15]),
            ..Policy::default()
        };
        let soa = g.pick(&ttls);
        let f = Facts {
            max_zone_ttl: g.pick(&ttls),
            soa_ttl: soa,
            soa_minimum: g.pick(&ttls),
        };
        let mut w = World::new(p.clone(), f);
        w.parent_ttl = g.pick(&ttls);
        w.parent_delay = g.pick(&[1, 600, 3 * 3600, DAY]);
        w.parent_spread = g.pick(&[0, 60, 3600]);
        // The checker's view counts: the parent must not spread slower than the policy
        // says, or no signer could be safe; what it serves may exceed the configured TTL.
        w.parent_spread = w.parent_spread.min(p.parent_propagation_delay as u64);
        w.check_interval = g.pick(&[60, 600, 3600]);
        let mut run = Run::new(KeySet::default(), T0, &w);
        let mut now = run.run(&mut w, T0, T0 + 20 * DAY);
        for _ in 0..3 {
            match g.next() % 5 {
                0 => {
                    let role = g.pick(w.policy.roles());
                    observe(&mut run.set, &w.policy, &Event::Rollover { role }).unwrap();
                }
                1 => {
                    p.algorithm = g.pick(&[8, 13, 15]);
                    w.policy.algorithm = p.algorithm;
                }
                2 => {
                    w.policy.dnskey_ttl = g.pick(&ttls);
                    w.facts.max_zone_ttl = g.pick(&ttls);
                }
                3 => {
                    w.policy.csk = !w.policy.csk;
                }
                _ => {}
            }
            now = run.run(&mut w, now, now + 60 * DAY);
        }
        let bogus = check(&run.history);
        assert!(
            bogus.is_empty(),
            "seed {seed}: policy {p:?} world {w:?}\nbogus {:?}\n{}",
            &bogus[..bogus.len().min(3)],
            timeline(&run)
        );
        // No roll is stuck: with rolls by lifetime off, everything settles.
        w.policy.zsk_lifetime = 0;
        w.policy.ksk_lifetime = 0;
        run.run(&mut w, now, now + 120 * DAY);
        for k in run.set.keys.values() {
            let settled = match k.goal {
                Goal::Active => k.rec.iter().all(|r| matches!(r, St::O | St::NA)),
                _ => k.all_hidden(),
            };
            assert!(
                settled,
                "seed {seed}: {} stuck at {:?} ({:?})\n{}",
                k.describe(),
                k.rec,
                run.set.notes,
                timeline(&run)
            );
        }
        rolls += run
            .transitions
            .iter()
            .filter(|(_, x)| x.record == DK && x.to == St::H)
            .count();
    }
    assert!(
        rolls > seeds as usize,
        "only {rolls} keys retired in {seeds} runs"
    );
}

#[test]
fn keys_not_backed_up_are_never_published_and_the_pool_is_kept_ahead() {
    let mut p = policy();
    p.require_backup = true;
    p.zsk_lifetime = 30 * DAY;
    p.key_pool_lookahead = 90 * DAY;
    p.backup_alarm_days = 60;
    let mut w = World::new(p.clone(), facts(HOUR as u32));
    w.backup_at_once = false;
    let mut run = Run::new(KeySet::default(), T0, &w);
    run.run(&mut w, T0, T0 + 2 * DAY);
    assert!(!run.set.keys.is_empty(), "keys are made ahead");
    for k in run.set.keys.values() {
        assert!(
            k.all_hidden(),
            "{} published without a backup",
            k.describe()
        );
        assert_eq!(k.goal, Goal::Pool);
    }
    let zsks = run
        .set
        .keys
        .values()
        .filter(|k| k.role == Role::Zsk)
        .count();
    assert!(zsks >= 3, "90 days of 30-day ZSKs in the pool: {zsks}");
    let (_, ev) = evaluate(&run.set, &p, &w.facts, T0 + 2 * DAY);
    assert!(
        ev.notes.iter().any(|n| n.contains("backup")),
        "the engine says why: {:?}",
        ev.notes
    );
    // Commit the backup of everything there is: the zone is signed, and the alarm counts
    // the backed-up pool.
    let all: Vec<KeyId> = run.set.keys.keys().copied().collect();
    observe(
        &mut run.set,
        &p,
        &Event::BackupCommit {
            keys: all,
            at: T0 + 2 * DAY,
        },
    )
    .unwrap();
    let now = run.run(&mut w, T0 + 2 * DAY, T0 + 10 * DAY);
    let ksk = active(&run, Role::Ksk);
    assert_eq!(run.set.keys[&ksk].rec[DS], St::O);
    for k in run.set.keys.values().filter(|k| k.goal == Goal::Active) {
        assert!(k.backed_up);
    }
    // Keys made later (pool refills) are not backed up: the ZSK rolls use backed-up
    // ones only, and once those run out the alarm sounds.
    let later = run.run(&mut w, now, now + 120 * DAY);
    for (_, t) in &run.transitions {
        if t.to == St::R {
            let k = run.set.keys.get(&t.key);
            assert!(
                k.is_none_or(|k| k.backed_up),
                "key {} used without backup",
                t.tag
            );
        }
    }
    let (_, ev) = evaluate(&run.set, &p, &w.facts, later);
    assert!(
        ev.notes.iter().any(|n| n.starts_with("ALARM backup")),
        "{:?}",
        ev.notes
    );
    assert_no_bogus(&run.history);
}

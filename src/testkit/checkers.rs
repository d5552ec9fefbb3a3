//! Invariant checkers of the chaos harness, one per invariant of shared/DESIGN.md. Each
//! takes observations (what the nodes serve, the NOTIFYs a listener received, the audit
//! log, the key history) and records violations; the unit tests plant one violation of
//! each kind and show that it is caught.
//!
//! - **V** every served version validates;
//! - **S** one zone and serial ⇒ one content hash everywhere; a node's serial never goes back;
//! - **K** one zone and serial ⇒ one DNSKEY RRset everywhere;
//! - **F** no served RRSIG expires within the refresh margin;
//! - **R** no key removed while validators may still need it (the key-history simulator);
//! - **P** one fencing token announces one serial, and a lower token never follows a higher;
//! - **A** every acknowledged operator command is in the final audit log;
//! - **L** a publishing leader within a bound after the faults heal.

use std::collections::{BTreeMap, HashMap};

/// One violation, with where and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: char,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub what: String,
}

/// What one node served for one zone at one moment.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub at_ms: u64,
    pub node: u64,
    pub zone: String,
    pub serial: u32,
    pub hash: String,
    /// The DNSKEY RRset's rdatas, sorted.
    pub dnskeys: Vec<Vec<u8>>,
    /// Earliest RRSIG expiration served (Unix seconds).
    pub min_expiration: u32,
    /// Whether the served version passed the validator (`None`: not checked this time).
    pub valid: Option<bool>,
}

#[derive(Default)]
pub struct Checkers {
    hash_of: HashMap<(String, u32), (String, u64)>,
    keys_of: HashMap<(String, u32), (Vec<Vec<u8>>, u64)>,
    serial_of: HashMap<(u64, String), u32>,
    notify_last: HashMap<String, ((u64, u64), u32)>,
    notify_serial: HashMap<(String, (u64, u64)), u32>,
    pub violations: Vec<Violation>,
    /// Checks made, per invariant.
    pub checks: BTreeMap<char, u64>,
}

/// RFC 1982: is `a` before `b`?
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

impl Checkers {
    fn count(&mut self, inv: char) {
        *self.checks.entry(inv).or_default() += 1;
    }

    fn violate(&mut self, invariant: char, at_ms: u64, what: String) {
        self.violations.push(Violation {
            invariant,
            at_ms,
            what,
        });
    }

    /// V, S, K and F over one observation; `now` is Unix seconds, `margin` the refresh
    /// margin no served signature may fall within.
    pub fn observe(&mut self, o: &Observation, now: u32, margin: u32) {
        if let Some(valid) = o.valid {
            self.count('V');
            if !valid {
                self.violate(
                    'V',
                    o.at_ms,
                    format!(
                        "node {} serves {} serial {} that does not validate",
                        o.node, o.zone, o.serial
                    ),
                );
            }
        }
        self.count('S');
        let key = (o.zone.clone(), o.serial);
        match self.hash_of.get(&key) {
            Some((h, n)) if *h != o.hash => {
                let what = format!(
                    "{} serial {}: node {} serves hash {}, node {n} served {h}",
                    o.zone, o.serial, o.node, o.hash
                );
                self.violate('S', o.at_ms, what);
            }
            Some(_) => {}
            None => {
                self.hash_of.insert(key.clone(), (o.hash.clone(), o.node));
            }
        }
        let last = self.serial_of.insert((o.node, o.zone.clone()), o.serial);
        if let Some(prev) = last
            && serial_lt(o.serial, prev)
        {
            self.violate(
                'S',
                o.at_ms,
                format!(
                    "node {} went back from serial {prev} to {} of {}",
                    o.node, o.serial, o.zone
                ),
            );
        }
        self.count('K');
        match self.keys_of.get(&key) {
            Some((k, n)) if *k != o.dnskeys => {
                let what = format!(
                    "{} serial {}: node {} serves {} DNSKEYs, node {n} served another set of {}",
                    o.zone,
                    o.serial,
                    o.node,
                    o.dnskeys.len(),
                    k.len()
                );
                self.violate('K', o.at_ms, what);
            }
            Some(_) => {}
            None => {
                self.keys_of.insert(key, (o.dnskeys.clone(), o.node));
            }
        }
        self.count('F');
        if o.min_expiration < now.saturating_add(margin) {
            self.violate(
                'F',
                o.at_ms,
                format!(
                    "node {} serves {} serial {} with an RRSIG expiring at {}, within {margin} s of now ({now})",
                    o.node, o.zone, o.serial, o.min_expiration
                ),
            );
        }
    }

    /// P over one NOTIFY received by the listener: its fencing token and serial.
    pub fn notify(&mut self, at_ms: u64, zone: &str, token: (u64, u64), serial: u32) {
        self.count('P');
        match self.notify_serial.get(&(zone.to_string(), token)) {
            Some(s) if *s != serial => {
                let what = format!(
                    "{zone}: token {}:{} announced serial {s} and serial {serial} (two publishers)",
                    token.0, token.1
                );
                self.violate('P', at_ms, what);
            }
            _ => {
                self.notify_serial.insert((zone.to_string(), token), serial);
            }
        }
        if let Some((t, s)) = self.notify_last.get(zone).copied()
            && token < t
        {
            self.violate(
                'P',
                at_ms,
                format!(
                    "{zone}: token {}:{} (serial {serial}) after token {}:{} (serial {s})",
                    token.0, token.1, t.0, t.1
                ),
            );
            return;
        }
        self.notify_last.insert(zone.to_string(), (token, serial));
    }

    /// A: each acknowledged command (its audit text) is in the final audit log.
    pub fn audit(&mut self, at_ms: u64, acked: &[String], log: &[String]) {
        for a in acked {
            self.count('A');
            if !log.iter().any(|l| l.contains(a.as_str())) {
                self.violate(
                    'A',
                    at_ms,
                    format!("acknowledged command {a:?} is not in the audit log"),
                );
            }
        }
    }

    /// L: after the faults healed at `healed_ms`, a leader published at `published_ms`
    /// (`None`: never), within `bound_ms`.
    pub fn leader(&mut self, healed_ms: u64, published_ms: Option<u64>, bound_ms: u64) {
        self.count('L');
        match published_ms {
            Some(p) if p.saturating_sub(healed_ms) <= bound_ms => {}
            Some(p) => self.violate(
                'L',
                p,
                format!(
                    "first publication {} ms after the faults healed (bound {bound_ms} ms)",
                    p - healed_ms
                ),
            ),
            None => self.violate(
                'L',
                healed_ms,
                format!(
                    "the faults healed at {healed_ms} ms; no leader published within {bound_ms} ms"
                ),
            ),
        }
    }

    /// R: the recorded key history (DNSKEY RRsets, who signs, the parent's DS sets) has no
    /// instant at which a validator could see a bogus answer.
    pub fn removals(&mut self, at_ms: u64, h: &crate::kasp::sim::History) {
        self.count('R');
        for b in crate::kasp::sim::check(h).into_iter().take(5) {
            // With the versions recorded in the 2000 key-s before it, to replay by hand.
            let around: Vec<String> = h
                .child
                .iter()
                .filter(|v| v.at + 2000 >= b.at && v.at <= b.at + 200)
                .map(|v| {
                    let tags = |s: &std::collections::BTreeSet<crate::keys::KeyId>| {
                        s.iter()
                            .map(|k| u16::from_be_bytes([k.0[0], k.0[1]]).to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    format!(
                        "\n      {}: DNSKEY {{{}}} signed by {{{}}}, data by {{{}}}",
                        v.at,
                        tags(&v.dnskeys),
                        tags(&v.dnskey_signers),
                        tags(&v.data_signers)
                    )
                })
                .collect();
            self.violate(
                'R',
                at_ms,
                format!("at {}: {}; versions seen:{}", b.at, b.what, around.concat()),
            );
        }
    }

    /// R, as each answer comes: one node's answer `v` goes into the key history; an old
    /// version answered again later than the propagation delay after it was superseded (a
    /// node serving what the key-lifecycle engine counts as gone) is a violation.
    pub fn key_version(
        &mut self,
        at_ms: u64,
        node: u64,
        h: &mut crate::kasp::sim::History,
        v: crate::kasp::sim::ChildVersion,
    ) {
        self.count('R');
        if let Err(e) = h.served(v, SLACK) {
            self.violate('R', at_ms, format!("node {node}: {e}"));
        }
    }

    /// The violations of one invariant.
    pub fn of(&self, inv: char) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.invariant == inv)
            .collect()
    }
}

/// Key-clock seconds the harness may take between a node's answer and its record of it.
pub const SLACK: u64 = 30;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kasp::sim::{ChildVersion, History, ParentVersion};
    use crate::keys::KeyId;

    fn obs(node: u64, serial: u32, hash: &str) -> Observation {
        Observation {
            at_ms: 1,
            node,
            zone: "example.".into(),
            serial,
            hash: hash.into(),
            dnskeys: vec![vec![1, 2, 3]],
            min_expiration: 2_000_000_000,
            valid: Some(true),
        }
    }

    #[test]
    fn agreeing_observations_pass() {
        let mut c = Checkers::default();
        c.observe(&obs(1, 10, "aa"), 1_800_000_000, 3600);
        c.observe(&obs(2, 10, "aa"), 1_800_000_000, 3600);
        c.observe(&obs(1, 11, "bb"), 1_800_000_000, 3600);
        c.notify(1, "example.", (1, 5), 10);
        c.notify(2, "example.", (1, 9), 11);
        c.audit(
            3,
            &["zone add example.".into()],
            &["1:4 zone add example. file:x".into()],
        );
        c.leader(0, Some(900), 1000);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.checks[&'S'], 3);
    }

    #[test]
    fn v_an_invalid_served_version_is_caught() {
        let mut c = Checkers::default();
        let mut o = obs(1, 10, "aa");
        o.valid = Some(false);
        c.observe(&o, 1_800_000_000, 3600);
        assert_eq!(c.of('V').len(), 1);
    }

    #[test]
    fn s_two_hashes_for_one_serial_and_a_serial_going_back_are_caught() {
        let mut c = Checkers::default();
        c.observe(&obs(1, 10, "aa"), 1_800_000_000, 3600);
        c.observe(&obs(2, 10, "ab"), 1_800_000_000, 3600);
        assert_eq!(c.of('S').len(), 1);
        c.observe(&obs(1, 12, "cc"), 1_800_000_000, 3600);
        c.observe(&obs(1, 11, "dd"), 1_800_000_000, 3600);
        assert_eq!(c.of('S').len(), 2, "{:?}", c.violations);
        // RFC 1982: 0xffffffff → 1 moves forward.
        let mut c = Checkers::default();
        c.observe(&obs(1, u32::MAX, "aa"), 1_800_000_000, 3600);
        c.observe(&obs(1, 1, "bb"), 1_800_000_000, 3600);
        assert!(c.of('S').is_empty());
    }

    #[test]
    fn k_two_key_sets_for_one_serial_are_caught() {
        let mut c = Checkers::default();
        c.observe(&obs(1, 10, "aa"), 1_800_000_000, 3600);
        let mut o = obs(2, 10, "aa");
        o.dnskeys = vec![vec![9]];
        c.observe(&o, 1_800_000_000, 3600);
        assert_eq!(c.of('K').len(), 1);
    }

    #[test]
    fn f_a_signature_inside_the_refresh_margin_is_caught() {
        let mut c = Checkers::default();
        let mut o = obs(1, 10, "aa");
        o.min_expiration = 1_800_000_100;
        c.observe(&o, 1_800_000_000, 3600);
        assert_eq!(c.of('F').len(), 1);
    }

    #[test]
    fn p_two_publishers_and_a_lower_token_are_caught() {
        let mut c = Checkers::default();
        c.notify(1, "example.", (2, 7), 10);
        c.notify(2, "example.", (2, 7), 11);
        assert_eq!(c.of('P').len(), 1);
        c.notify(3, "example.", (1, 9), 12);
        assert_eq!(c.of('P').len(), 2);
    }

    #[test]
    fn a_a_lost_acknowledged_command_is_caught() {
        let mut c = Checkers::default();
        c.audit(
            1,
            &["zone reload example.".into()],
            &["zone add example.".into()],
        );
        assert_eq!(c.of('A').len(), 1);
    }

    #[test]
    fn l_no_leader_or_a_late_one_is_caught() {
        let mut c = Checkers::default();
        c.leader(1000, None, 5000);
        c.leader(1000, Some(9000), 5000);
        assert_eq!(c.of('L').len(), 2);
    }

    /// A version in which keys `keys` are published and sign everything.
    fn signed_by(at: u64, keys: &[u8], ttl: u32) -> ChildVersion {
        let ids = || keys.iter().map(|k| KeyId([*k; 32])).collect();
        ChildVersion {
            at,
            dnskeys: ids(),
            dnskey_signers: ids(),
            data_signers: ids(),
            dnskey_ttl: ttl,
            sig_ttl: ttl,
        }
    }

    #[test]
    fn r_a_key_removed_too_early_is_caught() {
        let id = |n: u8| KeyId([n; 32]);
        let v = |at: u64, keys: &[u8]| signed_by(at, keys, 3600);
        let mut h = History {
            propagation: 60,
            negative_ttl: 60,
            ..Default::default()
        };
        h.parent.push(ParentVersion {
            ds: [id(1)].into_iter().collect(),
            earliest: 0,
            latest: 0,
            ttl: 86_400,
        });
        h.child.push(v(10_000, &[1]));
        // Key 1 replaced by key 2 at once while the parent still has only key 1's DS.
        h.child.push(v(20_000, &[2]));
        let mut c = Checkers::default();
        c.removals(1, &h);
        assert!(!c.of('R').is_empty());
    }

    #[test]
    fn r_an_old_version_served_past_the_propagation_delay_is_caught() {
        let v = |at: u64, keys: &[u8]| signed_by(at, keys, 300);
        let mut h = History {
            propagation: 300,
            ..Default::default()
        };
        let mut c = Checkers::default();
        c.key_version(1, 1, &mut h, v(1_000, &[1]));
        c.key_version(2, 2, &mut h, v(2_000, &[1, 2]));
        // A lagging node within the propagation delay: allowed, and no new version.
        c.key_version(3, 3, &mut h, v(2_200, &[1]));
        assert!(c.of('R').is_empty());
        assert_eq!(h.child.len(), 2);
        // The same node still answering with it well past the delay.
        c.key_version(4, 3, &mut h, v(2_400, &[1]));
        assert_eq!(c.of('R').len(), 1);
        assert_eq!(h.child.len(), 2);
    }
}

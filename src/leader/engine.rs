//! The leader's decisions, without I/O and without a clock of its own: facts in, what to do
//! out. The loop ([`super::run`]) gathers the facts, asks, and carries the answer out; each
//! zone's run ([`super::zone`]) asks [`decide`] whether a version is to be built and records
//! what came of it with [`Phase::after`].
//!
//! ```text
//!  duty(facts):
//!    not leader ──────────────────────────► Standby (a witness: Idle)
//!    witness, a key unusable here ────────► HandOver
//!    no quorum acknowledgement (lease) ───► Wait
//!    clock not compared this tick ────────► CheckClock ──► the answer becomes a fact
//!    clock disagrees with the voters ─────► HandOver
//!    lost its quorum in this term ────────► HandOver
//!    a term not started ──────────────────► Start (fence the predecessor, LeaderStart)
//!    otherwise ───────────────────────────► Lead: schedule() starts zone runs
//!
//!  a zone, between runs (Phase):
//!    Ready ──refused input──► Refused{input} ──input changes──► (a build)
//!      │  ◄──published────────────┘
//!      └──passing failure──► Backoff{at, wait} ──at passed──► (a build) ──fails again──►
//!                            Backoff{at', 2·wait ≤ 30 s}
//! ```

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::keys::KeyId;

/// Longest wait before a build that failed for a passing reason is tried again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The first such wait; each further failure doubles it.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// What the loop knows at a tick.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub leader: bool,
    pub witness: bool,
    /// A key this node cannot sign with (its readiness test-sign failed), and why.
    pub key_unusable: Option<String>,
    /// A quorum acknowledged this leader within its lease.
    pub may_publish: bool,
    /// This tick's comparison of the wall clock with the other voters' (`None`: not made
    /// yet), and why it failed.
    pub clock: Option<Result<(), String>>,
    pub term: u64,
    /// The term in which this node lost its quorum as leader.
    pub fenced_term: Option<u64>,
    /// The term whose `LeaderStart` this node committed.
    pub started: Option<u64>,
}

/// Why a leader gives leadership away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOver {
    /// A witness votes and never signs.
    Witness,
    /// A key cannot sign here.
    KeyUnusable(String),
    /// Its wall clock disagrees with the other voters'.
    Clock(String),
    /// It lost its quorum in this term: it resumes only as a follower.
    QuorumLost,
}

impl std::fmt::Display for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandOver::Witness => f.write_str("witness"),
            HandOver::KeyUnusable(why) | HandOver::Clock(why) => f.write_str(why),
            HandOver::QuorumLost => f.write_str("lost its quorum in this term"),
        }
    }
}

/// What this node owes the cluster at this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty {
    /// Not leading: keep the index of each zone's input file up to date.
    Standby,
    /// A witness that does not lead: nothing.
    Idle,
    HandOver(HandOver),
    /// Leading without a fresh quorum acknowledgement: sign nothing now.
    Wait,
    /// Compare the clock with the other voters, then decide again.
    CheckClock,
    /// A new term: fence the predecessor, commit `LeaderStart`.
    Start(u64),
    /// Run the zones.
    Lead,
}

pub fn duty(f: &Facts) -> Duty {
    if !f.leader {
        return if f.witness { Duty::Idle } else { Duty::Standby };
    }
    if f.witness {
        return Duty::HandOver(HandOver::Witness);
    }
    if let Some(why) = &f.key_unusable {
        return Duty::HandOver(HandOver::KeyUnusable(why.clone()));
    }
    if !f.may_publish {
        return Duty::Wait;
    }
    match &f.clock {
        None => return Duty::CheckClock,
        Some(Err(why)) => return Duty::HandOver(HandOver::Clock(why.clone())),
        Some(Ok(())) => {}
    }
    // (Also when it won a later election before following anyone: it must rejoin first.)
    if f.fenced_term.is_some_and(|t| t <= f.term) {
        return Duty::HandOver(HandOver::QuorumLost);
    }
    if f.started != Some(f.term) {
        return Duty::Start(f.term);
    }
    Duty::Lead
}

/// Which zones start a run now: those not running already, in the order given, while
/// fewer than `limit` run. A zone whose run is slow (a primary that trickles its transfer,
/// a large zone signed whole) holds one of the places only: the others go on.
pub fn schedule<'z>(
    zones: impl IntoIterator<Item = &'z str>,
    running: &HashSet<String>,
    limit: usize,
) -> Vec<&'z str> {
    let free = limit.saturating_sub(running.len());
    zones
        .into_iter()
        .filter(|z| !running.contains(*z))
        .take(free)
        .collect()
}

/// Where a zone stands between builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// No build pending: the next run builds when a version is due.
    #[default]
    Ready,
    /// The input with this digest was refused (parse, limits, the publish gate): no build
    /// from it again until it changes, or signatures fall due.
    Refused { input: [u8; 32] },
    /// A build failed for a passing reason (a keystore fault, a version that moved): none
    /// before `at`; a further failure waits twice `wait`, up to [`RETRY_MAX`].
    Backoff { at: Instant, wait: Duration },
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// A version was proposed.
    Proposed,
    /// The input (or what was made of it) is wrong.
    Refused,
    /// Something that may pass.
    Passing,
    /// The changes alone could not make the version: the next run builds the whole zone.
    NeedsWhole,
}

impl Phase {
    /// The phase after a build from the input with digest `input` ended as `built`.
    pub fn after(self, built: Built, input: [u8; 32], now: Instant) -> Phase {
        match built {
            Built::Proposed => Phase::Ready,
            Built::Refused => Phase::Refused { input },
            Built::Passing => {
                let wait = match self {
                    Phase::Backoff { wait, .. } => (wait * 2).min(RETRY_MAX),
                    _ => RETRY_FIRST,
                };
                Phase::Backoff {
                    at: now + wait,
                    wait,
                }
            }
            Built::NeedsWhole => self,
        }
    }
}

/// The current version of a zone, as far as deciding goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub input_digest: [u8; 32],
    pub reload_seq: u64,
    pub keys: Vec<KeyId>,
    pub keyset_seq: u64,
    /// The earliest expiration of its signatures (RRSIG time).
    pub min_expiration: u32,
}

/// What a zone's run knows once it has read its input.
#[derive(Debug, Clone)]
pub struct ZoneFacts<'a> {
    pub current: Option<&'a Current>,
    /// The digest of the input as read now.
    pub input: [u8; 32],
    pub reload_seq: u64,
    /// The keys that sign now (sorted) and the key set's sequence number.
    pub keys: &'a [KeyId],
    pub keyset_seq: u64,
    /// Signatures are refreshed this long before they expire.
    pub refresh_s: u32,
    /// Now on the wall clock (RRSIG time).
    pub now: u32,
}

/// Why a version is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    FirstVersion,
    InputChanged,
    Reload,
    KeysChanged,
    SignaturesDue,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstVersion => "first version",
            Reason::InputChanged => "input changed",
            Reason::Reload => "reload",
            Reason::KeysChanged => "key set changed",
            Reason::SignaturesDue => "signatures due",
        }
    }
}

/// Whether a zone's run builds a version now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Build(Reason),
    /// Nothing is due, or the input is one that was refused.
    Nothing,
    /// Due, but backing off after a passing failure.
    NotBefore(Instant),
}

impl ZoneFacts<'_> {
    /// Whether some signature of the current version expires within the refresh window.
    pub fn signatures_due(&self) -> bool {
        self.current
            .is_some_and(|v| v.min_expiration < self.now.saturating_add(self.refresh_s))
    }

    /// Why a version is due, if one is.
    pub fn due(&self) -> Option<Reason> {
        let Some(v) = self.current else {
            return Some(Reason::FirstVersion);
        };
        Some(if v.input_digest != self.input {
            Reason::InputChanged
        } else if v.reload_seq != self.reload_seq {
            Reason::Reload
        } else if v.keys != self.keys || v.keyset_seq != self.keyset_seq {
            Reason::KeysChanged
        } else if self.signatures_due() {
            Reason::SignaturesDue
        } else {
            return None;
        })
    }
}

pub fn decide(f: &ZoneFacts, phase: Phase, now: Instant) -> Decision {
    let Some(reason) = f.due() else {
        return Decision::Nothing;
    };
    match phase {
        Phase::Refused { input } if input == f.input && !f.signatures_due() => Decision::Nothing,
        Phase::Backoff { at, .. } if now < at => Decision::NotBefore(at),
        _ => Decision::Build(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> Facts {
        Facts {
            leader: true,
            may_publish: true,
            clock: Some(Ok(())),
            term: 7,
            started: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn a_leader_signs_only_with_everything_in_order() {
        assert_eq!(duty(&leader()), Duty::Lead);
        let f = |edit: &dyn Fn(&mut Facts)| {
            let mut f = leader();
            edit(&mut f);
            duty(&f)
        };
        assert_eq!(f(&|f| f.leader = false), Duty::Standby);
        assert_eq!(
            f(&|f| {
                f.leader = false;
                f.witness = true
            }),
            Duty::Idle
        );
        assert_eq!(f(&|f| f.witness = true), Duty::HandOver(HandOver::Witness));
        assert_eq!(
            f(&|f| f.key_unusable = Some("key 1 of a.: gone".into())),
            Duty::HandOver(HandOver::KeyUnusable("key 1 of a.: gone".into()))
        );
        assert_eq!(f(&|f| f.may_publish = false), Duty::Wait);
        assert_eq!(f(&|f| f.clock = None), Duty::CheckClock);
        assert_eq!(
            f(&|f| f.clock = Some(Err("off by 400 s".into()))),
            Duty::HandOver(HandOver::Clock("off by 400 s".into()))
        );
        assert_eq!(
            f(&|f| f.fenced_term = Some(7)),
            Duty::HandOver(HandOver::QuorumLost)
        );
        assert_eq!(
            f(&|f| f.fenced_term = Some(5)),
            Duty::HandOver(HandOver::QuorumLost)
        );
        assert_eq!(f(&|f| f.fenced_term = Some(8)), Duty::Lead);
        assert_eq!(f(&|f| f.started = Some(6)), Duty::Start(7));
        assert_eq!(f(&|f| f.started = None), Duty::Start(7));
    }

    #[test]
    fn the_checks_come_in_order() {
        // A witness hands over before anything is asked of the clock; no clock comparison
        // is made without a quorum acknowledgement; a new term is not started on a bad clock.
        let mut f = leader();
        f.witness = true;
        f.clock = None;
        f.may_publish = false;
        assert_eq!(duty(&f), Duty::HandOver(HandOver::Witness));
        f.witness = false;
        assert_eq!(duty(&f), Duty::Wait);
        f.may_publish = true;
        assert_eq!(duty(&f), Duty::CheckClock);
        f.clock = Some(Err("skew".into()));
        f.started = None;
        assert_eq!(duty(&f), Duty::HandOver(HandOver::Clock("skew".into())));
    }

    #[test]
    fn a_slow_zone_holds_one_place_and_the_others_go_on() {
        let zones = ["a.", "b.", "c.", "d."];
        let running: HashSet<String> = ["b.".to_string()].into();
        assert_eq!(schedule(zones, &running, 3), ["a.", "c."]);
        assert_eq!(schedule(zones, &running, 8), ["a.", "c.", "d."]);
        assert!(schedule(zones, &running, 1).is_empty());
        let all: HashSet<String> = zones.iter().map(|z| z.to_string()).collect();
        assert!(schedule(zones, &all, 8).is_empty());
    }

    const K10: KeyId = KeyId([10; 32]);
    const K11: KeyId = KeyId([11; 32]);

    fn current() -> Current {
        Current {
            input_digest: [1; 32],
            reload_seq: 0,
            keys: vec![K10, K11],
            keyset_seq: 3,
            min_expiration: 2_000_000,
        }
    }

    fn facts(c: &Current) -> ZoneFacts<'_> {
        ZoneFacts {
            current: Some(c),
            input: [1; 32],
            reload_seq: 0,
            keys: &[K10, K11],
            keyset_seq: 3,
            refresh_s: 86_400,
            now: 1_000_000,
        }
    }

    #[test]
    fn what_makes_a_version_due() {
        let now = Instant::now();
        let c = current();
        let build = |f: ZoneFacts| decide(&f, Phase::Ready, now);
        assert_eq!(build(facts(&c)), Decision::Nothing);
        let mut f = facts(&c);
        f.current = None;
        assert_eq!(build(f), Decision::Build(Reason::FirstVersion));
        let mut f = facts(&c);
        f.input = [2; 32];
        assert_eq!(build(f), Decision::Build(Reason::InputChanged));
        let mut f = facts(&c);
        f.reload_seq = 1;
        assert_eq!(build(f), Decision::Build(Reason::Reload));
        let mut f = facts(&c);
        f.keys = &[K10];
        assert_eq!(build(f), Decision::Build(Reason::KeysChanged));
        let mut f = facts(&c);
        f.keyset_seq = 4;
        assert_eq!(build(f), Decision::Build(Reason::KeysChanged));
        let mut f = facts(&c);
        f.now = 2_000_000 - 86_399;
        assert_eq!(build(f), Decision::Build(Reason::SignaturesDue));
        let mut f = facts(&c);
        f.now = 2_000_000 - 86_400;
        assert_eq!(
            build(f),
            Decision::Nothing,
            "just outside the refresh window"
        );
    }

    #[test]
    fn a_refused_input_waits_for_a_new_one_unless_signatures_fall_due() {
        let now = Instant::now();
        let c = current();
        let mut f = facts(&c);
        f.input = [2; 32];
        let refused = Phase::Ready.after(Built::Refused, [2; 32], now);
        assert_eq!(refused, Phase::Refused { input: [2; 32] });
        assert_eq!(decide(&f, refused, now), Decision::Nothing);
        f.input = [3; 32];
        assert_eq!(
            decide(&f, refused, now),
            Decision::Build(Reason::InputChanged)
        );
        f.input = [2; 32];
        f.now = 2_000_000;
        assert_eq!(
            decide(&f, refused, now),
            Decision::Build(Reason::InputChanged)
        );
        assert_eq!(refused.after(Built::Proposed, [2; 32], now), Phase::Ready);
    }

    #[test]
    fn passing_failures_back_off_doubling_up_to_the_limit() {
        let t0 = Instant::now();
        let c = current();
        let mut f = facts(&c);
        f.input = [2; 32];
        let mut phase = Phase::Ready;
        let mut waits = Vec::new();
        for i in 0..8 {
            phase = phase.after(Built::Passing, [2; 32], t0);
            let Phase::Backoff { at, wait } = phase else {
                panic!("{phase:?}")
            };
            waits.push(wait.as_secs());
            assert_eq!(
                decide(&f, phase, t0),
                Decision::NotBefore(at),
                "failure {i}"
            );
            assert_eq!(decide(&f, phase, at), Decision::Build(Reason::InputChanged));
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Needing the whole zone is no failure: the phase stays; a proposal clears it.
        assert_eq!(phase.after(Built::NeedsWhole, [2; 32], t0), phase);
        assert_eq!(phase.after(Built::Proposed, [2; 32], t0), Phase::Ready);
        // Nothing due: nothing to back off from.
        assert_eq!(decide(&facts(&c), phase, t0), Decision::Nothing);
    }
}

use super::*;
use crate::replica::state::Owner;
use crate::signer::Denial;

fn signed_state(denial: Denial) -> (ZoneState, Name, u32) {
    crate::testkit::examples::signed_example(denial)
}

fn all(z: &ZoneState) -> BTreeSet<(Name, u16)> {
    z.content.keys().map(|(o, t)| (o.0.clone(), *t)).collect()
}

fn name(s: &str) -> Name {
    Name::parse(s.as_bytes(), None).unwrap()
}

/// The key of the `nth` denial record (NSEC or NSEC3, as `denial` says) below the apex.
fn denial_key(z: &ZoneState, origin: &Name, denial: &Denial, nth: usize) -> Key {
    let dt = if *denial == Denial::Nsec {
        rtype::NSEC
    } else {
        rtype::NSEC3
    };
    z.content
        .keys()
        .filter(|(o, ty)| *ty == dt && o.0 != *origin)
        .nth(nth)
        .cloned()
        .unwrap()
}

#[test]
fn incremental_accepts_a_good_version_and_catches_planted_faults() {
    for denial in [
        Denial::Nsec,
        Denial::Nsec3(crate::signer::Nsec3Params {
            iterations: 0,
            salt: Vec::new(),
            opt_out: false,
        }),
    ] {
        let (z, origin, t) = signed_state(denial.clone());
        incremental(&z, &origin, &all(&z), t).unwrap();

        // A flipped bit in one RRSIG.
        let mut bad = z.clone();
        let key = (Owner(name("mail.example.")), rtype::A);
        let v = bad.content.get_mut(&key).unwrap();
        let mut sig = v.sigs[0].to_vec();
        *sig.last_mut().unwrap() ^= 1;
        v.sigs[0] = sig.into();
        let e = incremental(&bad, &origin, &all(&bad), t).unwrap_err();
        assert!(
            e.contains("mail.example.") && e.contains("does not verify"),
            "{e}"
        );

        // An authoritative RRset without signatures.
        let mut bad = z.clone();
        bad.content.get_mut(&key).unwrap().sigs.clear();
        let e = incremental(&bad, &origin, &all(&bad), t).unwrap_err();
        assert!(e.contains("no RRSIG"), "{e}");

        // A denial record removed: the link that pointed to it is broken.
        let mut bad = z.clone();
        let victim = denial_key(&bad, &origin, &denial, 2);
        bad.content.remove(&victim);
        let e = incremental(&bad, &origin, &all(&bad), t).unwrap_err();
        assert!(e.contains("has no") || e.contains("skips"), "{e}");
    }
}

#[test]
fn glue_and_delegation_ns_need_no_signatures() {
    let (z, origin, t) = signed_state(Denial::Nsec);
    let only: BTreeSet<(Name, u16)> = [
        (name("sub.example."), rtype::NS),
        (name("ns.sub.example."), rtype::A),
    ]
    .into();
    incremental(&z, &origin, &only, t).unwrap();
    let signed =
        |o: &str, t| crate::validate::incremental::signed_here(&z.content, &origin, &name(o), t);
    assert!(!signed("ns.sub.example.", rtype::A));
    assert!(!signed("sub.example.", rtype::NS));
    assert!(signed("sub.example.", rtype::DS));
    assert!(signed("mail.example.", rtype::A));
    // Occluded below a DNAME, and beside the NS of a cut: not signed either.
    assert!(!signed("x.redir.example.", rtype::A));
    assert!(!signed("deep.occluded.insecure.example.", rtype::A));
    let mut more = z.clone();
    let unsigned = |d: &[u8]| RrsetVal {
        ttl: 300,
        rdatas: crate::zone::Rdatas::one(d),
        sigs: Vec::new(),
    };
    let below_dname = (Owner(name("x.redir.example.")), rtype::A);
    more.content
        .insert(below_dname.clone(), unsigned(&[192, 0, 2, 7]));
    let touched = [(below_dname.0.0.clone(), rtype::A)].into();
    incremental(&more, &origin, &touched, t).unwrap();
    // Glue that carries an RRSIG is refused.
    let mut bad = z.clone();
    let mail = z.content[&(Owner(name("mail.example.")), rtype::A)].clone();
    let glue = bad
        .content
        .get_mut(&(Owner(name("ns.sub.example.")), rtype::A))
        .unwrap();
    glue.sigs = mail.sigs;
    let e = incremental(&bad, &origin, &only, t).unwrap_err();
    assert!(e.contains("not authoritative"), "{e}");
}

/// A zone state behind a lock as a node holds it; before read number `at`, `change`
/// applies a version (as the state machine would while a check runs).
type Change = Box<dyn FnOnce(&mut ZoneState) + Send>;

struct Locked {
    z: std::sync::RwLock<ZoneState>,
    reads: std::sync::atomic::AtomicUsize,
    /// (read number, change to apply before it)
    changes: std::sync::Mutex<Vec<(usize, Change)>>,
}

impl Locked {
    fn new(z: ZoneState) -> Locked {
        Locked {
            z: std::sync::RwLock::new(z),
            reads: Default::default(),
            changes: Default::default(),
        }
    }

    fn at(&self, read: usize, c: Change) {
        self.changes.lock().unwrap().push((read, c));
    }
}

impl StateOf for Locked {
    fn with(&self, f: &mut dyn FnMut(Option<&ZoneState>)) {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        let mut changes = self.changes.lock().unwrap();
        if let Some(i) = changes.iter().position(|(at, _)| *at == n) {
            let (_, c) = changes.remove(i);
            c(&mut self.z.write().unwrap());
        }
        drop(changes);
        f(Some(&self.z.read().unwrap()))
    }
}

/// A version after `from` that removes `owner`'s A RRset; the journal keeps only
/// its delta when `trim`, else nothing.
fn drop_a(owner: &'static str, from: Token, to: Token, journal: Option<bool>) -> Change {
    Box::new(move |z: &mut ZoneState| {
        let key = (Owner(name(owner)), rtype::A);
        let before = z.content.remove(&key);
        match journal {
            Some(true) => z.journal.clear(),
            Some(false) => {}
            None => {
                z.journal.clear();
                z.current.as_mut().unwrap().token = to;
                return;
            }
        }
        z.journal.push(crate::replica::state::Delta {
            from_token: from,
            token: to,
            changes: vec![(key, before, None)],
            ..Default::default()
        });
        z.current.as_mut().unwrap().token = to;
    })
}

const T1: Token = Token::new(1, 10);

fn versioned(denial: Denial) -> (ZoneState, Name, u32) {
    let (mut z, origin, t) = signed_state(denial);
    z.current = Some(Version {
        token: T1,
        ..Default::default()
    });
    (z, origin, t)
}

/// Failures of a full check of version `T1` read `window` nodes at a time; `None`
/// when the version went out of reach.
fn check_in_windows(
    state: &Locked,
    origin: &Name,
    t: u32,
    window: usize,
) -> Option<Vec<crate::validate::Failure>> {
    let src = Pinned::new(state, T1, origin.clone(), window).unwrap();
    let opts = VerifyOptions {
        now: t,
        ..Default::default()
    };
    let report = verify_source(&src, &opts, &|_, _| {});
    (!src.lost.load(Ordering::Relaxed)).then_some(report.failures)
}

fn nsec3() -> Denial {
    Denial::Nsec3(crate::signer::Nsec3Params {
        iterations: 0,
        salt: Vec::new(),
        opt_out: false,
    })
}

#[test]
fn a_check_in_windows_finds_what_one_window_finds() {
    for denial in [Denial::Nsec, nsec3()] {
        let (z, origin, t) = versioned(denial.clone());
        for window in [1, 2, 3, 1000] {
            let found = check_in_windows(&Locked::new(z.clone()), &origin, t, window);
            assert_eq!(found, Some(Vec::new()), "{denial:?}, windows of {window}");
        }
        // The denial record of one name lists A only (its RRSIG no longer verifies
        // either); an NSEC's next name is checked across windows too.
        let mut bad = z.clone();
        let key = denial_key(&bad, &origin, &denial, 3);
        let dt = key.1;
        let v = bad.content.get_mut(&key).unwrap();
        let d = v.rdatas[0].to_vec();
        let keep = if dt == rtype::NSEC {
            crate::zone::name::wire_name_len(&d).unwrap()
        } else {
            6 + d[4] as usize + d[5 + d[4] as usize] as usize
        };
        let mut rd = d[..keep].to_vec();
        rd.extend(crate::zone::rdata::type_bitmap(&mut vec![rtype::A]));
        if dt == rtype::NSEC {
            rd = [&b"\x01z\x07example\x00"[..], &rd[keep..]].concat();
        }
        v.rdatas = crate::zone::Rdatas::from(vec![rd]);
        let one = check_in_windows(&Locked::new(bad.clone()), &origin, t, 1000).unwrap();
        let text: Vec<String> = one.iter().map(|f| f.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains("does not verify")),
            "{text:?}"
        );
        if dt == rtype::NSEC {
            assert!(
                text.iter()
                    .any(|m| m.contains("NSEC points to z.example., but the next name")),
                "{text:?}"
            );
            assert!(
                text.iter()
                    .any(|m| m.contains("bit map is [A], expected [")),
                "{text:?}"
            );
        } else {
            assert!(
                text.iter()
                    .any(|m| m.contains("NSEC3 type bit map is [A], expected [")
                        && !m.contains("expected []")),
                "{text:?}"
            );
        }
        for window in [1, 2, 3] {
            let mut found =
                check_in_windows(&Locked::new(bad.clone()), &origin, t, window).unwrap();
            let mut want = one.clone();
            let order = |f: &crate::validate::Failure| {
                (f.owner.clone(), f.rtype.clone(), f.message.clone())
            };
            found.sort_by_key(order);
            want.sort_by_key(order);
            assert_eq!(found, want, "{denial:?}, windows of {window}");
        }
    }
}

#[test]
fn a_check_in_windows_looks_through_a_version_applied_meanwhile() {
    // One version applied while the check runs; then the journal lost.
    for keep_journal in [true, false] {
        let (z, origin, t) = versioned(nsec3());
        let state = Locked::new(z);
        let journal = keep_journal.then_some(false);
        state.at(3, drop_a("mail.example.", T1, Token::new(1, 11), journal));
        let found = check_in_windows(&state, &origin, t, 2);
        assert_eq!(
            found,
            keep_journal.then(Vec::new),
            "journal kept: {keep_journal}"
        );
        assert!(state.changes.lock().unwrap().is_empty(), "applied");
    }
    // Two versions, the journal trimmed to the last delta in between (a long check on
    // a busy zone): what the check saw of the first is kept.
    let (z, origin, t) = versioned(nsec3());
    let state = Locked::new(z);
    state.at(
        3,
        drop_a("mail.example.", T1, Token::new(1, 11), Some(false)),
    );
    state.at(
        5,
        drop_a(
            "ns1.example.",
            Token::new(1, 11),
            Token::new(1, 12),
            Some(true),
        ),
    );
    assert_eq!(check_in_windows(&state, &origin, t, 2), Some(Vec::new()));
    assert!(state.changes.lock().unwrap().is_empty(), "both applied");
}

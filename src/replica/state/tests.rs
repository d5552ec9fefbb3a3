use super::*;
use crate::replica::{Command, Outcome, Part};

fn lid(index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId {
            term: 2,
            node_id: 1,
        },
        index,
    )
}

fn name(s: &str) -> Name {
    Name::parse(s.as_bytes(), None).unwrap()
}

fn change(owner: &str, data: u8) -> RrsetChange {
    RrsetChange {
        owner: name(owner),
        rtype: 1,
        val: Some(RrsetVal {
            ttl: 60,
            rdatas: crate::zone::Rdatas::one(&[192, 0, 2, data]),
            sigs: Vec::new(),
        }),
    }
}

fn origin() -> Origin {
    Origin {
        at: 0,
        by: "test".into(),
        command: "zone add".into(),
    }
}

/// A state holding the zone `example.` (file input), added at index 1.
fn with_example_zone() -> ClusterState {
    let mut st = ClusterState::default();
    st.apply(
        &lid(1),
        Command::AddZone {
            zone: ZoneConfig::new("example", "file:/dev/null"),
            origin: origin(),
        },
    );
    st
}

/// Stages `changes` and publishes them as `serial`, announcing `hash` (or the true one).
fn publish(
    st: &mut ClusterState,
    idx: &mut u64,
    changes: Vec<RrsetChange>,
    serial: u32,
    hash: Option<[u8; 32]>,
) -> Outcome {
    let z = &st.zones["example."];
    let base = z.current.as_ref().map(|v| v.hash);
    let hash = hash.unwrap_or_else(|| z.hash_after(changes.iter()));
    *idx += 1;
    let upload = *idx;
    st.apply(
        &lid(*idx),
        Command::Stage {
            zone: "example.".into(),
            upload,
            part: 0,
            changes: Part::encode(&changes),
        },
    );
    *idx += 1;
    let version = Version {
        serial,
        hash,
        ..Default::default()
    };
    st.apply(
        &lid(*idx),
        Command::Publish {
            zone: "example.".into(),
            upload,
            parts: 1,
            base,
            version,
        },
    )
}

/// A serial once published never carries another content, also after the zone was
/// removed and added again; the same content under it is no conflict.
#[test]
fn a_published_serial_never_carries_another_content() {
    let mut st = with_example_zone();
    let mut idx = 1;
    let first = publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
    assert!(
        matches!(first, Outcome::Published { serial: 7, .. }),
        "{first:?}"
    );
    let h7 = st.published_hash("example.", 7).unwrap();
    idx += 1;
    st.apply(
        &lid(idx),
        Command::RemoveZone {
            name: "example.".into(),
            origin: origin(),
        },
    );
    idx += 1;
    st.apply(
        &lid(idx),
        Command::AddZone {
            zone: ZoneConfig::new("example", "file:/dev/null"),
            origin: origin(),
        },
    );
    assert_eq!(st.last_published("example."), Some(7));
    let again = publish(&mut st, &mut idx, vec![change("b.example.", 2)], 7, None);
    let Outcome::Refused(why) = again else {
        panic!("serial 7 published with another content: {again:?}");
    };
    assert!(why.contains("serial 7 was published"), "{why}");
    assert!(st.zones["example."].current.is_none());
    let same = publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
    assert!(matches!(same, Outcome::Published { .. }), "{same:?}");
    assert_eq!(st.published_hash("example.", 7), Some(h7));
}

/// A snapshot of the state's layout before `stores` and `published` still loads.
#[test]
fn a_state_of_the_layout_before_loads() {
    let mut st = with_example_zone();
    let mut idx = 1;
    publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
    #[derive(Serialize)]
    struct Before<'a> {
        last_applied: &'a Option<LogId>,
        membership: &'a openraft::alias::StoredMembershipOf<TypeConfig>,
        zones: &'a BTreeMap<String, ZoneState>,
        keys: &'a Vec<KeyRecord>,
        audit: &'a VecDeque<AuditRecord>,
        last_leader: &'a Option<(NodeId, u64)>,
        handover: &'a Option<(NodeId, NodeId)>,
        fenced: &'a BTreeMap<NodeId, u64>,
    }
    let old = crate::replica::encode(&Before {
        last_applied: &st.last_applied,
        membership: &st.membership,
        zones: &st.zones,
        keys: &st.keys,
        audit: &st.audit,
        last_leader: &st.last_leader,
        handover: &st.handover,
        fenced: &st.fenced,
    });
    let back = ClusterState::decode(&old).unwrap();
    assert_eq!(back.last_applied, st.last_applied);
    assert_eq!(
        back.published_hash("example.", 7),
        st.published_hash("example.", 7)
    );
    let now = ClusterState::decode(&crate::replica::encode(&st)).unwrap();
    assert_eq!(now.published, st.published);
}

/// `zone set` with a new input counts as a reload (the next version is built from all
/// of it); with the same input it does not.
#[test]
fn a_new_input_is_a_reload() {
    let mut st = ClusterState::default();
    let cfg = ZoneConfig::new("example", "file:/dev/null");
    st.apply(
        &lid(1),
        Command::AddZone {
            zone: cfg.clone(),
            origin: origin(),
        },
    );
    let seq = |st: &ClusterState| st.zones["example."].reload_seq;
    let mut same = cfg.clone();
    same.refresh_s += 1;
    let set = |zone| Command::SetZone {
        zone,
        origin: origin(),
    };
    assert_eq!(st.apply(&lid(2), set(same)), Outcome::Done);
    assert_eq!(seq(&st), 0, "same input: no reload");
    let mut moved = cfg.clone();
    moved.input = "primary:127.0.0.1:53".into();
    assert_eq!(st.apply(&lid(3), set(moved)), Outcome::Done);
    assert_eq!(seq(&st), 1, "new input: a reload");
    let mut gone = cfg;
    gone.name = "missing.".into();
    assert!(matches!(st.apply(&lid(4), set(gone)), Outcome::Refused(_)));
}

/// A version showing a key change does not start its waits; the leader's `KeysShown`
/// does, and only for a state a published version shows.
#[test]
fn key_waits_start_at_keys_shown_not_at_publication() {
    let mut st = with_example_zone();
    let id = crate::keys::KeyId([3; 32]);
    let mut k = crate::kasp::KeyState::new(id, 3, 13, crate::kasp::Role::Zsk, 0);
    k.pending = [0, 5, 0, 0];
    k.changed = [0, 100, 0, 0];
    let z = st.zones.get_mut("example.").unwrap();
    z.keyset.keys.insert(id, k);
    let pending = |st: &ClusterState| {
        let k = &st.zones["example."].keyset.keys[&id];
        (k.pending[1], k.changed[1])
    };
    let shown = |st: &mut ClusterState, i: u64| {
        st.apply(
            &lid(i),
            Command::KeysShown {
                zone: "example.".into(),
                seq: 5,
                at: 700,
            },
        )
    };
    // No version shows state 5 yet.
    assert!(matches!(shown(&mut st, 2), Outcome::Refused(_)));
    assert_eq!(pending(&st), (5, 100));
    // A version showing it is published: still pending.
    st.apply(
        &lid(3),
        Command::Stage {
            zone: "example.".into(),
            upload: 1,
            part: 0,
            changes: Part::encode(&[change("a.example.", 1)]),
        },
    );
    let hash = st.zones["example."].hash_after([change("a.example.", 1)].iter());
    let out = st.apply(
        &lid(4),
        Command::Publish {
            zone: "example.".into(),
            upload: 1,
            parts: 1,
            base: None,
            version: Version {
                serial: 1,
                hash,
                keyset_seq: 5,
                ..Default::default()
            },
        },
    );
    assert!(matches!(out, Outcome::Published { .. }), "{out:?}");
    assert_eq!(pending(&st), (5, 100));
    // The leader saw it committed: the wait starts then.
    assert_eq!(shown(&mut st, 5), Outcome::Done);
    assert_eq!(pending(&st), (0, 700));
}

#[test]
fn journal_takes_the_content_back_to_an_earlier_version_and_feeds_ixfr() {
    use crate::replica::view::{View, overlay};
    let mut st = ClusterState::default();
    let mut idx = 1;
    st.apply(
        &lid(1),
        Command::AddZone {
            zone: ZoneConfig::new("example", "file:/dev/null"),
            origin: origin(),
        },
    );
    let gone = |o: &str| RrsetChange {
        owner: name(o),
        rtype: 1,
        val: None,
    };
    publish(
        &mut st,
        &mut idx,
        vec![change("a.example.", 1), change("b.example.", 2)],
        10,
        None,
    );
    let v1 = st.zones["example."].clone();
    publish(
        &mut st,
        &mut idx,
        vec![change("a.example.", 3), change("c.example.", 4)],
        11,
        None,
    );
    publish(
        &mut st,
        &mut idx,
        vec![gone("b.example."), change("d.example.", 5)],
        12,
        None,
    );
    let z = &st.zones["example."];
    assert_eq!(z.journal.len(), 2, "no delta for the first version");
    assert_eq!((z.journal[0].from_serial, z.journal[1].to_serial), (10, 12));
    // The served view of version 10, rebuilt from the content of version 12.
    let o = overlay(z, v1.current.as_ref().unwrap().token).expect("journal reaches back");
    let view = View {
        content: &z.content,
        overlay: Some(&o),
    };
    let back: Vec<_> = view.all().map(|(k, v)| (k.clone(), v.clone())).collect();
    let want: Vec<_> = v1
        .content
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(back, want);
    // IXFR from 11: only the last delta; from 10: both; from 9: none (AXFR instead).
    assert_eq!(z.deltas_from(|d| d.from_serial == 11).unwrap().len(), 1);
    assert_eq!(z.deltas_from(|d| d.from_serial == 10).unwrap().len(), 2);
    assert!(z.deltas_from(|d| d.from_serial == 9).is_none());
}

/// A first version fills the empty content in one pass: the same content and hash as
/// applying its changes one by one (the path taken when they are not in order), owners
/// shared between their RRsets, and a wrong hash leaves the zone empty.
/// A stage part travels as the leader encoded it: through a log entry's encoding its
/// bytes come back unchanged, and bytes that do not hold what the part announces are
/// refused when it is applied, with the state unchanged.
#[test]
fn a_part_travels_as_encoded_and_a_bad_one_is_refused() {
    let changes = vec![change("a.example.", 1), change("b.example.", 2)];
    let part = Part::encode(&changes);
    let cmd = Command::Stage {
        zone: "example.".into(),
        upload: 5,
        part: 0,
        changes: part.clone(),
    };
    let back: Command = crate::replica::decode(&crate::replica::encode(&cmd)).unwrap();
    let Command::Stage { changes: got, .. } = back else {
        panic!("not a stage entry")
    };
    assert_eq!(got, part);
    assert_eq!(got.decode().unwrap(), changes);

    // Two changes announced, one encoded.
    let one = crate::replica::encode(&&changes[..1]);
    let mut bytes = crate::replica::encode(&(2u32, crate::replica::Run(&one)));
    let short: Part = crate::replica::decode(&bytes).unwrap();
    assert!(short.decode().is_err());
    // A byte cut off the end.
    bytes = crate::replica::encode(&part);
    let whole: Part = crate::replica::decode(&bytes).unwrap();
    let cut = Part {
        count: whole.count,
        bytes: whole.bytes[..whole.bytes.len() - 1].into(),
    };
    assert!(cut.decode().is_err());

    let mut st = with_example_zone();
    let out = st.apply(
        &lid(2),
        Command::Stage {
            zone: "example.".into(),
            upload: 5,
            part: 0,
            changes: short,
        },
    );
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("part 0") && m.contains("announced")),
        "{out:?}"
    );
    assert_eq!(st.zones["example."].staged.get(&5).map_or(0, Vec::len), 0);
}

#[test]
fn a_fill_from_many_parts_merges_them_into_the_same_content() {
    let names: Vec<String> = (0..37).map(|i| format!("n{i:03}.example.")).collect();
    let mut all: Vec<RrsetChange> = names.iter().map(|n| change(n, 1)).collect();
    all.sort_by(|a, b| a.owner.cmp_canonical(&b.owner));
    let mut parts = Vec::new();
    let mut rest = all.clone();
    for size in [1, 2, 3, 5, 8, 13, 1, 4] {
        let tail = rest.split_off(size.min(rest.len()));
        parts.push(Staged::new(std::mem::replace(&mut rest, tail)));
    }
    assert!(rest.is_empty() && strictly_ordered(&parts));
    // Each part in order, but two of them swapped: not in order as a whole.
    let mut swapped = parts.clone();
    swapped.swap(3, 4);
    assert!(swapped.iter().all(|p| p.ordered) && !strictly_ordered(&swapped));
    let mut filled = ZoneState::default();
    filled.fill(parts);
    let mut one_by_one = ZoneState::default();
    assert_eq!(
        one_by_one.hash_after_all(&all),
        one_by_one.hash_after(all.iter())
    );
    one_by_one.apply_changes(all, &mut Vec::new());
    assert_eq!(filled.content.len(), 37);
    assert_eq!(filled.content, one_by_one.content);
    assert_eq!(filled.hash, one_by_one.hash);
    // Over content that is there: what is removed and replaced counts too.
    let later: Vec<RrsetChange> = (0..37)
        .map(|i| {
            let mut c = change(&names[i], 2);
            if i % 3 == 0 {
                c.val = None;
            }
            c
        })
        .collect();
    assert_eq!(
        filled.hash_after_all(&later),
        filled.hash_after(later.iter())
    );
    assert_ne!(filled.hash_after_all(&later), filled.hash);
}

#[test]
fn a_first_version_fills_the_content_as_one_by_one_would() {
    let zone_with = |changes: Vec<RrsetChange>, hash: Option<[u8; 32]>| {
        let mut st = with_example_zone();
        let mut idx = 1;
        let out = publish(&mut st, &mut idx, changes, 10, hash);
        (out, st.zones["example."].clone())
    };
    let mut ns = change("a.example.", 1);
    ns.rtype = 2;
    let ordered = vec![
        change("a.example.", 1),
        ns.clone(),
        change("b.example.", 2),
        change("c.example.", 3),
    ];
    let strictly = |c: &[RrsetChange]| strictly_ordered(&[Staged::new(c.to_vec())]);
    assert!(strictly(&ordered));
    let mut shuffled = ordered.clone();
    shuffled.reverse();
    assert!(!strictly(&shuffled));

    let (out, filled) = zone_with(ordered, None);
    assert!(
        matches!(out, Outcome::Published { serial: 10, .. }),
        "{out:?}"
    );
    let (out, one_by_one) = zone_with(shuffled, None);
    assert!(
        matches!(out, Outcome::Published { serial: 10, .. }),
        "{out:?}"
    );
    assert_eq!(filled.content, one_by_one.content);
    assert_eq!(filled.hash, one_by_one.hash);
    assert_eq!(filled.content.len(), 4);
    let owners: Vec<&Owner> = filled.content.keys().map(|(o, _)| o).collect();
    assert!(
        std::ptr::eq(
            owners[0].0.as_wire().as_ptr(),
            owners[1].0.as_wire().as_ptr()
        ),
        "the A and NS RRsets of a.example. share one name"
    );

    let (out, refused) = zone_with(vec![change("a.example.", 1)], Some([7; 32]));
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("content hash")),
        "{out:?}"
    );
    assert!(refused.content.is_empty() && refused.current.is_none());
    assert_eq!(refused.hash, ZoneState::default().hash);
}

#[test]
fn publish_checks_base_hash_serial_and_parts_and_leaves_state_intact_when_refused() {
    let mut st = ClusterState::default();
    let mut idx = 1;
    st.apply(
        &lid(1),
        Command::AddZone {
            zone: ZoneConfig::new("example", "file:/dev/null"),
            origin: origin(),
        },
    );
    assert_eq!(
        publish(
            &mut st,
            &mut idx,
            vec![change("a.example.", 1), change("b.example.", 2)],
            10,
            None
        ),
        Outcome::Published {
            serial: 10,
            token: Token::new(2, 3)
        }
    );
    let good = st.zones["example."].clone();
    assert_eq!(good.content.len(), 2);

    // A hash the content does not have: refused, nothing changed.
    let out = publish(
        &mut st,
        &mut idx,
        vec![change("a.example.", 9)],
        11,
        Some([7; 32]),
    );
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("content hash")),
        "{out:?}"
    );
    let z = &st.zones["example."];
    assert_eq!(
        (&z.content, z.hash, &z.current),
        (&good.content, good.hash, &good.current)
    );

    // A serial that does not move forward.
    let out = publish(&mut st, &mut idx, vec![change("a.example.", 9)], 10, None);
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("does not follow")),
        "{out:?}"
    );

    // Built on a version that is no longer current (a deposed leader).
    idx += 1;
    st.apply(
        &lid(idx),
        Command::Stage {
            zone: "example.".into(),
            upload: 99,
            part: 0,
            changes: Part::encode(&[change("c.example.", 3)]),
        },
    );
    idx += 1;
    let stale = Version {
        serial: 12,
        hash: [1; 32],
        ..Default::default()
    };
    let out = st.apply(
        &lid(idx),
        Command::Publish {
            zone: "example.".into(),
            upload: 99,
            parts: 1,
            base: None,
            version: stale,
        },
    );
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("built on")),
        "{out:?}"
    );

    // Parts out of order.
    idx += 1;
    let out = st.apply(
        &lid(idx),
        Command::Stage {
            zone: "example.".into(),
            upload: 100,
            part: 1,
            changes: Part::encode(&[]),
        },
    );
    assert!(
        matches!(&out, Outcome::Refused(m) if m.contains("out of order")),
        "{out:?}"
    );

    // A good one after all that, with a removal.
    let rm = RrsetChange {
        owner: name("b.example."),
        rtype: 1,
        val: None,
    };
    let out = publish(
        &mut st,
        &mut idx,
        vec![change("a.example.", 5), rm],
        13,
        None,
    );
    assert!(
        matches!(out, Outcome::Published { serial: 13, .. }),
        "{out:?}"
    );
    let z = &st.zones["example."];
    assert_eq!(z.content.len(), 1);
    let mut fresh = [0u8; 32];
    for ((o, t), v) in &z.content {
        hash_step(&mut fresh, &rrset_digest(&o.0, *t, v), false);
    }
    assert_eq!(fresh, z.hash, "incremental hash equals a fresh one");
    assert!(
        z.staged.is_empty(),
        "nothing left half-staged: {:?}",
        z.staged.keys()
    );
    assert_eq!(st.audit.len(), 1);
}

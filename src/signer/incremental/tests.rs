use super::*;
use crate::replica::state::ZoneState;
use crate::signer::{Denial, SignatureCache, sign_rrsets};
use crate::testkit::examples::{example_text, signed_content, signed_example_with_keys};

fn nsec3(opt_out: bool) -> Denial {
    Denial::Nsec3(Nsec3Params {
        iterations: 0,
        salt: Vec::new(),
        opt_out,
    })
}

/// The unsigned RRsets of two contents that differ (the SOA always, as a new serial).
fn data_diff(old: &Content, new: &Content, origin: &Name) -> Vec<DataChange> {
    let unsigned = |c: &Content| -> BTreeMap<Key, (u32, Rdatas)> {
        c.iter()
            .filter(|((_, t), _)| !crate::ingest::held::made_by_signer(*t))
            .map(|(k, v)| (k.clone(), (v.ttl, v.rdatas.clone())))
            .collect()
    };
    let (a, b) = (unsigned(old), unsigned(new));
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k) || (k.0.0 == *origin && k.1 == rtype::SOA))
        .map(|k| ((k.0.0.clone(), k.1), b.get(k).cloned()))
        .collect()
}

/// Applies `edit` to the example zone both ways: through `apply`, and signed whole.
fn both(denial: &Denial, edit: &dyn Fn(&str) -> String) -> Option<(ZoneState, Content)> {
    both_from(denial, &|t| t.to_string(), edit)
}

/// `both`, from the example zone with `base` applied (and signed whole) first.
fn both_from(
    denial: &Denial,
    base: &dyn Fn(&str) -> String,
    edit: &dyn Fn(&str) -> String,
) -> Option<(ZoneState, Content)> {
    let (_, origin, _, keys, opts) = signed_example_with_keys(denial.clone());
    let start = base(&example_text());
    let z = ZoneState {
        content: signed_content(&start, &origin, &keys, &opts),
        ..Default::default()
    };
    let text = edit(&start);
    let whole = signed_content(&text, &origin, &keys, &opts);
    let data = data_diff(&z.content, &whole, &origin);
    let ttl = whole[&key(&origin, rtype::SOA)].rdatas.first().map(|d| {
        let min = u32::from_be_bytes(d[d.len() - 4..].try_into().unwrap());
        min.min(whole[&key(&origin, rtype::SOA)].ttl)
    });
    let sign = |items: &[(&Name, &Rrset)]| {
        sign_rrsets(&origin, items, &keys, &opts, &SignatureCache::default())
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    };
    let changes = apply(&z.content, &origin, data, ttl.unwrap(), sign).unwrap()?;
    let mut after = z.clone();
    for c in changes {
        let k = key(&c.owner, c.rtype);
        match c.val {
            Some(v) => after.content.insert(k, v),
            None => after.content.remove(&k),
        };
    }
    Some((after, whole))
}

/// Same RRsets, same records, and the same chain as the zone signed whole; every
/// RRSIG and link of the result checks out.
fn same_as_whole(after: &ZoneState, whole: &Content, what: &str) {
    let ka: Vec<&Key> = after.content.keys().collect();
    let kw: Vec<&Key> = whole.keys().collect();
    assert_eq!(
        ka, kw,
        "{what}: the RRsets differ from the zone signed whole"
    );
    for (k, v) in whole {
        let a = &after.content[k];
        assert_eq!(
            (a.ttl, &a.rdatas),
            (v.ttl, &v.rdatas),
            "{what}: {} {} differs from the zone signed whole",
            k.0.0.to_text(),
            rtype::to_text(k.1)
        );
    }
    let origin = Name::parse(b"example.", None).unwrap();
    let all = after
        .content
        .keys()
        .map(|(o, t)| (o.0.clone(), *t))
        .collect();
    crate::follower::incremental(after, &origin, &all, crate::runtime::wall() as u32)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

const GLUED: &str = "newdel IN NS ns.newdel\nnewdel IN DS 2 13 2 \
     0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n\
     ns.newdel IN A 192.0.2.60\n";

#[test]
fn names_and_types_that_come_or_go_make_the_chain_the_whole_build_makes() {
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "a host added",
            Box::new(|t| format!("{t}extra IN A 192.0.2.8\n")),
        ),
        (
            "a secure delegation added",
            Box::new(|t| format!("{t}{GLUED}")),
        ),
        (
            "an insecure delegation added",
            Box::new(|t| format!("{t}plain IN NS ns.elsewhere.net.\n")),
        ),
        (
            "a name removed",
            Box::new(|t| t.replace("ns2     IN AAAA 2001:db8::2\n", "")),
        ),
        (
            "a type added",
            Box::new(|t| format!("{t}mail IN TXT \"x\"\n")),
        ),
        (
            "a DS removed",
            Box::new(|t| {
                let from = t.find("sub     IN DS").unwrap();
                let to = from + t[from..].find('\n').unwrap() + 1;
                format!("{}{}", &t[..from], &t[to..])
            }),
        ),
        (
            "a secure delegation removed with its glue",
            Box::new(|t| {
                let t = t.replace("sub     IN NS  ns.sub\n", "");
                let t = t.replace("ns.sub  IN A   192.0.2.53   ; glue\n", "");
                let from = t.find("sub     IN DS").unwrap();
                let to = from + t[from..].find('\n').unwrap() + 1;
                format!("{}{}", &t[..from], &t[to..])
            }),
        ),
        (
            "a glue record added below a cut",
            Box::new(|t| format!("{t}ns2.sub IN A 192.0.2.54\n")),
        ),
        (
            "records changed only",
            Box::new(|t| t.replace("192.0.2.25", "192.0.2.26")),
        ),
    ];
    for denial in [Denial::Nsec, nsec3(false), nsec3(true)] {
        for (what, edit) in &cases {
            let what = format!("{what} ({denial:?})");
            let (after, whole) = both(&denial, edit.as_ref())
                .unwrap_or_else(|| panic!("{what}: left to the whole build"));
            same_as_whole(&after, &whole, &what);
        }
        // Several at once.
        let what = format!("all at once ({denial:?})");
        let all = |t: &str| {
            let t = t.replace("ns2     IN AAAA 2001:db8::2\n", "");
            format!("{t}extra IN A 192.0.2.8\n{GLUED}zz IN TXT \"last\"\n")
        };
        let (after, whole) = both(&denial, &all).expect("applied");
        same_as_whole(&after, &whole, &what);
    }
}

#[test]
fn what_would_move_a_cut_or_an_empty_non_terminal_is_left_to_the_whole_build() {
    for denial in [Denial::Nsec, nsec3(false), nsec3(true)] {
        // The cut above deep.occluded.insecure goes: that name would be exposed.
        let uncut = |t: &str| t.replace("insecure IN NS ns.elsewhere.net.\n", "");
        assert!(both(&denial, &uncut).is_none(), "{denial:?}");
        // A new type at the apex.
        let apex = |t: &str| format!("{t}@ IN TXT \"apex\"\n");
        assert!(both(&denial, &apex).is_none(), "{denial:?}");
        // A new cut above existing names.
        let cut = |t: &str| format!("{t}c IN NS ns.elsewhere.net.\n");
        assert!(both(&denial, &cut).is_none(), "{denial:?}");
    }
    // Below an empty non-terminal (b.c): NSEC3 holds b.c; NSEC passes it by.
    let under_ent = |t: &str| format!("{t}x.b.c IN A 192.0.2.9\n");
    assert!(both(&nsec3(false), &under_ent).is_none());
    let (after, whole) = both(&Denial::Nsec, &under_ent).expect("NSEC applies it");
    same_as_whole(&after, &whole, "below an empty non-terminal (NSEC)");
}

#[test]
fn what_would_change_unchanged_rrsets_or_empty_non_terminals_is_left_to_the_whole_build() {
    const DS: &str = "2 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
    // Under opt-out, an insecure delegation below an empty non-terminal (e) joins the
    // chain with its DS: the empty non-terminal joins too. Without opt-out it was in
    // already, and only the bit map changes.
    let insecure = |t: &str| format!("{t}d.e IN NS ns.elsewhere.net.\n");
    let secure = |t: &str| format!("{}d.e IN DS {DS}\n", insecure(t));
    assert!(both_from(&nsec3(true), &insecure, &secure).is_none());
    let no_ds = |t: &str| t.replace(&format!("d.e IN DS {DS}\n"), "");
    assert!(both_from(&nsec3(true), &secure, &no_ds).is_none());
    for denial in [Denial::Nsec, nsec3(false)] {
        let (after, whole) = both_from(&denial, &insecure, &secure).expect("applied");
        same_as_whole(&after, &whole, &format!("DS below an ENT ({denial:?})"));
        let (after, whole) = both_from(&denial, &secure, &no_ds).expect("applied");
        same_as_whole(
            &after,
            &whole,
            &format!("DS removed below an ENT ({denial:?})"),
        );
    }
    // A cut removed while a glue record below it stays (unchanged, it would now be
    // signed), and one added over a name whose records stay (they would lose theirs).
    let glue = |t: &str| format!("{t}ns.sub IN AAAA 2001:db8::53\n");
    let uncut = |t: &str| {
        let t = glue(t).replace("sub     IN NS  ns.sub\n", "");
        let t = t.replace("ns.sub  IN A   192.0.2.53   ; glue\n", "");
        let from = t.find("sub     IN DS").unwrap();
        let to = from + t[from..].find('\n').unwrap() + 1;
        format!("{}{}", &t[..from], &t[to..])
    };
    let host = |t: &str| format!("{t}h.x IN A 192.0.2.70\nx IN TXT \"x\"\n");
    let cut = |t: &str| format!("{}x IN NS ns.elsewhere.net.\n", host(t));
    for denial in [Denial::Nsec, nsec3(false), nsec3(true)] {
        assert!(both_from(&denial, &glue, &uncut).is_none(), "{denial:?}");
        assert!(both_from(&denial, &host, &cut).is_none(), "{denial:?}");
    }
}

#[test]
fn a_sparse_chain_is_left_to_the_whole_build_and_the_full_check() {
    // Names below a cut at the end of the zone: the NSEC before the apex (the chain
    // wraps) is more than the scan allows away from it.
    let occluded = |t: &str| {
        let below: String = (0..2 * SCAN_MAX)
            .map(|i| format!("h{i}.zzzz IN A 192.0.2.1\n"))
            .collect();
        format!("{t}zzzz IN NS ns.elsewhere.net.\n{below}")
    };
    let changed = |t: &str| occluded(t).replace("192.0.2.25", "192.0.2.26");
    assert!(both_from(&Denial::Nsec, &occluded, &changed).is_none());
    let (_, origin, now, keys, opts) = signed_example_with_keys(Denial::Nsec);
    let z = ZoneState {
        content: signed_content(&occluded(&example_text()), &origin, &keys, &opts),
        ..Default::default()
    };
    let touched = [(origin.clone(), rtype::SOA)].into();
    let e = crate::validate::incremental::check(&z.content, &origin, &touched, now);
    assert_eq!(e, Err(crate::validate::incremental::Refusal::TooSparse));
}

#[test]
fn the_check_of_a_changed_name_finds_a_chain_left_as_it_was() {
    for denial in [Denial::Nsec, nsec3(false)] {
        let (z, origin, t, _, _) = signed_example_with_keys(denial.clone());
        let removed = |t: &str| t.replace("ns2     IN AAAA 2001:db8::2\n", "");
        let (after, _) = both(&denial, &removed).unwrap();
        let touched: BTreeSet<(Name, u16)> =
            [(Name::parse(b"ns2.example.", None).unwrap(), rtype::AAAA)].into();
        crate::follower::incremental(&after, &origin, &touched, t).unwrap();
        // The record before the removed name still points to it.
        let chain = Chain::of(&View::new(&z.content), &origin).unwrap();
        let gone = chain.owner(&origin, &Name::parse(b"ns2.example.", None).unwrap());
        let prev = View::new(&after.content)
            .prev_with(&gone, chain.rtype())
            .unwrap()
            .unwrap()
            .clone();
        let mut bad = after.clone();
        let k = key(&prev, chain.rtype());
        bad.content.insert(k.clone(), z.content[&k].clone());
        let e = crate::follower::incremental(&bad, &origin, &touched, t).unwrap_err();
        assert!(e.contains("which has no"), "{denial:?}: {e}");

        // A type added, the bit map left as it was.
        let typed = |t: &str| format!("{t}mail IN TXT \"x\"\n");
        let (after, _) = both(&denial, &typed).unwrap();
        let mail = Name::parse(b"mail.example.", None).unwrap();
        let touched: BTreeSet<(Name, u16)> = [(mail.clone(), rtype::TXT)].into();
        crate::follower::incremental(&after, &origin, &touched, t).unwrap();
        let mut bad = after.clone();
        let k = key(&chain.owner(&origin, &mail), chain.rtype());
        bad.content.insert(k.clone(), z.content[&k].clone());
        let e = crate::follower::incremental(&bad, &origin, &touched, t).unwrap_err();
        assert!(e.contains("bit map"), "{denial:?}: {e}");
    }
}

/// A fault planted in this module's chain update (bit maps without TXT) passes its own
/// self-check, which shares the rules that made it; the followers' check, which works
/// the bit map out by itself, refuses the version.
#[test]
fn a_fault_in_the_chain_update_is_refused_by_the_independent_check() {
    let add_txt = |t: &str| format!("{t}mail IN TXT \"x\"\n");
    let now = crate::runtime::wall() as u32;
    let origin = Name::parse(b"example.", None).unwrap();
    for denial in [Denial::Nsec, nsec3(false)] {
        let check = |after: &ZoneState| {
            let all = after
                .content
                .keys()
                .map(|(o, t)| (o.0.clone(), *t))
                .collect();
            crate::validate::incremental::check(&after.content, &origin, &all, now)
        };
        let (good, _) = both(&denial, &add_txt).unwrap();
        assert_eq!(check(&good), Ok(()), "{denial:?}: without the fault");

        PLANT_FAULT.with(|p| p.set(true));
        let planted = both(&denial, &add_txt);
        PLANT_FAULT.with(|p| p.set(false));
        let (bad, whole) = planted.expect("the builder's self-check lets the fault through");
        assert_ne!(bad.content, whole, "{denial:?}: the fault changed nothing");
        let e = check(&bad).unwrap_err();
        assert!(
            matches!(&e, crate::validate::incremental::Refusal::Invalid(m)
                if m.contains("mail.example.") && m.contains("bit map")),
            "{denial:?}: {e}"
        );
    }
}

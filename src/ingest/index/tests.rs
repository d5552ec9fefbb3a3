use super::*;
use crate::ingest::held::made_by_signer;
use crate::replica::state::RrsetVal;
use crate::zone::{Limits, rtype};

const HOSTS: usize = 6000;

fn text(edit: &dyn Fn(usize) -> Option<String>) -> String {
    text_of(HOSTS, edit)
}

fn text_of(hosts: usize, edit: &dyn Fn(usize) -> Option<String>) -> String {
    let mut t = String::from(
        "$ORIGIN example.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..hosts {
        match edit(i) {
            Some(line) => t.push_str(&line),
            None => t.push_str(&format!(
                "h{i} IN A 192.0.2.{}\nh{i} IN TXT \"{i}\"\n",
                i % 250
            )),
        }
    }
    t
}

fn opts() -> ParseOptions {
    ParseOptions {
        origin: Name::parse(b"example.", None).unwrap(),
        limits: Limits::default(),
        keep_dnssec: false,
    }
}

/// The unsigned content of `text`, as a version built from it holds it.
fn content(text: &str) -> Content {
    let o = opts();
    let parsed = crate::zone::parse::parse_file_bytes(text.as_bytes(), Path::new("z"), &o).unwrap();
    let (zone, _) = Zone::build(parsed, &o.origin, "z", &o.limits).unwrap();
    let mut c = Content::new();
    for n in &zone.nodes {
        for set in n.rrsets.iter().filter(|s| !made_by_signer(s.rtype)) {
            let v = RrsetVal {
                ttl: set.ttl,
                rdatas: set.rdatas.clone(),
                sigs: Vec::new(),
            };
            c.insert((Owner(n.name.clone()), set.rtype), v);
        }
    }
    c
}

fn index_of(text: &str) -> FileIndex {
    let b = text.as_bytes();
    FileIndex::build(b, Sums::of(b), Path::new("z"), &opts()).unwrap()
}

/// Where each piece is and what it holds, to compare two indexes.
fn layout(index: &FileIndex) -> Vec<(usize, usize, u32, Option<u32>, Name, PieceId)> {
    index
        .order
        .iter()
        .map(|s| {
            let p = &s.piece;
            (
                p.start,
                p.end,
                p.line,
                p.default_ttl,
                p.origin.clone(),
                s.id,
            )
        })
        .collect()
}

/// `new` read around its change through the index of `old` (a file on disk).
fn scan(index: &FileIndex, new: &str) -> (Sums, Option<Edit>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, new.as_bytes()).unwrap();
    let file = File::open(f.path()).unwrap();
    let (sums, edit) = index.scan(&file, new.len()).unwrap();
    assert_eq!(
        sums,
        Sums::of(new.as_bytes()),
        "the scan's sums are the file's"
    );
    (sums, edit)
}

/// `new` against `old` through the index of `old`: from the whole text, and read
/// around the change when it can be, with the same outcome both ways.
fn compare(old: &str, new: &str) -> Option<Compared> {
    let o = opts();
    let index = index_of(old);
    assert!(index.order.len() > 5, "{} pieces", index.order.len());
    let c = content(old);
    let whole = index
        .prepare(new.as_bytes(), Sums::of(new.as_bytes()), Path::new("z"), &o)
        .and_then(|p| p.finish(&c));
    let (sums, edit) = scan(&index, new);
    if let Some(edit) = edit {
        let by_edit = index
            .prepare_edit(edit, sums, Path::new("z"), &o)
            .and_then(|p| p.finish(&c));
        match (&whole, &by_edit) {
            (Some((m1, t1, i1)), Some((m2, t2, i2))) => {
                assert_eq!(t1, t2, "the same RRsets to compare");
                assert_eq!(format!("{m1:?}"), format!("{m2:?}"), "the same small zone");
                assert_eq!(layout(i1), layout(i2), "the same pieces");
                assert_eq!(i1.sums, i2.sums);
            }
            (None, None) => {}
            _ => panic!("whole: {}, edit: {}", whole.is_some(), by_edit.is_some()),
        }
    }
    whole
}

fn name(s: &str) -> Name {
    Name::parse(s.as_bytes(), None).unwrap()
}

/// A file read whole is parsed once, by its pieces, for both the index and the zone:
/// the same records, in the same order and with the same lines, as a parse of the
/// whole, and the same index as one built on its own.
#[test]
fn the_pieces_parse_a_whole_file_as_a_whole_parse_would() {
    let mut t = text(&|i| {
        (i % 997 == 5).then(|| {
            format!(
                "h{i} 60 IN A 192.0.2.9\n$ORIGIN sub.example.\nx{i} IN TXT \"a ; b\" ( \"c\"\n  \"d\" )\n$ORIGIN example.\n$TTL 600\n"
            )
        })
    });
    t.push_str("h9 IN MX 10 mail ; a comment\n");
    let b = t.as_bytes();
    let whole = crate::zone::parse::parse_file_bytes(b, Path::new("z"), &opts()).unwrap();
    let (index, parsed) = FileIndex::build_parsed(b, Sums::of(b), Path::new("z"), &opts()).unwrap();
    assert!(index.len() > 5, "{} pieces", index.len());
    assert_eq!(parsed.records.len(), whole.records.len());
    assert_eq!(
        format!("{:?}", parsed.records),
        format!("{:?}", whole.records)
    );
    let alone = FileIndex::build(b, Sums::of(b), Path::new("z"), &opts()).unwrap();
    assert_eq!(layout(&index), layout(&alone));
    // What cannot be parsed by pieces is left to the whole parse.
    let untimed = t.replace("$TTL 300\n", "").replace(" IN ", " 300 IN ");
    let b = untimed.as_bytes();
    assert!(FileIndex::build_parsed(b, Sums::of(b), Path::new("z"), &opts()).is_none());
}

#[test]
fn only_the_pieces_that_changed_are_parsed_and_their_owners_compared() {
    let old = text(&|_| None);
    // The same text: only the apex.
    let (mini, touched, index) = compare(&old, &old).unwrap();
    assert!(
        touched.iter().all(|(o, _)| *o == name("example.")),
        "{touched:?}"
    );
    assert!(
        mini.nodes.len() < HOSTS / 2,
        "{} names parsed",
        mini.nodes.len()
    );
    assert_eq!(index.sums, Sums::of(old.as_bytes()));

    // One record changed: its piece, and nothing near the whole zone.
    let one =
        text(&|i| (i == 1000).then(|| "h1000 IN A 192.0.2.99\nh1000 IN TXT \"1000\"\n".into()));
    let (mini2, touched, _) = compare(&old, &one).unwrap();
    assert!(touched.contains(&(name("h1000.example."), rtype::A)));
    assert!(
        mini2.nodes.len() < HOSTS / 2,
        "{} names parsed",
        mini2.nodes.len()
    );
    let at = mini2
        .nodes
        .iter()
        .find(|n| n.name == name("h1000.example."))
        .unwrap();
    assert_eq!(at.rrsets[0].rdatas.first().unwrap(), &[192, 0, 2, 99]);

    // A name added, a name removed: both among the RRsets to compare.
    let added = text(&|i| {
        (i == 2000)
            .then(|| "h2000 IN A 192.0.2.1\nh2000 IN TXT \"2000\"\nnew IN A 192.0.2.7\n".into())
    });
    let (_, touched, _) = compare(&old, &added).unwrap();
    assert!(touched.contains(&(name("new.example."), rtype::A)));
    let removed = text(&|i| (i == 3000).then(String::new));
    let (mini, touched, next) = compare(&old, &removed).unwrap();
    assert!(touched.contains(&(name("h3000.example."), rtype::A)));
    assert!(touched.contains(&(name("h3000.example."), rtype::TXT)));
    assert!(!mini.nodes.iter().any(|n| n.name == name("h3000.example.")));
    // The new index describes the new file: compared with it, nothing moved.
    let b = removed.as_bytes();
    let p = next
        .prepare(b, Sums::of(b), Path::new("z"), &opts())
        .unwrap();
    let (_, touched, _) = p.finish(&content(&removed)).unwrap();
    assert!(
        touched.iter().all(|(o, _)| *o == name("example.")),
        "{touched:?}"
    );

    // An owner named again in another piece: left to the other paths.
    let again = format!("{old}h10 IN MX 10 mail\n");
    assert!(compare(&old, &again).is_none());
    // Edits all over the file: left to the bucket sums.
    let many = text(&|i| (i % 200 == 7).then(|| format!("h{i} IN A 192.0.2.251\n")));
    assert!(compare(&old, &many).is_none());
    // No $TTL: a record without a TTL after a cut would take the TTL before it.
    let untimed = old.replace("$TTL 300\n", "").replace(" IN ", " 300 IN ");
    let b = untimed.as_bytes();
    let index = FileIndex::build(b, Sums::of(b), Path::new("z"), &opts());
    assert!(index.is_none());
    // A piece that does not parse on its own: the whole parse says where.
    let bad = text(&|i| (i == 4000).then(|| "h4000 IN A 300.0.0.1\n".into()));
    assert!(compare(&old, &bad).is_none());
}

fn spans_layout(spans: &[Span]) -> Vec<(usize, usize, u32, Option<u32>, Name, PieceId)> {
    let index = FileIndex {
        sums: Sums::of(b""),
        order: spans.to_vec(),
        pieces: HashMap::new(),
        split: HashSet::new(),
    };
    layout(&index)
}

#[test]
fn a_changed_file_is_read_around_its_change_and_cut_as_a_whole_cut_would() {
    const N: usize = 30_000;
    let old = text_of(N, &|_| None);
    let index = index_of(&old);
    assert!(index.order.len() > 50, "{} pieces", index.order.len());
    let line = |i: usize| format!("h{i} IN A 192.0.2.{}\nh{i} IN TXT \"{i}\"\n", i % 250);
    type Edit = Box<dyn Fn(usize) -> Option<String>>;
    let cases: Vec<(&str, String)> = vec![
        ("the same bytes", old.clone()),
        (
            "one rdata, same length",
            text_of(N, &|i| {
                (i == 15_000).then(|| line(i).replace("192.0.2.0", "192.0.2.9"))
            }),
        ),
        (
            "one rdata, longer",
            text_of(N, &|i| {
                (i == 15_000).then(|| line(i).replace("192.0.2.0", "192.0.2.200"))
            }),
        ),
        (
            "a name added",
            text_of(N, &|i| {
                (i == 9_000).then(|| format!("{}new IN A 192.0.2.7\n", line(i)))
            }),
        ),
        (
            "a name removed",
            text_of(N, &|i| (i == 21_000).then(String::new)),
        ),
        (
            "the SOA's serial",
            old.replacen("host 1 7200", "host 2 7200", 1),
        ),
        (
            "the first host",
            text_of(N, &|i| (i == 0).then(|| line(i).replace("TXT", "SPF"))),
        ),
        (
            "the last host",
            text_of(N, &|i| (i == N - 1).then(|| line(i).replace("A 1", "A 2"))),
        ),
        ("a record appended", format!("{old}tail IN A 192.0.2.3\n")),
        (
            "an owner like the next one",
            text_of(N, &|i| {
                (i == 12_000).then(|| line(i).replace("h12000 IN TXT", "h12001 IN TXT"))
            }),
        ),
    ];
    let _: Option<Edit> = None;
    for (what, new) in &cases {
        let (_, edit) = scan(&index, new);
        let edit = edit.unwrap_or_else(|| panic!("{what}: read around the change"));
        // (Blocks of 64 KiB around pieces of ~11 KB here; ~54 KB at 1M delegations.)
        assert!(
            edit.read < new.len() / 2,
            "{what}: read {} of {}",
            edit.read,
            new.len()
        );
        let whole = cut(new.as_bytes(), &opts()).unwrap();
        assert_eq!(
            spans_layout(&edit.spans),
            spans_layout(&whole),
            "{what}: the pieces of a whole cut"
        );
        // And the comparison is the one made from the whole text.
        let _ = compare(&old, new);
    }
    // A $TTL changed at the top changes what every piece means: no old cut is met.
    let ttl = old.replacen("$TTL 300", "$TTL 301", 1);
    assert!(scan(&index, &ttl).1.is_none(), "a new $TTL");
    // Edits at both ends: nothing near the whole file is cut again.
    let both = text_of(N, &|i| {
        (i == 10 || i == N - 10).then(|| line(i).replace("TXT", "SPF"))
    });
    let (_, edit) = scan(&index, &both);
    if let Some(e) = edit {
        assert_eq!(
            spans_layout(&e.spans),
            spans_layout(&cut(both.as_bytes(), &opts()).unwrap())
        );
    }
}

//! The bodies of the fuzz targets (`chaos/fuzz/`): each takes arbitrary bytes, must return
//! without panicking (refusing the input is fine), and is replayed over the checked-in
//! corpus by `tests/fuzz_corpus.rs`, so a crash once found stays fixed.

use std::path::Path;

use crate::dns::client::Assembler;
use crate::zone::{Limits, Name, ParseOptions, Zone};

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("zone_file", zone_file),
    ("transfer_stream", transfer_stream),
    ("rpc_frame", rpc_frame),
    ("snapshot", snapshot),
    ("node_config", node_config),
    ("policy", policy),
];

/// A master file for `example.`, with small limits so that big inputs are refused fast.
pub fn zone_file(data: &[u8]) {
    let popts = ParseOptions {
        origin: Name::parse(b"example.", None).expect("origin"),
        limits: Limits {
            zone_records_max: 10_000,
            ..Limits::default()
        },
        keep_dnssec: data.first().is_some_and(|b| b & 1 == 1),
    };
    if let Ok((zone, _)) = Zone::load_bytes(data, Path::new("fuzz.zone"), &popts) {
        // What was accepted can be walked in canonical order.
        let _ = zone
            .nodes
            .iter()
            .map(|n| n.name.as_wire().len())
            .sum::<usize>();
    }
}

/// An inbound AXFR (first byte even) or IXFR answer: the rest is a stream of messages, each
/// with a two-byte length, as on TCP; the answers' id must be 0.
pub fn transfer_stream(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let ours = (mode & 1 == 1).then_some(1);
    let mut a = Assembler::new(0, None, None, ours, 1000, "fuzz transfer".into());
    while rest.len() >= 2 {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let Some(msg) = rest.get(2..2 + n) else {
            let _ = a.truncated();
            return;
        };
        rest = &rest[2 + n..];
        match a.push(msg) {
            Ok(true) => {
                let _ = a.finish();
                return;
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
    if a.lone() {
        let _ = a.lone_error();
    }
}

/// One node-to-node RPC frame, as a request and as a response.
pub fn rpc_frame(data: &[u8]) {
    let _ = crate::replica::decode::<crate::transport::Request>(data);
    let _ = crate::replica::decode::<crate::transport::Response>(data);
}

/// The assembled chunks of a snapshot, as a node installing it decodes them.
pub fn snapshot(data: &[u8]) {
    let _ = crate::replica::decode::<crate::replica::state::ClusterState>(data);
}

/// A node's `node.toml`.
pub fn node_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::NodeConfig::from_text(text, Path::new("/nonexistent/node.toml"));
    }
}

/// A key and signing policy file.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::kasp::Policy::from_toml(text, "fuzz-policy.toml");
    }
}

/// Valid inputs for every target, made by the code itself: the corpus starts from these
/// (`QS_WRITE_SEEDS=1 cargo test --test fuzz_corpus` writes them), and the replay test
/// runs them too, so they follow the encodings as they change.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let zones: [&[u8]; 5] = [
        include_bytes!("../../examples/example.zone"),
        b"$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n\
          a\\.b TXT \"x;y\" \"\\065\"\nx TYPE65280 \\# 4 0a000001\nsub NS ns.sub\nns.sub A 192.0.2.2\n",
        b"@ 300 IN SOA ns h ( 1 2\n 3 4 5 ) ; c\n@ NS ns.\n*.w CNAME t\nd DNAME e.\nI IN TXT 1;",
        b"$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\n@ RRSIG A 13 1 60 20300101000000 20200101000000 1 . AAAA\n",
        b"@ SOA ns h 1 2 3 4 5\nwww A 192.0.2.1\nwww 600 A 192.0.2.2\nWWW aaaa ::1\n",
    ];
    for (i, z) in zones.iter().enumerate() {
        out.push(("zone_file", format!("seed-{i}"), z.to_vec()));
    }
    let origin = Name::parse(b"example.", None).expect("origin");
    let soa = |serial: u32| {
        let mut d = Vec::new();
        d.extend_from_slice(b"\x02ns\x07example\x00\x01h\x07example\x00");
        for v in [serial, 3600, 600, 86400, 300] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d
    };
    let www = Name::parse(b"www.example.", None).expect("name");
    let stream = |mode: u8, qtype: u16, recs: &[(&Name, u16, Vec<u8>)]| {
        let mut e = crate::serve::xfr::Encoder::new(0, &origin, qtype);
        let mut msgs = Vec::new();
        for (o, t, d) in recs {
            msgs.extend(e.push(o, *t, 300, d));
        }
        msgs.extend(e.finish());
        let mut b = vec![mode];
        for m in msgs {
            b.extend_from_slice(&(m.len() as u16).to_be_bytes());
            b.extend_from_slice(&m);
        }
        b
    };
    let a = |x: u8| vec![192, 0, 2, x];
    out.push((
        "transfer_stream",
        "seed-axfr".into(),
        stream(
            0,
            252,
            &[(&origin, 6, soa(2)), (&www, 1, a(1)), (&origin, 6, soa(2))],
        ),
    ));
    out.push((
        "transfer_stream",
        "seed-ixfr".into(),
        stream(
            1,
            251,
            &[
                (&origin, 6, soa(2)),
                (&origin, 6, soa(1)),
                (&www, 1, a(1)),
                (&origin, 6, soa(2)),
                (&www, 1, a(2)),
                (&origin, 6, soa(2)),
            ],
        ),
    ));
    out.push((
        "transfer_stream",
        "seed-uptodate".into(),
        stream(1, 251, &[(&origin, 6, soa(1))]),
    ));
    use crate::transport::{Request, Response};
    let enc = crate::replica::encode::<Request>;
    out.push((
        "rpc_frame",
        "seed-hello".into(),
        enc(&Request::Hello { from: 2 }),
    ));
    let enc = crate::replica::encode::<Response>;
    out.push(("rpc_frame", "seed-welcome".into(), enc(&Response::Welcome)));
    out.push((
        "rpc_frame",
        "seed-failed".into(),
        enc(&Response::Failed("no".into())),
    ));
    let mut st = crate::replica::state::ClusterState::default();
    out.push(("snapshot", "seed-empty".into(), crate::replica::encode(&st)));
    st.zones.insert(
        "example.".into(),
        crate::replica::state::ZoneState {
            config: Some(crate::replica::ZoneConfig::new(
                "example.",
                "file:example.zone",
            )),
            ..Default::default()
        },
    );
    out.push(("snapshot", "seed-zone".into(), crate::replica::encode(&st)));
    out.push((
        "snapshot",
        "seed-truncated".into(),
        crate::replica::encode(&st)[..8].to_vec(),
    ));
    out.push((
        "node_config",
        "seed-example".into(),
        include_bytes!("../../cluster/node.toml.example").to_vec(),
    ));
    out.push((
        "node_config",
        "seed-min".into(),
        b"id = 1\ndata_dir = \"d\"\nraft_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n\
          keystore = \"none\"\nwitness = true\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n"
            .to_vec(),
    ));
    out.push((
        "node_config",
        "seed-unknown-key".into(),
        b"id = 1\nbogus = 2\n".to_vec(),
    ));
    let p = crate::kasp::Policy::default().to_toml();
    out.push(("policy", "seed-default".into(), p.clone().into_bytes()));
    out.push((
        "policy",
        "seed-csk".into(),
        format!("{p}\n")
            .replace("ksk_lifetime", "# ksk_lifetime")
            .into_bytes(),
    ));
    out.push((
        "policy",
        "seed-bad".into(),
        b"version = 1\nalgorithm = 99\n".to_vec(),
    ));
    out
}

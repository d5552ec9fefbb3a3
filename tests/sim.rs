//! The deterministic simulation (`quorumsign::testkit::sim`): many seeds of three real nodes
//! (Raft, store, signing loop, validation) on a simulated network and clock, each with
//! isolations, one-way cuts, crashes and message loss; none may break an invariant. A
//! failing seed is replayed with `QS_SIM_SEEDS=<seed> cargo test --test sim`.

fn seeds() -> Vec<u64> {
    match std::env::var("QS_SIM_SEEDS") {
        Ok(s) => s
            .split(',')
            .flat_map(|p| match p.split_once("..") {
                Some((a, b)) => (a.parse().unwrap()..b.parse().unwrap()).collect::<Vec<u64>>(),
                None => vec![p.parse().unwrap()],
            })
            .collect(),
        Err(_) => (1..=24).collect(),
    }
}

#[test]
fn simulated_faults_break_no_invariant_on_any_seed() {
    let mut failed = Vec::new();
    let (mut versions, mut terms, mut checks) = (0, 0, 0);
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let o = quorumsign::testkit::sim::run(seed, dir.path(), 8);
        versions += o.versions;
        terms += o.terms;
        checks += o.checks;
        eprintln!(
            "seed {seed}: {} versions, {} terms with a leader, {} checks, {} ms simulated, {} violations",
            o.versions,
            o.terms,
            o.checks,
            o.sim_ms,
            o.violations.len()
        );
        if std::env::var_os("QS_SIM_SEEDS").is_some() {
            eprintln!("  {}", o.events.join("\n  "));
        }
        if !o.violations.is_empty() {
            failed.push(format!(
                "seed {seed}:\n  schedule:\n    {}\n  violations:\n    {}",
                o.events.join("\n    "),
                o.violations.join("\n    ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // The runs did something: versions were published, leaders changed, checks ran.
    assert!(versions > seeds().len() * 4, "only {versions} versions");
    assert!(terms > seeds().len(), "only {terms} terms with a leader");
    assert!(checks > seeds().len() as u64 * 100, "only {checks} checks");
}

#[test]
fn a_seed_replays_the_same_run() {
    let run = |seed| {
        let dir = tempfile::tempdir().unwrap();
        let o = quorumsign::testkit::sim::run(seed, dir.path(), 6);
        (
            o.events,
            o.sim_ms,
            o.checks,
            o.versions,
            o.terms,
            o.violations,
        )
    };
    for seed in [2, 7] {
        let (a, b) = (run(seed), run(seed));
        assert_eq!(a, b, "seed {seed} ran differently twice");
        assert!(a.1 > 10_000, "seed {seed}: only {} ms simulated", a.1);
    }
}

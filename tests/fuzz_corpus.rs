//! Replays the fuzzers' checked-in corpus (`chaos/fuzz/corpus/<target>/`, crashes found and
//! fixed included) through the targets' bodies: none may panic.

use std::path::Path;

#[test]
fn the_seeds_made_by_the_code_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/fuzz/corpus");
    let write = std::env::var_os("QS_WRITE_SEEDS").is_some();
    for (name, file, data) in quorumsign::fuzz::seeds() {
        let (_, target) = quorumsign::fuzz::TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a target");
        target(&data);
        if write {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(root.join(name).join(file), &data).unwrap();
        }
    }
}

#[test]
fn every_corpus_input_is_refused_or_accepted_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/fuzz/corpus");
    for (name, target) in quorumsign::fuzz::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: {} panics", path.display());
            n += 1;
        }
        assert!(
            n >= 3,
            "{name}: only {n} corpus inputs in {}",
            dir.display()
        );
    }
}

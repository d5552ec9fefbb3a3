//! Replays the fuzzers' checked-in corpus (`chaos/fuzz/corpus/<target>/`, crashes found and
//! fixed included, `regression-*`) through the targets' bodies: none may panic, and none
//! may ask for an allocation far beyond its size (the fuzzers' out-of-memory findings).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, remembering the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Largest = Largest;

/// No input of these (small) corpora may make any target ask for more than this at once.
const ALLOC_MAX: usize = 256 << 20;

#[test]
fn the_seeds_made_by_the_code_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/fuzz/corpus");
    let write = std::env::var_os("QS_WRITE_SEEDS").is_some();
    for (name, file, data) in quorumsign::testkit::fuzz::seeds() {
        let (_, target) = quorumsign::testkit::fuzz::TARGETS
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
    for (name, target) in quorumsign::testkit::fuzz::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: {} panics", path.display());
            let largest = LARGEST.load(Ordering::Relaxed);
            assert!(
                largest <= ALLOC_MAX,
                "{name}: {} made an allocation of {largest} bytes",
                path.display()
            );
            n += 1;
        }
        assert!(
            n >= 3,
            "{name}: only {n} corpus inputs in {}",
            dir.display()
        );
    }
}

//! The process's allocator: mimalloc for Rust's allocations in the `quorumsign` binary
//! (`src/main.rs`), tuned to hand freed memory back at once; and the resident size the logs
//! carry.
//!
//! A large version is built, staged, applied and validated in big transient allocations,
//! on several threads at once. With glibc's malloc a node had to choose: one arena (what
//! one thread frees is reusable by the others, but the threads queue on its lock: ~13 % of
//! staging went to `_int_malloc`, `malloc_consolidate` and `unlink_chunk`) or an arena per
//! thread (peaks ~150 MiB higher). mimalloc keeps a heap per thread and frees across
//! threads without a lock. Measured at 1M (`qs-bench-cluster --changes 9`, one after the
//! other on one machine): first version 61.6 s against 66.0 s with one glibc arena, one-RRset
//! change median 41 ms against 50 ms, the same peaks (1339 against 1337 MiB on the leader,
//! ~1000 MiB on the followers).
//!
//! Memory of the C libraries (aws-lc's big numbers, PKCS#11 modules) still comes from
//! glibc's malloc.

/// Sets the allocator up; first thing in `main`. Freed pages go back to the system at
/// once (mimalloc's default delay is 10 ms, in which a version's next phase already
/// allocates anew: the leader's peak at 1M was ~1530 MiB with the default and ~1330
/// with no delay).
pub fn init() {
    /// `mi_option_purge_delay` (mimalloc 3.3 `include/mimalloc.h`).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one option of the allocator; any value is valid.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
}

/// The resident set size now, from /proc (Linux).
pub fn resident() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Returns free memory to the system after a large transient: the calling thread's free
/// pages and what mimalloc's arenas hold free (other threads' heaps purge their own freed
/// pages at once, see [`init`]), and glibc's free pages (the C libraries' heap).
pub fn trim() {
    // SAFETY: mi_collect only releases memory that is free.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages (of the C libraries' heap).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// MiB, for logs.
pub fn mib(b: Option<u64>) -> u64 {
    b.map_or(0, |b| b >> 20)
}

/// Versions and zones from this many RRsets on log their memory figures.
pub const LARGE: usize = 10_000;

/// The RSS in MiB for a log line about `rrsets` RRsets, when that is [`LARGE`].
pub fn rss_for(rrsets: usize) -> Option<u64> {
    (rrsets >= LARGE).then(|| mib(resident()))
}

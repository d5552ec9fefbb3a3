//! The process's heap as the allocator sees it, and handing freed memory back.
//!
//! A large version is built, staged, applied and validated in big transient allocations.
//! glibc returns freed memory to the system only from the top of its heaps, so without a
//! trim a node keeps the peak of its last whole build as its resident size.

/// Bytes the allocator has handed out and not had back (glibc's `uordblks` plus mmapped
/// chunks); `None` where that is not known. Not cheap: glibc walks its free lists (tens of
/// ms on a heap of millions of chunks), so only after a large build or a full check.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The resident set size now, from /proc (Linux).
pub fn resident() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Returns the free memory of every heap to the system (after a large transient).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages.
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

/// (heap, RSS) in MiB for a log line about `rrsets` RRsets: only when that is
/// [`LARGE`], and the heap only when debug logging is on. [`heap_in_use`] walks the
/// allocator's free lists holding its lock: ~0.5 s on the heap of a node with 1M
/// delegations, during which every allocating thread of the process waits. Five such
/// walks on each follower (two of them under the state's write lock) were a few seconds
/// of a first version's replication.
pub fn figures_for(rrsets: usize) -> (Option<u64>, Option<u64>) {
    if rrsets < LARGE {
        return (None, None);
    }
    let heap = tracing::enabled!(tracing::Level::DEBUG).then(|| mib(heap_in_use()));
    (heap, Some(mib(resident())))
}

/// One allocator arena for the whole process (node processes): what one thread frees is
/// then reusable by every other. With more (glibc's default is an arena per thread, up to
/// eight per core), a 1M-delegation version staged on the apply thread, modelled on a
/// blocking thread and checked on the validator's threads strands freed memory in arenas
/// the others cannot use. Measured at 1M (`qs-bench-cluster --primary`): with two arenas
/// the peaks were 1820–1861 MiB on followers and 2092 on the leader; with one, 1678–1679
/// and 1972. The cost: the first version took 90 s instead of 83, and re-parsing a changed
/// 1M input file 4.8 s instead of 3.7 (the parallel parse shares one arena's lock; small
/// allocations still go through each thread's own cache).
pub fn single_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

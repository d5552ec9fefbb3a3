//! What the rest of the program runs on: the [`clock`], the allocator and memory figures
//! ([`mem`]), openraft's async runtime ([`rt`]), and the ways blocking work leaves the async
//! threads: the helpers below and the background thread pools (validation, the standby's
//! index; the signer's rayon work runs on rayon's global pool).
//!
//! Everything here is below every other module: it imports none of them.

pub mod clock;
pub mod mem;
pub mod rt;

pub use clock::{Clock, wall};

/// Runs blocking work from async code: through `block_in_place` on a multi-threaded runtime
/// (the nodes), inline on a current-thread one (the deterministic simulation's).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs blocking work off the async threads (tokio's blocking pool), or inline on a
/// current-thread runtime, where the deterministic simulation keeps everything in order.
pub async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => Ok(f()),
        _ => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Threads for full validation, at a lower CPU priority (nice 10) than the Raft runtime
/// and the leader's signing: re-checking a large zone must not delay heartbeats.
pub fn validator_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| niced_pool("validate", 10))
}

/// Threads for a standby's index of the input, at the lowest CPU priority (nice 19): it
/// runs while the leader builds the next version and the followers check it, on the same
/// cores in a lab, and must not delay them.
pub fn standby_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| niced_pool("standby", 19))
}

/// A rayon pool whose threads (`{name}-{i}`) run at CPU priority `nice`: background work
/// that must not delay the Raft runtime or the leader's signing.
pub fn niced_pool(name: &'static str, nice: i32) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| {
            // SAFETY: setpriority on the calling thread (Linux: per-thread nice value).
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        })
        .build()
        .unwrap_or_else(|e| panic!("{name} threads: {e}"))
}

//! The async runtime openraft runs on: tokio, except for its random numbers (election
//! timeouts), which come from a per-thread generator that the deterministic simulation
//! ([`crate::testkit::sim`]) seeds, so that a simulated run replays from its seed. Outside a
//! simulation each thread's generator starts from the operating system's entropy.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

#[allow(deprecated)] // the re-export names the same type as openraft-rt-tokio's
use openraft::impls::TokioRuntime;
use openraft::{AsyncRuntime, OptionalSend};

thread_local! {
    static STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes this thread's generator a deterministic sequence from `seed` (simulation only).
pub fn seed_thread(seed: u64) {
    STATE.with(|s| s.set(Some(seed)));
}

/// SplitMix64 step.
fn next() -> u64 {
    STATE.with(|s| {
        let state = s.get().unwrap_or_else(|| {
            let mut b = [0u8; 8];
            // With no entropy at all, a fixed start still gives varied timeouts per call.
            let _ = aws_lc_rs::rand::fill(&mut b);
            u64::from_le_bytes(b)
        });
        let state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(Some(state));
        let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A handle on this thread's generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRng;

impl rand_core::TryRng for ThreadRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

/// Tokio, with [`ThreadRng`].
#[derive(Debug)]
pub struct Rt(TokioRuntime);

impl AsyncRuntime for Rt {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ThreadRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn new(threads: usize) -> Self {
        Rt(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }

    /// Tokio's blocking pool; inline on a current-thread runtime (the simulation's), where
    /// work finishing on another thread would make the order of events vary.
    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let work = crate::runtime::spawn_blocking(f);
        async move { work.await.map_err(std::io::Error::other) }
    }
}

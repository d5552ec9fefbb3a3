//! The wall clock, handed to whoever needs it rather than read from a global: a node's
//! parts read the node's [`Clock`], which is the system clock, the system clock shifted by
//! a fault drill's offset, or the deterministic simulation's clock that follows tokio's
//! paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unix seconds now, by the system clock: for code outside a node (the CLI, tests, the
/// chaos harness). A node's parts use its [`Clock`] instead.
pub fn wall() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a [`Clock`] takes its time from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The system clock.
    Wall,
    /// `start` (Unix seconds) at tokio instant `at`, then tokio's (paused, simulated) time.
    Simulated {
        start: u64,
        at: tokio::time::Instant,
    },
}

#[derive(Debug)]
struct Inner {
    source: Source,
    /// Seconds added: a fault drill (`fault_control`'s `clock = ±N`) makes the clock jump.
    offset: AtomicI64,
}

/// A node's wall clock (Unix seconds): what signatures, validation and the key lifecycle use.
/// Clones share one offset.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Inner>);

impl Clock {
    /// The system clock.
    pub fn wall() -> Clock {
        Clock::of(Source::Wall)
    }

    /// A clock that reads `start` now and then moves with tokio's time (which the
    /// deterministic simulation pauses and advances). Must be made inside a tokio runtime.
    pub fn simulated(start: u64) -> Clock {
        Clock::of(Source::Simulated {
            start,
            at: tokio::time::Instant::now(),
        })
    }

    fn of(source: Source) -> Clock {
        Clock(Arc::new(Inner {
            source,
            offset: AtomicI64::new(0),
        }))
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        let t = match self.0.source {
            Source::Wall => wall(),
            Source::Simulated { start, at } => start + at.elapsed().as_secs(),
        };
        t.saturating_add_signed(self.0.offset.load(Ordering::Relaxed))
    }

    /// Shifts this clock (and its clones) by `seconds` from its source.
    pub fn set_offset(&self, seconds: i64) {
        self.0.offset.store(seconds, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_shifts_every_clone() {
        let c = Clock::wall();
        let other = c.clone();
        let before = other.now();
        c.set_offset(3_600);
        let after = other.now();
        assert!(
            (3_600..3_700).contains(&(after - before)),
            "{before} → {after}"
        );
        c.set_offset(-7_200);
        assert!(other.now() < before);
    }

    #[tokio::test(start_paused = true)]
    async fn simulated_clock_follows_tokio_time() {
        let c = Clock::simulated(1_000);
        assert_eq!(c.now(), 1_000);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(c.now(), 1_090);
    }
}

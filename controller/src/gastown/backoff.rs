//! Exponential backoff with jitter for quick in-call retries of transient failures.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Delay before retry `n` (0-based): `initial * multiplier^n`, capped at `max`, then jittered
/// into `[d/2, d]` ("equal jitter") so that replicas and concurrent reconciles do not retry
/// in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth factor per retry (values below 1 count as 1).
    pub multiplier: u32,
}

impl Default for Backoff {
    /// 250 ms, doubling, at most 5 s: the reconciler requeues anyway, so in-call retries only
    /// bridge short hiccups.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            multiplier: 2,
        }
    }
}

impl Backoff {
    /// The delay before retry `retry` without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.max(1).checked_pow(retry).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(Duration::MAX).min(self.max)
    }

    /// The delay before retry `retry` with jitter in `[base/2, base]`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, random_u64())
    }

    /// [`Self::delay`] with the random input given (for tests).
    pub fn delay_with(&self, retry: u32, random: u64) -> Duration {
        let base = self.base_delay(retry);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = random % spread.saturating_add(1);
        half + Duration::from_nanos(jitter)
    }
}

/// A pseudo-random number good enough for jitter, without a dependency: SipHash with the
/// process's random keys over a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2,
        };
        let delays: Vec<u128> = (0..6).map(|n| b.base_delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.base_delay(200), Duration::from_secs(1), "no overflow");
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let b = Backoff::default();
        for retry in 0..8 {
            let base = b.base_delay(retry);
            for random in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
                let d = b.delay_with(retry, random);
                assert!(d >= base / 2 && d <= base, "retry {retry}: {d:?} vs {base:?}");
            }
            let d = b.delay(retry);
            assert!(d >= base / 2 && d <= base);
        }
        assert_eq!(b.delay_with(0, 0), Duration::from_millis(125));
    }

    #[test]
    fn jitter_varies() {
        let b = Backoff::default();
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
        assert!(samples.len() > 1);
    }

    #[test]
    fn degenerate_settings() {
        let zero = Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 0,
        };
        assert_eq!(zero.delay(5), Duration::ZERO);
        let flat = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            multiplier: 0,
        };
        assert_eq!(flat.base_delay(4), Duration::from_millis(10));
    }
}

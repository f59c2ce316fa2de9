//! Exponential backoff with jitter, and the one random source for it: the Gas Town client's
//! quick in-call retries ([`Backoff::delay`]) and the reconcile's per-object retries
//! ([`Failures`]) both use it.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

    /// The delay before retry `retry` spread by ±25 % with `seed` (0..1), at most `max`.
    pub fn spread_delay(&self, retry: u32, seed: f64) -> Duration {
        let base = self.base_delay(retry).as_secs_f64();
        Duration::from_secs_f64((base * (0.75 + 0.5 * seed.clamp(0.0, 1.0))).min(self.max.as_secs_f64()))
    }
}

/// The reconcile's retries after a failure of an object: 1 s doubling to 5 min, ±25 % jitter.
pub const RECONCILE: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(300),
    multiplier: 2,
};

/// A pseudo-random number good enough for jitter, without a dependency: SipHash with the
/// process's random keys over a counter.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A pseudo-random number in 0..1 from [`random_u64`].
pub fn random_unit() -> f64 {
    (random_u64() % 10_000) as f64 / 10_000.0
}

/// Consecutive failures per object, and when each may be retried. A reconcile started before
/// then (by a watch event) waits for it, see [`Failures::pending`]; only a deletion runs early,
/// and a failure counts only once the previous backoff has run out, so that early run keeps the
/// schedule instead of doubling the delay again.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, Failure>>);

struct Failure {
    count: u32,
    retry_at: Instant,
}

impl Failures {
    /// The delay before retrying `key` after a failure at `now` (see [`RECONCILE`]); `seed`
    /// (0..1) is the jitter, [`random_unit`] outside tests.
    pub fn next_delay(&self, key: &str, now: Instant, seed: f64) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = map.entry(key.to_string()).or_insert(Failure {
            count: 0,
            retry_at: now,
        });
        if now < f.retry_at {
            return f.retry_at - now;
        }
        f.count = f.count.saturating_add(1);
        let delay = RECONCILE.spread_delay(f.count.saturating_sub(1), seed);
        f.retry_at = now + delay;
        delay
    }

    /// How long until the retry of `key` is due, while it is in backoff after a failure.
    pub fn pending(&self, key: &str, now: Instant) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .and_then(|f| f.retry_at.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// How many failures in a row `key` has had.
    #[cfg(test)]
    fn count(&self, key: &str) -> u32 {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map_or(0, |f| f.count)
    }

    /// `key` succeeded.
    pub fn reset(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
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

    #[test]
    fn backoff_doubles_per_due_failure_up_to_five_minutes() {
        let f = Failures::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..12 {
            let d = f.next_delay("ns/a", now, 0.5);
            delays.push(d.as_secs());
            now += d;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(f.count("ns/a"), 12);
    }

    #[test]
    fn pending_says_how_long_until_the_retry_is_due() {
        let f = Failures::default();
        let t0 = Instant::now();
        assert_eq!(f.pending("ns/a", t0), None, "never failed");
        let d = f.next_delay("ns/a", t0, 0.5);
        assert_eq!(f.pending("ns/a", t0), Some(d));
        assert_eq!(
            f.pending("ns/a", t0 + Duration::from_millis(300)),
            Some(d - Duration::from_millis(300))
        );
        assert_eq!(f.pending("ns/a", t0 + d), None, "due");
        assert_eq!(f.pending("ns/b", t0), None, "other objects are not held back");
        f.reset("ns/a");
        assert_eq!(f.pending("ns/a", t0), None);
    }

    #[test]
    fn early_reruns_keep_the_schedule_instead_of_counting_again() {
        let f = Failures::default();
        let t0 = Instant::now();
        assert_eq!(f.next_delay("ns/a", t0, 0.5), Duration::from_secs(1));
        let t1 = t0 + f.next_delay("ns/a", t0, 0.5);
        assert_eq!(f.next_delay("ns/a", t1, 0.5), Duration::from_secs(2));
        // Our own status write re-ran the reconcile 100 ms later and it failed again.
        let early = t1 + Duration::from_millis(100);
        assert_eq!(f.next_delay("ns/a", early, 0.5), Duration::from_millis(1900));
        assert_eq!(f.count("ns/a"), 2, "an early re-run is not another failure");
        // Other objects are independent; success resets.
        assert_eq!(f.next_delay("ns/b", early, 0.5), Duration::from_secs(1));
        f.reset("ns/a");
        assert_eq!(f.count("ns/a"), 0);
        assert_eq!(f.next_delay("ns/a", early, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn reconcile_jitter_spreads_a_quarter_either_way_up_to_the_cap() {
        assert_eq!(RECONCILE.spread_delay(0, 0.0), Duration::from_millis(750));
        assert_eq!(RECONCILE.spread_delay(0, 1.0), Duration::from_millis(1250));
        assert_eq!(
            RECONCILE.spread_delay(3, 2.0),
            Duration::from_secs(10),
            "seed clamped to 1"
        );
        assert_eq!(RECONCILE.spread_delay(20, 1.0), Duration::from_secs(300));
        assert_eq!(RECONCILE.spread_delay(20, 0.0), Duration::from_secs(225));
    }

    #[test]
    fn random_unit_stays_below_one_and_varies() {
        let samples: Vec<f64> = (0..50).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
        assert!(samples.iter().any(|s| *s != samples[0]));
    }
}

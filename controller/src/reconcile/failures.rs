//! Consecutive failures per object, for the reconcile backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures per object, and when each may be retried. A reconcile started before
/// then (by a watch event) waits for it, see [`Failures::pending`]; only a deletion runs early,
/// and a failure counts only once the previous backoff has run out, so that early run keeps the
/// schedule instead of doubling the delay again.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, Failure>>);

pub(super) struct Failure {
    count: u32,
    retry_at: Instant,
}

impl Failures {
    /// The delay before retrying `key` after a failure at `now`; `seed` (0..1) is the jitter.
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
        let delay = backoff_delay(f.count, seed);
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

/// Exponential backoff: 1 s × 2^(n-1), at most 300 s, with ±25 % jitter from `seed` (0..1).
pub fn backoff_delay(n: u32, seed: f64) -> Duration {
    let base = 2f64
        .powi(i32::try_from(n.saturating_sub(1).min(16)).unwrap_or(16))
        .min(300.0);
    Duration::from_secs_f64((base * (0.75 + 0.5 * seed.clamp(0.0, 1.0))).min(300.0))
}

pub(super) fn jitter_seed(key: &str) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut h: u64 = 1469598103934665603;
    for b in key.bytes().chain(nanos.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    (h % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! The Lease as the test samples it, and the changes of holder read from the samples.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::{LEASE, LEASE_DURATION, LEASE_RETRY, REQUEST_SLACK};

/// What the test saw of the Lease, polled every 100 ms.
#[derive(Debug, Clone)]
pub(crate) struct LeaseSample {
    pub(crate) holder: String,
    acquired: Option<i64>,
    renewed: Option<i64>,
}

/// The samples taken so far.
pub(crate) type Samples = Arc<Mutex<Vec<LeaseSample>>>;

/// One change of holder: who had it, the last time the Lease was written before the change
/// (the holder's last renewal, or its release), who took it, and when.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) from: String,
    last_write_ms: i64,
    /// The old holder gave the Lease up (holder cleared) instead of letting it expire.
    released: bool,
    pub(crate) to: String,
    acquired_ms: i64,
}

impl Handover {
    /// How long nobody led: from the old holder's last write to the new holder's acquisition.
    pub(crate) fn gap(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.acquired_ms - self.last_write_ms).unwrap_or(0))
    }

    /// The longest this handover may take. A released Lease is taken at a candidate's next try,
    /// well inside the lease duration. One that had to expire (the holder died, or stopped
    /// without releasing it) is free once more than the duration has passed in whole seconds
    /// (controller/src/leader.rs), i.e. up to duration + 1 s after the last renewal, and a
    /// candidate looks every LEASE_RETRY after its previous request (GET + PUT on a busy API
    /// server: REQUEST_SLACK).
    pub(crate) fn bound(&self) -> Duration {
        if self.released {
            LEASE_DURATION
        } else {
            LEASE_DURATION + Duration::from_secs(1) + LEASE_RETRY + REQUEST_SLACK
        }
    }
}

fn micros_ms(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime) -> i64 {
    t.0.as_millisecond()
}

/// The changes of holder in a series of samples.
pub(crate) fn handovers(samples: &[LeaseSample]) -> Vec<Handover> {
    let mut out = Vec::new();
    let mut holder: Option<&str> = None;
    let mut released = false;
    let mut last_write = None;
    for sample in samples {
        if sample.holder.is_empty() {
            released = true;
        } else if holder.is_some_and(|h| h != sample.holder) {
            out.push(Handover {
                from: holder.unwrap_or_default().to_owned(),
                last_write_ms: last_write.unwrap_or_default(),
                released,
                to: sample.holder.clone(),
                acquired_ms: sample.acquired.unwrap_or_default(),
            });
        }
        if !sample.holder.is_empty() {
            holder = Some(&sample.holder);
            released = false;
        }
        last_write = sample.renewed.or(last_write);
    }
    out
}

pub(crate) fn lease_sample(lease: Lease) -> LeaseSample {
    let spec = lease.spec.unwrap_or_default();
    LeaseSample {
        holder: spec.holder_identity.unwrap_or_default(),
        acquired: spec.acquire_time.as_ref().map(micros_ms),
        renewed: spec.renew_time.as_ref().map(micros_ms),
    }
}

/// Samples the Lease every 100 ms into `samples` until aborted.
pub(crate) fn spawn_lease_watch(leases: Api<Lease>, samples: Samples) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(Some(lease)) = leases.get_opt(LEASE).await {
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(lease_sample(lease));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[test]
fn handovers_are_read_from_lease_samples() {
    let sample = |holder: &str, acquired: i64, renewed: i64| LeaseSample {
        holder: holder.to_owned(),
        acquired: Some(acquired),
        renewed: Some(renewed),
    };
    // a renews, dies; b takes the expired Lease.
    let expired = handovers(&[
        sample("a", 0, 1_000),
        sample("a", 0, 6_000),
        sample("a", 0, 6_000),
        sample("b", 22_500, 22_500),
    ]);
    let [h] = expired.as_slice() else { panic!("{expired:?}") };
    assert_eq!((h.from.as_str(), h.to.as_str(), h.released), ("a", "b", false));
    assert_eq!(h.gap(), Duration::from_millis(16_500));
    assert_eq!(
        h.bound(),
        LEASE_DURATION + Duration::from_secs(1) + LEASE_RETRY + REQUEST_SLACK
    );
    // a releases it on the way out; b takes it at its next try.
    let released = handovers(&[
        sample("a", 0, 6_000),
        sample("", 0, 7_000),
        sample("b", 9_000, 9_000),
        sample("b", 9_000, 14_000),
    ]);
    let [h] = released.as_slice() else {
        panic!("{released:?}")
    };
    assert!(h.released);
    assert_eq!(h.gap(), Duration::from_secs(2));
    assert_eq!(h.bound(), LEASE_DURATION);
    // Renewals alone are no handover.
    assert!(handovers(&[sample("a", 0, 1_000), sample("a", 0, 6_000)]).is_empty());
}

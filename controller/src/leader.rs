//! Leader election on a `coordination.k8s.io/v1` Lease. Only the holder talks to Gas Town and
//! writes; a holder that cannot renew in time steps down at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease object name.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (holderIdentity).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and candidates retry).
    pub retry: Duration,
}

/// Runs the election forever, publishing leadership on `tx`. Returns only if `tx` has no
/// receivers left.
pub async fn run(client: Client, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew: Option<std::time::Instant> = None;
    loop {
        let leading = *tx.borrow();
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(true) => {
                last_renew = Some(std::time::Instant::now());
                if !leading {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    if tx.send(true).is_err() {
                        return;
                    }
                }
            }
            Ok(false) => {
                if leading {
                    warn!(lease = %cfg.name, "lease taken by another replica; stepping down");
                    if tx.send(false).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                warn!(lease = %cfg.name, error = %e, "lease renewal failed");
                // Step down before the lease can expire for the others.
                let stale = last_renew.is_none_or(|t| t.elapsed() + cfg.retry >= cfg.duration);
                if leading && stale {
                    warn!(lease = %cfg.name, "could not renew in time; stepping down");
                    if tx.send(false).is_err() {
                        return;
                    }
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(cfg.retry).await;
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let ours = holder == cfg.identity;
            let duration = spec.lease_duration_seconds.map(i64::from).unwrap_or(secs.into());
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| now.as_second() - t.0.as_second() > duration);
            if !ours && !holder.is_empty() && !expired {
                return Ok(false);
            }
            if !ours {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(cfg.identity.clone());
            spec.lease_duration_seconds = Some(secs);
            spec.renew_time = Some(MicroTime(now));
            let name = cfg.name.clone();
            // `replace` carries the resourceVersion: a concurrent writer makes this a 409.
            match api.replace(&name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

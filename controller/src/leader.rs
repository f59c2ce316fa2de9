//! Leader election on a `coordination.k8s.io/v1` Lease. Only the holder talks to Gas Town and
//! writes.
//!
//! The rules, and why they keep at most one replica acting:
//! - Leadership is a deadline, not a flag: a successful acquire or renew that *started* at `t`
//!   makes this replica the leader until `t + validity` (the lease duration minus a safety
//!   margin, [`LeaseConfig::validity`]), by its own monotonic clock. [`Leadership::is_leader`]
//!   checks that deadline every time it is asked (before every Gas Town call and write), so a
//!   renew that hangs, fails, or never runs ends leadership on time without anyone noticing.
//! - Every attempt (the GET and the write of the Lease) has a deadline,
//!   [`LeaseConfig::request_timeout`], shorter than the lease duration; a hung request is
//!   abandoned and retried instead of blocking the election.
//! - A candidate takes over a held Lease only after it has seen the same record (resourceVersion)
//!   for a whole lease duration by its own clock, as client-go does (`observedTime` in
//!   `tryAcquireOrRenew`, kubernetes/client-go `tools/leaderelection/leaderelection.go`), so
//!   clock skew between nodes cannot shorten the wait. The holder's last
//!   successful renew started before the candidate could have seen it, and the holder stops at
//!   `validity < duration` after that start: the two never overlap.
//! - If the election task ends or panics, its [`watch::Sender`] is dropped and every
//!   [`Leadership`] reports "not leader" at once.
//! - [`Election::release`] (on SIGTERM, after the last reconcile ended) stops renewing, drops
//!   leadership and then clears `holderIdentity` (as client-go's `release` does with
//!   `ReleaseOnCancel`, same file) and sets `leaseDurationSeconds: 1`, so a standby takes over
//!   at its next attempt instead of waiting for the lease to expire.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{info, warn};

/// Retry period used when a third of the lease duration would be longer (client-go's default).
const MAX_RETRY: Duration = Duration::from_secs(2);
/// Shortest retry period, whatever the lease duration.
const MIN_RETRY: Duration = Duration::from_millis(200);

/// Lease timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease object name.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (holderIdentity).
    pub identity: String,
    /// How long a lease is valid without renewal (`leaseDurationSeconds`, whole seconds).
    pub duration: Duration,
    /// Time between the starts of two attempts (the holder renews, candidates retry).
    pub retry: Duration,
}

impl LeaseConfig {
    /// Timing derived from the lease duration (rounded up to whole seconds, at least 1 s): retry
    /// every third of it, at most every 2 s.
    pub fn new(name: String, namespace: String, identity: String, duration: Duration) -> LeaseConfig {
        let duration = Duration::from_secs(duration.as_secs_f64().ceil().max(1.0) as u64);
        let retry = (duration / 3).clamp(MIN_RETRY, MAX_RETRY);
        LeaseConfig {
            name,
            namespace,
            identity,
            duration,
            retry,
        }
    }

    /// Deadline of one attempt (GET plus write of the Lease) and of the release: a third of the
    /// lease duration, so a hung attempt leaves time for another one.
    pub fn request_timeout(&self) -> Duration {
        self.duration / 3
    }

    /// How long a successful renew keeps this replica the leader, counted from the start of that
    /// renew: the lease duration minus a fifth of it (the margin covers clock rate differences
    /// and the time between a leadership check and the action it allows).
    pub fn validity(&self) -> Duration {
        self.duration - self.duration / 5
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What the election task last published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// Not the leader.
    Candidate,
    /// The leader until this instant (unless a later renew extends it).
    Until(Instant),
}

/// Whether this replica may act. Cheap to clone; every clone sees the same election.
#[derive(Debug, Clone)]
pub struct Leadership(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// No leader election: always the leader.
    Unconditional,
    /// Published by an election task.
    Elected(watch::Receiver<Term>),
}

impl Leadership {
    /// Leadership without election (a single replica): always the leader.
    pub fn unconditional() -> Leadership {
        Leadership(Kind::Unconditional)
    }

    /// A leadership published on `rx` (the election task holds the sender).
    pub fn from_receiver(rx: watch::Receiver<Term>) -> Leadership {
        Leadership(Kind::Elected(rx))
    }

    /// Whether this replica may act now.
    pub fn is_leader(&self) -> bool {
        self.is_leader_at(Instant::now())
    }

    /// Whether this replica may act at `now`: the last successful renew is recent enough, and
    /// the election task that published it still runs.
    pub fn is_leader_at(&self, now: Instant) -> bool {
        match &self.0 {
            Kind::Unconditional => true,
            // `has_changed` fails once the sender is gone: the election task ended or panicked.
            Kind::Elected(rx) => rx.has_changed().is_ok() && matches!(*rx.borrow(), Term::Until(t) if now < t),
        }
    }

    /// Waits until this replica leads. `false` if the election ended first.
    pub async fn acquired(&mut self) -> bool {
        let Kind::Elected(rx) = &mut self.0 else {
            return true;
        };
        loop {
            let term = *rx.borrow_and_update();
            if matches!(term, Term::Until(t) if Instant::now() < t) {
                return rx.has_changed().is_ok();
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Waits until this replica stops leading: the task says so, the last renew gets too old,
    /// or the task is gone. Never resolves without election.
    pub async fn lost(&mut self) {
        let Kind::Elected(rx) = &mut self.0 else {
            return futures::future::pending().await;
        };
        loop {
            let term = *rx.borrow_and_update();
            let Term::Until(until) = term else { return };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                // Look again: a renew may have moved the deadline meanwhile.
                () = sleep_until(until) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// A running election: the task that acquires and renews the Lease, and its leadership.
pub struct Election {
    leadership: Leadership,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Election {
    /// Starts the election task.
    pub fn spawn(client: Client, cfg: LeaseConfig) -> Election {
        let (tx, rx) = watch::channel(Term::Candidate);
        let (stop, stop_rx) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let task = tokio::spawn(run(api, cfg, tx, stop_rx));
        Election {
            leadership: Leadership::from_receiver(rx),
            stop,
            task,
        }
    }

    /// This election's leadership.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Resolves only if the election task ended on its own (it runs until [`Election::release`]):
    /// it panicked or was cancelled. Says how.
    pub async fn ended(&mut self) -> String {
        match (&mut self.task).await {
            Ok(()) => "the leader election task ended".to_string(),
            Err(e) if e.is_panic() => "the leader election task panicked".to_string(),
            Err(e) => format!("the leader election task failed: {e}"),
        }
    }

    /// Stops the election: this replica stops leading, then gives the Lease up if it holds it,
    /// so that a standby takes over at its next attempt. Waits at most `request_timeout` for the
    /// API server (plus the end of an attempt under way, itself bounded the same way).
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(error = %e, "the leader election task failed while stopping");
        }
    }
}

/// When this replica last saw the Lease record change, by its own clock.
struct Observed {
    version: Option<String>,
    since: Instant,
}

/// The election loop: publishes leadership on `tx` until `stop` turns true (or is dropped),
/// then releases the Lease if it holds it.
async fn run(api: Api<Lease>, cfg: LeaseConfig, tx: watch::Sender<Term>, mut stop: watch::Receiver<bool>) {
    let mut observed: Option<Observed> = None;
    // Our last write made us the holder (and nothing since said otherwise).
    let mut holding = false;
    'election: loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let leading_before = leading(&tx, started);
        let attempt = timeout(cfg.request_timeout(), try_acquire_or_renew(&api, &cfg, &mut observed));
        let attempt = tokio::select! {
            a = attempt => a,
            // Stop waiting for an attempt when asked to stop: its outcome does not matter then
            // (the release below reads the Lease again).
            // The attempt may have succeeded: let the release look (it checks the holder).
            _ = stop.wait_for(|s| *s) => { holding = true; break 'election; }
        };
        match attempt {
            Ok(Ok(true)) => {
                holding = true;
                tx.send_replace(Term::Until(started + cfg.validity()));
                if !leading_before {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                }
            }
            Ok(Ok(false)) => {
                holding = false;
                tx.send_replace(Term::Candidate);
                if leading_before {
                    warn!(lease = %cfg.name, "lease taken by another replica; stepping down");
                }
            }
            Ok(Err(e)) => warn!(lease = %cfg.name, error = %e, "lease request failed"),
            Err(_) => warn!(
                lease = %cfg.name,
                timeout = ?cfg.request_timeout(),
                "lease request timed out"
            ),
        }
        // Wait for the next attempt; step down on time if the last renew gets too old.
        let next = started + cfg.retry;
        loop {
            let until = match *tx.borrow() {
                Term::Until(t) => Some(t),
                Term::Candidate => None,
            };
            if let Some(t) = until
                && Instant::now() >= t
            {
                warn!(lease = %cfg.name, validity = ?cfg.validity(), "could not renew in time; stepping down");
                tx.send_replace(Term::Candidate);
                continue;
            }
            let wake = until.map_or(next, |t| t.min(next));
            tokio::select! {
                () = sleep_until(wake) => if wake == next { break },
                _ = stop.wait_for(|s| *s) => break 'election,
            }
        }
    }
    // Stop acting first, then give the Lease up.
    tx.send_replace(Term::Candidate);
    if holding {
        match timeout(cfg.request_timeout(), release(&api, &cfg)).await {
            Ok(Ok(true)) => info!(lease = %cfg.name, identity = %cfg.identity, "lease released"),
            Ok(Ok(false)) => info!(lease = %cfg.name, "lease not held any more; nothing to release"),
            Ok(Err(e)) => warn!(lease = %cfg.name, error = %e, "could not release the lease; it expires on its own"),
            Err(_) => warn!(lease = %cfg.name, "releasing the lease timed out; it expires on its own"),
        }
    }
}

fn leading(tx: &watch::Sender<Term>, now: Instant) -> bool {
    matches!(*tx.borrow(), Term::Until(t) if now < t)
}

/// One attempt: `Ok(true)` if this replica holds the Lease after it.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let secs = cfg.duration_seconds();
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
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
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let seen = Instant::now();
    let version = lease.metadata.resource_version.clone();
    let since = match observed {
        Some(o) if o.version == version => o.since,
        _ => {
            *observed = Some(Observed { version, since: seen });
            seen
        }
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == cfg.identity;
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(cfg.duration, Duration::from_secs);
    let expired = seen.duration_since(since) >= duration;
    if !ours && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(secs);
    spec.renew_time = Some(MicroTime(now));
    // `replace` carries the resourceVersion: a concurrent writer makes this a 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up if this replica holds it: `Ok(true)` if released.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let now = Timestamp::now();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.acquire_time = Some(MicroTime(now));
    spec.renew_time = Some(MicroTime(now));
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(duration: Duration) -> LeaseConfig {
        LeaseConfig::new("l".into(), "ns".into(), "me".into(), duration)
    }

    #[test]
    fn timing_keeps_the_holder_inside_the_lease() {
        for secs in [1, 3, 4, 6, 15, 60] {
            let c = cfg(Duration::from_secs(secs));
            assert!(c.request_timeout() < c.duration, "{secs}s");
            assert!(c.validity() < c.duration, "{secs}s");
            assert!(c.retry < c.validity(), "{secs}s");
            // A holder gets at least one more attempt after one that timed out.
            assert!(c.retry + c.request_timeout() < c.validity(), "{secs}s");
        }
        assert_eq!(cfg(Duration::from_millis(2500)).duration, Duration::from_secs(3));
        assert_eq!(cfg(Duration::from_secs(15)).retry, Duration::from_secs(2));
        assert_eq!(cfg(Duration::from_secs(15)).validity(), Duration::from_secs(12));
    }

    /// The leader flag is the time of the last successful renew, checked when asked: with no
    /// further renew (a hung or failing request publishes nothing), leadership ends at
    /// `validity` after the renew started, whatever the task does.
    #[test]
    fn leadership_ends_at_the_validity_of_the_last_renew() {
        let c = cfg(Duration::from_secs(15));
        let (tx, rx) = watch::channel(Term::Candidate);
        let leadership = Leadership::from_receiver(rx);
        let renew_started = Instant::now();
        assert!(!leadership.is_leader_at(renew_started));
        tx.send_replace(Term::Until(renew_started + c.validity()));
        assert!(leadership.is_leader_at(renew_started));
        assert!(leadership.is_leader_at(renew_started + c.validity() - Duration::from_millis(1)));
        assert!(!leadership.is_leader_at(renew_started + c.validity()));
        assert!(!leadership.is_leader_at(renew_started + c.duration));
        // A later renew extends it.
        let later = renew_started + c.retry;
        tx.send_replace(Term::Until(later + c.validity()));
        assert!(leadership.is_leader_at(renew_started + c.validity()));
        drop(tx);
    }

    #[tokio::test]
    async fn lost_resolves_when_the_last_renew_gets_too_old() {
        let (tx, rx) = watch::channel(Term::Until(Instant::now() + Duration::from_millis(300)));
        let mut leadership = Leadership::from_receiver(rx);
        assert!(leadership.is_leader());
        let started = Instant::now();
        timeout(Duration::from_secs(5), leadership.lost())
            .await
            .expect("lost() must resolve when the deadline passes without a renew");
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(!leadership.is_leader());
        drop(tx);
    }

    #[tokio::test]
    async fn a_dead_election_task_leaves_no_leader() {
        let (tx, rx) = watch::channel(Term::Candidate);
        let mut leadership = Leadership::from_receiver(rx);
        let task = tokio::spawn(async move {
            // Published a long validity, then died (a bug, a panic).
            tx.send_replace(Term::Until(Instant::now() + Duration::from_secs(3600)));
            tokio::time::sleep(Duration::from_millis(50)).await;
            panic!("election task bug");
        });
        assert!(leadership.acquired().await);
        assert!(leadership.is_leader());
        assert!(task.await.is_err_and(|e| e.is_panic()));
        assert!(
            !leadership.is_leader(),
            "a replica whose election task died must not lead"
        );
        timeout(Duration::from_secs(1), leadership.lost())
            .await
            .expect("lost() must resolve once the task is gone");
    }

    #[tokio::test]
    async fn without_election_always_leader() {
        let mut leadership = Leadership::unconditional();
        assert!(leadership.is_leader());
        assert!(leadership.acquired().await);
        assert!(timeout(Duration::from_millis(50), leadership.lost()).await.is_err());
    }
}

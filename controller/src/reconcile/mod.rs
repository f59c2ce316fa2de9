//! Reconcile = fetch → pure decision ([`crate::decision`]) → apply. Only the ends touch the API
//! and Gas Town. One module per concern: `claim` (the bead of a claim), `sync` (dispatch and
//! progress), `release` (expiry, release, timeout, deletion), `write` (the API writes).

mod claim;
mod release;
mod sync;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gastown_crds::Automaton;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use tracing::warn;

use crate::decision::{self, Settings, Stage};
use crate::gastown::{self, GasTown};
use crate::metrics::Metrics;

pub use crate::backoff::Failures;
pub use write::write_status;

/// Reconcile errors; each has a metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Gas Town command failed.
    #[error("Gas Town: {0}")]
    GasTown(#[from] gastown::Error),
    /// Gas Town could not be reached; the status condition says why.
    #[error("Gas Town unreachable: {0}")]
    Unreachable(String),
    /// This replica is not the leader (any more).
    #[error("not the leader")]
    NotLeader,
    /// The object lacks a namespace or name.
    #[error("object without namespace or name")]
    Unnamed,
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict".to_string(),
            Error::Kube(_) => "kube".to_string(),
            Error::GasTown(e) => format!("gastown_{}", e.metric_label()),
            Error::Unreachable(_) => "gastown_unreachable".to_string(),
            Error::NotLeader => "not_leader".to_string(),
            Error::Unnamed => "unnamed".to_string(),
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Gas Town client.
    pub gastown: GasTown,
    /// Bead reads of the syncs, batched (one `bd show` for many Automatons).
    pub reader: gastown::BatchedReader,
    /// Decision settings.
    pub settings: Settings,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether this replica may act: the time of its last successful Lease renew, checked
    /// before every Gas Town call and write (see `leader.rs`).
    pub leader: crate::leader::Leadership,
    /// Consecutive failures per object, for exponential backoff.
    pub failures: Failures,
}

impl Context {
    fn ensure_leader(&self) -> Result<(), Error> {
        if self.leader.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Backoff after a failure of `key`: 1 s doubling to 5 min, ±25 % jitter (see [`Failures`]).
    pub fn backoff(&self, key: &str) -> Duration {
        self.failures
            .next_delay(key, Instant::now(), crate::backoff::random_unit())
    }

    /// Records the Event a decision planned.
    async fn record(&self, a: &Automaton, event: &decision::Event) {
        self.publish(a, event.warning, &event.reason, &event.note).await;
    }

    async fn publish(&self, a: &Automaton, warning: bool, reason: &str, note: &str) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &a.object_ref(&())).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

fn key(a: &Automaton) -> String {
    format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any())
}

/// The reconcile entry point; every log line inside carries the object key.
#[tracing::instrument(name = "reconcile", skip_all, fields(object = %key(&a), generation = a.metadata.generation))]
pub async fn reconcile(a: Arc<Automaton>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    ctx.ensure_leader()?;
    let ns = a.namespace().ok_or(Error::Unnamed)?;
    let api: Api<Automaton> = Api::namespaced(ctx.client.clone(), &ns);
    let now = decision::whole_seconds(Timestamp::now());
    let k = key(&a);
    let stage = decision::stage(&a, &ctx.settings.claimer);
    // A failed attempt's own status write (e.g. "Gas Town unreachable") brings a watch event
    // that would start the next attempt at once, and a failure that changes the status every
    // time would then retry without pause. Until the backoff is due only a deletion goes ahead.
    if stage != Stage::Deleting
        && let Some(wait) = ctx.failures.pending(&k, Instant::now())
    {
        return Ok(Action::requeue(wait));
    }
    let action = match stage {
        Stage::NotOurs | Stage::Terminal => Action::await_change(),
        Stage::Deleting => release::delete(&api, &a, &ctx, now).await?,
        Stage::FinishRelease => release::finish_release(&api, &a, &ctx, now).await?,
        Stage::FinishTimeout(bead) => release::finish_timeout(&api, &a, &bead, &ctx, now).await?,
        Stage::AddFinalizer => claim::add_finalizer_and_go_on(&api, &a, &ctx, now).await?,
        Stage::Invalid(message) => claim::invalid_spec(&api, &a, &message, false, &ctx, now).await?,
        Stage::ObtainBead => claim::obtain_bead(&api, &a, false, &ctx, now).await?,
        Stage::Sync(bead) => sync::sync(&api, &a, &bead, &ctx, now).await?,
    };
    ctx.failures.reset(&k);
    Ok(action)
}

/// Error policy: count, report and back off exponentially per object.
pub fn error_policy(a: Arc<Automaton>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(&error.metric_label());
    if matches!(error, Error::NotLeader) {
        return Action::requeue(Duration::from_secs(5));
    }
    if matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409) {
        // The cached copy was stale: the watch event of the newer version re-runs the
        // reconcile; this requeue is only the safety net. Not a failure of the object.
        tracing::debug!(object = %key(&a), "conflict: the object changed since it was read");
        return Action::requeue(Duration::from_secs(1));
    }
    let delay = ctx.backoff(&key(&a));
    warn!(object = %key(&a), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

//! Reconcile = fetch → pure decision (`decision.rs`) → apply. Only the ends touch the API and
//! Gas Town.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, FIELD_MANAGER,
    RELEASE_FINALIZER, condition,
};
use gastown_crds::{Automaton, AutomatonStatus, ConditionStatus};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::conditions;
use crate::decision::{self, Command, GasTownView, Settings, Stage};
use crate::gastown::{self, BeadId, ExternalRef, GasTown};
use crate::metrics::Metrics;

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
        self.failures.next_delay(key, Instant::now(), jitter_seed(key))
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

/// Exponential backoff: 1 s × 2^(n-1), at most 300 s, with ±25 % jitter from `seed` (0..1).
pub fn backoff_delay(n: u32, seed: f64) -> Duration {
    let base = 2f64
        .powi(i32::try_from(n.saturating_sub(1).min(16)).unwrap_or(16))
        .min(300.0);
    Duration::from_secs_f64((base * (0.75 + 0.5 * seed.clamp(0.0, 1.0))).min(300.0))
}

fn jitter_seed(key: &str) -> f64 {
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
        Stage::Deleting => delete(&api, &a, &ctx, now).await?,
        Stage::FinishRelease => finish_release(&api, &a, &ctx, now).await?,
        Stage::FinishTimeout(bead) => finish_timeout(&api, &a, &bead, &ctx, now).await?,
        Stage::AddFinalizer => {
            let first = decision::creates_first(&a);
            let updated = add_finalizer(&api, &a, &ctx).await?;
            match decision::stage(&updated, &ctx.settings.claimer) {
                // Go on with the object the API server returned instead of waiting for the
                // watch to bring it back.
                Stage::ObtainBead => obtain_bead(&api, &updated, first, &ctx, now).await?,
                Stage::Invalid(message) => invalid_spec(&api, &updated, &message, first, &ctx, now).await?,
                // Anything else: the update's watch event triggers the next step.
                _ => Action::requeue(ctx.settings.sync_interval),
            }
        }
        Stage::Invalid(message) => invalid_spec(&api, &a, &message, false, &ctx, now).await?,
        Stage::ObtainBead => obtain_bead(&api, &a, false, &ctx, now).await?,
        Stage::Sync(bead) => sync(&api, &a, &bead, &ctx, now).await?,
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

/// The spec cannot be acted upon: say why, and give the claim back once it is too old. `first`:
/// this reconcile has just added our finalizer, so the status can say that no bead exists and a
/// release need not ask Gas Town (see [`decision::creates_first`]).
async fn invalid_spec(
    api: &Api<Automaton>,
    a: &Automaton,
    message: &str,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut st = decision::invalid(a, message, now, &ctx.settings);
    if first {
        st = decision::no_bead_created(st);
    }
    if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
        let updated = write_status(api, a, &st, ctx).await?;
        ctx.publish(a, true, "InvalidSpec", message).await;
        claim_expiry_check(api, &updated, ctx, now).await
    } else {
        claim_expiry_check(api, a, ctx, now).await
    }
}

/// Gives the claim back once it is older than the claim timeout: `Released` is recorded first,
/// then [`finish_release`] closes a bead the controller created (found by its external ref if it
/// was never recorded) and hands the claim back, or keeps it while a worker may hold the bead.
async fn claim_expiry_check(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    if decision::claim_expired(a, now, &ctx.settings) {
        let mut st = decision::base_status(a, &ctx.settings);
        let message = format!(
            "claim released to Kubernetes: the spec could not be dispatched within {}s",
            ctx.settings.claim_timeout.as_secs()
        );
        st.phase = Some(gastown_crds::Phase::Released);
        st.message = Some(message.clone());
        conditions::set(
            &mut st.conditions,
            condition::RELEASED,
            ConditionStatus::True,
            "ClaimExpired",
            &message,
            now,
            a.metadata.generation,
        );
        let updated = write_status(api, a, &st, ctx).await?;
        ctx.publish(a, true, "ClaimReleased", &message).await;
        return finish_release(api, &updated, ctx, now).await;
    }
    Ok(Action::requeue(ctx.settings.sync_interval))
}

/// Finds or creates the bead for a claim, records it, and goes on to dispatch it. `first`: this
/// reconcile has just added our finalizer, so no earlier attempt can have created a bead (see
/// [`decision::creates_first`]).
async fn obtain_bead(
    api: &Api<Automaton>,
    a: &Automaton,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut current = a.clone();
    let source = match find_bead(api, &mut current, first, ctx, now).await {
        Ok(source) => source,
        // A failed lookup says nothing about whether a bead exists: never "none created".
        Err(Error::GasTown(e)) => return gastown_failed(api, current, e, CreateOutcome::Unknown, ctx, now).await,
        Err(e) => return Err(e),
    };
    let (bead, created, known) = match source {
        BeadSource::Known(id, created) => (id, created, None),
        BeadSource::Wait(until) => return create_wait(&current, until, ctx, now),
        BeadSource::Expired => {
            // Checked before anything is created: a claim already too old when first seen (the
            // controller was down) gets no bead, and none can exist.
            let st = decision::no_bead_created(decision::base_status(&current, &ctx.settings));
            if decision::status_needs_write(current.status.as_ref(), &st, &ctx.settings) {
                current = write_status(api, &current, &st, ctx).await?;
            }
            return claim_expiry_check(api, &current, ctx, now).await;
        }
        BeadSource::Create(external) => {
            ctx.ensure_leader()?;
            let title = &current.spec.task.title;
            let description = current.spec.task.description.as_deref().unwrap_or_default();
            match ctx.gastown.create_bead(title, description, &external).await {
                Ok(id) => {
                    let bead = gastown::Bead::just_created(&id, title, &external);
                    (id, true, Some(bead))
                }
                Err(e) => {
                    let outcome = create_outcome(&e);
                    return gastown_failed(api, current, e, outcome, ctx, now).await;
                }
            }
        }
    };
    // Recorded before anything is slung, so a crash or another replica never creates twice.
    let st = decision::bead_recorded(&current, &bead, created, now, &ctx.settings);
    let updated = write_status(api, &current, &st, ctx).await?;
    info!(object = %key(a), bead = %bead.as_str(), created, "bead recorded");
    let view = match known {
        Some(b) => GasTownView::Bead(b),
        // Not created here: read it before deciding whether to sling.
        None => read_bead(ctx, &bead).await,
    };
    sync_with(api, &updated, &bead, view, ctx, now).await
}

/// What a failed `bd create` call left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateOutcome {
    /// Certainly no bead: the create never ran, or `bd create` itself answered with a failure.
    NothingCreated,
    /// A bead may exist, or may still be created by a command that runs on: it timed out, was
    /// killed, lost its connection, or the failure is a lookup inside the client's create retry
    /// (which runs only after an attempt whose outcome was unknown).
    Unknown,
}

/// Classifies a failed `bd create` call (see [`CreateOutcome`]): only an error that is certain
/// (`gastown::Error::is_definite_failure`) and about the create itself (not a lookup inside it)
/// means no bead.
fn create_outcome(e: &gastown::Error) -> CreateOutcome {
    let from_create = e.command().is_none_or(|c| c.verb() == "create");
    if from_create && e.is_definite_failure() {
        CreateOutcome::NothingCreated
    } else {
        CreateOutcome::Unknown
    }
}

/// A `bd create` may still be running in Gas Town and its bead was not found: wait (looking it
/// up again) instead of creating another, and let the claim go only once it has certainly ended.
fn create_wait(current: &Automaton, until: Timestamp, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let left = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
    info!(object = %key(current), wait_s = left.as_secs(), "a bd create may still be running; looking its bead up, not creating another");
    Ok(Action::requeue(
        left.min(ctx.settings.sync_interval).max(Duration::from_secs(1)),
    ))
}

/// Gas Town failed while finding or creating the bead (Dolt down, binary missing, proxy
/// unreachable): report it on the condition, back off, and give the claim back once it is too
/// old. `outcome`: whether a bead may exist unrecorded (see [`decision::no_bead_created`] and
/// [`decision::create_outcome_unknown`]).
async fn gastown_failed(
    api: &Api<Automaton>,
    mut current: Automaton,
    e: gastown::Error,
    outcome: CreateOutcome,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut st = decision::unreachable(&current, e.metric_label(), &e.to_string(), now, &ctx.settings);
    st = match outcome {
        CreateOutcome::NothingCreated => decision::no_bead_created(st),
        CreateOutcome::Unknown if e.command().is_some_and(|c| c.verb() == "create") => {
            warn!(object = %key(&current), error = %e, "bd create ended with an unknown outcome; its bead is looked up, not created again, until it has certainly ended");
            decision::create_outcome_unknown(&current, st, now)
        }
        // A lookup failed: whatever was recorded about earlier creates stands.
        CreateOutcome::Unknown => st,
    };
    if decision::status_needs_write(current.status.as_ref(), &st, &ctx.settings) {
        current = write_status(api, &current, &st, ctx).await?;
    }
    if decision::claim_expired(&current, now, &ctx.settings) {
        return claim_expiry_check(api, &current, ctx, now).await;
    }
    Err(Error::GasTown(e))
}

/// Where the bead of a claim comes from.
enum BeadSource {
    /// `spec.task.beadId` (not ours), or one an earlier attempt created (ours): (ID, ours).
    Known(BeadId, bool),
    /// None exists yet: `bd create` one with this external ref.
    Create(ExternalRef),
    /// None found, but a `bd create` may still be running: look again, do not create, until then.
    Wait(Timestamp),
    /// None exists and the claim is already too old: create none, give the claim back.
    Expired,
}

/// Finds the bead for the claim in `current`, or says to create one.
///
/// Every `bd create` follows a write, in the same reconcile, that was conditional on the object
/// read (see [`write_status`]), so a reconcile on a stale cached copy gets a conflict before it
/// can create a second bead. For the `first` attempt that write was adding the finalizer. A
/// later attempt looks up by its external ref a bead an earlier attempt may have created without
/// recording it (see [`decision::bead_may_exist_unrecorded`]); if none is found it creates only
/// when no earlier create can still be running ([`decision::create_gate`]), and marks the status
/// "creating a bead" first (`current` becomes the object as written).
async fn find_bead(
    api: &Api<Automaton>,
    current: &mut Automaton,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<BeadSource, Error> {
    if let Some(id) = current.spec.task.bead_id.as_deref() {
        return Ok(BeadSource::Known(BeadId::parse(id)?, false));
    }
    let external = ExternalRef::for_automaton(
        current.namespace().as_deref().unwrap_or_default(),
        &current.name_any(),
        current.uid().as_deref().unwrap_or_default(),
    )?;
    if first {
        if decision::claim_expired(current, now, &ctx.settings) {
            return Ok(BeadSource::Expired);
        }
        return Ok(BeadSource::Create(external));
    }
    if decision::bead_may_exist_unrecorded(current)
        && let Some(existing) = ctx.gastown.find_bead_by_external_ref(&external).await?
    {
        return Ok(BeadSource::Known(existing.bead_id()?, true));
    }
    match decision::create_gate(current, now, &ctx.settings) {
        decision::CreateGate::Wait { until, mark } => {
            if mark {
                let st = decision::create_may_be_running(
                    current,
                    decision::base_status(current, &ctx.settings),
                    now,
                    &ctx.settings,
                );
                *current = write_status(api, current, &st, ctx).await?;
            }
            if decision::claim_expired(current, now, &ctx.settings) {
                // Not given back yet: the bead may still appear, and must then be closed.
                info!(object = %key(current), "claim expired while a bd create may still be running; waiting for it before releasing");
            }
            Ok(BeadSource::Wait(until))
        }
        decision::CreateGate::Create => {
            if decision::claim_expired(current, now, &ctx.settings) {
                return Ok(BeadSource::Expired);
            }
            *current = write_status(api, current, &decision::creating_bead(current, now, &ctx.settings), ctx).await?;
            Ok(BeadSource::Create(external))
        }
    }
}

async fn read_bead(ctx: &Context, bead: &BeadId) -> GasTownView {
    match ctx.reader.show(bead).await {
        Ok(Some(b)) => GasTownView::Bead(b),
        Ok(None) => GasTownView::Missing,
        Err(e) => GasTownView::Unreachable(e.metric_label().to_string(), e.to_string()),
    }
}

async fn sync(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let view = read_bead(ctx, bead).await;
    sync_with(api, a, bead, view, ctx, now).await
}

async fn sync_with(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    view: GasTownView,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let unreachable = matches!(view, GasTownView::Unreachable(..));
    let plan = decision::plan_sync(a, bead, &view, now, &ctx.settings);
    if plan.release_claim {
        // Released is recorded first; `finish_release` then closes the bead we created (the
        // plan's command) and gives the claim back. The other order can lose the claim: a crash
        // after the close makes the closed bead read as finished work.
        let current = write_status(api, a, &plan.status, ctx).await?;
        if let Some((warning, reason, note)) = &plan.event {
            ctx.publish(a, *warning, reason, note).await;
        }
        return finish_release(api, &current, ctx, now).await;
    }
    let mut status = plan.status.clone();
    let mut requeue = plan.requeue;
    let event = plan.event.clone();
    if let Some(command) = &plan.command {
        ctx.ensure_leader()?;
        if let Err(e) = run_command(ctx, command).await {
            // The command did not happen: report why and retry later; nothing else changes.
            let mut st = decision::base_status(a, &ctx.settings);
            st.phase = Some(st.phase.unwrap_or(gastown_crds::Phase::Claimed));
            if e.is_unreachable() {
                st = decision::unreachable(a, e.metric_label(), &e.to_string(), now, &ctx.settings);
            } else {
                let (cond, reason) = match command {
                    Command::Sling { .. } => (condition::DISPATCHED, "SlingFailed"),
                    Command::Unsling { .. } => (condition::COMPLETED, "UnslingFailed"),
                    Command::Close { .. } => (condition::RELEASED, "CloseFailed"),
                };
                st.message = Some(e.to_string());
                conditions::set(
                    &mut st.conditions,
                    cond,
                    ConditionStatus::False,
                    reason,
                    e.to_string(),
                    now,
                    a.metadata.generation,
                );
            }
            if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
                write_status(api, a, &st, ctx).await?;
            }
            return Err(Error::GasTown(e));
        } else if let Command::Sling { .. } = command {
            if let Some(at) = decision::claimed_at(a) {
                let secs = Timestamp::now().duration_since(at).as_secs_f64().max(0.0);
                ctx.metrics.claim_to_dispatch.observe(secs);
            }
            // Read the sling's result (hooked, assignee) now, so that one status write
            // records both; if that read fails, the next sync does it.
            if let Some((after, next)) = after_sling(a, &status, bead, ctx, now).await {
                status = after;
                requeue = next;
            }
        }
    }
    let mut written = None;
    if decision::status_needs_write(a.status.as_ref(), &status, &ctx.settings) {
        written = Some(write_status(api, a, &status, ctx).await?);
    }
    if let Some((warning, reason, note)) = &event {
        ctx.publish(a, *warning, reason, note).await;
    }
    if let Some(updated) = written.filter(decision::timeout_release_pending) {
        // The timeout is recorded (Failed): now release the bead in Gas Town.
        return finish_timeout(api, &updated, bead, ctx, now).await;
    }
    if unreachable {
        // Keep retrying with backoff; the condition says why.
        return Err(Error::Unreachable(format!(
            "reading bead {}: {}",
            bead.as_str(),
            status.message.clone().unwrap_or_default()
        )));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The status after a successful sling, from the bead as Gas Town now shows it, with its
/// requeue. `None` when the bead cannot be read or does not show the dispatch: then the status
/// planned before the sling stands and the next sync (soon) reads it again.
async fn after_sling(
    a: &Automaton,
    slung: &AutomatonStatus,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Option<(AutomatonStatus, Option<Duration>)> {
    let view = read_bead(ctx, bead).await;
    let mut dispatched = a.clone();
    dispatched.status = Some(slung.clone());
    let plan = decision::plan_sync(&dispatched, bead, &view, now, &ctx.settings);
    let followed = plan.command.is_none()
        && !plan.release_claim
        && plan.event.is_none()
        && matches!(
            plan.status.phase,
            Some(gastown_crds::Phase::Dispatched | gastown_crds::Phase::Running)
        );
    followed.then_some((plan.status, plan.requeue))
}

async fn run_command(ctx: &Context, command: &Command) -> Result<(), gastown::Error> {
    match command {
        Command::Sling {
            bead,
            rig,
            merge,
            agent,
        } => ctx.gastown.sling(bead, rig, *merge, agent.as_deref()).await,
        Command::Unsling { bead, holder } => unsling(ctx, bead, holder.as_deref()).await,
        Command::Close { bead, reason } => ctx.gastown.close_bead(bead, reason).await,
    }
}

/// Takes hooked or running work back from its worker, whatever real `gt unsling` refuses
/// ([`GasTown::release_bead`]): `gt unsling --force -- <bead> <worker>` names the worker (with no
/// target real `gt` acts on the caller's own hook, which the controller does not have); when
/// that fails or leaves the bead held (a worker whose session is gone: real `gt` resolves the
/// target through its tmux session, gastown `internal/cmd/unsling.go` → `resolveTargetAgent` in
/// `internal/cmd/sling_target.go`; a started bead, which it does not look for), and through
/// gt-proxy-server, which does not allow `gt unsling`, the bead is reopened with `bd update
/// --status open --assignee ""`. An error means the bead may still be held.
async fn unsling(ctx: &Context, bead: &BeadId, holder: Option<&str>) -> Result<(), gastown::Error> {
    let released = ctx.gastown.release_bead(bead, holder.filter(|h| !h.is_empty())).await?;
    info!(bead = %bead.as_str(), ?released, "bead released in Gas Town");
    Ok(())
}

/// A bead created for `a` whose ID never reached the status (a crash or a failed write between
/// `bd create` and the status write): found by its external ref so it is not left behind.
async fn unrecorded_bead(a: &Automaton, ctx: &Context) -> Result<Option<crate::gastown::Bead>, gastown::Error> {
    if a.spec.task.bead_id.is_some() {
        return Ok(None);
    }
    let external = ExternalRef::for_automaton(
        a.namespace().as_deref().unwrap_or_default(),
        &a.name_any(),
        a.uid().as_deref().unwrap_or_default(),
    )?;
    ctx.gastown.find_bead_by_external_ref(&external).await
}

async fn delete(api: &Api<Automaton>, a: &Automaton, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let mut a = a.clone();
    let mut bead = a
        .status
        .as_ref()
        .and_then(|s| s.gastown.as_ref())
        .and_then(|g| g.bead_id.as_deref())
        .and_then(|id| BeadId::parse(id).ok());
    let mut view = match &bead {
        Some(b) => Some(read_bead(ctx, b).await),
        None => None,
    };
    // Without a recorded bead, Gas Town is asked only if one may exist: a claim whose status
    // says none was created goes without waiting for Gas Town.
    if bead.is_none() && decision::bead_may_exist_unrecorded(&a) {
        match unrecorded_bead(&a, ctx).await {
            Ok(Some(found)) => {
                if let Ok(id) = found.bead_id() {
                    let g = a
                        .status
                        .get_or_insert_with(Default::default)
                        .gastown
                        .get_or_insert_with(Default::default);
                    g.bead_id = Some(id.as_str().to_string());
                    g.bead_created = Some(true);
                    bead = Some(id);
                    view = Some(GasTownView::Bead(found));
                }
            }
            Ok(None) => {
                // A bd create that may still be running would leave its bead behind.
                if let decision::CreateGate::Wait { until, .. } = decision::create_gate(&a, now, &ctx.settings) {
                    view = Some(GasTownView::Unreachable(
                        "create_in_flight".to_string(),
                        format!("a bd create may still be running in Gas Town until {until}"),
                    ));
                }
            }
            Err(e) => view = Some(GasTownView::Unreachable(e.metric_label().to_string(), e.to_string())),
        }
    }
    let a = &a;
    let plan = decision::plan_deletion(a, bead.as_ref(), view.as_ref(), now, &ctx.settings);
    if let Some(GasTownView::Unreachable(_, message)) = &view {
        if !decision::release_bound_reached(a, now, &ctx.settings) {
            return Err(Error::Unreachable(format!(
                "cannot release the bead before deletion: {message}"
            )));
        }
        let note = format!(
            "Gas Town unreachable for {}s after deletion; letting the Automaton go without releasing its bead: {message}",
            ctx.settings.release_timeout.as_secs()
        );
        ctx.publish(a, true, "ReleaseAbandoned", &note).await;
    }
    let closes = plan.commands.iter().any(|c| matches!(c, Command::Close { .. }));
    for command in &plan.commands {
        ctx.ensure_leader()?;
        if let Err(e) = run_command(ctx, command).await {
            if matches!(command, Command::Unsling { .. }) && closes && !e.is_unreachable() {
                // Neither gt unsling nor bd could clear the hook, but the bead is ours: closing
                // it (with a reason) takes it from the worker as well.
                warn!(object = %key(a), error = %e, "could not unsling the bead; closing it instead");
                continue;
            }
            if !plan.give_up {
                return Err(Error::GasTown(e));
            }
            warn!(object = %key(a), error = %e, "release failed; deletion bound reached, letting go");
        }
    }
    if !plan.commands.is_empty() {
        ctx.publish(a, false, "Released", "work released in Gas Town").await;
    }
    remove_finalizer(api, a, ctx).await?;
    Ok(Action::await_change())
}

/// Writes the whole status with server-side apply under our field manager; returns the object.
///
/// The write carries the resourceVersion of `a`, so it fails with a conflict when the object
/// has changed since it was read. A reconcile that runs on a stale cached copy (e.g. on the
/// watch event of one of our own earlier writes) can therefore never put back a status that a
/// later write replaced, such as a second bead recorded over the first.
pub async fn write_status(
    api: &Api<Automaton>,
    a: &Automaton,
    status: &AutomatonStatus,
    ctx: &Context,
) -> Result<Automaton, Error> {
    let resource_version = a.resource_version();
    ctx.ensure_leader()?;
    let mut patch = json!({
        "apiVersion": "olympus.io/v1alpha1",
        "kind": "Automaton",
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let updated = api.patch_status(&a.name_any(), &params, &Patch::Apply(&patch)).await?;
    ctx.metrics.api_write("status");
    Ok(updated)
}

fn finalizers_without_ours(a: &Automaton) -> Vec<String> {
    a.finalizers()
        .iter()
        .filter(|f| *f != RELEASE_FINALIZER)
        .cloned()
        .collect()
}

async fn add_finalizer(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<Automaton, Error> {
    ctx.ensure_leader()?;
    let mut finalizers = a.finalizers().to_vec();
    finalizers.push(RELEASE_FINALIZER.to_string());
    // resourceVersion makes the merge patch conditional: no lost finalizers from others.
    let patch = json!({"metadata": {"resourceVersion": a.resource_version(), "finalizers": finalizers}});
    let updated = api
        .patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.api_write("finalizer");
    Ok(updated)
}

async fn remove_finalizer(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<(), Error> {
    ctx.ensure_leader()?;
    let patch =
        json!({"metadata": {"resourceVersion": a.resource_version(), "finalizers": finalizers_without_ours(a)}});
    match api
        .patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.metrics.api_write("finalizer");
    Ok(())
}

/// The status says Released: make sure no worker holds the bead and close the bead we created,
/// then give the claim back.
///
/// - A bead a worker holds (hooked or in progress) is unslung first (see [`unsling`]); the
///   claim is never given back while that fails, so Kubernetes never runs work Gas Town still
///   runs. The `Released` condition says why the claim is kept.
/// - A bead the controller created is closed with a reason, so no open bead is left behind for
///   work Kubernetes then runs. A bead created but never recorded (see
///   [`decision::bead_may_exist_unrecorded`]) is found by its external ref; while a `bd create`
///   may still be running ([`decision::create_gate`]) the claim is kept.
/// - While Gas Town cannot be read, the claim is kept and this is retried with backoff, up to
///   the release timeout; then it is given back (the last read showed no worker on the bead).
async fn finish_release(api: &Api<Automaton>, a: &Automaton, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let g = a.status.as_ref().and_then(|s| s.gastown.as_ref());
    let recorded = g
        .and_then(|g| g.bead_id.as_deref())
        .and_then(|id| BeadId::parse(id).ok());
    let created = recorded.is_none() || g.and_then(|g| g.bead_created).unwrap_or(false);
    let read = async {
        match &recorded {
            Some(id) => Ok(ctx.gastown.show_bead(id).await?),
            None if decision::bead_may_exist_unrecorded(a) => {
                let found = unrecorded_bead(a, ctx).await?;
                if found.is_none()
                    && let decision::CreateGate::Wait { until, .. } = decision::create_gate(a, now, &ctx.settings)
                {
                    return Err(Error::Unreachable(format!(
                        "a bd create may still be running in Gas Town until {until}; its bead must be closed before the claim is given back"
                    )));
                }
                Ok(found)
            }
            None => Ok(None),
        }
    };
    let bead = match read.await {
        Ok(bead) => bead,
        Err(e) => {
            if matches!(e, Error::NotLeader) || !decision::release_gave_up(a, now, &ctx.settings) {
                return Err(e);
            }
            warn!(object = %key(a), error = %e, "could not read the bead; release timeout reached, giving the claim back anyway");
            None
        }
    };
    if let Some(b) = bead.filter(|b| !b.status.is_gone() && b.status != gastown::BeadStatus::Closed) {
        let id = b.bead_id()?;
        if b.status.is_dispatched() {
            ctx.ensure_leader()?;
            if let Err(e) = unsling(ctx, &id, b.assignee.as_deref()).await {
                let message = format!(
                    "claim kept: bead {} is {} by {} and could not be taken back: {e}",
                    b.id,
                    b.status,
                    b.assignee.as_deref().unwrap_or("a worker")
                );
                release_blocked(api, a, &message, ctx, now).await?;
                return Err(Error::GasTown(e));
            }
        }
        if created {
            ctx.ensure_leader()?;
            if let Err(e) = ctx.gastown.close_bead(&id, decision::RELEASE_CLOSE_REASON).await {
                if !decision::release_gave_up(a, now, &ctx.settings) {
                    return Err(Error::GasTown(e));
                }
                warn!(object = %key(a), error = %e, "could not close the bead; release timeout reached, giving the claim back anyway");
            }
        }
    }
    release_claim(api, a, ctx).await?;
    Ok(Action::await_change())
}

/// Says on the `Released` condition why the claim is still kept.
async fn release_blocked(
    api: &Api<Automaton>,
    a: &Automaton,
    message: &str,
    ctx: &Context,
    now: Timestamp,
) -> Result<(), Error> {
    let mut st = decision::base_status(a, &ctx.settings);
    conditions::set(
        &mut st.conditions,
        condition::RELEASED,
        ConditionStatus::False,
        "WorkerHoldsBead",
        message,
        now,
        a.metadata.generation,
    );
    st.message = Some(message.to_string());
    if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
        write_status(api, a, &st, ctx).await?;
    }
    Ok(())
}

/// `spec.timeoutSeconds` ran out and `Failed` is recorded: release the bead in Gas Town (unsling
/// it, close it if the controller created it, see [`decision::plan_timeout_release`]), then
/// record that. Retried with backoff while Gas Town fails; nothing here slings.
async fn finish_timeout(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let commands = match ctx.gastown.show_bead(bead).await? {
        Some(b) => decision::plan_timeout_release(a, bead, &b),
        None => Vec::new(),
    };
    let closes = commands.iter().any(|c| matches!(c, Command::Close { .. }));
    for command in &commands {
        ctx.ensure_leader()?;
        match run_command(ctx, command).await {
            Ok(()) => {}
            // As in deletion: a bead of ours that cannot be unslung is closed all the same.
            Err(e) if matches!(command, Command::Unsling { .. }) && closes && !e.is_unreachable() => {
                warn!(object = %key(a), error = %e, "could not unsling the timed-out bead; closing it instead");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !commands.is_empty() {
        ctx.publish(a, false, "Released", "timed-out work released in Gas Town")
            .await;
    }
    write_status(api, a, &decision::timeout_released(a, now, &ctx.settings), ctx).await?;
    Ok(Action::await_change())
}

/// Gives the claim back to Kubernetes: removes the claim marks, the claim request and our
/// finalizer, and sets `spec.executionMode: kubernetes` (status already says Released).
async fn release_claim(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<(), Error> {
    ctx.ensure_leader()?;
    let patch = json!({
        "metadata": {
            "resourceVersion": a.resource_version(),
            "labels": {CLAIMED_BY_LABEL: null},
            "annotations": {
                CLAIMED_AT_ANNOTATION: null,
                CLAIM_REQUESTED_BY_ANNOTATION: null,
                CLAIM_REQUEST_ANNOTATION: null,
            },
            "finalizers": finalizers_without_ours(a),
        },
        "spec": {"executionMode": "kubernetes"},
    });
    api.patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.api_write("release");
    info!(object = %key(a), "claim released to Kubernetes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A town whose `bd create` hangs past the client's timeout and whose `bd list` fails.
    fn town_with(bd_script: &str) -> (gastown::testing::TempDir, GasTown) {
        let dir = gastown::testing::TempDir::new("reconcile-create-outcome").unwrap();
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor")).unwrap();
        std::fs::write(root.join("mayor/town.json"), "{}").unwrap();
        let gt = dir.write_executable("bin/gt", "#!/bin/sh\nexit 0\n").unwrap();
        let bd = dir.write_executable("bin/bd", bd_script).unwrap();
        let mut config = gastown::GasTownConfig::new(gastown::Transport::Exec {
            town_root: root,
            gt_path: gt,
            bd_path: bd,
            actor: None,
        });
        config.command_timeout = Duration::from_millis(300);
        config.backoff = gastown::Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            multiplier: 2,
        };
        (dir, GasTown::new(config).unwrap())
    }

    fn reference() -> ExternalRef {
        ExternalRef::for_automaton("team-a", "fix-login", "0f9c-1").unwrap()
    }

    /// Item 3: `bd create` timed out (it may have made the bead), then the client's lookup of
    /// that bead failed. The call's error is the lookup's; it must not count as "no bead created"
    /// (`beadCreated: false`), which would let the next attempt create without looking.
    #[tokio::test]
    async fn a_failed_lookup_inside_the_create_retry_is_not_a_failed_create() {
        let (_dir, town) = town_with(
            "#!/bin/sh\ncase \"$1\" in\n  create) sleep 5 ;;\n  list) echo 'Error: database is locked' >&2; exit 1 ;;\nesac\nexit 0\n",
        );
        let e = town
            .create_bead("Fix login", "", &reference())
            .await
            .expect_err("the create timed out and the lookup failed");
        assert_eq!(create_outcome(&e), CreateOutcome::Unknown, "{e}");
    }

    #[tokio::test]
    async fn a_create_that_timed_out_has_an_unknown_outcome() {
        let (_dir, town) =
            town_with("#!/bin/sh\ncase \"$1\" in\n  create) sleep 5 ;;\n  list) echo '[]' ;;\nesac\nexit 0\n");
        let e = town.create_bead("Fix login", "", &reference()).await.unwrap_err();
        assert_eq!(create_outcome(&e), CreateOutcome::Unknown, "{e}");
    }

    /// `bd create` itself answered with a failure: certainly no bead.
    #[tokio::test]
    async fn a_create_that_exited_non_zero_made_nothing() {
        let (_dir, town) = town_with(
            "#!/bin/sh\ncase \"$1\" in\n  create) echo 'Error: invalid title' >&2; exit 1 ;;\n  list) echo '[]' ;;\nesac\nexit 0\n",
        );
        let e = town.create_bead("Fix login", "", &reference()).await.unwrap_err();
        assert_eq!(create_outcome(&e), CreateOutcome::NothingCreated, "{e}");
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
}

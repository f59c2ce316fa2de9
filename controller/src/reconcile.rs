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

async fn claim_expiry_check(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    if decision::claim_expired(a, now, &ctx.settings) {
        // A bead created but never recorded must not stay behind (best effort: Gas Town may be
        // the reason the claim expired).
        if decision::bead_may_exist_unrecorded(a)
            && let Ok(Some(found)) = unrecorded_bead(a, ctx).await
            && !matches!(
                found.status,
                crate::gastown::BeadStatus::Closed | crate::gastown::BeadStatus::Tombstone
            )
            && let Ok(id) = found.bead_id()
        {
            if found.status.is_dispatched() {
                let _ = run_command(
                    ctx,
                    &Command::Unsling {
                        bead: id.clone(),
                        holder: found.assignee.clone(),
                    },
                )
                .await;
            }
            let reason = "claim released: Gas Town did not take the work in time".to_string();
            if let Err(e) = run_command(ctx, &Command::Close { bead: id, reason }).await {
                warn!(object = %key(a), error = %e, "could not close the unrecorded bead while releasing the claim");
            }
        }
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
    let source = match find_bead(api, &mut current, first, ctx).await {
        Ok(source) => source,
        Err(Error::GasTown(e)) => return gastown_failed(api, current, e, false, ctx, now).await,
        Err(e) => return Err(e),
    };
    let (bead, created, known) = match source {
        BeadSource::Known(id, created) => (id, created, None),
        BeadSource::Create(external) => {
            ctx.ensure_leader()?;
            let title = &current.spec.task.title;
            let description = current.spec.task.description.as_deref().unwrap_or_default();
            match ctx.gastown.create_bead(title, description, &external).await {
                Ok(id) => {
                    let bead = gastown::Bead::just_created(&id, title, &external);
                    (id, true, Some(bead))
                }
                // `bd create` ran only after no bead was found (or none could exist); if it
                // certainly made none, the status says so and a release need not ask Gas Town.
                Err(e) => {
                    let nothing_created = e.is_definite_failure();
                    return gastown_failed(api, current, e, nothing_created, ctx, now).await;
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

/// Gas Town failed while finding or creating the bead (Dolt down, binary missing, proxy
/// unreachable): report it on the condition, back off, and give the claim back once it is too
/// old. `nothing_created`: no bead can exist unrecorded (see [`decision::no_bead_created`]).
async fn gastown_failed(
    api: &Api<Automaton>,
    mut current: Automaton,
    e: gastown::Error,
    nothing_created: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut st = decision::unreachable(&current, e.metric_label(), &e.to_string(), now, &ctx.settings);
    if nothing_created {
        st = decision::no_bead_created(st);
    }
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
}

/// Finds the bead for the claim in `current`, or says to create one.
///
/// Every `bd create` follows a write, in the same reconcile, that was conditional on the object
/// read (see [`write_status`]), so a reconcile on a stale cached copy gets a conflict before it
/// can create a second bead. For the `first` attempt that write was adding the finalizer. A
/// later attempt marks the status "creating a bead" (`current` becomes the object as written),
/// then looks up by its external ref a bead an earlier attempt may have created without
/// recording it (see [`decision::bead_may_exist_unrecorded`]).
async fn find_bead(
    api: &Api<Automaton>,
    current: &mut Automaton,
    first: bool,
    ctx: &Context,
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
        return Ok(BeadSource::Create(external));
    }
    let may_exist = decision::bead_may_exist_unrecorded(current);
    *current = write_status(api, current, &decision::creating_bead(current, &ctx.settings), ctx).await?;
    if may_exist && let Some(existing) = ctx.gastown.find_bead_by_external_ref(&external).await? {
        return Ok(BeadSource::Known(existing.bead_id()?, true));
    }
    Ok(BeadSource::Create(external))
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
    if decision::status_needs_write(a.status.as_ref(), &status, &ctx.settings) {
        write_status(api, a, &status, ctx).await?;
    }
    if let Some((warning, reason, note)) = &event {
        ctx.publish(a, *warning, reason, note).await;
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
        Command::Unsling { bead, holder } => {
            if ctx.gastown.transport_kind() == "proxy" {
                // gt-proxy-server does not allow `gt unsling`; reopening the bead is allowed.
                ctx.gastown.reopen_bead(bead).await
            } else {
                ctx.gastown.unsling(bead, holder.as_deref(), true).await
            }
        }
        Command::Close { bead, reason } => ctx.gastown.close_bead(bead, reason).await,
    }
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
            Ok(None) => {}
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
    for command in &plan.commands {
        ctx.ensure_leader()?;
        if let Err(e) = run_command(ctx, command).await {
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

/// The status says Released: close the bead we created if nobody took it (it was never
/// dispatched and is neither with an agent nor closed), then give the claim back. While Gas
/// Town fails, the claim is kept and this is retried with backoff, up to the release timeout.
/// A bead created but never recorded (see [`decision::bead_may_exist_unrecorded`]) is found by
/// its external ref.
async fn finish_release(api: &Api<Automaton>, a: &Automaton, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let g = a.status.as_ref().and_then(|s| s.gastown.as_ref());
    let recorded = g
        .and_then(|g| g.bead_id.as_deref())
        .and_then(|id| BeadId::parse(id).ok());
    let ours = if recorded.is_some() {
        g.and_then(|g| g.bead_created).unwrap_or(false) && g.and_then(|g| g.dispatched_at.as_ref()).is_none()
    } else {
        decision::bead_may_exist_unrecorded(a)
    };
    if ours {
        let close = async {
            let bead = match &recorded {
                Some(id) => ctx.gastown.show_bead(id).await?,
                None => {
                    let external = ExternalRef::for_automaton(
                        a.namespace().as_deref().unwrap_or_default(),
                        &a.name_any(),
                        a.uid().as_deref().unwrap_or_default(),
                    )?;
                    ctx.gastown.find_bead_by_external_ref(&external).await?
                }
            };
            match bead {
                Some(b)
                    if !b.status.is_dispatched()
                        && !matches!(b.status, gastown::BeadStatus::Closed | gastown::BeadStatus::Tombstone) =>
                {
                    ctx.ensure_leader()?;
                    ctx.gastown
                        .close_bead(&b.bead_id()?, decision::RELEASE_CLOSE_REASON)
                        .await?;
                    Ok(())
                }
                _ => Ok::<(), Error>(()),
            }
        };
        if let Err(e) = close.await {
            if matches!(e, Error::NotLeader) || !decision::release_gave_up(a, now, &ctx.settings) {
                return Err(e);
            }
            warn!(object = %key(a), error = %e, "could not close the bead; release timeout reached, giving the claim back anyway");
        }
    }
    release_claim(api, a, ctx).await?;
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

//! The controller's decisions as pure functions of (Automaton, Gas Town view, now, settings).
//!
//! The reconciler (`reconcile.rs`) fetches, calls these, and applies the result; everything
//! here is tested without I/O.

use std::time::Duration;

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL,
    RELEASE_FINALIZER, condition,
};
use gastown_crds::{
    Automaton, AutomatonStatus, ClaimStatus, ConditionStatus, GasTownStatus, MergeStrategy, Phase,
    validate::validate_rig_name,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions;
use crate::gastown::{Bead, BeadId, BeadStatus};

/// Timing and identity the decisions depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our claimer name (`gastown.io/claimed-by` value).
    pub claimer: String,
    /// How long Gas Town has to take a claim before it is released back to Kubernetes.
    pub claim_timeout: Duration,
    /// How often Gas Town is read for progress.
    pub sync_interval: Duration,
    /// Longest time between status writes when nothing but `lastSyncTime` changes.
    pub status_heartbeat: Duration,
    /// How long deletion waits for Gas Town to release the work before it lets go anyway.
    pub release_timeout: Duration,
    /// How long after the start of a `bd create` call that may still be running (the controller
    /// died during it, so its answer never came) the controller only looks its bead up and
    /// never creates another: longer than the call can go on in Gas Town (see
    /// [`create_outcome_wait`]).
    pub create_outcome_wait: Duration,
}

/// The default [`Settings::create_outcome_wait`]: one `bd create` call of the client may make
/// `attempts` attempts, each one given up after `command_timeout` and, when its outcome is
/// unknown, followed by a wait until it has certainly ended (`lifetime`, see
/// `GasTown::command_lifetime`) and a lookup before the next; the last one can run `lifetime`
/// more. Counted from the mark written before the call.
pub fn create_outcome_wait(command_timeout: Duration, attempts: u32, lifetime: Duration) -> Duration {
    (command_timeout.max(lifetime) + command_timeout + Duration::from_secs(5)) * attempts.max(1)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            claimer: gastown_crds::contract::DEFAULT_CLAIMER.to_string(),
            claim_timeout: Duration::from_secs(600),
            sync_interval: Duration::from_secs(15),
            status_heartbeat: Duration::from_secs(300),
            release_timeout: Duration::from_secs(600),
            create_outcome_wait: create_outcome_wait(Duration::from_secs(70), 3, Duration::from_secs(70)),
        }
    }
}

/// What the controller knows of the bead after reading Gas Town.
// Short-lived (one per reconcile); boxing the bead would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum GasTownView {
    /// `bd show` returned the bead.
    Bead(Bead),
    /// `bd show` says the bead does not exist.
    Missing,
    /// Gas Town could not be asked: (metric label of the error, message).
    Unreachable(String, String),
}

/// The first thing to do for an Automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Not claimed by us: nothing to do.
    NotOurs,
    /// Being deleted with our finalizer: release the work, then remove the finalizer.
    Deleting,
    /// Status says Released but the claim marks are still there (a crash in between): finish.
    FinishRelease,
    /// `spec.timeoutSeconds` ran out and `Failed` is recorded, but the bead is not released yet
    /// (unslung, and closed if the controller created it): do that. Never slings again.
    FinishTimeout(BeadId),
    /// Terminal: nothing more until it is deleted.
    Terminal,
    /// Our finalizer must be added before anything happens in Gas Town.
    AddFinalizer,
    /// No bead yet: find one by external ref, or create one, and record it.
    ObtainBead,
    /// A bead is recorded: read Gas Town and act on it.
    Sync(BeadId),
    /// The spec cannot be acted upon (invalid rig, bead ID); wait for a change.
    Invalid(String),
}

/// Whether the object carries our finalizer.
pub fn has_finalizer(a: &Automaton) -> bool {
    a.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == RELEASE_FINALIZER))
}

/// Whether any claim mark is still on the object.
pub fn has_claim_marks(a: &Automaton) -> bool {
    a.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CLAIMED_BY_LABEL))
        || a.metadata.annotations.as_ref().is_some_and(|an| {
            [
                CLAIMED_AT_ANNOTATION,
                CLAIM_REQUESTED_BY_ANNOTATION,
                CLAIM_REQUEST_ANNOTATION,
            ]
            .iter()
            .any(|k| an.contains_key(*k))
        })
}

/// Picks the stage for `a`.
pub fn stage(a: &Automaton, claimer: &str) -> Stage {
    if a.metadata.deletion_timestamp.is_some() {
        return if has_finalizer(a) {
            Stage::Deleting
        } else {
            Stage::NotOurs
        };
    }
    if !a.is_claimed_by(claimer) {
        return Stage::NotOurs;
    }
    if a.phase() == Some(Phase::Released) {
        return Stage::FinishRelease;
    }
    if timeout_release_pending(a)
        && let Some(Ok(id)) = recorded_bead(a)
    {
        return Stage::FinishTimeout(id);
    }
    if a.is_terminal() {
        return Stage::Terminal;
    }
    if !has_finalizer(a) {
        return Stage::AddFinalizer;
    }
    match recorded_bead(a) {
        Some(Ok(id)) => Stage::Sync(id),
        Some(Err(e)) => Stage::Invalid(e),
        None => match a.spec.task.bead_id.as_deref().map(BeadId::parse) {
            Some(Err(e)) => Stage::Invalid(format!("spec.task.beadId: {e}")),
            _ => match a.spec.rig.as_deref().map(validate_rig_name) {
                None => Stage::Invalid(
                    "spec.rig is empty: the claim policy fills it in; set spec.rig or configure the policy's \
                     forgeRigs/defaultRig"
                        .to_string(),
                ),
                Some(Err(e)) => Stage::Invalid(format!("spec.rig: {e}")),
                Some(Ok(())) => Stage::ObtainBead,
            },
        },
    }
}

fn recorded_bead(a: &Automaton) -> Option<Result<BeadId, String>> {
    let id = a.status.as_ref()?.gastown.as_ref()?.bead_id.as_deref()?;
    Some(BeadId::parse(id).map_err(|e| format!("status.gastown.beadId: {e}")))
}

/// When the claim was made (the policy's annotation, else the creation time), in whole
/// seconds like every time the API server stores.
pub fn claimed_at(a: &Automaton) -> Option<Timestamp> {
    a.metadata
        .annotations
        .as_ref()
        .and_then(|an| an.get(CLAIMED_AT_ANNOTATION))
        .and_then(|s| s.parse::<Timestamp>().ok())
        .or_else(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(whole_seconds)
}

/// `t` without its fraction of a second. The API server stores `metav1.Time` in whole seconds,
/// so a status built from finer times would never compare equal to the stored one and would be
/// written again on every reconcile.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let d = now.duration_since(since);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Whether the claim is older than the claim timeout.
pub fn claim_expired(a: &Automaton, now: Timestamp, settings: &Settings) -> bool {
    claimed_at(a).is_some_and(|t| elapsed(t, now) >= settings.claim_timeout)
}

/// The close reason of a bead the controller created and closes when it gives the claim back.
pub const RELEASE_CLOSE_REASON: &str = "claim released: Gas Town did not take the work in time";

/// Whether a released claim may go back to Kubernetes although the bead the controller created
/// for it could not be closed: Gas Town had `release_timeout` more to answer. Before that the
/// claim is kept and the close retried, so that no open bead is left behind for work
/// Kubernetes then runs too.
pub fn release_gave_up(a: &Automaton, now: Timestamp, settings: &Settings) -> bool {
    claimed_at(a).is_some_and(|t| elapsed(t, now) >= settings.claim_timeout + settings.release_timeout)
}

/// The status to start from: the current one with claim info and generation filled in.
pub fn base_status(a: &Automaton, settings: &Settings) -> AutomatonStatus {
    let mut st = a.status.clone().unwrap_or_default();
    st.observed_generation = a.metadata.generation;
    st.claim = Some(ClaimStatus {
        claimed_by: Some(settings.claimer.clone()),
        claimed_at: claimed_at(a).map(Time),
        requested_by: a
            .metadata
            .annotations
            .as_ref()
            .and_then(|an| an.get(CLAIM_REQUESTED_BY_ANNOTATION))
            .cloned(),
    });
    st
}

fn gastown_mut(st: &mut AutomatonStatus) -> &mut GasTownStatus {
    st.gastown.get_or_insert_with(GasTownStatus::default)
}

/// Status recorded right after the bead is known and before anything is slung.
pub fn bead_recorded(
    a: &Automaton,
    bead: &BeadId,
    created: bool,
    now: Timestamp,
    settings: &Settings,
) -> AutomatonStatus {
    let mut st = base_status(a, settings);
    let generation = a.metadata.generation;
    st.phase = Some(Phase::Claimed);
    let source = if created { "created" } else { "adopted" };
    st.message = Some(format!(
        "claimed by Gas Town {:?}; bead {} {source}",
        settings.claimer,
        bead.as_str()
    ));
    conditions::set(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::True,
        "Claimed",
        st.message.clone().unwrap_or_default(),
        now,
        generation,
    );
    conditions::set(
        &mut st.conditions,
        condition::GASTOWN_REACHABLE,
        ConditionStatus::True,
        "Reachable",
        "",
        now,
        generation,
    );
    let g = gastown_mut(&mut st);
    g.bead_id = Some(bead.as_str().to_string());
    g.bead_created = Some(created);
    g.rig = a.spec.rig.clone();
    g.last_sync_time = Some(Time(now));
    st
}

/// Whether a bead may exist for `a` that its status does not name: `bd create` ran but the
/// process died, or the status write failed, before the ID was recorded. Such a bead is found
/// again by its external ref instead of creating another, and closed if the claim is released.
///
/// `bd create` runs only on an object that carries our finalizer, and the finalizer is added
/// with a write conditional on the object read. So an object with the finalizer and no recorded
/// bead may have one, unless `beadCreated: false` says that the last `bd create` certainly made
/// none. `beadCreated: true` without a `beadId` is the "creating a bead" mark (see
/// [`creating_bead`]).
pub fn bead_may_exist_unrecorded(a: &Automaton) -> bool {
    if a.spec.task.bead_id.is_some() {
        // The bead comes from the spec: the controller never creates one.
        return false;
    }
    let g = a.status.as_ref().and_then(|s| s.gastown.as_ref());
    if g.is_some_and(|g| g.bead_id.is_some()) {
        return false;
    }
    match g.and_then(|g| g.bead_created) {
        Some(marked) => marked,
        None => has_finalizer(a),
    }
}

/// Whether the reconcile that adds our finalizer to `a` may go on to `bd create` without a
/// lookup or a mark: no earlier attempt can have run (none does without the finalizer), and the
/// status holds no `beadCreated` that would outweigh the finalizer in
/// [`bead_may_exist_unrecorded`] after a crash.
pub fn creates_first(a: &Automaton) -> bool {
    !has_finalizer(a)
        && a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .and_then(|g| g.bead_created)
            .is_none()
}

/// `Claimed` condition reason: a `bd create` began at the condition's `lastTransitionTime`.
pub const CREATING_BEAD_REASON: &str = "CreatingBead";
/// `Claimed` condition reason: the last `bd create` call ended with an unknown outcome (it timed
/// out, was killed, lost its connection); the client returns such an error only once the
/// command has certainly ended in Gas Town (`GasTown::create_bead`), so a lookup is conclusive:
/// the bead is looked up before any other create.
pub const CREATE_OUTCOME_UNKNOWN_REASON: &str = "BeadCreateOutcomeUnknown";

/// Since when a `bd create` for `a` may still be running in Gas Town: the `lastTransitionTime`
/// of the `Claimed=Unknown` (`CreatingBead`) mark that [`creating_bead`] or
/// [`create_may_be_running`] wrote. `None` when no such mark is recorded.
pub fn create_in_flight_since(a: &Automaton) -> Option<Timestamp> {
    let st = a.status.as_ref()?;
    conditions::get(&st.conditions, condition::CLAIMED)
        .filter(|c| c.status == ConditionStatus::Unknown && c.reason == CREATING_BEAD_REASON)
        .map(|c| c.last_transition_time.0)
}

/// Whether the last `bd create` call for `a` is known to have ended (with an unknown outcome).
fn create_ended(a: &Automaton) -> bool {
    a.status.as_ref().is_some_and(|st| {
        conditions::get(&st.conditions, condition::CLAIMED)
            .is_some_and(|c| c.status == ConditionStatus::Unknown && c.reason == CREATE_OUTCOME_UNKNOWN_REASON)
    })
}

/// Whether `bd create` may run for `a` now, after a lookup by external ref found no bead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateGate {
    /// No create can still be running: create (after writing [`creating_bead`]).
    Create,
    /// A create may still be running in Gas Town: look it up again, do not create, until
    /// `until`. `mark`: no time is recorded yet (the controller died during a create it had no
    /// mark for), so record [`create_may_be_running`] now; any create still running began
    /// before now.
    Wait {
        /// When the earlier create has certainly ended.
        until: Timestamp,
        /// Record the mark first.
        mark: bool,
    },
}

/// The rule for a create whose outcome is unknown: another `bd create` only once the last one
/// has certainly ended (its call returned, or [`Settings::create_outcome_wait`] has passed since
/// its mark) and a lookup found no bead. Only asked after such a lookup.
pub fn create_gate(a: &Automaton, now: Timestamp, settings: &Settings) -> CreateGate {
    if !bead_may_exist_unrecorded(a) || create_ended(a) {
        return CreateGate::Create;
    }
    let wait = jiff::SignedDuration::try_from(settings.create_outcome_wait).unwrap_or(jiff::SignedDuration::MAX);
    match create_in_flight_since(a) {
        Some(since) => match since.checked_add(wait) {
            Ok(until) if until > now => CreateGate::Wait { until, mark: false },
            Ok(_) => CreateGate::Create,
            Err(_) => CreateGate::Wait {
                until: Timestamp::MAX,
                mark: false,
            },
        },
        None => CreateGate::Wait {
            until: now.checked_add(wait).unwrap_or(Timestamp::MAX),
            mark: true,
        },
    }
}

/// Status written before every `bd create` but the first (whose conditional write is adding
/// the finalizer): `beadCreated: true` without a `beadId`, a "creating a bead" mark that also
/// replaces a `false` left by a failed `bd create`, and `Claimed=Unknown` (`CreatingBead`) since
/// `now`, from which [`create_gate`] counts should the controller die during the create.
pub fn creating_bead(a: &Automaton, now: Timestamp, settings: &Settings) -> AutomatonStatus {
    let mut st = base_status(a, settings);
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    gastown_mut(&mut st).bead_created = Some(true);
    conditions::set_started(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        CREATING_BEAD_REASON,
        "creating the bead in Gas Town (bd create)",
        now,
        a.metadata.generation,
    );
    st
}

/// `st` after a `bd create` call that ended with an unknown outcome: `beadCreated: true`
/// without a `beadId` (a bead may exist) and `Claimed=Unknown` (`BeadCreateOutcomeUnknown`):
/// the next attempt looks the bead up before it creates.
pub fn create_outcome_unknown(a: &Automaton, mut st: AutomatonStatus, now: Timestamp) -> AutomatonStatus {
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    gastown_mut(&mut st).bead_created = Some(true);
    conditions::set_started(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        CREATE_OUTCOME_UNKNOWN_REASON,
        "the last bd create may have made the bead: it is looked up before another is created",
        now,
        a.metadata.generation,
    );
    st
}

/// `st` on finding that a `bd create` may still be running with no time recorded for it (the
/// controller died during the first create): `Claimed=Unknown` (`CreatingBead`) since `now`;
/// any such create began before now, so the bead is looked up, not created, until
/// `now + create_outcome_wait`.
pub fn create_may_be_running(
    a: &Automaton,
    mut st: AutomatonStatus,
    now: Timestamp,
    settings: &Settings,
) -> AutomatonStatus {
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    gastown_mut(&mut st).bead_created = Some(true);
    let message = format!(
        "a bd create may still be running in Gas Town (the controller stopped during it); its bead is looked up, and no other is created, for {}s",
        settings.create_outcome_wait.as_secs()
    );
    conditions::set_started(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        CREATING_BEAD_REASON,
        message,
        now,
        a.metadata.generation,
    );
    st
}

/// The status when no bead can exist: `bd create` certainly made none (it never ran, or exited
/// non-zero and the lookup after it found none), or the first attempt found the spec invalid.
/// `beadCreated: false` without a `beadId`, so that releasing the claim need not ask Gas Town.
pub fn no_bead_created(mut st: AutomatonStatus) -> AutomatonStatus {
    gastown_mut(&mut st).bead_created = Some(false);
    // No create is running any more: the in-flight mark goes.
    st.conditions.retain(|c| {
        !(c.type_ == condition::CLAIMED
            && c.status == ConditionStatus::Unknown
            && (c.reason == CREATING_BEAD_REASON || c.reason == CREATE_OUTCOME_UNKNOWN_REASON))
    });
    st
}

/// Status for a spec the controller cannot act on.
pub fn invalid(a: &Automaton, message: &str, now: Timestamp, settings: &Settings) -> AutomatonStatus {
    let mut st = base_status(a, settings);
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    st.message = Some(message.to_string());
    conditions::set(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::False,
        "InvalidSpec",
        message,
        now,
        a.metadata.generation,
    );
    st
}

/// Status when Gas Town could not be asked (bead creation or sync).
pub fn unreachable(a: &Automaton, reason: &str, message: &str, now: Timestamp, settings: &Settings) -> AutomatonStatus {
    let mut st = base_status(a, settings);
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    st.message = Some(format!("Gas Town unreachable: {message}"));
    conditions::set(
        &mut st.conditions,
        condition::GASTOWN_REACHABLE,
        ConditionStatus::False,
        &camel(reason),
        message,
        now,
        a.metadata.generation,
    );
    st
}

/// A Gas Town command the controller must run.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `gt sling`.
    Sling {
        /// The bead.
        bead: BeadId,
        /// The rig.
        rig: String,
        /// `--merge`.
        merge: Option<MergeStrategy>,
        /// `--agent`.
        agent: Option<String>,
    },
    /// Give hooked or running work back (`gt unsling`, or reopening the bead through the proxy).
    Unsling {
        /// The bead.
        bead: BeadId,
        /// Its current assignee.
        holder: Option<String>,
    },
    /// `bd close -r`.
    Close {
        /// The bead.
        bead: BeadId,
        /// Why.
        reason: String,
    },
}

/// What to do after reading the bead.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write (if it differs from the current one beyond `lastSyncTime`).
    pub status: AutomatonStatus,
    /// A Gas Town command to run first; `status` is what holds once it succeeded.
    pub command: Option<Command>,
    /// Give the claim back to Kubernetes after writing `status`.
    pub release_claim: bool,
    /// An Event to record: (warning?, reason, note).
    pub event: Option<(bool, String, String)>,
    /// When to look again (`None`: only on change).
    pub requeue: Option<Duration>,
}

/// The rule for a closed bead: `Failed` when its close reason starts with one of these words
/// (case-insensitive), `Succeeded` otherwise.
pub const FAILURE_CLOSE_WORDS: [&str; 12] = [
    "fail",
    "failed",
    "failure",
    "error",
    "abandoned",
    "abandon",
    "cancelled",
    "canceled",
    "rejected",
    "wontfix",
    "won't",
    "timeout",
];

/// Whether a close reason means failure (see [`FAILURE_CLOSE_WORDS`]).
pub fn close_reason_is_failure(reason: &str) -> bool {
    let first = reason
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .split(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '.' | ';' | '-' | '(' | '['))
        .next()
        .unwrap_or("")
        .to_lowercase();
    FAILURE_CLOSE_WORDS.contains(&first.as_str())
}

fn camel(label: &str) -> String {
    label
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Whether `assignee` (`<rig>/polecats/<Name>` or `<rig>/<Name>`) belongs to `rig`.
pub fn assignee_in_rig(assignee: Option<&str>, rig: &str) -> bool {
    assignee.and_then(|a| a.split('/').next()).is_some_and(|r| r == rig)
}

/// Decides what to do for a claimed Automaton whose bead is `bead`, given what Gas Town says.
pub fn plan_sync(a: &Automaton, bead: &BeadId, view: &GasTownView, now: Timestamp, settings: &Settings) -> Plan {
    let generation = a.metadata.generation;
    let mut st = base_status(a, settings);
    // The spec's rig (immutable once claimed, by the policy); the recorded one if it is gone.
    let rig = a
        .spec
        .rig
        .clone()
        .or_else(|| st.gastown.as_ref().and_then(|g| g.rig.clone()))
        .unwrap_or_default();
    let dispatched_at = st.gastown.as_ref().and_then(|g| g.dispatched_at.as_ref()).map(|t| t.0);
    let mut plan = Plan {
        status: st.clone(),
        command: None,
        release_claim: false,
        event: None,
        requeue: Some(settings.sync_interval),
    };
    let expired = dispatched_at.is_none() && claim_expired(a, now, settings);

    let bead_value = match view {
        GasTownView::Unreachable(reason, message) => {
            let st = unreachable(a, reason, message, now, settings);
            if let Some(limit) = deadline_passed(a, dispatched_at, now) {
                timed_out(&mut plan, a, st, limit, now);
                return plan;
            }
            plan.status = st;
            // The claim is not given back while Gas Town cannot be read, even once it is too
            // old: a `gt sling` whose result was never recorded may have hooked the bead, and
            // Kubernetes would then run the work a second time. The next read decides.
            return plan;
        }
        GasTownView::Missing => None,
        GasTownView::Bead(b) if b.status.is_gone() => None,
        GasTownView::Bead(b) => Some(b),
    };
    conditions::set(
        &mut st.conditions,
        condition::GASTOWN_REACHABLE,
        ConditionStatus::True,
        "Reachable",
        "",
        now,
        generation,
    );
    {
        let g = gastown_mut(&mut st);
        g.last_sync_time = Some(Time(now));
        g.rig = Some(rig.clone());
        g.bead_status = match view {
            GasTownView::Bead(b) => Some(b.status.as_str().to_string()),
            _ => None,
        };
    }
    let Some(b) = bead_value else {
        let message = format!("bead {} no longer exists in Gas Town", bead.as_str());
        st.phase = Some(Phase::Failed);
        st.message = Some(message.clone());
        conditions::set(
            &mut st.conditions,
            condition::COMPLETED,
            ConditionStatus::False,
            "BeadMissing",
            &message,
            now,
            generation,
        );
        plan.status = st;
        plan.event = Some((true, "BeadMissing".to_string(), message));
        plan.requeue = None;
        return plan;
    };

    if b.status != BeadStatus::Closed
        && let Some(limit) = deadline_passed(a, dispatched_at, now)
    {
        // In every state but closed: hooked or running anywhere, open again, blocked,
        // deferred, pinned.
        if let Some(assignee) = &b.assignee {
            gastown_mut(&mut st).assignee = Some(assignee.clone());
        }
        timed_out(&mut plan, a, st, limit, now);
        return plan;
    }

    match &b.status {
        BeadStatus::Closed => {
            let reason = b.close_reason.clone().unwrap_or_default();
            let failed = close_reason_is_failure(&reason);
            st.phase = Some(if failed { Phase::Failed } else { Phase::Succeeded });
            let message = if reason.is_empty() {
                format!("bead {} closed", b.id)
            } else {
                format!("bead {} closed: {reason}", b.id)
            };
            st.message = Some(message.clone());
            if let Some(assignee) = &b.assignee {
                gastown_mut(&mut st).assignee = Some(assignee.clone());
            }
            let (cond_status, cond_reason) = if failed {
                (ConditionStatus::False, "Failed")
            } else {
                (ConditionStatus::True, "Succeeded")
            };
            conditions::set(
                &mut st.conditions,
                condition::COMPLETED,
                cond_status,
                cond_reason,
                &message,
                now,
                generation,
            );
            conditions::set(
                &mut st.conditions,
                condition::RUNNING,
                ConditionStatus::False,
                "Completed",
                "",
                now,
                generation,
            );
            plan.event = Some((failed, cond_reason.to_string(), message));
            plan.requeue = None;
        }
        BeadStatus::Hooked | BeadStatus::InProgress if assignee_in_rig(b.assignee.as_deref(), &rig) => {
            let running = b.status == BeadStatus::InProgress;
            let since = dispatched_at.unwrap_or(now);
            {
                let g = gastown_mut(&mut st);
                g.dispatched_at = Some(Time(since));
                g.assignee = b.assignee.clone();
            }
            let worker = b.assignee.clone().unwrap_or_default();
            conditions::set(
                &mut st.conditions,
                condition::DISPATCHED,
                ConditionStatus::True,
                "Slung",
                format!("bead {} hooked by {worker}", b.id),
                now,
                generation,
            );
            if running {
                st.phase = Some(Phase::Running);
                st.message = Some(format!("{worker} is working on bead {}", b.id));
                conditions::set(
                    &mut st.conditions,
                    condition::RUNNING,
                    ConditionStatus::True,
                    "InProgress",
                    format!("worker {worker}"),
                    now,
                    generation,
                );
            } else {
                st.phase = Some(Phase::Dispatched);
                st.message = Some(format!(
                    "bead {} hooked by {worker}, waiting for the agent to start",
                    b.id
                ));
            }
            if dispatched_at.is_none() {
                plan.event = Some((
                    false,
                    "Dispatched".to_string(),
                    format!("bead {} already hooked by {worker}", b.id),
                ));
            }
        }
        BeadStatus::Hooked | BeadStatus::InProgress => {
            let holder = b.assignee.clone().unwrap_or_default();
            let message = format!(
                "bead {} is already {} by {holder} outside rig {rig:?}; not dispatching it again",
                b.id, b.status
            );
            st.phase = Some(Phase::Claimed);
            st.message = Some(message.clone());
            conditions::set(
                &mut st.conditions,
                condition::DISPATCHED,
                ConditionStatus::False,
                "HookedElsewhere",
                &message,
                now,
                generation,
            );
            // Never given back to Kubernetes while a worker holds the bead, even once the claim
            // is too old: Kubernetes would run the work a second time. It ends when the bead is
            // closed (or the Automaton is deleted).
            let _ = expired;
            plan.status = st;
            return plan;
        }
        BeadStatus::Open => {
            let created = st.gastown.as_ref().and_then(|g| g.bead_created).unwrap_or(false);
            if expired {
                plan.status = st;
                let close = created.then(|| Command::Close {
                    bead: bead.clone(),
                    reason: RELEASE_CLOSE_REASON.to_string(),
                });
                release(
                    &mut plan,
                    a,
                    now,
                    settings,
                    &format!(
                        "Gas Town did not take the work within {}s",
                        settings.claim_timeout.as_secs()
                    ),
                    close,
                );
                return plan;
            }
            plan.command = Some(Command::Sling {
                bead: bead.clone(),
                rig: rig.clone(),
                merge: a.spec.merge_strategy,
                agent: a.spec.agent.as_ref().and_then(|ag| ag.name.clone()),
            });
            st.phase = Some(Phase::Dispatched);
            st.message = Some(format!("bead {} slung to rig {rig}", b.id));
            {
                let g = gastown_mut(&mut st);
                // The first dispatch: a re-sling (the bead was reopened) keeps it, so the
                // spec.timeoutSeconds deadline does not start again.
                g.dispatched_at = Some(Time(dispatched_at.unwrap_or(now)));
                g.bead_status = Some(BeadStatus::Hooked.as_str().to_string());
            }
            conditions::set(
                &mut st.conditions,
                condition::DISPATCHED,
                ConditionStatus::True,
                "Slung",
                format!("gt sling {} {rig}", b.id),
                now,
                generation,
            );
            plan.event = Some((
                false,
                "Dispatched".to_string(),
                format!("bead {} slung to rig {rig}", b.id),
            ));
            // Look again soon: the sling's result (hooked, assignee) is read on the next sync.
            plan.requeue = Some(Duration::from_secs(1).min(settings.sync_interval));
        }
        other => {
            // blocked, deferred, pinned or a site-defined status: report it and wait.
            let message = format!("bead {} is {other} in Gas Town", b.id);
            st.message = Some(message.clone());
            st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
            if dispatched_at.is_none() {
                conditions::set(
                    &mut st.conditions,
                    condition::DISPATCHED,
                    ConditionStatus::False,
                    "BeadNotOpen",
                    &message,
                    now,
                    generation,
                );
                if expired {
                    plan.status = st;
                    release(&mut plan, a, now, settings, &message, None);
                    return plan;
                }
            }
        }
    }
    plan.status = st;
    plan
}

/// `Dispatched` condition reason: `spec.timeoutSeconds` ran out, `Failed` is recorded, and the
/// bead is still to be released in Gas Town ([`Stage::FinishTimeout`]).
pub const TIMEOUT_RELEASE_PENDING_REASON: &str = "ReleasingAfterTimeout";
/// `Dispatched` condition reason: the timed-out bead was released in Gas Town.
pub const TIMEOUT_RELEASED_REASON: &str = "ReleasedAfterTimeout";

/// The `spec.timeoutSeconds` limit when it has run out at `now`, counted from the first dispatch
/// (`status.gastown.dispatchedAt`, written once and kept through re-slings).
fn deadline_passed(a: &Automaton, dispatched_at: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    let limit = a.spec.timeout_seconds.filter(|s| *s > 0)?;
    let since = dispatched_at?;
    (elapsed(since, now) >= Duration::from_secs(limit.unsigned_abs())).then_some(limit)
}

/// Whether `a` timed out and its bead is still to be released (see [`Stage::FinishTimeout`]).
pub fn timeout_release_pending(a: &Automaton) -> bool {
    a.phase() == Some(Phase::Failed)
        && a.status.as_ref().is_some_and(|st| {
            conditions::get(&st.conditions, condition::DISPATCHED)
                .is_some_and(|c| c.reason == TIMEOUT_RELEASE_PENDING_REASON)
        })
}

/// The close reason of a timed-out bead the controller created (its first word makes it read as
/// a failure, see [`close_reason_is_failure`]).
pub fn timeout_close_reason(a: &Automaton) -> String {
    format!(
        "timeout: the work exceeded spec.timeoutSeconds ({}s) of Automaton {}/{}",
        a.spec.timeout_seconds.unwrap_or_default(),
        a.metadata.namespace.as_deref().unwrap_or(""),
        a.metadata.name.as_deref().unwrap_or("")
    )
}

/// Turns `plan` into a timeout: `Failed` is recorded first, with nothing run in Gas Town, and
/// the release follows ([`Stage::FinishTimeout`]). Should the status write fail, the next sync
/// sees the same bead past the same deadline and decides the same: the bead is never slung again.
fn timed_out(plan: &mut Plan, a: &Automaton, mut st: AutomatonStatus, limit: i64, now: Timestamp) {
    let generation = a.metadata.generation;
    let message = format!("work exceeded spec.timeoutSeconds ({limit}s) after dispatch; released in Gas Town");
    st.phase = Some(Phase::Failed);
    st.message = Some(message.clone());
    conditions::set(
        &mut st.conditions,
        condition::COMPLETED,
        ConditionStatus::False,
        "Timeout",
        &message,
        now,
        generation,
    );
    conditions::set(
        &mut st.conditions,
        condition::RUNNING,
        ConditionStatus::False,
        "Timeout",
        "",
        now,
        generation,
    );
    conditions::set(
        &mut st.conditions,
        condition::DISPATCHED,
        ConditionStatus::Unknown,
        TIMEOUT_RELEASE_PENDING_REASON,
        "releasing the bead in Gas Town after the timeout",
        now,
        generation,
    );
    plan.status = st;
    plan.command = None;
    plan.release_claim = false;
    plan.event = Some((true, "Timeout".to_string(), message));
    plan.requeue = None;
}

/// What releasing a timed-out bead takes in Gas Town, from the bead as read: unsling it if a
/// worker of our rig holds it (or it is ours), and close it with a reason if the controller
/// created it. A bead of another rig's worker that the controller did not create is left alone.
pub fn plan_timeout_release(a: &Automaton, bead: &BeadId, b: &Bead) -> Vec<Command> {
    let created = a
        .status
        .as_ref()
        .and_then(|s| s.gastown.as_ref())
        .and_then(|g| g.bead_created)
        .unwrap_or(false);
    let rig = a.spec.rig.clone().unwrap_or_default();
    let mut commands = Vec::new();
    if b.status.is_gone() || b.status == BeadStatus::Closed {
        return commands;
    }
    if b.status.is_dispatched() && (created || assignee_in_rig(b.assignee.as_deref(), &rig)) {
        commands.push(Command::Unsling {
            bead: bead.clone(),
            holder: b.assignee.clone(),
        });
    }
    if created {
        commands.push(Command::Close {
            bead: bead.clone(),
            reason: timeout_close_reason(a),
        });
    }
    commands
}

/// The status once the timed-out bead is released: still `Failed`, `Dispatched=False`.
pub fn timeout_released(a: &Automaton, now: Timestamp, settings: &Settings) -> AutomatonStatus {
    let mut st = base_status(a, settings);
    conditions::set(
        &mut st.conditions,
        condition::DISPATCHED,
        ConditionStatus::False,
        TIMEOUT_RELEASED_REASON,
        "released in Gas Town after the timeout",
        now,
        a.metadata.generation,
    );
    st
}

/// Turns `plan` into a release of the claim back to Kubernetes.
fn release(plan: &mut Plan, a: &Automaton, now: Timestamp, settings: &Settings, why: &str, command: Option<Command>) {
    let generation = a.metadata.generation;
    let st = &mut plan.status;
    let message = format!("claim released to Kubernetes: {why}");
    st.phase = Some(Phase::Released);
    st.message = Some(message.clone());
    conditions::set(
        &mut st.conditions,
        condition::RELEASED,
        ConditionStatus::True,
        "ClaimExpired",
        &message,
        now,
        generation,
    );
    conditions::set(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::False,
        "Released",
        &message,
        now,
        generation,
    );
    let _ = settings;
    plan.command = command;
    plan.release_claim = true;
    plan.event = Some((true, "ClaimReleased".to_string(), message));
    plan.requeue = None;
}

/// The status that gives back a claim no bead was dispatched for (the spec was invalid, or Gas
/// Town failed) once it is older than the claim timeout, with the note of its event. The bead the
/// controller may have created is closed afterwards (`Stage::FinishRelease`).
pub fn undispatched_claim_expired(a: &Automaton, now: Timestamp, settings: &Settings) -> (AutomatonStatus, String) {
    let mut st = base_status(a, settings);
    let message = format!(
        "claim released to Kubernetes: the spec could not be dispatched within {}s",
        settings.claim_timeout.as_secs()
    );
    st.phase = Some(Phase::Released);
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
    (st, message)
}

/// The status that says why a released claim is still kept: the worker holding bead `b` could
/// not be taken off it (`error`).
pub fn worker_holds_bead(
    a: &Automaton,
    b: &Bead,
    error: &dyn std::fmt::Display,
    now: Timestamp,
    settings: &Settings,
) -> AutomatonStatus {
    let message = format!(
        "claim kept: bead {} is {} by {} and could not be taken back: {error}",
        b.id,
        b.status,
        b.assignee.as_deref().unwrap_or("a worker")
    );
    let mut st = base_status(a, settings);
    conditions::set(
        &mut st.conditions,
        condition::RELEASED,
        ConditionStatus::False,
        "WorkerHoldsBead",
        &message,
        now,
        a.metadata.generation,
    );
    st.message = Some(message);
    st
}

/// The status after the plan's `command` failed with `error`: it did not happen, so nothing
/// else changes; the status says why (Gas Town unreachable, or which command failed).
pub fn command_failed(
    a: &Automaton,
    command: &Command,
    error: &crate::gastown::Error,
    now: Timestamp,
    settings: &Settings,
) -> AutomatonStatus {
    if error.is_unreachable() {
        return unreachable(a, error.metric_label(), &error.to_string(), now, settings);
    }
    let mut st = base_status(a, settings);
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    let (cond, reason) = match command {
        Command::Sling { .. } => (condition::DISPATCHED, "SlingFailed"),
        Command::Unsling { .. } => (condition::COMPLETED, "UnslingFailed"),
        Command::Close { .. } => (condition::RELEASED, "CloseFailed"),
    };
    st.message = Some(error.to_string());
    conditions::set(
        &mut st.conditions,
        cond,
        ConditionStatus::False,
        reason,
        error.to_string(),
        now,
        a.metadata.generation,
    );
    st
}

/// What deletion must do in Gas Town before the finalizer goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionPlan {
    /// Commands to run, in order.
    pub commands: Vec<Command>,
    /// Let the object go even though Gas Town could not be cleaned up (bound reached).
    pub give_up: bool,
}

/// Whether deletion has waited `release_timeout` for Gas Town (the bound after which the
/// object is let go without clean-up).
pub fn release_bound_reached(a: &Automaton, now: Timestamp, settings: &Settings) -> bool {
    let deleted_at = a.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    elapsed(deleted_at, now) >= settings.release_timeout
}

/// Decides the Gas Town clean-up for a deleted Automaton.
pub fn plan_deletion(
    a: &Automaton,
    bead: Option<&BeadId>,
    view: Option<&GasTownView>,
    now: Timestamp,
    settings: &Settings,
) -> DeletionPlan {
    let give_up = release_bound_reached(a, now, settings);
    let (Some(bead), Some(view)) = (bead, view) else {
        return DeletionPlan {
            commands: Vec::new(),
            give_up: false,
        };
    };
    let created = a
        .status
        .as_ref()
        .and_then(|s| s.gastown.as_ref())
        .and_then(|g| g.bead_created)
        .unwrap_or(false);
    let name = format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or(""),
        a.metadata.name.as_deref().unwrap_or("")
    );
    match view {
        GasTownView::Unreachable(..) => DeletionPlan {
            commands: Vec::new(),
            give_up,
        },
        GasTownView::Missing => DeletionPlan {
            commands: Vec::new(),
            give_up: false,
        },
        GasTownView::Bead(b) => {
            let mut commands = Vec::new();
            let rig = a
                .spec
                .rig
                .clone()
                .or_else(|| {
                    a.status
                        .as_ref()
                        .and_then(|s| s.gastown.as_ref())
                        .and_then(|g| g.rig.clone())
                })
                .unwrap_or_default();
            if !created
                && b.status.is_dispatched()
                && b.assignee.is_some()
                && !assignee_in_rig(b.assignee.as_deref(), &rig)
            {
                // An adopted bead another rig's worker holds: not ours to take away.
                return DeletionPlan { commands, give_up };
            }
            if b.status.is_dispatched() {
                commands.push(Command::Unsling {
                    bead: bead.clone(),
                    holder: b.assignee.clone(),
                });
            }
            if created && !matches!(b.status, BeadStatus::Closed | BeadStatus::Tombstone) {
                commands.push(Command::Close {
                    bead: bead.clone(),
                    reason: format!("cancelled: Automaton {name} was deleted"),
                });
            }
            DeletionPlan { commands, give_up }
        }
    }
}

/// Whether the new status differs from the old one in more than `lastSyncTime`, or the last
/// write is older than the heartbeat.
pub fn status_needs_write(old: Option<&AutomatonStatus>, new: &AutomatonStatus, settings: &Settings) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &AutomatonStatus| {
        let mut s = s.clone();
        if let Some(g) = s.gastown.as_mut() {
            g.last_sync_time = None;
        }
        s
    };
    if strip(old) != strip(new) {
        return true;
    }
    // Only lastSyncTime differs: write it at most once per heartbeat.
    let last = |s: &AutomatonStatus| s.gastown.as_ref().and_then(|g| g.last_sync_time.as_ref()).map(|t| t.0);
    match (last(old), last(new)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => n > o && elapsed(o, n) >= settings.status_heartbeat,
    }
}

//! `bd create` whose outcome may be unknown: the marks written around it and the gate that
//! allows another create only once the last one has certainly ended.

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, AutomatonStatus, ConditionStatus, Phase};
use jiff::Timestamp;

use crate::conditions;

use super::Settings;
use super::state::bead_may_exist_unrecorded;
use super::status::{base_status, gastown_mut};

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
pub(super) fn create_ended(a: &Automaton) -> bool {
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
    let st = base_status(a, settings);
    create_mark(
        a,
        st,
        CREATING_BEAD_REASON,
        "creating the bead in Gas Town (bd create)",
        now,
    )
}

/// `st` after a `bd create` call that ended with an unknown outcome: `beadCreated: true`
/// without a `beadId` (a bead may exist) and `Claimed=Unknown` (`BeadCreateOutcomeUnknown`):
/// the next attempt looks the bead up before it creates.
pub fn create_outcome_unknown(a: &Automaton, st: AutomatonStatus, now: Timestamp) -> AutomatonStatus {
    let message = "the last bd create may have made the bead: it is looked up before another is created";
    create_mark(a, st, CREATE_OUTCOME_UNKNOWN_REASON, message, now)
}

/// `st` on finding that a `bd create` may still be running with no time recorded for it (the
/// controller died during the first create): `Claimed=Unknown` (`CreatingBead`) since `now`;
/// any such create began before now, so the bead is looked up, not created, until
/// `now + create_outcome_wait`.
pub fn create_may_be_running(
    a: &Automaton,
    st: AutomatonStatus,
    now: Timestamp,
    settings: &Settings,
) -> AutomatonStatus {
    let message = format!(
        "a bd create may still be running in Gas Town (the controller stopped during it); its bead is looked up, and no other is created, for {}s",
        settings.create_outcome_wait.as_secs()
    );
    create_mark(a, st, CREATING_BEAD_REASON, message, now)
}

/// `st` with a create mark: `beadCreated: true` without a `beadId` (a bead may exist) and
/// `Claimed=Unknown` with `reason`, starting now.
fn create_mark(
    a: &Automaton,
    mut st: AutomatonStatus,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> AutomatonStatus {
    st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
    gastown_mut(&mut st).bead_created = Some(true);
    conditions::set_started(
        &mut st.conditions,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        reason,
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

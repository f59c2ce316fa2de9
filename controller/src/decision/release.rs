//! Giving work back: the claim to Kubernetes when Gas Town did not take it in time, and the
//! Gas Town clean-up when the Automaton is deleted.

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, AutomatonStatus, ConditionStatus, Phase};
use jiff::Timestamp;

use crate::conditions;
use crate::gastown::{Bead, BeadId, BeadStatus};

use super::state::bead_state;
use super::status::base_status;
use super::{Command, Event, GasTownView, Plan, Settings, assignee_in_rig, claimed_at, elapsed};

/// The close reason of a bead the controller created and closes when it gives the claim back.
pub const RELEASE_CLOSE_REASON: &str = "claim released: Gas Town did not take the work in time";

/// Whether a released claim may go back to Kubernetes although the bead the controller created
/// for it could not be closed: Gas Town had `release_timeout` more to answer. Before that the
/// claim is kept and the close retried, so that no open bead is left behind for work
/// Kubernetes then runs too.
pub fn release_gave_up(a: &Automaton, now: Timestamp, settings: &Settings) -> bool {
    claimed_at(a).is_some_and(|t| elapsed(t, now) >= settings.claim_timeout + settings.release_timeout)
}

/// Gives the claim back to Kubernetes from status `st`, after `command` (closing the bead the
/// controller created).
pub(super) fn release(a: &Automaton, st: AutomatonStatus, now: Timestamp, why: &str, command: Option<Command>) -> Plan {
    let mut plan = released(a, st, now, why);
    conditions::set(
        &mut plan.status.conditions,
        condition::CLAIMED,
        ConditionStatus::False,
        "Released",
        plan.status.message.clone().unwrap_or_default(),
        now,
        a.metadata.generation,
    );
    plan.command = command;
    plan
}

/// Gives back a claim no bead was dispatched for (the spec was invalid, or Gas Town failed) once
/// it is older than the claim timeout. The bead the controller may have created is closed by the
/// release that follows ([`Stage::FinishRelease`](super::Stage::FinishRelease)).
pub fn undispatched_claim_expired(a: &Automaton, now: Timestamp, settings: &Settings) -> Plan {
    let why = format!(
        "the spec could not be dispatched within {}s",
        settings.claim_timeout.as_secs()
    );
    released(a, base_status(a, settings), now, &why)
}

/// `st` as `Released` (`Released=True`, `ClaimExpired`), with its warning Event.
fn released(a: &Automaton, mut st: AutomatonStatus, now: Timestamp, why: &str) -> Plan {
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
        a.metadata.generation,
    );
    Plan {
        status: st,
        command: None,
        release_claim: true,
        event: Some(Event::new(true, "ClaimReleased", message)),
        requeue: None,
    }
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
    let created = bead_state(a).created();
    let name = format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or(""),
        a.metadata.name.as_deref().unwrap_or("")
    );
    match view {
        GasTownView::Unreachable { .. } => DeletionPlan {
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

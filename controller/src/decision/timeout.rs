//! `spec.timeoutSeconds`: the work is failed first, then its bead is released in Gas Town.

use std::time::Duration;

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, AutomatonStatus, ConditionStatus, Phase};
use jiff::Timestamp;

use crate::conditions;
use crate::gastown::{Bead, BeadId, BeadStatus};

use super::state::bead_state;
use super::status::base_status;
use super::{Command, Event, Plan, Settings, assignee_in_rig, elapsed};

/// `Dispatched` condition reason: `spec.timeoutSeconds` ran out, `Failed` is recorded, and the
/// bead is still to be released in Gas Town ([`Stage::FinishTimeout`](super::Stage::FinishTimeout)).
pub const TIMEOUT_RELEASE_PENDING_REASON: &str = "ReleasingAfterTimeout";

/// `Dispatched` condition reason: the timed-out bead was released in Gas Town.
pub const TIMEOUT_RELEASED_REASON: &str = "ReleasedAfterTimeout";

/// The `spec.timeoutSeconds` limit when it has run out at `now`, counted from the first dispatch
/// (`status.gastown.dispatchedAt`, written once and kept through re-slings).
pub(super) fn deadline_passed(a: &Automaton, dispatched_at: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    let limit = a.spec.timeout_seconds.filter(|s| *s > 0)?;
    let since = dispatched_at?;
    (elapsed(since, now) >= Duration::from_secs(limit.unsigned_abs())).then_some(limit)
}

/// Whether `a` timed out and its bead is still to be released (see [`Stage::FinishTimeout`](super::Stage::FinishTimeout)).
pub fn timeout_release_pending(a: &Automaton) -> bool {
    a.phase() == Some(Phase::Failed)
        && a.status.as_ref().is_some_and(|st| {
            conditions::get(&st.conditions, condition::DISPATCHED)
                .is_some_and(|c| c.reason == TIMEOUT_RELEASE_PENDING_REASON)
        })
}

/// The close reason of a timed-out bead the controller created (its first word makes it read as
/// a failure, see [`close_reason_is_failure`](super::close_reason_is_failure)).
pub fn timeout_close_reason(a: &Automaton) -> String {
    format!(
        "timeout: the work exceeded spec.timeoutSeconds ({}s) of Automaton {}/{}",
        a.spec.timeout_seconds.unwrap_or_default(),
        a.metadata.namespace.as_deref().unwrap_or(""),
        a.metadata.name.as_deref().unwrap_or("")
    )
}

/// A timeout: `Failed` is recorded first, with nothing run in Gas Town, and
/// the release follows ([`Stage::FinishTimeout`](super::Stage::FinishTimeout)). Should the status write fail, the next sync
/// sees the same bead past the same deadline and decides the same: the bead is never slung again.
pub(super) fn timed_out(a: &Automaton, mut st: AutomatonStatus, limit: i64, now: Timestamp) -> Plan {
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
    Plan {
        status: st,
        command: None,
        release_claim: false,
        event: Some(Event::new(true, "Timeout", message)),
        requeue: None,
    }
}

/// What releasing a timed-out bead takes in Gas Town, from the bead as read: unsling it if a
/// worker of our rig holds it (or it is ours), and close it with a reason if the controller
/// created it. A bead of another rig's worker that the controller did not create is left alone.
pub fn plan_timeout_release(a: &Automaton, bead: &BeadId, b: &Bead) -> Vec<Command> {
    let created = bead_state(a).created();
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

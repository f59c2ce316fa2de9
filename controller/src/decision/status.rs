//! The statuses every step starts from or reports with: the claim filled in, a bead recorded,
//! an invalid spec, Gas Town unreachable, a command failed; and whether a status is worth a write.

use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, condition};
use gastown_crds::{Automaton, AutomatonStatus, ClaimStatus, ConditionStatus, GasTownStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions;
use crate::gastown::BeadId;

use super::{Command, Settings, claimed_at, elapsed};

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

pub(super) fn gastown_mut(st: &mut AutomatonStatus) -> &mut GasTownStatus {
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

pub(super) fn camel(label: &str) -> String {
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

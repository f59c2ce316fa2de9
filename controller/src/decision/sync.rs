//! [`plan_sync`]: what to do for a claim whose bead is recorded, by the state of the bead in Gas
//! Town (unreachable, gone, closed, held in our rig, held elsewhere, open, anything else).

use std::time::Duration;

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, AutomatonStatus, ConditionStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions;
use crate::gastown::{Bead, BeadId, BeadStatus};

use super::release::{RELEASE_CLOSE_REASON, release};
use super::state::bead_state;
use super::status::{base_status, gastown_mut, unreachable};
use super::timeout::{deadline_passed, timed_out};
use super::{Command, Event, GasTownView, Plan, Settings, assignee_in_rig, claim_expired};

/// Decides what to do for a claimed Automaton whose bead is `bead`, given what Gas Town says:
/// one function per state of the bead.
pub fn plan_sync(a: &Automaton, bead: &BeadId, view: &GasTownView, now: Timestamp, settings: &Settings) -> Plan {
    let sync = Sync::new(a, bead, now, settings);
    let b = match view {
        GasTownView::Unreachable { reason, message } => return sync.unreachable(reason, message),
        GasTownView::Missing => return sync.gone(None),
        GasTownView::Bead(b) if b.status.is_gone() => return sync.gone(Some(b)),
        GasTownView::Bead(b) => b,
    };
    let st = sync.reachable(Some(b));
    if b.status != BeadStatus::Closed
        && let Some(limit) = deadline_passed(a, sync.dispatched_at, now)
    {
        // In every state but closed: hooked or running anywhere, open again, blocked,
        // deferred, pinned.
        return sync.timed_out(st, b, limit);
    }
    match &b.status {
        BeadStatus::Closed => sync.closed(st, b),
        BeadStatus::Hooked | BeadStatus::InProgress if assignee_in_rig(b.assignee.as_deref(), &sync.rig) => {
            sync.held_in_our_rig(st, b)
        }
        BeadStatus::Hooked | BeadStatus::InProgress => sync.held_elsewhere(st, b),
        BeadStatus::Open => sync.open(st, b),
        other => sync.waiting(st, b, other),
    }
}

/// What every state of the bead is planned from.
struct Sync<'a> {
    a: &'a Automaton,
    bead: &'a BeadId,
    /// The spec's rig (immutable once claimed, by the policy); the recorded one if it is gone.
    rig: String,
    /// The first dispatch, if any (kept through re-slings).
    dispatched_at: Option<Timestamp>,
    /// Never dispatched, and the claim is older than the claim timeout.
    expired: bool,
    now: Timestamp,
    settings: &'a Settings,
}

impl<'a> Sync<'a> {
    fn new(a: &'a Automaton, bead: &'a BeadId, now: Timestamp, settings: &'a Settings) -> Self {
        let g = a.status.as_ref().and_then(|s| s.gastown.as_ref());
        let rig = a
            .spec
            .rig
            .clone()
            .or_else(|| g.and_then(|g| g.rig.clone()))
            .unwrap_or_default();
        let dispatched_at = g.and_then(|g| g.dispatched_at.as_ref()).map(|t| t.0);
        Sync {
            a,
            bead,
            rig,
            dispatched_at,
            expired: dispatched_at.is_none() && claim_expired(a, now, settings),
            now,
            settings,
        }
    }

    /// A plan that writes `status`, runs nothing and looks again after the sync interval.
    fn plan(&self, status: AutomatonStatus) -> Plan {
        Plan {
            status,
            command: None,
            release_claim: false,
            event: None,
            requeue: Some(self.settings.sync_interval),
        }
    }

    /// Sets condition `type_` as of now.
    fn set(
        &self,
        st: &mut AutomatonStatus,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) {
        conditions::set(
            &mut st.conditions,
            type_,
            status,
            reason,
            message,
            self.now,
            self.a.metadata.generation,
        );
    }

    /// Gas Town could not be read. The claim is not given back then, even once it is too old: a
    /// `gt sling` whose result was never recorded may have hooked the bead, and Kubernetes would
    /// then run the work a second time. The next read decides.
    fn unreachable(&self, reason: &str, message: &str) -> Plan {
        let st = unreachable(self.a, reason, message, self.now, self.settings);
        match deadline_passed(self.a, self.dispatched_at, self.now) {
            Some(limit) => timed_out(self.a, st, limit, self.now),
            None => self.plan(st),
        }
    }

    /// The status of a successful read of `b` (`None`: the bead does not exist).
    fn reachable(&self, b: Option<&Bead>) -> AutomatonStatus {
        let mut st = base_status(self.a, self.settings);
        self.set(
            &mut st,
            condition::GASTOWN_REACHABLE,
            ConditionStatus::True,
            "Reachable",
            "",
        );
        let g = gastown_mut(&mut st);
        g.last_sync_time = Some(Time(self.now));
        g.rig = Some(self.rig.clone());
        g.bead_status = b.map(|b| b.status.as_str().to_string());
        st
    }

    /// The bead does not exist, or is a tombstone (`b`): the work failed.
    fn gone(&self, b: Option<&Bead>) -> Plan {
        let mut st = self.reachable(b);
        let message = format!("bead {} no longer exists in Gas Town", self.bead.as_str());
        st.phase = Some(Phase::Failed);
        st.message = Some(message.clone());
        self.set(
            &mut st,
            condition::COMPLETED,
            ConditionStatus::False,
            "BeadMissing",
            &message,
        );
        Plan {
            event: Some(Event::new(true, "BeadMissing", message)),
            requeue: None,
            ..self.plan(st)
        }
    }

    /// `spec.timeoutSeconds` ran out (see [`timed_out`]).
    fn timed_out(&self, mut st: AutomatonStatus, b: &Bead, limit: i64) -> Plan {
        if let Some(assignee) = &b.assignee {
            gastown_mut(&mut st).assignee = Some(assignee.clone());
        }
        timed_out(self.a, st, limit, self.now)
    }

    /// Closed: done, failed or succeeded by its close reason.
    fn closed(&self, mut st: AutomatonStatus, b: &Bead) -> Plan {
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
        self.set(&mut st, condition::COMPLETED, cond_status, cond_reason, &message);
        self.set(&mut st, condition::RUNNING, ConditionStatus::False, "Completed", "");
        Plan {
            event: Some(Event::new(failed, cond_reason, message)),
            requeue: None,
            ..self.plan(st)
        }
    }

    /// Hooked or in progress by a worker of our rig: dispatched (adopted, if we did not sling it).
    fn held_in_our_rig(&self, mut st: AutomatonStatus, b: &Bead) -> Plan {
        let g = gastown_mut(&mut st);
        g.dispatched_at = Some(Time(self.dispatched_at.unwrap_or(self.now)));
        g.assignee = b.assignee.clone();
        let worker = b.assignee.clone().unwrap_or_default();
        let hooked = format!("bead {} hooked by {worker}", b.id);
        self.set(&mut st, condition::DISPATCHED, ConditionStatus::True, "Slung", hooked);
        if b.status == BeadStatus::InProgress {
            st.phase = Some(Phase::Running);
            st.message = Some(format!("{worker} is working on bead {}", b.id));
            self.set(
                &mut st,
                condition::RUNNING,
                ConditionStatus::True,
                "InProgress",
                format!("worker {worker}"),
            );
        } else {
            st.phase = Some(Phase::Dispatched);
            st.message = Some(format!(
                "bead {} hooked by {worker}, waiting for the agent to start",
                b.id
            ));
        }
        let event = self
            .dispatched_at
            .is_none()
            .then(|| Event::new(false, "Dispatched", format!("bead {} already hooked by {worker}", b.id)));
        Plan { event, ..self.plan(st) }
    }

    /// Hooked or in progress outside our rig: not dispatched again. Never given back to
    /// Kubernetes while a worker holds the bead, even once the claim is too old: Kubernetes would
    /// run the work a second time. It ends when the bead is closed (or the Automaton is deleted).
    fn held_elsewhere(&self, mut st: AutomatonStatus, b: &Bead) -> Plan {
        let holder = b.assignee.clone().unwrap_or_default();
        let message = format!(
            "bead {} is already {} by {holder} outside rig {:?}; not dispatching it again",
            b.id, b.status, self.rig
        );
        st.phase = Some(Phase::Claimed);
        st.message = Some(message.clone());
        self.set(
            &mut st,
            condition::DISPATCHED,
            ConditionStatus::False,
            "HookedElsewhere",
            &message,
        );
        self.plan(st)
    }

    /// Open: sling it to our rig, or give the claim back once it is too old (closing the bead if
    /// the controller created it).
    fn open(&self, mut st: AutomatonStatus, b: &Bead) -> Plan {
        if self.expired {
            let close = bead_state(self.a).created().then(|| Command::Close {
                bead: self.bead.clone(),
                reason: RELEASE_CLOSE_REASON.to_string(),
            });
            let why = format!(
                "Gas Town did not take the work within {}s",
                self.settings.claim_timeout.as_secs()
            );
            return release(self.a, st, self.now, &why, close);
        }
        let rig = &self.rig;
        st.phase = Some(Phase::Dispatched);
        st.message = Some(format!("bead {} slung to rig {rig}", b.id));
        let g = gastown_mut(&mut st);
        // The first dispatch: a re-sling (the bead was reopened) keeps it, so the
        // spec.timeoutSeconds deadline does not start again.
        g.dispatched_at = Some(Time(self.dispatched_at.unwrap_or(self.now)));
        g.bead_status = Some(BeadStatus::Hooked.as_str().to_string());
        self.set(
            &mut st,
            condition::DISPATCHED,
            ConditionStatus::True,
            "Slung",
            format!("gt sling {} {rig}", b.id),
        );
        Plan {
            command: Some(Command::Sling {
                bead: self.bead.clone(),
                rig: rig.clone(),
                merge: self.a.spec.merge_strategy,
                agent: self.a.spec.agent.as_ref().and_then(|ag| ag.name.clone()),
            }),
            event: Some(Event::new(
                false,
                "Dispatched",
                format!("bead {} slung to rig {rig}", b.id),
            )),
            // Look again soon: the sling's result (hooked, assignee) is read on the next sync.
            requeue: Some(Duration::from_secs(1).min(self.settings.sync_interval)),
            ..self.plan(st)
        }
    }

    /// Blocked, deferred, pinned or a site-defined status: report it and wait; give the claim
    /// back once it is too old, if it was never dispatched.
    fn waiting(&self, mut st: AutomatonStatus, b: &Bead, status: &BeadStatus) -> Plan {
        let message = format!("bead {} is {status} in Gas Town", b.id);
        st.message = Some(message.clone());
        st.phase = Some(st.phase.unwrap_or(Phase::Claimed));
        if self.dispatched_at.is_none() {
            self.set(
                &mut st,
                condition::DISPATCHED,
                ConditionStatus::False,
                "BeadNotOpen",
                &message,
            );
            if self.expired {
                return release(self.a, st, self.now, &message, None);
            }
        }
        self.plan(st)
    }
}

/// The plan from the bead as read right after a successful sling whose planned status is
/// `slung`, so that one status write records both. `None` when the read shows something else
/// than the dispatch (not hooked yet, closed, held elsewhere): then the status planned before
/// the sling stands and the next sync (soon) reads it again. A read that failed keeps the
/// dispatch, with Gas Town unreachable on its condition.
pub fn plan_after_sling(
    a: &Automaton,
    slung: &AutomatonStatus,
    bead: &BeadId,
    view: &GasTownView,
    now: Timestamp,
    settings: &Settings,
) -> Option<Plan> {
    let mut dispatched = a.clone();
    dispatched.status = Some(slung.clone());
    let plan = plan_sync(&dispatched, bead, view, now, settings);
    let followed = plan.command.is_none()
        && !plan.release_claim
        && plan.event.is_none()
        && matches!(plan.status.phase, Some(Phase::Dispatched | Phase::Running));
    followed.then_some(plan)
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

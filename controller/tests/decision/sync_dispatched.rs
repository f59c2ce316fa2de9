//! `plan_sync()` for a bead hooked or in progress, in our rig or elsewhere.

use gastown_controller::decision::Event;
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

/// (name, object, bead status, assignee, now, phase, dispatchedAt, adoption event)
type OurRigCase = (
    &'static str,
    Automaton,
    &'static str,
    &'static str,
    i64,
    Phase,
    i64,
    bool,
);

// A table: one row per case.
#[test]
fn sync_dispatched_in_our_rig() {
    let cases: Vec<OurRigCase> = vec![
        (
            "hooked after our sling",
            dispatched("Dispatched", 5, json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            5,
            false,
        ),
        (
            "hooked, adopting",
            recorded(json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            20,
            true,
        ),
        (
            "hooked, short assignee",
            recorded(json!({})),
            "hooked",
            "gastown/Toast",
            20,
            Phase::Dispatched,
            20,
            true,
        ),
        (
            "hooked, claim expired: adopted, not released",
            recorded(json!({})),
            "hooked",
            TOAST,
            5_000,
            Phase::Dispatched,
            5_000,
            true,
        ),
        (
            "in progress",
            dispatched("Dispatched", 5, json!({})),
            "in_progress",
            TOAST,
            20,
            Phase::Running,
            5,
            false,
        ),
        (
            "in progress, still Running",
            dispatched("Running", 5, json!({})),
            "in_progress",
            TOAST,
            900,
            Phase::Running,
            5,
            false,
        ),
        (
            "in progress, adopting",
            recorded(json!({})),
            "in_progress",
            TOAST,
            20,
            Phase::Running,
            20,
            true,
        ),
        (
            "in progress, claim expired: adopted, not released",
            recorded(json!({})),
            "in_progress",
            "gastown/Nux",
            5_000,
            Phase::Running,
            5_000,
            true,
        ),
        (
            "back to hooked from Running",
            dispatched("Running", 5, json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            5,
            false,
        ),
    ];
    for (name, a, status, assignee, now, want_phase, since, adopting) in &cases {
        let plan = sync(a, &view(status, Some(*assignee)), *now);
        assert_eq!(phase(&plan), Some(*want_phase), "{name}");
        assert_eq!(plan.command, None, "{name}");
        assert!(!plan.release_claim, "{name}");
        assert_eq!(plan.requeue, SYNC, "{name}");
        let g = gastown(&plan.status);
        assert_eq!(g.dispatched_at, time(*since), "{name}");
        assert_eq!(g.assignee.as_deref(), Some(*assignee), "{name}");
        assert_eq!(g.bead_status.as_deref(), Some(*status), "{name}");
        assert_eq!(g.last_sync_time, time(*now), "{name}");
        assert_cond(&plan.status, condition::DISPATCHED, ConditionStatus::True, "Slung");
        assert_eq!(
            cond(&plan.status, condition::DISPATCHED).message,
            format!("bead gt-abc hooked by {assignee}"),
            "{name}"
        );
        assert_cond(
            &plan.status,
            condition::GASTOWN_REACHABLE,
            ConditionStatus::True,
            "Reachable",
        );
        if *want_phase == Phase::Running {
            assert_eq!(
                message(&plan.status),
                format!("{assignee} is working on bead gt-abc"),
                "{name}"
            );
            assert_cond(&plan.status, condition::RUNNING, ConditionStatus::True, "InProgress");
            assert_eq!(
                cond(&plan.status, condition::RUNNING).message,
                format!("worker {assignee}"),
                "{name}"
            );
        } else {
            assert_eq!(
                message(&plan.status),
                format!("bead gt-abc hooked by {assignee}, waiting for the agent to start"),
                "{name}"
            );
        }
        if *adopting {
            assert_eq!(
                plan.event,
                Some(Event::new(
                    false,
                    "Dispatched",
                    format!("bead gt-abc already hooked by {assignee}")
                )),
                "{name}"
            );
        } else {
            assert_eq!(plan.event, None, "{name}");
        }
    }
}

/// (name, object, bead status, assignee, now, released)
type ElsewhereCase = (&'static str, Automaton, &'static str, Option<&'static str>, i64, bool);

// A table: one row per case.
#[test]
fn sync_dispatched_elsewhere_is_not_slung() {
    let cases: Vec<ElsewhereCase> = vec![
        (
            "hooked in another rig",
            recorded(json!({})),
            "hooked",
            Some(ELSEWHERE),
            20,
            false,
        ),
        (
            "in progress in another rig",
            recorded(json!({})),
            "in_progress",
            Some(ELSEWHERE),
            20,
            false,
        ),
        (
            "hooked without assignee",
            recorded(json!({})),
            "hooked",
            None,
            20,
            false,
        ),
        (
            "assignee of a rig with our rig's prefix",
            recorded(json!({})),
            "hooked",
            Some("gastown2/polecats/X"),
            20,
            false,
        ),
        // Item 7: a worker holds the bead; giving the claim back would run the work twice.
        (
            "hooked elsewhere, claim expired: kept",
            recorded(json!({})),
            "hooked",
            Some(ELSEWHERE),
            600,
            false,
        ),
        (
            "in progress elsewhere, claim expired: kept",
            recorded(json!({})),
            "in_progress",
            Some(ELSEWHERE),
            5_000,
            false,
        ),
        (
            "elsewhere after our dispatch: never released",
            dispatched("Running", 5, json!({})),
            "hooked",
            Some(ELSEWHERE),
            5_000,
            false,
        ),
    ];
    for (name, a, status, assignee, now, released) in &cases {
        let plan = sync(a, &view(status, *assignee), *now);
        assert_eq!(plan.command, None, "{name}");
        assert_eq!(plan.release_claim, *released, "{name}");
        assert_cond(
            &plan.status,
            condition::DISPATCHED,
            ConditionStatus::False,
            "HookedElsewhere",
        );
        let detail = &cond(&plan.status, condition::DISPATCHED).message;
        assert!(detail.contains(assignee.unwrap_or_default()), "{name}: {detail}");
        assert!(detail.contains(&format!("already {status} by")), "{name}: {detail}");
        assert!(detail.contains("outside rig \"gastown\""), "{name}: {detail}");
        assert_eq!(gastown(&plan.status).bead_status.as_deref(), Some(*status), "{name}");
        if *released {
            assert_released(&plan);
            assert!(message(&plan.status).ends_with("not dispatching it again"), "{name}");
        } else {
            assert_eq!(phase(&plan), Some(Phase::Claimed), "{name}");
            assert_eq!(message(&plan.status), detail, "{name}");
            assert_eq!(plan.event, None, "{name}");
            assert_eq!(plan.requeue, SYNC, "{name}");
        }
    }
}

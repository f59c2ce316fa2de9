//! `plan_deletion()`: what deletion does in Gas Town.

use gastown_controller::decision::{Command, DeletionPlan, GasTownView, plan_deletion};
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus};
use serde_json::{Value, json};

use crate::fixtures::*;

/// Recorded (created by us), deleted at T0 + 1000; then `patch`.
fn deleted(patch: Value) -> Automaton {
    recorded_with(&[json!({"metadata": {"deletionTimestamp": rfc(1_000)}}), patch])
}

fn unsling(holder: Option<&str>) -> Command {
    Command::Unsling {
        bead: gt_abc(),
        holder: holder.map(str::to_string),
    }
}

fn close() -> Command {
    Command::Close {
        bead: gt_abc(),
        reason: "cancelled: Automaton team-a/fix-login was deleted".to_string(),
    }
}

/// (name, object, bead known, view, now, commands, give_up)
type DeletionCase = (
    &'static str,
    Automaton,
    bool,
    Option<GasTownView>,
    i64,
    Vec<Command>,
    bool,
);

// A table: one row per case.
#[test]
fn plan_deletion_table() {
    let not_created = json!({"status": {"gastown": {"beadCreated": false}}});
    let created_unknown = json!({"status": {"gastown": {"beadCreated": null}}});
    let cases: Vec<DeletionCase> = vec![
        (
            "no bead",
            deleted(json!({"status": null})),
            false,
            None,
            1_010,
            vec![],
            false,
        ),
        (
            "no bead, far past the release timeout",
            deleted(json!({"status": null})),
            false,
            None,
            99_000,
            vec![],
            false,
        ),
        (
            "bead but nothing read",
            deleted(json!({})),
            true,
            None,
            1_010,
            vec![],
            false,
        ),
        (
            "hooked, created",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST)), close()],
            false,
        ),
        (
            "in progress, created",
            deleted(json!({})),
            true,
            Some(view("in_progress", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST)), close()],
            false,
        ),
        (
            "hooked without assignee",
            deleted(json!({})),
            true,
            Some(view("hooked", None)),
            1_010,
            vec![unsling(None), close()],
            false,
        ),
        (
            "hooked in another rig, created",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(ELSEWHERE))),
            1_010,
            vec![unsling(Some(ELSEWHERE)), close()],
            false,
        ),
        (
            "hooked, not created",
            deleted(not_created.clone()),
            true,
            Some(view("hooked", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST))],
            false,
        ),
        (
            "in progress, beadCreated unknown",
            deleted(created_unknown.clone()),
            true,
            Some(view("in_progress", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST))],
            false,
        ),
        (
            "open, created",
            deleted(json!({})),
            true,
            Some(view("open", None)),
            1_010,
            vec![close()],
            false,
        ),
        (
            "blocked, created",
            deleted(json!({})),
            true,
            Some(view("blocked", None)),
            1_010,
            vec![close()],
            false,
        ),
        (
            "open, not created",
            deleted(not_created.clone()),
            true,
            Some(view("open", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "closed, created",
            deleted(json!({})),
            true,
            Some(view("closed", Some(TOAST))),
            1_010,
            vec![],
            false,
        ),
        (
            "closed, not created",
            deleted(not_created.clone()),
            true,
            Some(view("closed", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "tombstone, created",
            deleted(json!({})),
            true,
            Some(view("tombstone", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "missing",
            deleted(json!({})),
            true,
            Some(GasTownView::Missing),
            1_010,
            vec![],
            false,
        ),
        (
            "missing, far past the release timeout",
            deleted(json!({})),
            true,
            Some(GasTownView::Missing),
            99_000,
            vec![],
            false,
        ),
        (
            "unreachable, just deleted",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_000,
            vec![],
            false,
        ),
        (
            "unreachable, within the release timeout",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_599,
            vec![],
            false,
        ),
        (
            "unreachable, at the release timeout",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_600,
            vec![],
            true,
        ),
        (
            "unreachable, long after",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            50_000,
            vec![],
            true,
        ),
        (
            "hooked past the release timeout: release and give up on failure",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(TOAST))),
            1_600,
            vec![unsling(Some(TOAST)), close()],
            true,
        ),
        (
            "no deletionTimestamp: never gives up",
            recorded(json!({})),
            true,
            Some(unreachable_view()),
            99_000,
            vec![],
            false,
        ),
    ];
    for (name, a, known, v, now, commands, give_up) in cases {
        let id = gt_abc();
        let plan = plan_deletion(&a, known.then_some(&id), v.as_ref(), at(now), &settings());
        assert_eq!(plan, DeletionPlan { commands, give_up }, "{name}");
    }
}

#[test]
fn plan_deletion_close_reason_names_the_object() {
    let a = deleted(json!({"metadata": {"namespace": "ns2", "name": "other"}}));
    let plan = plan_deletion(&a, Some(&gt_abc()), Some(&view("open", None)), at(1_001), &settings());
    assert_eq!(
        plan.commands,
        vec![Command::Close {
            bead: gt_abc(),
            reason: "cancelled: Automaton ns2/other was deleted".to_string()
        }]
    );
}

#[test]
fn plan_deletion_leaves_work_it_never_dispatched() {
    // Adopted bead, already hooked in another rig: plan_sync never slung it (HookedElsewhere).
    let a = deleted(json!({"status": {"gastown": {"beadCreated": false}}}));
    let v = view("in_progress", Some(ELSEWHERE));
    let synced = sync(
        &recorded(json!({"status": {"gastown": {"beadCreated": false}}})),
        &v,
        10,
    );
    assert_cond(
        &synced.status,
        condition::DISPATCHED,
        ConditionStatus::False,
        "HookedElsewhere",
    );
    assert_eq!(gastown(&synced.status).dispatched_at, None);
    let plan = plan_deletion(&a, Some(&gt_abc()), Some(&v), at(1_010), &settings());
    assert_eq!(
        plan,
        DeletionPlan {
            commands: vec![],
            give_up: false
        }
    );
}

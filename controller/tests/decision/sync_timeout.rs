//! `plan_sync()` past `spec.timeoutSeconds`, and the release of the timed-out bead.

use gastown_controller::decision::Event;
use gastown_controller::decision::{self, Command, GasTownView, Stage, close_reason_is_failure, stage};
use gastown_controller::gastown::Bead;
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

// A table: one row per case.
#[test]
fn sync_timeout_table() {
    // (name, object, view, now, timed out)
    let running = |limit: i64| dispatched("Running", 100, json!({"spec": {"timeoutSeconds": limit}}));
    let cases: Vec<(&str, Automaton, GasTownView, i64, bool)> = vec![
        (
            "in progress, exactly at the limit",
            running(3600),
            view("in_progress", Some(TOAST)),
            3_700,
            true,
        ),
        (
            "in progress, long past",
            running(3600),
            view("in_progress", Some(TOAST)),
            90_000,
            true,
        ),
        (
            "hooked past the limit",
            dispatched("Dispatched", 100, json!({"spec": {"timeoutSeconds": 60}})),
            view("hooked", Some(TOAST)),
            160,
            true,
        ),
        // Item 6: the deadline holds in every non-terminal state.
        ("blocked past the limit", running(60), view("blocked", None), 160, true),
        (
            "deferred past the limit",
            running(60),
            view("deferred", None),
            160,
            true,
        ),
        (
            "pinned past the limit",
            running(60),
            view("pinned", Some(TOAST)),
            160,
            true,
        ),
        (
            "hooked in another rig past the limit",
            running(60),
            view("hooked", Some(ELSEWHERE)),
            160,
            true,
        ),
        (
            "open again (would be re-slung) past the limit",
            running(60),
            view("open", None),
            160,
            true,
        ),
        (
            "Gas Town unreachable past the limit",
            running(60),
            unreachable_view(),
            160,
            true,
        ),
        (
            "one second before",
            running(3600),
            view("in_progress", Some(TOAST)),
            3_699,
            false,
        ),
        (
            "blocked one second before",
            running(60),
            view("blocked", None),
            159,
            false,
        ),
        (
            "closed past the limit: the result stands",
            running(60),
            view("closed", Some(TOAST)),
            160,
            false,
        ),
        (
            "no timeout",
            dispatched("Running", 100, json!({})),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "timeoutSeconds 0 means none",
            running(0),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "negative timeoutSeconds is ignored",
            running(-5),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "adopting: the clock starts now",
            recorded(json!({"spec": {"timeoutSeconds": 60}})),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
    ];
    for (name, a, v, now, timed_out) in &cases {
        let plan = sync(a, v, *now);
        if *timed_out {
            let limit = a.spec.timeout_seconds.unwrap();
            let want_message =
                format!("work exceeded spec.timeoutSeconds ({limit}s) after dispatch; released in Gas Town");
            // Item 5: Failed is recorded first; nothing runs in Gas Town before that write.
            assert_eq!(plan.command, None, "{name}");
            assert_eq!(phase(&plan), Some(Phase::Failed), "{name}");
            assert_eq!(message(&plan.status), want_message, "{name}");
            assert_cond(&plan.status, condition::COMPLETED, ConditionStatus::False, "Timeout");
            assert_eq!(cond(&plan.status, condition::COMPLETED).message, want_message, "{name}");
            assert_cond(&plan.status, condition::RUNNING, ConditionStatus::False, "Timeout");
            assert_cond(
                &plan.status,
                condition::DISPATCHED,
                ConditionStatus::Unknown,
                decision::TIMEOUT_RELEASE_PENDING_REASON,
            );
            assert_eq!(plan.event, Some(Event::new(true, "Timeout", want_message)), "{name}");
            assert_eq!(plan.requeue, None, "{name}");
            assert!(!plan.release_claim, "{name}");
            assert_eq!(
                gastown(&plan.status).dispatched_at,
                a.status.as_ref().unwrap().gastown.as_ref().unwrap().dispatched_at
            );
            // The release follows from the recorded status, and nothing there slings.
            let after = with_status(a, &plan.status);
            assert_eq!(stage(&after, "gastown-local"), Stage::FinishTimeout(gt_abc()), "{name}");
        } else {
            assert!(phase(&plan) != Some(Phase::Failed), "{name}");
            assert!(
                cond_opt(&plan.status, condition::COMPLETED).is_none_or(|c| c.reason != "Timeout"),
                "{name}"
            );
        }
    }
}

/// Item 9: with `mergeStrategy: local` the work completes like any other: `gt done` closes the
/// hooked bead itself (gastown `internal/cmd/done.go`: the `local` strategy skips push and merge
/// queue, `goto notifyWitness`, then `updateAgentStateOnDone` runs `bd.Close(hookedBeadID)`
/// without a reason, which `bd close` records as `Closed`; beads `cmd/bd/close.go`). So a
/// closed bead ends Succeeded, before or after the spec's deadline.
#[test]
fn local_merge_completes_when_gt_done_closes_the_bead() {
    let a = dispatched(
        "Running",
        100,
        json!({"spec": {"mergeStrategy": "local", "timeoutSeconds": 600}}),
    );
    for reason in [Some("Closed"), Some(""), None] {
        let closed = GasTownView::Bead(bead(
            json!({"id": BEAD, "status": "closed", "assignee": TOAST, "close_reason": reason}),
        ));
        for now in [200, 699, 700, 5_000] {
            let plan = sync(&a, &closed, now);
            assert_eq!(phase(&plan), Some(Phase::Succeeded), "{reason:?} at {now}");
            assert_eq!(plan.command, None);
        }
    }
}

/// Item 5: should the status write after a timeout fail (conflict, crash, lost leadership), the
/// next sync sees the same bead past the same deadline, even once it was unslung (open): it
/// decides the timeout again and never slings.
#[test]
fn a_timeout_whose_status_write_failed_is_decided_again_not_slung() {
    let a = dispatched("Running", 100, json!({"spec": {"timeoutSeconds": 60}}));
    for v in [
        view("in_progress", Some(TOAST)),
        view("open", None),
        view("hooked", Some(TOAST)),
    ] {
        for now in [160, 161, 10_000] {
            let plan = sync(&a, &v, now);
            assert_eq!(plan.command, None, "{v:?} at {now}");
            assert_eq!(phase(&plan), Some(Phase::Failed), "{v:?} at {now}");
        }
    }
}

/// Item 6: a re-sling keeps the first dispatch time, so the deadline does not move.
#[test]
fn re_slings_keep_the_first_dispatch_time() {
    let a = dispatched("Running", 100, json!({"spec": {"timeoutSeconds": 600}}));
    let p1 = sync(&a, &view("open", None), 300);
    assert!(matches!(p1.command, Some(Command::Sling { .. })));
    assert_eq!(gastown(&p1.status).dispatched_at, time(100));
    let a = with_status(&a, &p1.status);
    let p2 = sync(&a, &view("hooked", Some(TOAST)), 400);
    assert_eq!(gastown(&p2.status).dispatched_at, time(100));
    let a = with_status(&a, &p2.status);
    assert_eq!(
        phase(&sync(&a, &view("in_progress", Some(TOAST)), 699)),
        Some(Phase::Running)
    );
    assert_eq!(
        phase(&sync(&a, &view("in_progress", Some(TOAST)), 700)),
        Some(Phase::Failed)
    );
}

// A table: one row per case.
#[test]
fn timeout_release_table() {
    let a = |created: bool| {
        dispatched(
            "Failed",
            0,
            json!({"metadata": {"name": "fix-login", "namespace": "team-a"}, "spec": {"timeoutSeconds": 60},
                   "status": {"gastown": {"beadCreated": created}}}),
        )
    };
    let close = Command::Close {
        bead: gt_abc(),
        reason: "timeout: the work exceeded spec.timeoutSeconds (60s) of Automaton team-a/fix-login".to_string(),
    };
    assert!(close_reason_is_failure(&decision::timeout_close_reason(&a(true))));
    let unsling = |holder: &str| Command::Unsling {
        bead: gt_abc(),
        holder: Some(holder.to_string()),
    };
    let b = |status: &str, assignee: Option<&str>| bead(json!({"id": BEAD, "status": status, "assignee": assignee}));
    // (name, created, bead, commands)
    let cases: Vec<(&str, bool, Bead, Vec<Command>)> = vec![
        (
            "ours, running",
            true,
            b("in_progress", Some(TOAST)),
            vec![unsling(TOAST), close.clone()],
        ),
        (
            "ours, hooked",
            true,
            b("hooked", Some(TOAST)),
            vec![unsling(TOAST), close.clone()],
        ),
        (
            "ours, open: closed, not left open",
            true,
            b("open", None),
            vec![close.clone()],
        ),
        ("ours, blocked", true, b("blocked", None), vec![close.clone()]),
        (
            "ours, hooked elsewhere",
            true,
            b("hooked", Some(ELSEWHERE)),
            vec![unsling(ELSEWHERE), close.clone()],
        ),
        ("ours, closed meanwhile", true, b("closed", Some(TOAST)), vec![]),
        ("ours, tombstone", true, b("tombstone", None), vec![]),
        (
            "adopted, running in our rig",
            false,
            b("in_progress", Some(TOAST)),
            vec![unsling(TOAST)],
        ),
        ("adopted, open", false, b("open", None), vec![]),
        (
            "adopted, another rig's worker",
            false,
            b("hooked", Some(ELSEWHERE)),
            vec![],
        ),
    ];
    for (name, created, bead, want) in cases {
        assert_eq!(
            decision::plan_timeout_release(&a(created), &gt_abc(), &bead),
            want,
            "{name}"
        );
    }
    // Once released: still Failed, Dispatched=False, nothing pending.
    let pending = with_status(
        &a(true),
        &sync(
            &dispatched("Running", 0, json!({"spec": {"timeoutSeconds": 60}})),
            &view("in_progress", Some(TOAST)),
            60,
        )
        .status,
    );
    assert!(decision::timeout_release_pending(&pending));
    let done = with_status(&pending, &decision::timeout_released(&pending, at(70), &settings()));
    assert!(!decision::timeout_release_pending(&done));
    assert_eq!(done.phase(), Some(Phase::Failed));
    assert_cond(
        done.status.as_ref().unwrap(),
        condition::DISPATCHED,
        ConditionStatus::False,
        decision::TIMEOUT_RELEASED_REASON,
    );
    assert_eq!(stage(&done, "gastown-local"), Stage::Terminal);
}

//! Conditions and generations across plans.

use gastown_controller::decision::{Command, GasTownView, Stage, stage, status_needs_write};
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::fixtures::*;

#[test]
fn conditions_keep_last_transition_time_while_status_holds() {
    // (first view, second view): the same state read twice, 100 s apart.
    let cases: Vec<(&str, Automaton, GasTownView)> = vec![
        ("hooked", recorded(json!({})), view("hooked", Some(TOAST))),
        ("in progress", recorded(json!({})), view("in_progress", Some(TOAST))),
        ("elsewhere", recorded(json!({})), view("hooked", Some(ELSEWHERE))),
        ("blocked", recorded(json!({})), view("blocked", None)),
        ("unreachable", recorded(json!({})), unreachable_view()),
        (
            "closed",
            dispatched("Running", 5, json!({})),
            view("closed", Some(TOAST)),
        ),
        ("missing", dispatched("Running", 5, json!({})), GasTownView::Missing),
    ];
    for (name, a, v) in &cases {
        let first = sync(a, v, 10);
        assert!(!first.status.conditions.is_empty(), "{name}");
        let second = sync(&with_status(a, &first.status), v, 110);
        assert_eq!(second.status.conditions.len(), first.status.conditions.len(), "{name}");
        for c in &second.status.conditions {
            assert_eq!(c.last_transition_time, Time(at(10)), "{name}: {} moved", c.type_);
            let before = cond(&first.status, &c.type_);
            assert_eq!(
                (c.status, &c.reason, &c.message),
                (before.status, &before.reason, &before.message),
                "{name}"
            );
        }
        assert_eq!(second.status.phase, first.status.phase, "{name}");
    }
}

#[test]
fn lifecycle_moves_transition_times_only_on_change() {
    let s = settings();
    let a = recorded(json!({}));
    // 10: open → slung.
    let p1 = sync(&a, &view("open", None), 10);
    assert!(matches!(p1.command, Some(Command::Sling { .. })));
    let a = with_status(&a, &p1.status);
    // 12: hooked by our worker: dispatchedAt and Dispatched keep 10, no new event.
    let p2 = sync(&a, &view("hooked", Some(TOAST)), 12);
    assert_eq!(p2.event, None);
    assert_eq!(gastown(&p2.status).dispatched_at, time(10));
    assert_eq!(
        cond(&p2.status, condition::DISPATCHED).last_transition_time,
        Time(at(10))
    );
    assert!(
        status_needs_write(a.status.as_ref(), &p2.status, &s),
        "message and assignee changed"
    );
    let a = with_status(&a, &p2.status);
    // 20: in progress: Running appears at 20.
    let p3 = sync(&a, &view("in_progress", Some(TOAST)), 20);
    assert_eq!(phase(&p3), Some(Phase::Running));
    assert_eq!(cond(&p3.status, condition::RUNNING).last_transition_time, Time(at(20)));
    assert_eq!(
        cond(&p3.status, condition::DISPATCHED).last_transition_time,
        Time(at(10))
    );
    let a = with_status(&a, &p3.status);
    // 35: nothing changed but lastSyncTime: no write.
    let p4 = sync(&a, &view("in_progress", Some(TOAST)), 35);
    assert!(!status_needs_write(a.status.as_ref(), &p4.status, &s));
    // 500: same, but past the heartbeat since the last write (20): write.
    let p5 = sync(&a, &view("in_progress", Some(TOAST)), 500);
    assert!(status_needs_write(a.status.as_ref(), &p5.status, &s));
    let a = with_status(&a, &p5.status);
    // 600: Gas Town unreachable: Reachable flips at 600, the rest holds.
    let p6 = sync(&a, &unreachable_view(), 600);
    assert_eq!(phase(&p6), Some(Phase::Running));
    assert!(
        !p6.release_claim,
        "dispatched work is never released by the claim timeout"
    );
    assert_eq!(
        cond(&p6.status, condition::GASTOWN_REACHABLE).last_transition_time,
        Time(at(600))
    );
    assert_eq!(cond(&p6.status, condition::RUNNING).last_transition_time, Time(at(20)));
    let a = with_status(&a, &p6.status);
    // 700: closed as merged: Running flips to False at 700, Reachable back to True at 700.
    let p7 = sync(&a, &view("closed", Some(TOAST)), 700);
    assert_eq!(phase(&p7), Some(Phase::Succeeded));
    assert_cond(&p7.status, condition::RUNNING, ConditionStatus::False, "Completed");
    assert_eq!(cond(&p7.status, condition::RUNNING).last_transition_time, Time(at(700)));
    assert_eq!(
        cond(&p7.status, condition::GASTOWN_REACHABLE).last_transition_time,
        Time(at(700))
    );
    assert_eq!(
        cond(&p7.status, condition::DISPATCHED).last_transition_time,
        Time(at(10))
    );
    assert_eq!(
        cond(&p7.status, condition::COMPLETED).last_transition_time,
        Time(at(700))
    );
    // And the object is terminal now.
    assert_eq!(stage(&with_status(&a, &p7.status), "gastown-local"), Stage::Terminal);
}

#[test]
fn observed_generation_is_the_object_generation_in_every_plan() {
    let views: Vec<GasTownView> = vec![
        unreachable_view(),
        GasTownView::Missing,
        view("tombstone", None),
        view("open", None),
        view("hooked", Some(TOAST)),
        view("in_progress", Some(TOAST)),
        view("hooked", Some(ELSEWHERE)),
        view("in_progress", Some(ELSEWHERE)),
        view("closed", Some(TOAST)),
        GasTownView::Bead(bead(json!({"id": BEAD, "status": "closed", "close_reason": "failed"}))),
        view("blocked", None),
        view("deferred", None),
        view("pinned", None),
    ];
    let objects = [
        recorded(json!({"status": {"observedGeneration": 2}})),
        recorded(json!({"status": {"observedGeneration": null}})),
        dispatched(
            "Running",
            5,
            json!({"status": {"observedGeneration": 3}, "spec": {"timeoutSeconds": 60}}),
        ),
    ];
    for a in &objects {
        for v in &views {
            // 20: nothing expired; 700: claim and timeout expired.
            for now in [20, 700] {
                let plan = sync(a, v, now);
                assert_eq!(plan.status.observed_generation, Some(GEN), "{v:?} at {now}");
                for c in &plan.status.conditions {
                    assert_eq!(c.observed_generation, Some(GEN), "{v:?} at {now}: {}", c.type_);
                }
            }
        }
    }
}

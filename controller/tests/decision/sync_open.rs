//! `plan_sync()` for an open bead: sling it, or give the claim back once it is too old.

use std::time::Duration;

use gastown_controller::decision::Event;
use gastown_controller::decision::{self, Command, GasTownView, Settings, plan_sync};
use gastown_crds::contract::condition;
use gastown_crds::{ConditionStatus, MergeStrategy, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::fixtures::*;

#[test]
fn sync_open_bead_is_slung_with_the_spec() {
    // (spec patch, merge, agent)
    let cases = [
        (json!({}), None, None),
        (
            json!({"mergeStrategy": "mr", "agent": {"name": "claude"}}),
            Some(MergeStrategy::Mr),
            Some("claude"),
        ),
        (
            json!({"mergeStrategy": "direct", "agent": {"model": "opus"}}),
            Some(MergeStrategy::Direct),
            None,
        ),
        (json!({"mergeStrategy": "local"}), Some(MergeStrategy::Local), None),
        (
            json!({"rig": "other_rig", "agent": {"name": "codex", "model": "m"}}),
            None,
            Some("codex"),
        ),
    ];
    for (spec, merge_strategy, agent) in cases {
        let a = recorded(json!({"spec": spec}));
        let rig = a.spec.rig.clone().unwrap();
        let plan = sync(&a, &view("open", None), 30);
        assert_eq!(
            plan.command,
            Some(Command::Sling {
                bead: gt_abc(),
                rig: rig.clone(),
                merge: merge_strategy,
                agent: agent.map(str::to_string)
            }),
            "{spec}"
        );
        assert_eq!(phase(&plan), Some(Phase::Dispatched));
        assert_eq!(message(&plan.status), format!("bead gt-abc slung to rig {rig}"));
        let g = gastown(&plan.status);
        assert_eq!(g.dispatched_at, time(30));
        assert_eq!(g.bead_status.as_deref(), Some("hooked"));
        assert_eq!(g.last_sync_time, time(30));
        assert_eq!(g.rig.as_deref(), Some(rig.as_str()));
        assert_cond(&plan.status, condition::DISPATCHED, ConditionStatus::True, "Slung");
        assert_eq!(
            cond(&plan.status, condition::DISPATCHED).message,
            format!("gt sling gt-abc {rig}")
        );
        assert_eq!(
            cond(&plan.status, condition::DISPATCHED).last_transition_time,
            Time(at(30))
        );
        assert_cond(
            &plan.status,
            condition::GASTOWN_REACHABLE,
            ConditionStatus::True,
            "Reachable",
        );
        assert_eq!(
            plan.event,
            Some(Event::new(
                false,
                "Dispatched",
                format!("bead gt-abc slung to rig {rig}")
            ))
        );
        assert!(!plan.release_claim);
        assert_eq!(plan.requeue, Some(Duration::from_secs(1)));
    }
}

#[test]
fn sync_open_bead_requeue_is_at_most_the_sync_interval() {
    let s = Settings {
        sync_interval: Duration::from_millis(200),
        ..settings()
    };
    let plan = plan_sync(&recorded(json!({})), &gt_abc(), &view("open", None), at(30), &s);
    assert_eq!(plan.requeue, Some(Duration::from_millis(200)));
}

#[test]
fn sync_open_bead_with_expired_claim_is_released() {
    // (name, status patch, close command expected)
    let cases = [
        ("created by us", json!({}), true),
        ("adopted", json!({"status": {"gastown": {"beadCreated": false}}}), false),
        (
            "beadCreated unknown",
            json!({"status": {"gastown": {"beadCreated": null}}}),
            false,
        ),
    ];
    for (name, patch, close) in cases {
        for now in [600, 9_999] {
            let plan = sync(&recorded(patch.clone()), &view("open", None), now);
            assert_released(&plan);
            let want = close.then(|| Command::Close {
                bead: gt_abc(),
                reason: "claim released: Gas Town did not take the work in time".to_string(),
            });
            assert_eq!(plan.command, want, "{name}");
            assert!(
                message(&plan.status).contains("did not take the work within 600s"),
                "{name}"
            );
            assert_eq!(gastown(&plan.status).dispatched_at, None, "{name}");
            assert_eq!(gastown(&plan.status).bead_status.as_deref(), Some("open"), "{name}");
            assert!(cond_opt(&plan.status, condition::DISPATCHED).is_none(), "{name}");
        }
    }
    // One second earlier it is still slung.
    let plan = sync(&recorded(json!({})), &view("open", None), 599);
    assert!(matches!(plan.command, Some(Command::Sling { .. })));
    assert!(!plan.release_claim);
}

#[test]
fn sync_open_bead_after_dispatch_is_slung_again() {
    // The bead went back to open (unslung in Gas Town) long after the claim: slung again;
    // dispatchedAt keeps the first dispatch (the spec.timeoutSeconds clock does not restart);
    // the claim timeout does not apply to dispatched work.
    let a = dispatched("Running", 5, json!({}));
    let plan = sync(&a, &view("open", None), 5_000);
    assert_eq!(
        plan.command,
        Some(Command::Sling {
            bead: gt_abc(),
            rig: "gastown".to_string(),
            merge: None,
            agent: None
        })
    );
    assert!(!plan.release_claim);
    assert_eq!(phase(&plan), Some(Phase::Dispatched));
    assert_eq!(gastown(&plan.status).dispatched_at, time(5));
}

#[test]
fn the_read_after_a_sling_is_taken_when_it_shows_the_dispatch() {
    let a = recorded(json!({}));
    let slung = sync(&a, &view("open", None), 10);
    assert!(matches!(slung.command, Some(Command::Sling { .. })));
    let after = |v: GasTownView| decision::plan_after_sling(&a, &slung.status, &gt_abc(), &v, at(11), &settings());
    let hooked = after(view("hooked", Some(TOAST))).expect("hooked by our rig's worker");
    assert_eq!(phase(&hooked), Some(Phase::Dispatched));
    assert_eq!(hooked.event, None, "the sling's own event stands; no adoption event");
    assert_eq!(gastown(&hooked.status).assignee.as_deref(), Some(TOAST));
    let running = after(view("in_progress", Some(TOAST))).expect("in progress in our rig");
    assert_eq!(phase(&running), Some(Phase::Running));
    // A read that fails still shows the dispatch recorded before it (phase Dispatched), with
    // Gas Town unreachable on the condition.
    let unread = after(unreachable_view()).expect("the slung status stands, Gas Town unreachable");
    assert_eq!(phase(&unread), Some(Phase::Dispatched));
    assert_cond(
        &unread.status,
        condition::GASTOWN_REACHABLE,
        ConditionStatus::False,
        "Transport",
    );
    assert_eq!(
        after(view("open", None)),
        None,
        "not hooked yet: it would be slung again"
    );
    assert_eq!(after(view("hooked", Some(ELSEWHERE))), None, "held elsewhere");
    assert_eq!(after(view("closed", None)), None, "closed: an event to record");
}

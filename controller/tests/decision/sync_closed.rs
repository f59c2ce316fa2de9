//! `plan_sync()` for a closed bead: its close reason decides the phase.

use gastown_controller::decision::Event;
use gastown_controller::decision::{FAILURE_CLOSE_WORDS, GasTownView, close_reason_is_failure};
use gastown_crds::contract::condition;
use gastown_crds::{ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

#[test]
fn sync_closed_bead_table() {
    // (close_reason, failed)
    let cases: [(Option<&str>, bool); 12] = [
        (Some("merged"), false),
        (Some("done"), false),
        (Some(""), false),
        (None, false),
        (Some("fixed the failing test"), false),
        (Some("failed: x"), true),
        (Some("Abandoned"), true),
        (Some("cancelled by user"), true),
        (Some("won't fix"), true),
        (Some("timeout"), true),
        (Some("ERROR: build broke"), true),
        (Some("rejected by reviewer"), true),
    ];
    for (reason, failed) in cases {
        for assignee in [Some(TOAST), None] {
            let a = dispatched("Running", 5, json!({"status": {"gastown": {"assignee": null}}}));
            let b = bead(json!({"id": BEAD, "status": "closed", "assignee": assignee, "close_reason": reason}));
            let plan = sync(&a, &GasTownView::Bead(b), 900);
            let name = format!("{reason:?} / {assignee:?}");
            let want_message = match reason {
                None | Some("") => "bead gt-abc closed".to_string(),
                Some(r) => format!("bead gt-abc closed: {r}"),
            };
            assert_eq!(
                phase(&plan),
                Some(if failed { Phase::Failed } else { Phase::Succeeded }),
                "{name}"
            );
            assert_eq!(message(&plan.status), want_message, "{name}");
            let (want_status, want_reason) = if failed {
                (ConditionStatus::False, "Failed")
            } else {
                (ConditionStatus::True, "Succeeded")
            };
            assert_cond(&plan.status, condition::COMPLETED, want_status, want_reason);
            assert_eq!(cond(&plan.status, condition::COMPLETED).message, want_message, "{name}");
            assert_cond(&plan.status, condition::RUNNING, ConditionStatus::False, "Completed");
            assert_eq!(
                plan.event,
                Some(Event::new(failed, want_reason, want_message.clone())),
                "{name}"
            );
            assert_eq!(plan.command, None, "{name}");
            assert!(!plan.release_claim, "{name}");
            assert_eq!(plan.requeue, None, "{name}");
            let g = gastown(&plan.status);
            assert_eq!(g.assignee.as_deref(), assignee, "{name}");
            assert_eq!(g.bead_status.as_deref(), Some("closed"), "{name}");
            assert_eq!(g.dispatched_at, time(5), "{name}");
        }
    }
}

#[test]
fn sync_closed_bead_keeps_a_recorded_assignee() {
    let a = dispatched("Running", 5, json!({}));
    let plan = sync(&a, &view("closed", None), 900);
    assert_eq!(gastown(&plan.status).assignee.as_deref(), Some(TOAST));
}

#[test]
fn sync_closed_bead_with_expired_claim_still_completes() {
    let plan = sync(&recorded(json!({})), &view("closed", None), 5_000);
    assert_eq!(phase(&plan), Some(Phase::Succeeded));
    assert!(!plan.release_claim);
}

#[test]
fn close_reason_is_failure_table() {
    let failures = [
        "fail",
        "failed: x",
        "Failed.",
        "FAILURE; see log",
        "error(build)",
        "Error",
        "abandoned",
        "Abandoned",
        "abandon ship",
        "cancelled by user",
        "Canceled",
        "rejected[1]",
        "wontfix",
        "won't fix",
        "WON'T",
        "timeout",
        "  timeout after 1h  ",
        "fail-fast tripped",
        "failed,retry later",
        "error\tin step 2",
    ];
    for reason in failures {
        assert!(close_reason_is_failure(reason), "{reason:?} should be a failure");
    }
    for word in FAILURE_CLOSE_WORDS {
        assert!(close_reason_is_failure(word), "{word:?}");
        assert!(close_reason_is_failure(&word.to_uppercase()), "{word:?} upper case");
        assert!(
            close_reason_is_failure(&format!("{word}: because")),
            "{word:?}: because"
        );
    }
    let successes = [
        "",
        "   ",
        "merged",
        "done",
        "Done: all green",
        "fixed the failing test",
        "not failed",
        "succeeded after 1 failure",
        "failing",
        "errors fixed",
        "timed out",
        "cancel",
        "wont fix",
        "completed; no error",
    ];
    for reason in successes {
        assert!(!close_reason_is_failure(reason), "{reason:?} should not be a failure");
    }
}

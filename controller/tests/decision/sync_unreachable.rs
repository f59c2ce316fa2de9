//! `plan_sync()` while Gas Town cannot be read.

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

// A table: one row per case.
#[test]
fn sync_unreachable() {
    // (name, object, now, phase, released)
    let cases: Vec<(&str, Automaton, i64, Phase, bool)> = vec![
        ("fresh claim", recorded(json!({})), 10, Phase::Claimed, false),
        (
            "no phase yet",
            recorded(json!({"status": {"phase": null}})),
            10,
            Phase::Claimed,
            false,
        ),
        (
            "claim just below the timeout",
            recorded(json!({})),
            599,
            Phase::Claimed,
            false,
        ),
        (
            "Running keeps its phase",
            dispatched("Running", 5, json!({})),
            30,
            Phase::Running,
            false,
        ),
        (
            "Dispatched keeps its phase",
            dispatched("Dispatched", 5, json!({})),
            30,
            Phase::Dispatched,
            false,
        ),
        (
            "old claim but dispatched: never released",
            dispatched("Running", 5, json!({})),
            100_000,
            Phase::Running,
            false,
        ),
        // Item 7: an unrecorded `gt sling` may have hooked the bead; the claim is kept until
        // Gas Town can be read.
        (
            "claim expired, no dispatch recorded: kept",
            recorded(json!({})),
            600,
            Phase::Claimed,
            false,
        ),
        (
            "claim long expired, no dispatch recorded: kept",
            recorded(json!({})),
            5_000,
            Phase::Claimed,
            false,
        ),
    ];
    for (name, a, now, want_phase, released) in &cases {
        let plan = sync(a, &unreachable_view(), *now);
        assert_eq!(phase(&plan), Some(*want_phase), "{name}");
        assert_eq!(plan.command, None, "{name}");
        assert_eq!(plan.release_claim, *released, "{name}");
        assert_cond(
            &plan.status,
            condition::GASTOWN_REACHABLE,
            ConditionStatus::False,
            "Transport",
        );
        assert_eq!(
            cond(&plan.status, condition::GASTOWN_REACHABLE).message,
            "connection refused",
            "{name}"
        );
        // Nothing was read: lastSyncTime and the recorded bead are kept.
        assert_eq!(
            gastown(&plan.status).last_sync_time,
            a.status.as_ref().unwrap().gastown.as_ref().unwrap().last_sync_time
        );
        assert_eq!(gastown(&plan.status).bead_id.as_deref(), Some(BEAD), "{name}");
        if *released {
            assert_released(&plan);
            assert!(
                message(&plan.status).contains("within 600s: connection refused"),
                "{name}: {:?}",
                plan.status.message
            );
        } else {
            assert_eq!(
                message(&plan.status),
                "Gas Town unreachable: connection refused",
                "{name}"
            );
            assert_eq!(plan.event, None, "{name}");
            assert_eq!(plan.requeue, SYNC, "{name}");
            assert!(cond_opt(&plan.status, condition::RELEASED).is_none(), "{name}");
        }
    }
}

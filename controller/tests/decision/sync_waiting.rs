//! `plan_sync()` for blocked, deferred, pinned and custom bead statuses.

use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

#[test]
fn sync_other_statuses_wait() {
    let statuses = ["blocked", "deferred", "pinned", "review"];
    for status in statuses {
        // (name, object, now, phase, not-open condition expected, released)
        let cases: Vec<(&str, Automaton, i64, Phase, bool, bool)> = vec![
            ("not dispatched", recorded(json!({})), 20, Phase::Claimed, true, false),
            (
                "not dispatched, no phase",
                recorded(json!({"status": {"phase": null}})),
                20,
                Phase::Claimed,
                true,
                false,
            ),
            (
                "running",
                dispatched("Running", 5, json!({})),
                20,
                Phase::Running,
                false,
                false,
            ),
            (
                "dispatched, old claim",
                dispatched("Dispatched", 5, json!({})),
                5_000,
                Phase::Dispatched,
                false,
                false,
            ),
            (
                "not dispatched, claim expired",
                recorded(json!({})),
                600,
                Phase::Released,
                true,
                true,
            ),
        ];
        for (name, a, now, want_phase, not_open, released) in &cases {
            let name = format!("{status}/{name}");
            let plan = sync(a, &view(status, Some(TOAST)), *now);
            let want_message = format!("bead gt-abc is {status} in Gas Town");
            assert_eq!(plan.command, None, "{name}");
            assert_eq!(phase(&plan), Some(*want_phase), "{name}");
            assert_eq!(plan.release_claim, *released, "{name}");
            assert_eq!(gastown(&plan.status).bead_status.as_deref(), Some(status), "{name}");
            if *not_open {
                assert_cond(
                    &plan.status,
                    condition::DISPATCHED,
                    ConditionStatus::False,
                    "BeadNotOpen",
                );
                assert_eq!(
                    cond(&plan.status, condition::DISPATCHED).message,
                    want_message,
                    "{name}"
                );
            } else {
                assert!(cond_opt(&plan.status, condition::DISPATCHED).is_none(), "{name}");
            }
            if *released {
                assert_released(&plan);
                assert_eq!(
                    message(&plan.status),
                    format!("claim released to Kubernetes: {want_message}"),
                    "{name}"
                );
            } else {
                assert_eq!(message(&plan.status), want_message, "{name}");
                assert_eq!(plan.event, None, "{name}");
                assert_eq!(plan.requeue, SYNC, "{name}");
            }
        }
    }
}

//! `plan_sync()` when the bead is gone.

use gastown_controller::decision::Event;
use gastown_controller::decision::GasTownView;
use gastown_crds::contract::condition;
use gastown_crds::{ConditionStatus, Phase};
use serde_json::json;

use crate::fixtures::*;

#[test]
fn sync_bead_missing_or_tombstone_fails() {
    let views = [
        ("missing", GasTownView::Missing),
        ("tombstone", view("tombstone", None)),
        ("tombstone with assignee", view("tombstone", Some(TOAST))),
    ];
    let objects = [
        ("claimed", recorded(json!({}))),
        ("running", dispatched("Running", 5, json!({}))),
        ("expired claim", recorded(json!({}))),
    ];
    for (vname, v) in &views {
        for (oname, a) in &objects {
            let now = if *oname == "expired claim" { 5_000 } else { 30 };
            let plan = sync(a, v, now);
            let name = format!("{vname}/{oname}");
            assert_eq!(phase(&plan), Some(Phase::Failed), "{name}");
            assert_eq!(
                message(&plan.status),
                "bead gt-abc no longer exists in Gas Town",
                "{name}"
            );
            assert_cond(
                &plan.status,
                condition::COMPLETED,
                ConditionStatus::False,
                "BeadMissing",
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
                    true,
                    "BeadMissing",
                    "bead gt-abc no longer exists in Gas Town".to_string()
                )),
                "{name}"
            );
            assert_eq!(plan.command, None, "{name}");
            assert!(!plan.release_claim, "{name}");
            assert_eq!(plan.requeue, None, "{name}");
            let g = gastown(&plan.status);
            assert_eq!(g.last_sync_time, time(now), "{name}");
            let expected_status = name.starts_with("tombstone").then(|| "tombstone".to_string());
            assert_eq!(g.bead_status, expected_status, "{name}");
            assert_eq!(g.rig.as_deref(), Some("gastown"), "{name}");
        }
    }
}

//! `status_needs_write()`: when a status is worth a write.

use gastown_controller::decision::{self, Stage, stage, status_needs_write};
use gastown_crds::{AutomatonStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::fixtures::*;

/// A realistic Running status, last synced at T0 + 100.
fn running_status() -> AutomatonStatus {
    let a = dispatched("Running", 5, json!({}));
    sync(&a, &view("in_progress", Some(TOAST)), 100).status
}

// A table: one row per case.
#[test]
fn status_needs_write_table() {
    let s = settings();
    let old = running_status();
    let resync = |offset: i64| {
        let mut st = old.clone();
        st.gastown.as_mut().unwrap().last_sync_time = time(offset);
        st
    };
    let changed = |f: &dyn Fn(&mut AutomatonStatus)| {
        let mut st = resync(110);
        f(&mut st);
        st
    };
    // (name, old, new, now, write)
    let cases: Vec<(&str, Option<AutomatonStatus>, AutomatonStatus, i64, bool)> = vec![
        ("no status yet", None, old.clone(), 100, true),
        ("identical, just written", Some(old.clone()), old.clone(), 100, false),
        (
            "only lastSyncTime, within the heartbeat",
            Some(old.clone()),
            resync(110),
            110,
            false,
        ),
        (
            "only lastSyncTime, just before the heartbeat",
            Some(old.clone()),
            resync(399),
            399,
            false,
        ),
        (
            "only lastSyncTime, at the heartbeat",
            Some(old.clone()),
            resync(400),
            400,
            true,
        ),
        (
            "only lastSyncTime, past the heartbeat",
            Some(old.clone()),
            resync(5_000),
            5_000,
            true,
        ),
        (
            "phase",
            Some(old.clone()),
            changed(&|st| st.phase = Some(Phase::Succeeded)),
            110,
            true,
        ),
        (
            "message",
            Some(old.clone()),
            changed(&|st| st.message = Some("other".to_string())),
            110,
            true,
        ),
        (
            "observedGeneration",
            Some(old.clone()),
            changed(&|st| st.observed_generation = Some(GEN + 1)),
            110,
            true,
        ),
        (
            "condition reason",
            Some(old.clone()),
            changed(&|st| st.conditions[0].reason = "Other".to_string()),
            110,
            true,
        ),
        (
            "condition transition time",
            Some(old.clone()),
            changed(&|st| st.conditions[0].last_transition_time = Time(at(110))),
            110,
            true,
        ),
        (
            "a condition removed",
            Some(old.clone()),
            changed(&|st| st.conditions.clear()),
            110,
            true,
        ),
        ("claim", Some(old.clone()), changed(&|st| st.claim = None), 110, true),
        (
            "assignee",
            Some(old.clone()),
            changed(&|st| st.gastown.as_mut().unwrap().assignee = Some("gastown/polecats/Nux".to_string())),
            110,
            true,
        ),
        (
            "bead status",
            Some(old.clone()),
            changed(&|st| st.gastown.as_mut().unwrap().bead_status = Some("hooked".to_string())),
            110,
            true,
        ),
        (
            "dispatchedAt",
            Some(old.clone()),
            changed(&|st| st.gastown.as_mut().unwrap().dispatched_at = time(6)),
            110,
            true,
        ),
        (
            "gastown removed",
            Some(old.clone()),
            changed(&|st| st.gastown = None),
            110,
            true,
        ),
        (
            "gastown added to a status without it",
            Some(AutomatonStatus {
                gastown: None,
                ..old.clone()
            }),
            old.clone(),
            110,
            true,
        ),
    ];
    for (name, old, new, _now, want) in &cases {
        assert_eq!(status_needs_write(old.as_ref(), new, &s), *want, "{name}");
    }
}

#[test]
fn unchanged_status_without_last_sync_time_needs_no_write() {
    let s = settings();
    let a = claimed(json!({"spec": {"rig": "bad-rig"}}));
    let Stage::Invalid(message) = stage(&a, "gastown-local") else {
        panic!("not Invalid")
    };
    // First reconcile: written.
    let first = decision::invalid(&a, &message, at(10), &s);
    assert!(status_needs_write(a.status.as_ref(), &first, &s));
    // Next reconcile (15 s later): the same status; nothing to write.
    let a = with_status(&a, &first);
    let second = decision::invalid(&a, &message, at(25), &s);
    assert_eq!(a.status.as_ref(), Some(&second), "the status is unchanged");
    assert!(!status_needs_write(a.status.as_ref(), &second, &s));
}

#[test]
fn sub_second_claim_time_is_stored_in_whole_seconds_so_the_status_settles() {
    let s = settings();
    let fine = format!(
        "{}",
        Timestamp::from_second(T0).unwrap() + jiff::SignedDuration::from_millis(123)
    );
    let a = recorded(json!({"metadata": {"annotations": {"gastown.io/claimed-at": fine}}}));
    assert_eq!(decision::claimed_at(&a), Some(at(0)));
    let first = sync(&a, &view("hooked", Some(TOAST)), 10).status;
    assert_eq!(first.claim.as_ref().unwrap().claimed_at, time(0));
    // What the API server stores (whole seconds) reads back equal: the next sync writes nothing.
    let stored: AutomatonStatus = serde_json::from_value(serde_json::to_value(&first).unwrap()).unwrap();
    let a = with_status(&a, &stored);
    let second = sync(&a, &view("hooked", Some(TOAST)), 11).status;
    assert!(!status_needs_write(a.status.as_ref(), &second, &s));
    assert_eq!(
        decision::whole_seconds(at(3) + jiff::SignedDuration::from_millis(999)),
        at(3)
    );
}

#[test]
fn identical_status_past_the_heartbeat_needs_no_write() {
    let s = settings();
    let a = dispatched("Running", 5, json!({}));
    let first = sync(&a, &unreachable_view(), 10).status;
    let a = with_status(&a, &first);
    // Still unreachable 10 minutes later: lastSyncTime (T0) is not refreshed, the status is identical.
    let later = sync(&a, &unreachable_view(), 610).status;
    assert_eq!(a.status.as_ref(), Some(&later), "the status is unchanged");
    assert!(!status_needs_write(a.status.as_ref(), &later, &s));
}

//! Claim time and expiry; the statuses of a recorded bead, an invalid spec, an unreachable
//! Gas Town.

use gastown_controller::decision::{self, Command, Stage, bead_recorded, stage};
use gastown_controller::gastown;
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::fixtures::*;

#[test]
fn claimed_at_and_claim_expiry() {
    let s = settings();
    // (name, object, claimed_at, expired at T0+599, expired at T0+600)
    let cases: Vec<(&str, Automaton, Option<Timestamp>, bool, bool)> = vec![
        ("annotation", claimed(json!({})), Some(at(0)), false, true),
        (
            "annotation wins over creationTimestamp",
            claimed(json!({"metadata": {"creationTimestamp": rfc(-5000)}})),
            Some(at(0)),
            false,
            true,
        ),
        (
            "creationTimestamp without annotation",
            claimed(json!({"metadata": {"annotations": null, "creationTimestamp": rfc(-1)}})),
            Some(at(-1)),
            true,
            true,
        ),
        (
            "unparsable annotation falls back to creationTimestamp",
            claimed(
                json!({"metadata": {"annotations": {"gastown.io/claimed-at": "yesterday"}, "creationTimestamp": rfc(100)}}),
            ),
            Some(at(100)),
            false,
            false,
        ),
        (
            "neither",
            claimed(json!({"metadata": {"annotations": null}})),
            None,
            false,
            false,
        ),
        (
            "claim in the future",
            claimed(json!({"metadata": {"annotations": {"gastown.io/claimed-at": rfc(10_000)}}})),
            Some(at(10_000)),
            false,
            false,
        ),
    ];
    for (name, a, want_at, expired_599, expired_600) in &cases {
        assert_eq!(decision::claimed_at(a), *want_at, "{name}");
        assert_eq!(decision::claim_expired(a, at(599), &s), *expired_599, "{name} at +599");
        assert_eq!(decision::claim_expired(a, at(600), &s), *expired_600, "{name} at +600");
    }
}

#[test]
fn base_status_fills_claim_and_generation() {
    let a = recorded(json!({"status": {"observedGeneration": 2, "message": "old"}}));
    let st = decision::base_status(&a, &settings());
    assert_eq!(st.observed_generation, Some(GEN));
    assert_eq!(st.message.as_deref(), Some("old"));
    let claim = st.claim.unwrap();
    assert_eq!(claim.claimed_by.as_deref(), Some("gastown-local"));
    assert_eq!(claim.claimed_at, time(0));
    assert_eq!(claim.requested_by.as_deref(), Some("alice"));
}

// ---------------------------------------------------------------------------------------------
// bead_recorded(), invalid(), unreachable()
// ---------------------------------------------------------------------------------------------

#[test]
fn bead_recorded_table() {
    // (created, spec patch, message suffix, recorded rig)
    let cases = [
        (true, json!({}), "bead gt-abc created", Some("gastown")),
        (
            false,
            json!({"spec": {"task": {"beadId": BEAD}}}),
            "bead gt-abc adopted",
            Some("gastown"),
        ),
        (
            true,
            json!({"spec": {"rig": "other_rig"}}),
            "bead gt-abc created",
            Some("other_rig"),
        ),
    ];
    for (created, patch, suffix, rig) in cases {
        let a = claimed(patch);
        let st = bead_recorded(&a, &gt_abc(), created, at(42), &settings());
        assert_eq!(st.phase, Some(Phase::Claimed));
        assert_eq!(st.observed_generation, Some(GEN));
        assert_eq!(message(&st), format!("claimed by Gas Town \"gastown-local\"; {suffix}"));
        let g = gastown(&st);
        assert_eq!(g.bead_id.as_deref(), Some(BEAD));
        assert_eq!(g.bead_created, Some(created));
        assert_eq!(g.rig.as_deref(), rig);
        assert_eq!(g.last_sync_time, time(42));
        assert_eq!(g.dispatched_at, None);
        assert_cond(&st, condition::CLAIMED, ConditionStatus::True, "Claimed");
        assert_eq!(cond(&st, condition::CLAIMED).message, message(&st));
        assert_eq!(cond(&st, condition::CLAIMED).last_transition_time, Time(at(42)));
        assert_cond(&st, condition::GASTOWN_REACHABLE, ConditionStatus::True, "Reachable");
        assert_eq!(
            st.claim.as_ref().and_then(|c| c.claimed_by.as_deref()),
            Some("gastown-local")
        );
        // Once written, the next stage syncs the bead.
        assert_eq!(stage(&with_status(&a, &st), "gastown-local"), Stage::Sync(gt_abc()));
    }
}

#[test]
fn invalid_status() {
    // (object, kept phase)
    let cases = [
        (claimed(json!({"spec": {"rig": "bad-rig"}})), Phase::Claimed),
        (recorded(json!({"status": {"phase": "Dispatched"}})), Phase::Dispatched),
    ];
    for (a, want_phase) in cases {
        let st = decision::invalid(&a, "spec.rig: nope", at(3), &settings());
        assert_eq!(st.phase, Some(want_phase));
        assert_eq!(st.message.as_deref(), Some("spec.rig: nope"));
        assert_eq!(st.observed_generation, Some(GEN));
        assert_cond(&st, condition::CLAIMED, ConditionStatus::False, "InvalidSpec");
        assert_eq!(cond(&st, condition::CLAIMED).message, "spec.rig: nope");
        assert_eq!(cond(&st, condition::CLAIMED).observed_generation, Some(GEN));
    }
}

#[test]
fn unreachable_status_reason_is_camel_case() {
    let cases = [
        ("transport", "Transport"),
        ("http_status", "HttpStatus"),
        ("tls", "Tls"),
        ("", ""),
    ];
    for (label, reason) in cases {
        let st = decision::unreachable(&recorded(json!({})), label, "boom", at(3), &settings());
        assert_cond(&st, condition::GASTOWN_REACHABLE, ConditionStatus::False, reason);
        assert_eq!(cond(&st, condition::GASTOWN_REACHABLE).message, "boom");
        assert_eq!(message(&st), "Gas Town unreachable: boom");
        assert_eq!(st.phase, Some(Phase::Claimed));
    }
}

#[test]
fn a_failed_command_says_which_failed_or_that_gas_town_is_unreachable() {
    let s = settings();
    let a = recorded(json!({}));
    let sling = Command::Sling {
        bead: gt_abc(),
        rig: "gastown".to_string(),
        merge: None,
        agent: None,
    };
    let unsling = Command::Unsling {
        bead: gt_abc(),
        holder: Some(TOAST.to_string()),
    };
    let close = Command::Close {
        bead: gt_abc(),
        reason: "done".to_string(),
    };
    // An answer from Gas Town (not unreachable): the command's own condition says why.
    let refused = gastown::Error::Config {
        message: "refused".to_string(),
    };
    assert!(!refused.is_unreachable());
    for (command, type_, reason) in [
        (&sling, condition::DISPATCHED, "SlingFailed"),
        (&unsling, condition::COMPLETED, "UnslingFailed"),
        (&close, condition::RELEASED, "CloseFailed"),
    ] {
        let st = decision::command_failed(&a, command, &refused, at(10), &s);
        assert_eq!(st.phase, Some(Phase::Claimed), "{reason}");
        assert_eq!(message(&st), refused.to_string(), "{reason}");
        assert_cond(&st, type_, ConditionStatus::False, reason);
        assert_eq!(cond(&st, type_).message, refused.to_string(), "{reason}");
        assert_eq!(
            st.gastown,
            a.status.as_ref().unwrap().gastown,
            "{reason}: nothing else changes"
        );
    }
    let missing = gastown::Error::Missing {
        what: "bd",
        path: "/nowhere/bd".into(),
    };
    assert!(missing.is_unreachable());
    let st = decision::command_failed(&a, &sling, &missing, at(10), &s);
    assert_eq!(
        st,
        decision::unreachable(&a, "not_found", &missing.to_string(), at(10), &s)
    );
    assert_cond(&st, condition::GASTOWN_REACHABLE, ConditionStatus::False, "NotFound");
    assert!(cond_opt(&st, condition::DISPATCHED).is_none());
}

#[test]
fn an_undispatched_claim_past_its_timeout_is_released() {
    let plan = decision::undispatched_claim_expired(&claimed(json!({})), at(600), &settings());
    assert_eq!(phase(&plan), Some(Phase::Released));
    assert!(plan.release_claim);
    assert_eq!(plan.command, None);
    assert_eq!(plan.requeue, None);
    assert_eq!(event_reason(&plan), Some((true, "ClaimReleased")));
    assert_eq!(
        message(&plan.status),
        "claim released to Kubernetes: the spec could not be dispatched within 600s"
    );
    assert_cond(&plan.status, condition::RELEASED, ConditionStatus::True, "ClaimExpired");
    assert!(
        cond_opt(&plan.status, condition::CLAIMED).is_none(),
        "the Claimed condition is left as it was"
    );
}

#[test]
fn a_worker_that_cannot_be_taken_off_the_bead_keeps_the_claim() {
    let s = settings();
    let a = recorded(json!({"status": {"phase": "Released"}}));
    let held = bead(json!({"id": BEAD, "status": "hooked", "assignee": TOAST}));
    let st = decision::worker_holds_bead(&a, &held, &"gt unsling refused", at(700), &s);
    assert_eq!(
        message(&st),
        format!("claim kept: bead gt-abc is hooked by {TOAST} and could not be taken back: gt unsling refused")
    );
    assert_eq!(st.phase, Some(Phase::Released));
    assert_cond(&st, condition::RELEASED, ConditionStatus::False, "WorkerHoldsBead");
    let anonymous = bead(json!({"id": BEAD, "status": "in_progress"}));
    let st = decision::worker_holds_bead(&a, &anonymous, &"x", at(700), &s);
    assert!(message(&st).contains("is in_progress by a worker"), "{}", message(&st));
}

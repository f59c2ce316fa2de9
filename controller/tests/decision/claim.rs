//! Claim time and expiry; the statuses of a recorded bead, an invalid spec, an unreachable
//! Gas Town.

use gastown_controller::decision::{self, Stage, bead_recorded, stage};
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

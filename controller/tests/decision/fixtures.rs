//! Fixtures that read as sentences: Automatons at each step of a claim, beads, views, and
//! the assertions every plan shares.

use std::time::Duration;

use gastown_controller::decision::{self, GasTownView, Plan, Settings, plan_sync};
use gastown_controller::gastown::{Bead, BeadId};
use gastown_crds::contract::{self, condition};
use gastown_crds::{Automaton, AutomatonStatus, Condition, ConditionStatus, Phase};
use jiff::Timestamp;
use json_patch::merge;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use serde_json::{Value, json};

/// The claim time (`gastown.io/claimed-at`) of every fixture; other times are offsets from it.
pub(crate) const T0: i64 = 1_700_000_000;
/// `metadata.generation` of every fixture.
pub(crate) const GEN: i64 = 7;
/// The bead every fixture records.
pub(crate) const BEAD: &str = "gt-abc";
/// A worker of the fixtures' rig.
pub(crate) const TOAST: &str = "gastown/polecats/Toast";
/// A worker of another rig.
pub(crate) const ELSEWHERE: &str = "other/polecats/X";

/// `T0 + offset` seconds.
pub(crate) fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(T0 + offset).unwrap()
}

/// `T0 + offset` as RFC 3339 text.
pub(crate) fn rfc(offset: i64) -> String {
    at(offset).to_string()
}

pub(crate) fn time(offset: i64) -> Option<Time> {
    Some(Time(at(offset)))
}

/// The defaults: claimer `gastown-local`, claim timeout 600 s, sync interval 15 s, heartbeat
/// 300 s, release timeout 600 s.
pub(crate) fn settings() -> Settings {
    Settings::default()
}

pub(crate) fn gt_abc() -> BeadId {
    BeadId::parse(BEAD).unwrap()
}

/// An Automaton from JSON (`apiVersion` and `kind` are filled in).
pub(crate) fn automaton(mut json: Value) -> Automaton {
    json["apiVersion"] = json!(Automaton::api_version(&()));
    json["kind"] = json!("Automaton");
    serde_json::from_value(json).unwrap()
}

/// A bead as `bd show --json` prints it.
pub(crate) fn bead(json: Value) -> Bead {
    serde_json::from_value::<Bead>(json).unwrap()
}

/// `GasTownView::Bead` of `gt-abc` with `status` and `assignee`.
pub(crate) fn view(status: &str, assignee: Option<&str>) -> GasTownView {
    GasTownView::Bead(bead(json!({"id": BEAD, "status": status, "assignee": assignee})))
}

pub(crate) fn unreachable_view() -> GasTownView {
    GasTownView::Unreachable {
        reason: "transport".to_string(),
        message: "connection refused".to_string(),
    }
}

/// Claimed by us (label and claimed-at = T0), with our finalizer and a valid rig; no status.
pub(crate) fn claimed_json() -> Value {
    json!({
        "metadata": {
            "name": "fix-login",
            "namespace": "team-a",
            "uid": "0f9c-1",
            "generation": GEN,
            "labels": {"gastown.io/claimed-by": "gastown-local"},
            "annotations": {"gastown.io/claimed-at": rfc(0), "gastown.io/claim-requested-by": "alice"},
            "finalizers": ["gastown.io/release"],
        },
        "spec": {"task": {"title": "Fix login"}, "rig": "gastown", "executionMode": "local"},
    })
}

/// [`claimed_json`] with `patch` merged in.
pub(crate) fn claimed(patch: Value) -> Automaton {
    let mut json = claimed_json();
    merge(&mut json, &patch);
    automaton(json)
}

/// Claimed, bead `gt-abc` recorded (created by us), not dispatched.
pub(crate) fn recorded_json() -> Value {
    let mut json = claimed_json();
    merge(
        &mut json,
        &json!({"status": {
            "phase": "Claimed",
            "observedGeneration": GEN,
            "gastown": {"beadId": BEAD, "beadCreated": true, "rig": "gastown", "lastSyncTime": rfc(0)},
        }}),
    );
    json
}

/// [`recorded_json`] with `patches` merged in, in order.
pub(crate) fn recorded_with(patches: &[Value]) -> Automaton {
    let mut json = recorded_json();
    for patch in patches {
        merge(&mut json, patch);
    }
    automaton(json)
}

/// [`recorded_json`] with `patch` merged in.
pub(crate) fn recorded(patch: Value) -> Automaton {
    recorded_with(&[patch])
}

/// Recorded and dispatched at `T0 + dispatched` by [`TOAST`] in `phase`; then `patch`.
pub(crate) fn dispatched(phase: &str, dispatched: i64, patch: Value) -> Automaton {
    recorded_with(&[
        json!({"status": {"phase": phase, "gastown": {"dispatchedAt": rfc(dispatched), "assignee": TOAST}}}),
        patch,
    ])
}

/// `plan_sync` for `gt-abc` at `T0 + now` with the default settings.
pub(crate) fn sync(a: &Automaton, view: &GasTownView, now: i64) -> Plan {
    plan_sync(a, &gt_abc(), view, at(now), &settings())
}

/// `a` with `status` as its status (what the reconciler writes back).
pub(crate) fn with_status(a: &Automaton, status: &AutomatonStatus) -> Automaton {
    let mut a = a.clone();
    a.status = Some(status.clone());
    a
}

pub(crate) fn cond<'a>(st: &'a AutomatonStatus, type_: &str) -> &'a Condition {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", st.conditions))
}

pub(crate) fn cond_opt<'a>(st: &'a AutomatonStatus, type_: &str) -> Option<&'a Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}

/// Asserts condition `type_` has `status` and `reason`.
#[track_caller]
pub(crate) fn assert_cond(st: &AutomatonStatus, type_: &str, status: ConditionStatus, reason: &str) {
    let c = cond(st, type_);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (status, reason),
        "condition {type_}: {c:#?}"
    );
}

pub(crate) fn gastown(st: &AutomatonStatus) -> &gastown_crds::GasTownStatus {
    st.gastown.as_ref().unwrap()
}

pub(crate) fn phase(plan: &Plan) -> Option<Phase> {
    plan.status.phase
}

pub(crate) fn message(st: &AutomatonStatus) -> &str {
    st.message.as_deref().unwrap_or_default()
}

pub(crate) fn event_reason(plan: &Plan) -> Option<(bool, &str)> {
    plan.event.as_ref().map(|e| (e.warning, e.reason.as_str()))
}

pub(crate) const SYNC: Option<Duration> = Some(Duration::from_secs(15));

/// The checks common to every claim release.
#[track_caller]
pub(crate) fn assert_released(plan: &Plan) {
    assert_eq!(phase(plan), Some(Phase::Released));
    assert!(plan.release_claim);
    assert_eq!(plan.requeue, None);
    assert_eq!(event_reason(plan), Some((true, "ClaimReleased")));
    assert!(
        message(&plan.status).starts_with("claim released to Kubernetes: "),
        "{:?}",
        plan.status.message
    );
    assert_cond(&plan.status, condition::RELEASED, ConditionStatus::True, "ClaimExpired");
    assert_cond(&plan.status, condition::CLAIMED, ConditionStatus::False, "Released");
}

// ---------------------------------------------------------------------------------------------
// The contract spelled in the fixtures
// ---------------------------------------------------------------------------------------------

#[test]
pub(crate) fn fixtures_use_the_contract_keys() {
    assert_eq!(contract::CLAIMED_BY_LABEL, "gastown.io/claimed-by");
    assert_eq!(contract::CLAIMED_AT_ANNOTATION, "gastown.io/claimed-at");
    assert_eq!(contract::CLAIM_REQUESTED_BY_ANNOTATION, "gastown.io/claim-requested-by");
    assert_eq!(contract::RELEASE_FINALIZER, "gastown.io/release");
    assert_eq!(contract::DEFAULT_CLAIMER, "gastown-local");
    let s = settings();
    assert_eq!(s.claimer, "gastown-local");
    assert_eq!(s.claim_timeout, Duration::from_secs(600));
    assert_eq!(s.sync_interval, Duration::from_secs(15));
    assert_eq!(s.status_heartbeat, Duration::from_secs(300));
    assert_eq!(s.release_timeout, Duration::from_secs(600));
    let a = recorded(json!({}));
    assert!(decision::has_finalizer(&a));
    assert!(decision::has_claim_marks(&a));
    assert_eq!(decision::claimed_at(&a), Some(at(0)));
}

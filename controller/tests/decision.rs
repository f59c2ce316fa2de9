//! Table-driven tests of the controller's pure decisions (`gastown_controller::decision`):
//! Automatons and beads are plain JSON, timestamps are fixed, nothing does I/O.

// A test crate: panicking on a bad fixture is the point.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gastown_controller::decision::{
    self, Command, DeletionPlan, FAILURE_CLOSE_WORDS, GasTownView, Plan, Settings, Stage, assignee_in_rig,
    bead_recorded, close_reason_is_failure, plan_deletion, plan_sync, stage, status_needs_write,
};
use gastown_controller::gastown::{Bead, BeadId};
use gastown_crds::contract::{self, condition};
use gastown_crds::{Automaton, AutomatonStatus, Condition, ConditionStatus, MergeStrategy, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The claim time (`gastown.io/claimed-at`) of every fixture; other times are offsets from it.
const T0: i64 = 1_700_000_000;
/// `metadata.generation` of every fixture.
const GEN: i64 = 7;
/// The bead every fixture records.
const BEAD: &str = "gt-abc";
/// A worker of the fixtures' rig.
const TOAST: &str = "gastown/polecats/Toast";
/// A worker of another rig.
const ELSEWHERE: &str = "other/polecats/X";

/// `T0 + offset` seconds.
fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(T0 + offset).unwrap()
}

/// `T0 + offset` as RFC 3339 text.
fn rfc(offset: i64) -> String {
    at(offset).to_string()
}

fn time(offset: i64) -> Option<Time> {
    Some(Time(at(offset)))
}

/// The defaults: claimer `gastown-local`, claim timeout 600 s, sync interval 15 s, heartbeat
/// 300 s, release timeout 600 s.
fn settings() -> Settings {
    Settings::default()
}

fn gt_abc() -> BeadId {
    BeadId::parse(BEAD).unwrap()
}

/// An Automaton from JSON (`apiVersion` and `kind` are filled in).
fn automaton(mut json: Value) -> Automaton {
    json["apiVersion"] = json!("olympus.io/v1alpha1");
    json["kind"] = json!("Automaton");
    serde_json::from_value(json).unwrap()
}

/// A bead as `bd show --json` prints it.
fn bead(json: Value) -> Bead {
    serde_json::from_value::<Bead>(json).unwrap()
}

/// `GasTownView::Bead` of `gt-abc` with `status` and `assignee`.
fn view(status: &str, assignee: Option<&str>) -> GasTownView {
    GasTownView::Bead(bead(json!({"id": BEAD, "status": status, "assignee": assignee})))
}

fn unreachable_view() -> GasTownView {
    GasTownView::Unreachable("transport".to_string(), "connection refused".to_string())
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *base = patch.clone();
        return;
    };
    if !base.is_object() {
        *base = json!({});
    }
    let base = base.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            base.remove(key);
        } else {
            merge(base.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Claimed by us (label and claimed-at = T0), with our finalizer and a valid rig; no status.
fn claimed_json() -> Value {
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
fn claimed(patch: Value) -> Automaton {
    let mut json = claimed_json();
    merge(&mut json, &patch);
    automaton(json)
}

/// Claimed, bead `gt-abc` recorded (created by us), not dispatched.
fn recorded_json() -> Value {
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
fn recorded_with(patches: &[Value]) -> Automaton {
    let mut json = recorded_json();
    for patch in patches {
        merge(&mut json, patch);
    }
    automaton(json)
}

/// [`recorded_json`] with `patch` merged in.
fn recorded(patch: Value) -> Automaton {
    recorded_with(&[patch])
}

/// Recorded and dispatched at `T0 + dispatched` by [`TOAST`] in `phase`; then `patch`.
fn dispatched(phase: &str, dispatched: i64, patch: Value) -> Automaton {
    recorded_with(&[
        json!({"status": {"phase": phase, "gastown": {"dispatchedAt": rfc(dispatched), "assignee": TOAST}}}),
        patch,
    ])
}

/// `plan_sync` for `gt-abc` at `T0 + now` with the default settings.
fn sync(a: &Automaton, view: &GasTownView, now: i64) -> Plan {
    plan_sync(a, &gt_abc(), view, at(now), &settings())
}

/// `a` with `status` as its status (what the reconciler writes back).
fn with_status(a: &Automaton, status: &AutomatonStatus) -> Automaton {
    let mut a = a.clone();
    a.status = Some(status.clone());
    a
}

fn cond<'a>(st: &'a AutomatonStatus, type_: &str) -> &'a Condition {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", st.conditions))
}

fn cond_opt<'a>(st: &'a AutomatonStatus, type_: &str) -> Option<&'a Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}

/// Asserts condition `type_` has `status` and `reason`.
#[track_caller]
fn assert_cond(st: &AutomatonStatus, type_: &str, status: ConditionStatus, reason: &str) {
    let c = cond(st, type_);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (status, reason),
        "condition {type_}: {c:#?}"
    );
}

fn gastown(st: &AutomatonStatus) -> &gastown_crds::GasTownStatus {
    st.gastown.as_ref().unwrap()
}

fn phase(plan: &Plan) -> Option<Phase> {
    plan.status.phase
}

fn message(st: &AutomatonStatus) -> &str {
    st.message.as_deref().unwrap_or_default()
}

fn event_reason(plan: &Plan) -> Option<(bool, &str)> {
    plan.event
        .as_ref()
        .map(|(warning, reason, _)| (*warning, reason.as_str()))
}

const SYNC: Option<Duration> = Some(Duration::from_secs(15));

/// The checks common to every claim release.
#[track_caller]
fn assert_released(plan: &Plan) {
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
fn fixtures_use_the_contract_keys() {
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

// ---------------------------------------------------------------------------------------------
// stage()
// ---------------------------------------------------------------------------------------------

enum Want {
    Is(Stage),
    /// `Stage::Invalid` whose message contains this text (the field, the offending value).
    Invalid(&'static [&'static str]),
}

#[test]
fn stage_table() {
    let cases: Vec<(&str, Automaton, Want)> = vec![
        // Not ours.
        (
            "no claim label",
            claimed(json!({"metadata": {"labels": null}})),
            Want::Is(Stage::NotOurs),
        ),
        (
            "other claimer",
            claimed(json!({"metadata": {"labels": {"gastown.io/claimed-by": "elsewhere"}}})),
            Want::Is(Stage::NotOurs),
        ),
        (
            "our finalizer but no label, not deleting",
            recorded(json!({"metadata": {"labels": null}})),
            Want::Is(Stage::NotOurs),
        ),
        // Deletion.
        (
            "deleting with our finalizer",
            recorded(json!({"metadata": {"deletionTimestamp": rfc(50)}})),
            Want::Is(Stage::Deleting),
        ),
        (
            "deleting with our finalizer among others",
            recorded(
                json!({"metadata": {"deletionTimestamp": rfc(50), "finalizers": ["x.io/keep", "gastown.io/release"]}}),
            ),
            Want::Is(Stage::Deleting),
        ),
        (
            "deleting without our finalizer",
            recorded(json!({"metadata": {"deletionTimestamp": rfc(50), "finalizers": ["x.io/keep"]}})),
            Want::Is(Stage::NotOurs),
        ),
        (
            "deleting without finalizers",
            recorded(json!({"metadata": {"deletionTimestamp": rfc(50), "finalizers": null}})),
            Want::Is(Stage::NotOurs),
        ),
        (
            "deleting with our finalizer after the claim went elsewhere",
            recorded(
                json!({"metadata": {"deletionTimestamp": rfc(50), "labels": {"gastown.io/claimed-by": "elsewhere"}}}),
            ),
            Want::Is(Stage::Deleting),
        ),
        (
            "deleting a terminal Automaton with our finalizer",
            recorded(json!({"metadata": {"deletionTimestamp": rfc(50)}, "status": {"phase": "Succeeded"}})),
            Want::Is(Stage::Deleting),
        ),
        // Released, terminal.
        (
            "Released but the claim label is still there",
            recorded(json!({"status": {"phase": "Released"}})),
            Want::Is(Stage::FinishRelease),
        ),
        (
            "Released, label still there, finalizer already gone",
            recorded(json!({"metadata": {"finalizers": null}, "status": {"phase": "Released"}})),
            Want::Is(Stage::FinishRelease),
        ),
        (
            "Released and the marks removed",
            recorded(json!({"metadata": {"labels": null, "annotations": null}, "status": {"phase": "Released"}})),
            Want::Is(Stage::NotOurs),
        ),
        (
            "Succeeded",
            recorded(json!({"status": {"phase": "Succeeded"}})),
            Want::Is(Stage::Terminal),
        ),
        (
            "Failed",
            recorded(json!({"status": {"phase": "Failed"}})),
            Want::Is(Stage::Terminal),
        ),
        (
            "Failed without our finalizer",
            recorded(json!({"metadata": {"finalizers": null}, "status": {"phase": "Failed"}})),
            Want::Is(Stage::Terminal),
        ),
        // Finalizer first.
        (
            "no finalizers",
            claimed(json!({"metadata": {"finalizers": null}})),
            Want::Is(Stage::AddFinalizer),
        ),
        (
            "only a foreign finalizer",
            claimed(json!({"metadata": {"finalizers": ["x.io/keep"]}})),
            Want::Is(Stage::AddFinalizer),
        ),
        (
            "no finalizer comes before an invalid rig",
            claimed(json!({"metadata": {"finalizers": null}, "spec": {"rig": "bad-rig"}})),
            Want::Is(Stage::AddFinalizer),
        ),
        (
            "no finalizer with a recorded bead",
            recorded(json!({"metadata": {"finalizers": null}})),
            Want::Is(Stage::AddFinalizer),
        ),
        // No bead yet.
        (
            "no bead yet, valid rig",
            claimed(json!({})),
            Want::Is(Stage::ObtainBead),
        ),
        (
            "no bead yet, phase Pending",
            claimed(json!({"status": {"phase": "Pending"}})),
            Want::Is(Stage::ObtainBead),
        ),
        (
            "no bead yet, status.gastown without beadId",
            claimed(json!({"status": {"phase": "Claimed", "gastown": {"rig": "gastown"}}})),
            Want::Is(Stage::ObtainBead),
        ),
        (
            "valid spec.task.beadId",
            claimed(json!({"spec": {"task": {"beadId": "gt-xyz.1"}}})),
            Want::Is(Stage::ObtainBead),
        ),
        (
            "rig of one letter",
            claimed(json!({"spec": {"rig": "g"}})),
            Want::Is(Stage::ObtainBead),
        ),
        // Invalid.
        (
            "invalid rig with '-'",
            claimed(json!({"spec": {"rig": "bad-rig"}})),
            Want::Invalid(&["spec.rig", "bad-rig"]),
        ),
        (
            "reserved rig hq",
            claimed(json!({"spec": {"rig": "hq"}})),
            Want::Invalid(&["spec.rig", "hq"]),
        ),
        (
            "empty rig",
            claimed(json!({"spec": {"rig": ""}})),
            Want::Invalid(&["spec.rig"]),
        ),
        (
            "missing rig",
            claimed(json!({"spec": {"rig": null}})),
            Want::Invalid(&["spec.rig is empty"]),
        ),
        (
            "invalid spec.task.beadId",
            claimed(json!({"spec": {"task": {"beadId": "not a bead"}}})),
            Want::Invalid(&["spec.task.beadId", "not a bead"]),
        ),
        (
            "invalid spec.task.beadId is reported before an invalid rig",
            claimed(json!({"spec": {"rig": "bad-rig", "task": {"beadId": "gt_x"}}})),
            Want::Invalid(&["spec.task.beadId", "gt_x"]),
        ),
        (
            "invalid recorded status.gastown.beadId",
            recorded(json!({"status": {"gastown": {"beadId": "gt abc!"}}})),
            Want::Invalid(&["status.gastown.beadId", "gt abc!"]),
        ),
        // Recorded bead.
        ("recorded bead", recorded(json!({})), Want::Is(Stage::Sync(gt_abc()))),
        (
            "recorded bead, Running",
            dispatched("Running", 5, json!({})),
            Want::Is(Stage::Sync(gt_abc())),
        ),
        (
            "recorded bead wins over spec.task.beadId",
            recorded(json!({"spec": {"task": {"beadId": "gt-other"}}})),
            Want::Is(Stage::Sync(gt_abc())),
        ),
        (
            "recorded bead: an invalid spec.task.beadId is no longer looked at",
            recorded(json!({"spec": {"task": {"beadId": "not a bead"}}})),
            Want::Is(Stage::Sync(gt_abc())),
        ),
        (
            "recorded bead: the rig is no longer validated",
            recorded(json!({"spec": {"rig": null}})),
            Want::Is(Stage::Sync(gt_abc())),
        ),
    ];
    for (name, a, want) in &cases {
        let got = stage(a, "gastown-local");
        match want {
            Want::Is(expected) => assert_eq!(&got, expected, "{name}"),
            Want::Invalid(parts) => {
                let Stage::Invalid(message) = &got else {
                    panic!("{name}: expected Invalid, got {got:?}")
                };
                for part in *parts {
                    assert!(message.contains(part), "{name}: {message:?} should mention {part:?}");
                }
            }
        }
    }
}

#[test]
fn stage_uses_the_given_claimer() {
    let a = claimed(json!({"metadata": {"labels": {"gastown.io/claimed-by": "town-b"}}}));
    assert_eq!(stage(&a, "town-b"), Stage::ObtainBead);
    assert_eq!(stage(&a, "gastown-local"), Stage::NotOurs);
}

#[test]
fn a_bead_may_exist_unrecorded_once_the_finalizer_is_on() {
    // (name, patch over `claimed_json`, may exist)
    let cases = [
        // `bd create` runs only after the finalizer is on: an attempt may have run.
        ("finalizer, no status", json!({}), true),
        (
            "finalizer, Gas Town was unreachable",
            json!({"status": {"phase": "Claimed", "gastown": {}}}),
            true,
        ),
        (
            "finalizer, the last bd create certainly made none",
            json!({"status": {"phase": "Claimed", "gastown": {"beadCreated": false}}}),
            false,
        ),
        (
            "finalizer, marked before a retried bd create",
            json!({"status": {"phase": "Claimed", "gastown": {"beadCreated": true}}}),
            true,
        ),
        (
            "no finalizer, no status",
            json!({"metadata": {"finalizers": null}}),
            false,
        ),
        (
            "no finalizer, an earlier version's mark",
            json!({"metadata": {"finalizers": null}, "status": {"gastown": {"beadCreated": true}}}),
            true,
        ),
        (
            "no finalizer, adopted before",
            json!({"metadata": {"finalizers": null}, "status": {"gastown": {"beadCreated": false}}}),
            false,
        ),
        (
            "recorded",
            json!({"status": {"gastown": {"beadId": BEAD, "beadCreated": true}}}),
            false,
        ),
        (
            "the bead comes from the spec",
            json!({"spec": {"task": {"beadId": BEAD}}, "status": {"gastown": {"beadCreated": true}}}),
            false,
        ),
    ];
    for (name, patch, want) in cases {
        assert_eq!(decision::bead_may_exist_unrecorded(&claimed(patch)), want, "{name}");
    }
}

#[test]
fn only_an_object_without_finalizer_or_bead_mark_creates_without_a_lookup() {
    let fresh = json!({"metadata": {"finalizers": null}});
    // (name, patch over `fresh`, creates first)
    let cases = [
        ("new claim", json!({}), true),
        ("status without Gas Town", json!({"status": {"phase": "Claimed"}}), true),
        (
            "finalizer already on",
            json!({"metadata": {"finalizers": ["gastown.io/release"]}}),
            false,
        ),
        ("marked", json!({"status": {"gastown": {"beadCreated": true}}}), false),
        // Without the finalizer a crash after `bd create` would leave `false` standing.
        (
            "said none exists",
            json!({"status": {"gastown": {"beadCreated": false}}}),
            false,
        ),
    ];
    for (name, patch, want) in cases {
        let mut json = claimed_json();
        merge(&mut json, &fresh);
        merge(&mut json, &patch);
        assert_eq!(decision::creates_first(&automaton(json)), want, "{name}");
    }
}

/// Claimed, with our finalizer, and `status` merged in (no bead recorded).
fn creating_with(status: Value) -> Automaton {
    claimed(json!({"status": status}))
}

/// A `Claimed` condition mark as `creating_bead` / `create_outcome_unknown` write it.
fn create_mark(reason: &str, since: i64) -> Value {
    json!({"phase": "Claimed", "gastown": {"beadCreated": true},
           "conditions": [{"type": "Claimed", "status": "Unknown", "reason": reason, "message": "",
                           "lastTransitionTime": rfc(since)}]})
}

/// Item 2: after a `bd create` whose outcome is unknown, no other create until it has certainly
/// ended; a crash during a create without a timed mark waits the whole bound from when it is seen.
#[test]
fn create_gate_table() {
    use decision::CreateGate::{Create, Wait};
    let s = settings();
    let wait = s.create_outcome_wait.as_secs() as i64;
    let creating = decision::CREATING_BEAD_REASON;
    let unknown = decision::CREATE_OUTCOME_UNKNOWN_REASON;
    // (name, object, now, gate)
    let cases: Vec<(&str, Automaton, i64, decision::CreateGate)> = vec![
        (
            "the last create certainly made none",
            creating_with(json!({"gastown": {"beadCreated": false}})),
            50,
            Create,
        ),
        (
            "no finalizer yet (first attempt)",
            claimed(json!({"metadata": {"finalizers": null}})),
            50,
            Create,
        ),
        (
            "the bead comes from the spec",
            claimed(json!({"spec": {"task": {"beadId": BEAD}}})),
            50,
            Create,
        ),
        (
            "crash during the first create: no time recorded, wait from now",
            creating_with(json!(null)),
            50,
            Wait {
                until: at(50 + wait),
                mark: true,
            },
        ),
        (
            "an earlier version's mark without time",
            creating_with(json!({"gastown": {"beadCreated": true}})),
            50,
            Wait {
                until: at(50 + wait),
                mark: true,
            },
        ),
        (
            "crash during a later create, just after",
            creating_with(create_mark(creating, 40)),
            41,
            Wait {
                until: at(40 + wait),
                mark: false,
            },
        ),
        (
            "crash during a later create, one second before the bound",
            creating_with(create_mark(creating, 40)),
            40 + wait - 1,
            Wait {
                until: at(40 + wait),
                mark: false,
            },
        ),
        (
            "crash during a later create, at the bound",
            creating_with(create_mark(creating, 40)),
            40 + wait,
            Create,
        ),
        // The client returns an unknown outcome only once the command has ended: the lookup
        // that found nothing is conclusive.
        (
            "outcome unknown, the call ended: the lookup decides",
            creating_with(create_mark(unknown, 40)),
            41,
            Create,
        ),
        (
            "a Claimed condition that is not a create mark",
            creating_with(json!({"gastown": {"beadCreated": true},
                "conditions": [{"type": "Claimed", "status": "False", "reason": "InvalidSpec", "message": "",
                                "lastTransitionTime": rfc(0)}]})),
            50,
            Wait {
                until: at(50 + wait),
                mark: true,
            },
        ),
    ];
    for (name, a, now, want) in cases {
        assert_eq!(decision::create_gate(&a, at(now), &s), want, "{name}");
    }
}

#[test]
fn create_marks_record_when_each_attempt_began() {
    let s = settings();
    let a = creating_with(create_mark(decision::CREATE_OUTCOME_UNKNOWN_REASON, 40));
    // A new create (past the bound) is marked at its own start, not the old one.
    let st = decision::creating_bead(&a, at(500), &s);
    assert_eq!(gastown(&st).bead_created, Some(true));
    assert_cond(
        &st,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        decision::CREATING_BEAD_REASON,
    );
    assert_eq!(cond(&st, condition::CLAIMED).last_transition_time, Time(at(500)));
    let a = with_status(&a, &st);
    assert_eq!(decision::create_in_flight_since(&a), Some(at(500)));
    // The call ended at 530 with an unknown outcome: a bead may exist (look it up), but no
    // create runs any more.
    let st = decision::create_outcome_unknown(&a, decision::base_status(&a, &s), at(530));
    assert_cond(
        &st,
        condition::CLAIMED,
        ConditionStatus::Unknown,
        decision::CREATE_OUTCOME_UNKNOWN_REASON,
    );
    let a = with_status(&a, &st);
    assert_eq!(decision::create_in_flight_since(&a), None);
    assert!(decision::bead_may_exist_unrecorded(&a));
    assert_eq!(decision::create_gate(&a, at(530), &s), decision::CreateGate::Create);
    // A restarted controller that finds no mark waits from when it looked.
    let fresh = creating_with(json!(null));
    let st = decision::create_may_be_running(&fresh, decision::base_status(&fresh, &s), at(600), &s);
    let fresh = with_status(&fresh, &st);
    assert_eq!(decision::create_in_flight_since(&fresh), Some(at(600)));
    assert!(matches!(
        decision::create_gate(&fresh, at(601), &s),
        decision::CreateGate::Wait { mark: false, .. }
    ));
    // `bd create` itself said no: no bead, no mark, create at once.
    let st = decision::no_bead_created(decision::base_status(&a, &s));
    let a = with_status(&a, &st);
    assert_eq!(decision::create_in_flight_since(&a), None);
    assert_eq!(decision::create_gate(&a, at(531), &s), decision::CreateGate::Create);
    // Recording the bead replaces the mark.
    let st = bead_recorded(&a, &gt_abc(), true, at(532), &s);
    assert_cond(&st, condition::CLAIMED, ConditionStatus::True, "Claimed");
}

#[test]
fn the_create_wait_outlasts_every_attempt_and_gt_proxy_server() {
    use decision::create_outcome_wait;
    let s = |secs| Duration::from_secs(secs);
    // The default 70 s command timeout, 3 attempts per call, a local command (lifetime 70 s).
    assert_eq!(create_outcome_wait(s(70), 3, s(70)), s(435));
    // Through gt-proxy-server (65 s) with a short client timeout: the proxy's limit counts.
    assert_eq!(create_outcome_wait(s(30), 3, s(65)), s(300));
    assert_eq!(create_outcome_wait(s(5), 0, s(5)), s(15));
    assert_eq!(settings().create_outcome_wait, create_outcome_wait(s(70), 3, s(70)));
}

// ---------------------------------------------------------------------------------------------
// Claim time and expiry
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// plan_sync(): Gas Town unreachable
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// plan_sync(): bead missing or deleted
// ---------------------------------------------------------------------------------------------

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
                Some((
                    true,
                    "BeadMissing".to_string(),
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

// ---------------------------------------------------------------------------------------------
// plan_sync(): open bead
// ---------------------------------------------------------------------------------------------

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
            Some((
                false,
                "Dispatched".to_string(),
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

// ---------------------------------------------------------------------------------------------
// plan_sync(): hooked or in progress in our rig
// ---------------------------------------------------------------------------------------------

/// (name, object, bead status, assignee, now, phase, dispatchedAt, adoption event)
type OurRigCase = (
    &'static str,
    Automaton,
    &'static str,
    &'static str,
    i64,
    Phase,
    i64,
    bool,
);

#[test]
fn sync_dispatched_in_our_rig() {
    let cases: Vec<OurRigCase> = vec![
        (
            "hooked after our sling",
            dispatched("Dispatched", 5, json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            5,
            false,
        ),
        (
            "hooked, adopting",
            recorded(json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            20,
            true,
        ),
        (
            "hooked, short assignee",
            recorded(json!({})),
            "hooked",
            "gastown/Toast",
            20,
            Phase::Dispatched,
            20,
            true,
        ),
        (
            "hooked, claim expired: adopted, not released",
            recorded(json!({})),
            "hooked",
            TOAST,
            5_000,
            Phase::Dispatched,
            5_000,
            true,
        ),
        (
            "in progress",
            dispatched("Dispatched", 5, json!({})),
            "in_progress",
            TOAST,
            20,
            Phase::Running,
            5,
            false,
        ),
        (
            "in progress, still Running",
            dispatched("Running", 5, json!({})),
            "in_progress",
            TOAST,
            900,
            Phase::Running,
            5,
            false,
        ),
        (
            "in progress, adopting",
            recorded(json!({})),
            "in_progress",
            TOAST,
            20,
            Phase::Running,
            20,
            true,
        ),
        (
            "in progress, claim expired: adopted, not released",
            recorded(json!({})),
            "in_progress",
            "gastown/Nux",
            5_000,
            Phase::Running,
            5_000,
            true,
        ),
        (
            "back to hooked from Running",
            dispatched("Running", 5, json!({})),
            "hooked",
            TOAST,
            20,
            Phase::Dispatched,
            5,
            false,
        ),
    ];
    for (name, a, status, assignee, now, want_phase, since, adopting) in &cases {
        let plan = sync(a, &view(status, Some(*assignee)), *now);
        assert_eq!(phase(&plan), Some(*want_phase), "{name}");
        assert_eq!(plan.command, None, "{name}");
        assert!(!plan.release_claim, "{name}");
        assert_eq!(plan.requeue, SYNC, "{name}");
        let g = gastown(&plan.status);
        assert_eq!(g.dispatched_at, time(*since), "{name}");
        assert_eq!(g.assignee.as_deref(), Some(*assignee), "{name}");
        assert_eq!(g.bead_status.as_deref(), Some(*status), "{name}");
        assert_eq!(g.last_sync_time, time(*now), "{name}");
        assert_cond(&plan.status, condition::DISPATCHED, ConditionStatus::True, "Slung");
        assert_eq!(
            cond(&plan.status, condition::DISPATCHED).message,
            format!("bead gt-abc hooked by {assignee}"),
            "{name}"
        );
        assert_cond(
            &plan.status,
            condition::GASTOWN_REACHABLE,
            ConditionStatus::True,
            "Reachable",
        );
        if *want_phase == Phase::Running {
            assert_eq!(
                message(&plan.status),
                format!("{assignee} is working on bead gt-abc"),
                "{name}"
            );
            assert_cond(&plan.status, condition::RUNNING, ConditionStatus::True, "InProgress");
            assert_eq!(
                cond(&plan.status, condition::RUNNING).message,
                format!("worker {assignee}"),
                "{name}"
            );
        } else {
            assert_eq!(
                message(&plan.status),
                format!("bead gt-abc hooked by {assignee}, waiting for the agent to start"),
                "{name}"
            );
        }
        if *adopting {
            assert_eq!(
                plan.event,
                Some((
                    false,
                    "Dispatched".to_string(),
                    format!("bead gt-abc already hooked by {assignee}")
                )),
                "{name}"
            );
        } else {
            assert_eq!(plan.event, None, "{name}");
        }
    }
}

/// (name, object, bead status, assignee, now, released)
type ElsewhereCase = (&'static str, Automaton, &'static str, Option<&'static str>, i64, bool);

#[test]
fn sync_dispatched_elsewhere_is_not_slung() {
    let cases: Vec<ElsewhereCase> = vec![
        (
            "hooked in another rig",
            recorded(json!({})),
            "hooked",
            Some(ELSEWHERE),
            20,
            false,
        ),
        (
            "in progress in another rig",
            recorded(json!({})),
            "in_progress",
            Some(ELSEWHERE),
            20,
            false,
        ),
        (
            "hooked without assignee",
            recorded(json!({})),
            "hooked",
            None,
            20,
            false,
        ),
        (
            "assignee of a rig with our rig's prefix",
            recorded(json!({})),
            "hooked",
            Some("gastown2/polecats/X"),
            20,
            false,
        ),
        // Item 7: a worker holds the bead; giving the claim back would run the work twice.
        (
            "hooked elsewhere, claim expired: kept",
            recorded(json!({})),
            "hooked",
            Some(ELSEWHERE),
            600,
            false,
        ),
        (
            "in progress elsewhere, claim expired: kept",
            recorded(json!({})),
            "in_progress",
            Some(ELSEWHERE),
            5_000,
            false,
        ),
        (
            "elsewhere after our dispatch: never released",
            dispatched("Running", 5, json!({})),
            "hooked",
            Some(ELSEWHERE),
            5_000,
            false,
        ),
    ];
    for (name, a, status, assignee, now, released) in &cases {
        let plan = sync(a, &view(status, *assignee), *now);
        assert_eq!(plan.command, None, "{name}");
        assert_eq!(plan.release_claim, *released, "{name}");
        assert_cond(
            &plan.status,
            condition::DISPATCHED,
            ConditionStatus::False,
            "HookedElsewhere",
        );
        let detail = &cond(&plan.status, condition::DISPATCHED).message;
        assert!(detail.contains(assignee.unwrap_or_default()), "{name}: {detail}");
        assert!(detail.contains(&format!("already {status} by")), "{name}: {detail}");
        assert!(detail.contains("outside rig \"gastown\""), "{name}: {detail}");
        assert_eq!(gastown(&plan.status).bead_status.as_deref(), Some(*status), "{name}");
        if *released {
            assert_released(&plan);
            assert!(message(&plan.status).ends_with("not dispatching it again"), "{name}");
        } else {
            assert_eq!(phase(&plan), Some(Phase::Claimed), "{name}");
            assert_eq!(message(&plan.status), detail, "{name}");
            assert_eq!(plan.event, None, "{name}");
            assert_eq!(plan.requeue, SYNC, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// plan_sync(): closed bead
// ---------------------------------------------------------------------------------------------

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
                Some((failed, want_reason.to_string(), want_message.clone())),
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

// ---------------------------------------------------------------------------------------------
// plan_sync(): spec.timeoutSeconds
// ---------------------------------------------------------------------------------------------

#[test]
fn sync_timeout_table() {
    // (name, object, view, now, timed out)
    let running = |limit: i64| dispatched("Running", 100, json!({"spec": {"timeoutSeconds": limit}}));
    let cases: Vec<(&str, Automaton, GasTownView, i64, bool)> = vec![
        (
            "in progress, exactly at the limit",
            running(3600),
            view("in_progress", Some(TOAST)),
            3_700,
            true,
        ),
        (
            "in progress, long past",
            running(3600),
            view("in_progress", Some(TOAST)),
            90_000,
            true,
        ),
        (
            "hooked past the limit",
            dispatched("Dispatched", 100, json!({"spec": {"timeoutSeconds": 60}})),
            view("hooked", Some(TOAST)),
            160,
            true,
        ),
        // Item 6: the deadline holds in every non-terminal state.
        ("blocked past the limit", running(60), view("blocked", None), 160, true),
        (
            "deferred past the limit",
            running(60),
            view("deferred", None),
            160,
            true,
        ),
        (
            "pinned past the limit",
            running(60),
            view("pinned", Some(TOAST)),
            160,
            true,
        ),
        (
            "hooked in another rig past the limit",
            running(60),
            view("hooked", Some(ELSEWHERE)),
            160,
            true,
        ),
        (
            "open again (would be re-slung) past the limit",
            running(60),
            view("open", None),
            160,
            true,
        ),
        (
            "Gas Town unreachable past the limit",
            running(60),
            unreachable_view(),
            160,
            true,
        ),
        (
            "one second before",
            running(3600),
            view("in_progress", Some(TOAST)),
            3_699,
            false,
        ),
        (
            "blocked one second before",
            running(60),
            view("blocked", None),
            159,
            false,
        ),
        (
            "closed past the limit: the result stands",
            running(60),
            view("closed", Some(TOAST)),
            160,
            false,
        ),
        (
            "no timeout",
            dispatched("Running", 100, json!({})),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "timeoutSeconds 0 means none",
            running(0),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "negative timeoutSeconds is ignored",
            running(-5),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
        (
            "adopting: the clock starts now",
            recorded(json!({"spec": {"timeoutSeconds": 60}})),
            view("in_progress", Some(TOAST)),
            1_000_000,
            false,
        ),
    ];
    for (name, a, v, now, timed_out) in &cases {
        let plan = sync(a, v, *now);
        if *timed_out {
            let limit = a.spec.timeout_seconds.unwrap();
            let want_message =
                format!("work exceeded spec.timeoutSeconds ({limit}s) after dispatch; released in Gas Town");
            // Item 5: Failed is recorded first; nothing runs in Gas Town before that write.
            assert_eq!(plan.command, None, "{name}");
            assert_eq!(phase(&plan), Some(Phase::Failed), "{name}");
            assert_eq!(message(&plan.status), want_message, "{name}");
            assert_cond(&plan.status, condition::COMPLETED, ConditionStatus::False, "Timeout");
            assert_eq!(cond(&plan.status, condition::COMPLETED).message, want_message, "{name}");
            assert_cond(&plan.status, condition::RUNNING, ConditionStatus::False, "Timeout");
            assert_cond(
                &plan.status,
                condition::DISPATCHED,
                ConditionStatus::Unknown,
                decision::TIMEOUT_RELEASE_PENDING_REASON,
            );
            assert_eq!(plan.event, Some((true, "Timeout".to_string(), want_message)), "{name}");
            assert_eq!(plan.requeue, None, "{name}");
            assert!(!plan.release_claim, "{name}");
            assert_eq!(
                gastown(&plan.status).dispatched_at,
                a.status.as_ref().unwrap().gastown.as_ref().unwrap().dispatched_at
            );
            // The release follows from the recorded status, and nothing there slings.
            let after = with_status(a, &plan.status);
            assert_eq!(stage(&after, "gastown-local"), Stage::FinishTimeout(gt_abc()), "{name}");
        } else {
            assert!(phase(&plan) != Some(Phase::Failed), "{name}");
            assert!(
                cond_opt(&plan.status, condition::COMPLETED).is_none_or(|c| c.reason != "Timeout"),
                "{name}"
            );
        }
    }
}

/// Item 9: with `mergeStrategy: local` the work completes like any other: `gt done` closes the
/// hooked bead itself (gastown `internal/cmd/done.go`: the `local` strategy skips push and merge
/// queue, `goto notifyWitness`, then `updateAgentStateOnDone` runs `bd.Close(hookedBeadID)`
/// without a reason, which `bd close` records as `Closed`; beads `cmd/bd/close.go`). So a
/// closed bead ends Succeeded, before or after the spec's deadline.
#[test]
fn local_merge_completes_when_gt_done_closes_the_bead() {
    let a = dispatched(
        "Running",
        100,
        json!({"spec": {"mergeStrategy": "local", "timeoutSeconds": 600}}),
    );
    for reason in [Some("Closed"), Some(""), None] {
        let closed = GasTownView::Bead(bead(
            json!({"id": BEAD, "status": "closed", "assignee": TOAST, "close_reason": reason}),
        ));
        for now in [200, 699, 700, 5_000] {
            let plan = sync(&a, &closed, now);
            assert_eq!(phase(&plan), Some(Phase::Succeeded), "{reason:?} at {now}");
            assert_eq!(plan.command, None);
        }
    }
}

/// Item 5: should the status write after a timeout fail (conflict, crash, lost leadership), the
/// next sync sees the same bead past the same deadline, even once it was unslung (open): it
/// decides the timeout again and never slings.
#[test]
fn a_timeout_whose_status_write_failed_is_decided_again_not_slung() {
    let a = dispatched("Running", 100, json!({"spec": {"timeoutSeconds": 60}}));
    for v in [
        view("in_progress", Some(TOAST)),
        view("open", None),
        view("hooked", Some(TOAST)),
    ] {
        for now in [160, 161, 10_000] {
            let plan = sync(&a, &v, now);
            assert_eq!(plan.command, None, "{v:?} at {now}");
            assert_eq!(phase(&plan), Some(Phase::Failed), "{v:?} at {now}");
        }
    }
}

/// Item 6: a re-sling keeps the first dispatch time, so the deadline does not move.
#[test]
fn re_slings_keep_the_first_dispatch_time() {
    let a = dispatched("Running", 100, json!({"spec": {"timeoutSeconds": 600}}));
    let p1 = sync(&a, &view("open", None), 300);
    assert!(matches!(p1.command, Some(Command::Sling { .. })));
    assert_eq!(gastown(&p1.status).dispatched_at, time(100));
    let a = with_status(&a, &p1.status);
    let p2 = sync(&a, &view("hooked", Some(TOAST)), 400);
    assert_eq!(gastown(&p2.status).dispatched_at, time(100));
    let a = with_status(&a, &p2.status);
    assert_eq!(
        phase(&sync(&a, &view("in_progress", Some(TOAST)), 699)),
        Some(Phase::Running)
    );
    assert_eq!(
        phase(&sync(&a, &view("in_progress", Some(TOAST)), 700)),
        Some(Phase::Failed)
    );
}

#[test]
fn timeout_release_table() {
    let a = |created: bool| {
        dispatched(
            "Failed",
            0,
            json!({"metadata": {"name": "fix-login", "namespace": "team-a"}, "spec": {"timeoutSeconds": 60},
                   "status": {"gastown": {"beadCreated": created}}}),
        )
    };
    let close = Command::Close {
        bead: gt_abc(),
        reason: "timeout: the work exceeded spec.timeoutSeconds (60s) of Automaton team-a/fix-login".to_string(),
    };
    assert!(close_reason_is_failure(&decision::timeout_close_reason(&a(true))));
    let unsling = |holder: &str| Command::Unsling {
        bead: gt_abc(),
        holder: Some(holder.to_string()),
    };
    let b = |status: &str, assignee: Option<&str>| bead(json!({"id": BEAD, "status": status, "assignee": assignee}));
    // (name, created, bead, commands)
    let cases: Vec<(&str, bool, Bead, Vec<Command>)> = vec![
        (
            "ours, running",
            true,
            b("in_progress", Some(TOAST)),
            vec![unsling(TOAST), close.clone()],
        ),
        (
            "ours, hooked",
            true,
            b("hooked", Some(TOAST)),
            vec![unsling(TOAST), close.clone()],
        ),
        (
            "ours, open: closed, not left open",
            true,
            b("open", None),
            vec![close.clone()],
        ),
        ("ours, blocked", true, b("blocked", None), vec![close.clone()]),
        (
            "ours, hooked elsewhere",
            true,
            b("hooked", Some(ELSEWHERE)),
            vec![unsling(ELSEWHERE), close.clone()],
        ),
        ("ours, closed meanwhile", true, b("closed", Some(TOAST)), vec![]),
        ("ours, tombstone", true, b("tombstone", None), vec![]),
        (
            "adopted, running in our rig",
            false,
            b("in_progress", Some(TOAST)),
            vec![unsling(TOAST)],
        ),
        ("adopted, open", false, b("open", None), vec![]),
        (
            "adopted, another rig's worker",
            false,
            b("hooked", Some(ELSEWHERE)),
            vec![],
        ),
    ];
    for (name, created, bead, want) in cases {
        assert_eq!(
            decision::plan_timeout_release(&a(created), &gt_abc(), &bead),
            want,
            "{name}"
        );
    }
    // Once released: still Failed, Dispatched=False, nothing pending.
    let pending = with_status(
        &a(true),
        &sync(
            &dispatched("Running", 0, json!({"spec": {"timeoutSeconds": 60}})),
            &view("in_progress", Some(TOAST)),
            60,
        )
        .status,
    );
    assert!(decision::timeout_release_pending(&pending));
    let done = with_status(&pending, &decision::timeout_released(&pending, at(70), &settings()));
    assert!(!decision::timeout_release_pending(&done));
    assert_eq!(done.phase(), Some(Phase::Failed));
    assert_cond(
        done.status.as_ref().unwrap(),
        condition::DISPATCHED,
        ConditionStatus::False,
        decision::TIMEOUT_RELEASED_REASON,
    );
    assert_eq!(stage(&done, "gastown-local"), Stage::Terminal);
}

// ---------------------------------------------------------------------------------------------
// plan_sync(): blocked, deferred, pinned, custom statuses
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Conditions and generations across plans
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// plan_deletion()
// ---------------------------------------------------------------------------------------------

/// Recorded (created by us), deleted at T0 + 1000; then `patch`.
fn deleted(patch: Value) -> Automaton {
    recorded_with(&[json!({"metadata": {"deletionTimestamp": rfc(1_000)}}), patch])
}

fn unsling(holder: Option<&str>) -> Command {
    Command::Unsling {
        bead: gt_abc(),
        holder: holder.map(str::to_string),
    }
}

fn close() -> Command {
    Command::Close {
        bead: gt_abc(),
        reason: "cancelled: Automaton team-a/fix-login was deleted".to_string(),
    }
}

/// (name, object, bead known, view, now, commands, give_up)
type DeletionCase = (
    &'static str,
    Automaton,
    bool,
    Option<GasTownView>,
    i64,
    Vec<Command>,
    bool,
);

#[test]
fn plan_deletion_table() {
    let not_created = json!({"status": {"gastown": {"beadCreated": false}}});
    let created_unknown = json!({"status": {"gastown": {"beadCreated": null}}});
    let cases: Vec<DeletionCase> = vec![
        (
            "no bead",
            deleted(json!({"status": null})),
            false,
            None,
            1_010,
            vec![],
            false,
        ),
        (
            "no bead, far past the release timeout",
            deleted(json!({"status": null})),
            false,
            None,
            99_000,
            vec![],
            false,
        ),
        (
            "bead but nothing read",
            deleted(json!({})),
            true,
            None,
            1_010,
            vec![],
            false,
        ),
        (
            "hooked, created",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST)), close()],
            false,
        ),
        (
            "in progress, created",
            deleted(json!({})),
            true,
            Some(view("in_progress", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST)), close()],
            false,
        ),
        (
            "hooked without assignee",
            deleted(json!({})),
            true,
            Some(view("hooked", None)),
            1_010,
            vec![unsling(None), close()],
            false,
        ),
        (
            "hooked in another rig, created",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(ELSEWHERE))),
            1_010,
            vec![unsling(Some(ELSEWHERE)), close()],
            false,
        ),
        (
            "hooked, not created",
            deleted(not_created.clone()),
            true,
            Some(view("hooked", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST))],
            false,
        ),
        (
            "in progress, beadCreated unknown",
            deleted(created_unknown.clone()),
            true,
            Some(view("in_progress", Some(TOAST))),
            1_010,
            vec![unsling(Some(TOAST))],
            false,
        ),
        (
            "open, created",
            deleted(json!({})),
            true,
            Some(view("open", None)),
            1_010,
            vec![close()],
            false,
        ),
        (
            "blocked, created",
            deleted(json!({})),
            true,
            Some(view("blocked", None)),
            1_010,
            vec![close()],
            false,
        ),
        (
            "open, not created",
            deleted(not_created.clone()),
            true,
            Some(view("open", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "closed, created",
            deleted(json!({})),
            true,
            Some(view("closed", Some(TOAST))),
            1_010,
            vec![],
            false,
        ),
        (
            "closed, not created",
            deleted(not_created.clone()),
            true,
            Some(view("closed", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "tombstone, created",
            deleted(json!({})),
            true,
            Some(view("tombstone", None)),
            1_010,
            vec![],
            false,
        ),
        (
            "missing",
            deleted(json!({})),
            true,
            Some(GasTownView::Missing),
            1_010,
            vec![],
            false,
        ),
        (
            "missing, far past the release timeout",
            deleted(json!({})),
            true,
            Some(GasTownView::Missing),
            99_000,
            vec![],
            false,
        ),
        (
            "unreachable, just deleted",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_000,
            vec![],
            false,
        ),
        (
            "unreachable, within the release timeout",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_599,
            vec![],
            false,
        ),
        (
            "unreachable, at the release timeout",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            1_600,
            vec![],
            true,
        ),
        (
            "unreachable, long after",
            deleted(json!({})),
            true,
            Some(unreachable_view()),
            50_000,
            vec![],
            true,
        ),
        (
            "hooked past the release timeout: release and give up on failure",
            deleted(json!({})),
            true,
            Some(view("hooked", Some(TOAST))),
            1_600,
            vec![unsling(Some(TOAST)), close()],
            true,
        ),
        (
            "no deletionTimestamp: never gives up",
            recorded(json!({})),
            true,
            Some(unreachable_view()),
            99_000,
            vec![],
            false,
        ),
    ];
    for (name, a, known, v, now, commands, give_up) in cases {
        let id = gt_abc();
        let plan = plan_deletion(&a, known.then_some(&id), v.as_ref(), at(now), &settings());
        assert_eq!(plan, DeletionPlan { commands, give_up }, "{name}");
    }
}

#[test]
fn plan_deletion_close_reason_names_the_object() {
    let a = deleted(json!({"metadata": {"namespace": "ns2", "name": "other"}}));
    let plan = plan_deletion(&a, Some(&gt_abc()), Some(&view("open", None)), at(1_001), &settings());
    assert_eq!(
        plan.commands,
        vec![Command::Close {
            bead: gt_abc(),
            reason: "cancelled: Automaton ns2/other was deleted".to_string()
        }]
    );
}

#[test]
fn plan_deletion_leaves_work_it_never_dispatched() {
    // Adopted bead, already hooked in another rig: plan_sync never slung it (HookedElsewhere).
    let a = deleted(json!({"status": {"gastown": {"beadCreated": false}}}));
    let v = view("in_progress", Some(ELSEWHERE));
    let synced = sync(
        &recorded(json!({"status": {"gastown": {"beadCreated": false}}})),
        &v,
        10,
    );
    assert_cond(
        &synced.status,
        condition::DISPATCHED,
        ConditionStatus::False,
        "HookedElsewhere",
    );
    assert_eq!(gastown(&synced.status).dispatched_at, None);
    let plan = plan_deletion(&a, Some(&gt_abc()), Some(&v), at(1_010), &settings());
    assert_eq!(
        plan,
        DeletionPlan {
            commands: vec![],
            give_up: false
        }
    );
}

// ---------------------------------------------------------------------------------------------
// status_needs_write()
// ---------------------------------------------------------------------------------------------

/// A realistic Running status, last synced at T0 + 100.
fn running_status() -> AutomatonStatus {
    let a = dispatched("Running", 5, json!({}));
    sync(&a, &view("in_progress", Some(TOAST)), 100).status
}

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

// ---------------------------------------------------------------------------------------------
// assignee_in_rig()
// ---------------------------------------------------------------------------------------------

#[test]
fn assignee_in_rig_table() {
    let cases: [(Option<&str>, &str, bool); 10] = [
        (Some("gastown/polecats/Toast"), "gastown", true),
        (Some("gastown/Toast"), "gastown", true),
        (Some("gastown"), "gastown", true),
        (Some("other/polecats/X"), "gastown", false),
        (None, "gastown", false),
        (Some(""), "gastown", false),
        (Some("gastown2/polecats/X"), "gastown", false),
        (Some("gas/polecats/X"), "gastown", false),
        (Some("Gastown/polecats/X"), "gastown", false),
        (Some("/gastown/polecats/X"), "gastown", false),
    ];
    for (assignee, rig, want) in cases {
        assert_eq!(assignee_in_rig(assignee, rig), want, "{assignee:?} in {rig:?}");
    }
}

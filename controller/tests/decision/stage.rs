//! `stage()`: which step an Automaton is at, and the create gate of a `bd create` that may
//! still be running.

use std::time::Duration;

use gastown_controller::decision::{self, Stage, bead_recorded, stage};
use gastown_crds::contract::condition;
use gastown_crds::{Automaton, ConditionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::fixtures::*;
use json_patch::merge;

enum Want {
    Is(Stage),
    /// `Stage::Invalid` whose message contains this text (the field, the offending value).
    Invalid(&'static [&'static str]),
}

// A table: one row per case.
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
// A table: one row per case.
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

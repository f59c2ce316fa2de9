//! The status is the controller's: no spoofing of claimed work, no planted controller fields,
//! no claim of released work.

use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use gastown_tests::admission_gen::{CONTROLLER_LOOKALIKES, admission_request};
use gastown_tests::fixtures::{CLAIM_TIME, admission_automaton, claim_requested, running_claim};
use serde_json::{Value, json};

use crate::harness::{CONTROLLER_ONLY, Policy, create, local, update};

#[test]
fn status_spoofing_is_refused() {
    let mut p = Policy::standard();
    // Claimed by this town or by any other claimer (issue 14 item 14: the same rule as for the
    // main resource).
    for claimer in [DEFAULT_CLAIMER, "other-town", "town-2", "Gastown-Local", ""] {
        status_spoofing_of(&mut p, &running_claim(claimer), claimer);
    }
    p.finish("status_spoofing_is_refused");
}

fn status_spoofing_of(p: &mut Policy, old: &Value, claimer: &str) {
    let old = old.clone();
    for phase in ["Succeeded", "Failed", "Released", "Running", "Pending"] {
        let mut new = old.clone();
        new["status"] = json!({
            "phase": phase,
            "conditions": [{"type": "Completed", "status": "True", "reason": "Spoofed"}]
        });
        let mut users = vec![
            "alice",
            "bob",
            "system:anonymous",
            "",
            "system:serviceaccount:gastown-system:default",
        ];
        users.extend_from_slice(CONTROLLER_LOOKALIKES);
        for user in users {
            let req = admission_request(
                "UPDATE",
                "status",
                user,
                &["gastown-claimers", DEFAULT_CONTROLLER_USER, "system:masters"],
                new.clone(),
                old.clone(),
            );
            let claimed_by = format!("claimed by Gas Town {claimer:?}");
            p.refuses(
                &format!("status {phase} of {claimer:?}'s claim by {user:?}"),
                &req,
                403,
                &["reported only by the gastown controller", &claimed_by],
            );
        }
        let req = admission_request("UPDATE", "status", DEFAULT_CONTROLLER_USER, &[], new, old.clone());
        p.accepts_unchanged(
            &format!("status {phase} of {claimer:?}'s claim by the controller"),
            &req,
        );
    }
    // An old object that is not a JSON object cannot hide the claim.
    for bad_old in [json!(null), json!("x"), json!([old.clone()])] {
        let req = admission_request("UPDATE", "status", "bob", &[], old.clone(), bad_old.clone());
        p.refuses(
            &format!("status with oldObject {bad_old:.20}"),
            &req,
            400,
            &["oldObject"],
        );
    }
}

/// The status of an Automaton that Gas Town released: its claim and bead are kept in the status.
fn released() -> Value {
    let mut o = admission_automaton("fix-login");
    o["spec"]["executionMode"] = json!("kubernetes");
    o["spec"]["rig"] = json!("gastown");
    o["status"] = json!({
        "phase": "Released",
        "message": "claim released to Kubernetes: the spec could not be dispatched within 600s",
        "claim": {"claimedBy": DEFAULT_CLAIMER, "claimedAt": CLAIM_TIME, "requestedBy": "alice"},
        "gastown": {"beadId": "gt-a3f8", "beadCreated": true, "rig": "gastown"},
        "conditions": [{"type": "Released", "status": "True", "reason": "ClaimExpired", "message": "x",
                        "lastTransitionTime": "2026-11-28T10:10:01Z"}]
    });
    o
}

/// Issue 14 item 11: the fields the controller trusts (`status.claim`, `status.gastown`, the
/// Gas Town phases) are written by nobody else, on any Automaton; the Kubernetes executor's
/// fields stay writable; a planted status cannot be claimed.
#[test]
fn planted_status_is_refused_and_never_claimed() {
    let mut p = Policy::standard();
    let plain = admission_automaton("fix-login");
    let mut pending = plain.clone();
    pending["status"] = json!({"phase": "Pending"});
    controller_fields_are_planted_by_nobody_else(&mut p, &plain, &pending);
    let rel = released();
    released_fields_are_kept(&mut p, &rel);
    executor_fields_stay_writable(&mut p, [&plain, &pending, &rel]);
    a_planted_status_is_never_claimed(&mut p, &plain);
    p.finish("planted_status_is_refused_and_never_claimed");
}

/// `status.gastown`, `status.claim` and the Gas Town phases, planted by anyone but the
/// controller, are refused; the controller writes them.
fn controller_fields_are_planted_by_nobody_else(p: &mut Policy, plain: &Value, pending: &Value) {
    let mut users = vec![
        "alice",
        "mallory",
        "k8s-executor",
        "system:anonymous",
        "",
        "system:serviceaccount:gastown-system:default",
    ];
    users.extend_from_slice(CONTROLLER_LOOKALIKES);
    let plants: Vec<(&str, Value, &str)> = vec![
        (
            "another team's bead",
            json!({"phase": "Pending", "gastown": {"beadId": "gt-team7.3", "beadCreated": true}}),
            "status.gastown",
        ),
        (
            "beadCreated only",
            json!({"gastown": {"beadCreated": true}}),
            "status.gastown",
        ),
        ("an empty gastown", json!({"gastown": {}}), "status.gastown"),
        (
            "a claim",
            json!({"claim": {"claimedBy": DEFAULT_CLAIMER, "requestedBy": "alice"}}),
            "status.claim",
        ),
        ("phase Claimed", json!({"phase": "Claimed"}), "status.phase Claimed"),
        (
            "phase Dispatched",
            json!({"phase": "Dispatched"}),
            "status.phase Dispatched",
        ),
        ("phase Released", json!({"phase": "Released"}), "status.phase Released"),
    ];
    for old in [plain, pending] {
        for (what, status, field) in &plants {
            let mut new = old.clone();
            new["status"] = status.clone();
            for user in &users {
                let req = admission_request("UPDATE", "status", user, &["system:masters"], new.clone(), old.clone());
                p.refuses(
                    &format!("{what} planted by {user:?}"),
                    &req,
                    403,
                    &[field, CONTROLLER_ONLY],
                );
            }
            let req = admission_request(
                "UPDATE",
                "status",
                DEFAULT_CONTROLLER_USER,
                &[],
                new.clone(),
                old.clone(),
            );
            p.accepts_unchanged(&format!("{what} written by the controller"), &req);
        }
    }
}

/// The controller's fields of a released Automaton are neither changed nor erased by others.
fn released_fields_are_kept(p: &mut Policy, rel: &Value) {
    for (what, apply) in [
        (
            "bead ID changed",
            (|s: &mut Value| s["gastown"]["beadId"] = json!("gt-team7.3")) as fn(&mut Value),
        ),
        ("gastown erased", |s| {
            s.as_object_mut().unwrap().remove("gastown");
        }),
        ("gastown null", |s| s["gastown"] = Value::Null),
        ("claim erased", |s| {
            s.as_object_mut().unwrap().remove("claim");
        }),
        ("whole status replaced", |s| *s = json!({"phase": "Pending"})),
    ] {
        let mut new = rel.clone();
        apply(&mut new["status"]);
        let req = admission_request("UPDATE", "status", "k8s-executor", &[], new, rel.clone());
        p.refuses(&format!("released: {what}"), &req, 403, &[CONTROLLER_ONLY]);
    }
}

/// The Kubernetes executor's fields stay writable, also next to the controller's.
fn executor_fields_stay_writable(p: &mut Policy, olds: [&Value; 3]) {
    for old in olds {
        for phase in ["Pending", "Running", "Succeeded", "Failed"] {
            let mut new = old.clone();
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            new["status"]["phase"] = json!(phase);
            new["status"]["message"] = json!("pods running");
            new["status"]["observedGeneration"] = json!(2);
            new["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "PodsReady", "message": "1/1",
                        "lastTransitionTime": "2026-11-28T11:00:00Z"}]);
            let req = admission_request("UPDATE", "status", "k8s-executor", &[], new, old.clone());
            p.accepts_unchanged(
                &format!("executor writes {phase} over {:?}", old["status"]["phase"]),
                &req,
            );
        }
    }
}

/// A status written by the controller earlier (or planted) is never claimed.
fn a_planted_status_is_never_claimed(p: &mut Policy, plain: &Value) {
    for (what, status) in [
        (
            "a bead",
            json!({"phase": "Pending", "gastown": {"beadId": "gt-team7.3", "beadCreated": true}}),
        ),
        ("a claim", json!({"claim": {"claimedBy": DEFAULT_CLAIMER}})),
        ("beadCreated false", json!({"gastown": {"beadCreated": false}})),
    ] {
        let mut old = plain.clone();
        old["status"] = status;
        for new in [claim_requested(old.clone()), local(old.clone())] {
            p.refuses(
                &format!("claim of an Automaton whose status carries {what}"),
                &update("alice", &[], new, old.clone()),
                409,
                &["cannot be claimed", "Create a new Automaton"],
            );
        }
    }
}

/// Issue 14 item 13: an Automaton Gas Town released is not claimed again (the controller would
/// release it again at once); it stays usable in Kubernetes.
#[test]
fn released_automatons_are_not_claimed_again() {
    let mut p = Policy::standard();
    let rel = released();
    let mut bare = rel.clone();
    bare["status"] = json!({"phase": "Released"});
    for old in [&rel, &bare] {
        for (how, new) in [
            ("the annotation", claim_requested(old.clone())),
            ("executionMode local", local(old.clone())),
            ("both", local(claim_requested(old.clone()))),
        ] {
            for (user, groups) in [("alice", vec![]), ("bob", vec!["gastown-claimers"])] {
                p.refuses(
                    &format!("re-claim by {how} by {user}"),
                    &update(user, &groups, new.clone(), old.clone()),
                    409,
                    &[
                        "was released by Gas Town (status.phase Released)",
                        "Create a new Automaton to claim the work again",
                    ],
                );
            }
        }
        let mut new = old.clone();
        new["metadata"]["labels"]["app"] = json!("api");
        new["spec"]["agent"]["model"] = json!("sonnet");
        p.accepts_unchanged(
            "a released Automaton edited in Kubernetes mode",
            &update("alice", &[], new, old.clone()),
        );
    }
    // A fresh Automaton with the same work is claimed.
    p.claims(
        "the same work as a new Automaton",
        &create("alice", &[], claim_requested(admission_automaton("fix-login-2"))),
    );
    p.finish("released_automatons_are_not_claimed_again");
}

//! Adversarial requests through the compiled policy (`policy/policy.wasm` in waPC/wasmtime, as
//! policy-server runs it), and injection attempts against the policy's validation and the Gas
//! Town client's argv building.
//!
//! Policy: forged claim marks (CREATE and UPDATE), claim hijack by a second claimer, status
//! spoofing, claims by unauthorized users, changes to claimed work by anyone but the controller,
//! controller look-alike identities, injection through `spec.rig` and `spec.task.beadId`.
//! Client: the public validation API and the exec and proxy transports with hostile values.

// A test crate: panicking on setup failures is the point.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gastown_controller::gastown::testing::{EchoHandler, FakeProxyServer, TempDir, TestPki};
use gastown_controller::gastown::{
    Backoff, BeadId, Error, ExternalRef, GasTown, GasTownConfig, Transport, validate_agent_address,
    validate_description, validate_reason,
};
use gastown_tests::admission_gen::{
    BEAD_ID_INJECTIONS, CLAIM_REQUEST, CLAIMED_AT, CLAIMED_BY, CLAIMER, CONTROLLER, CONTROLLER_LOOKALIKES, INJECTIONS,
    REQUESTED_BY, ScriptedLedger, SettingsModel, admission_request, automaton, claimed, patch_op_violation,
};
use gastown_tests::policy_host::{Admission, PolicyInstance, PolicyModule, default_module_path};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------------------------

fn module() -> &'static PolicyModule {
    static MODULE: OnceLock<PolicyModule> = OnceLock::new();
    MODULE.get_or_init(|| PolicyModule::load(&default_module_path()).unwrap())
}

/// The compiled policy with one set of settings; collects every broken expectation so a test
/// reports all of them at once.
struct Policy {
    instance: PolicyInstance,
    settings: Value,
    failures: Vec<String>,
}

impl Policy {
    fn new(settings: Value) -> Policy {
        let instance = module().instance(Arc::new(ScriptedLedger::new())).unwrap();
        let answer = instance.validate_settings(&settings).unwrap();
        assert_eq!(answer["valid"], json!(true), "test settings invalid: {answer}");
        Policy {
            instance,
            settings,
            failures: Vec::new(),
        }
    }

    fn standard() -> Policy {
        Policy::new(SettingsModel::standard().to_json())
    }

    fn ask(&mut self, request: &Value) -> Option<Admission> {
        match self.instance.validate(&self.settings, request) {
            Ok(a) => Some(a),
            Err(e) => {
                self.failures
                    .push(format!("the policy failed (trap or bad answer): {e:#}"));
                // A trapped instance is not reused.
                self.instance = module().instance(Arc::new(ScriptedLedger::new())).unwrap();
                None
            }
        }
    }

    /// Expects a refusal with `code` whose message contains every part of `contains`.
    fn refuses(&mut self, what: &str, request: &Value, code: u16, contains: &[&str]) {
        let Some(a) = self.ask(request) else { return };
        if a.allowed {
            self.failures
                .push(format!("{what}: ACCEPTED (patch {:?})", a.patch.map(|p| p.to_string())));
            return;
        }
        let message = a.message.unwrap_or_default();
        if a.code != Some(code) {
            self.failures
                .push(format!("{what}: code {:?}, expected {code}: {message}", a.code));
        }
        for part in contains {
            if !message.contains(part) {
                self.failures.push(format!("{what}: message lacks {part:?}: {message}"));
            }
        }
    }

    /// Expects acceptance without any change.
    fn accepts_unchanged(&mut self, what: &str, request: &Value) {
        let Some(a) = self.ask(request) else { return };
        if !a.allowed {
            self.failures.push(format!("{what}: refused: {:?}", a.message));
        } else if let Some(p) = a.patch {
            self.failures.push(format!("{what}: unexpectedly mutated: {p}"));
        }
    }

    /// Expects a claim whose patch touches only the claim fields; returns the patched object.
    fn claims(&mut self, what: &str, request: &Value) -> Option<Value> {
        let a = self.ask(request)?;
        let original = request.get("object").cloned().unwrap_or(Value::Null);
        match (&a.allowed, &a.patch) {
            (true, Some(patch)) => {
                for op in &patch.0 {
                    if let Some(v) = patch_op_violation(&original, op) {
                        self.failures.push(format!("{what}: {v}"));
                    }
                }
                Some(a.patched(&original).unwrap())
            }
            _ => {
                self.failures
                    .push(format!("{what}: no claim: allowed={} {:?}", a.allowed, a.message));
                None
            }
        }
    }

    fn finish(self, test: &str) {
        assert!(
            self.failures.is_empty(),
            "{test}: {} broken expectations:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn create(user: &str, groups: &[&str], object: Value) -> Value {
    admission_request("CREATE", "", user, groups, object, Value::Null)
}

fn update(user: &str, groups: &[&str], object: Value, old: Value) -> Value {
    admission_request("UPDATE", "", user, groups, object, old)
}

fn local(mut o: Value) -> Value {
    o["spec"]["executionMode"] = json!("local");
    o
}

fn requested(mut o: Value) -> Value {
    o["metadata"]["annotations"][CLAIM_REQUEST] = json!("local");
    o
}

/// An Automaton claimed by `claimer` for alice on rig `gastown`, with the claim annotation and
/// the controller's finalizer, running in Gas Town.
fn claimed_by(claimer: &str) -> Value {
    let mut o = claimed(requested(automaton("fix-login")), claimer, "alice", "gastown");
    o["metadata"]["finalizers"] = json!(["gastown.io/release"]);
    o["status"] = json!({"phase": "Running"});
    o
}

const FORGED: &str = "set only by the gastown claim policy";
const CLAIMED: &str = "is claimed by Gas Town";

/// Sets (`Some`) or removes (`None`) a label or annotation.
fn set_meta(o: &mut Value, map: &str, key: &str, value: Option<&str>) {
    match value {
        Some(v) => o["metadata"][map][key] = json!(v),
        None => {
            if let Some(m) = o["metadata"][map].as_object_mut() {
                m.remove(key);
            }
        }
    }
}

#[test]
fn forged_claim_marks_on_create_are_refused() {
    let mut p = Policy::standard();
    let values = [CLAIMER, "other-town", "", "Gastown-Local", "gastown-local ", "town-2"];
    for which in 1..8u8 {
        for value in values {
            for user in ["alice", "bob", CONTROLLER_LOOKALIKES[0], "system:anonymous"] {
                for mode in [None, Some("local"), Some("kubernetes")] {
                    let mut o = automaton("fix-login");
                    if let Some(m) = mode {
                        o["spec"]["executionMode"] = json!(m);
                    }
                    if which & 1 != 0 {
                        set_meta(&mut o, "labels", CLAIMED_BY, Some(value));
                    }
                    if which & 2 != 0 {
                        set_meta(&mut o, "annotations", CLAIMED_AT, Some("2026-11-28T10:00:01Z"));
                    }
                    if which & 4 != 0 {
                        set_meta(&mut o, "annotations", REQUESTED_BY, Some(value));
                    }
                    let what = format!("CREATE by {user:?} with marks {which:03b} = {value:?}, mode {mode:?}");
                    p.refuses(&what, &create(user, &["gastown-claimers"], o), 403, &[FORGED]);
                }
            }
        }
    }
    // Marks must be strings: other JSON types are refused as malformed, not taken as absent.
    for bad in [
        json!(null),
        json!(1),
        json!(true),
        json!(["gastown-local"]),
        json!({"a": "b"}),
    ] {
        let mut o = automaton("fix-login");
        o["metadata"]["labels"][CLAIMED_BY] = bad.clone();
        p.refuses(
            &format!("CREATE with claimed-by = {bad}"),
            &create("alice", &[], o),
            400,
            &["labels"],
        );
    }
    p.finish("forged_claim_marks_on_create_are_refused");
}

#[test]
fn forging_claim_marks_via_update_is_refused() {
    let mut p = Policy::standard();
    let old = automaton("fix-login");
    for which in 1..8u8 {
        for also_request in [false, true] {
            let mut new = if also_request {
                requested(old.clone())
            } else {
                old.clone()
            };
            if which & 1 != 0 {
                set_meta(&mut new, "labels", CLAIMED_BY, Some(CLAIMER));
            }
            if which & 2 != 0 {
                set_meta(&mut new, "annotations", CLAIMED_AT, Some("2026-11-28T10:00:01Z"));
            }
            if which & 4 != 0 {
                set_meta(&mut new, "annotations", REQUESTED_BY, Some("alice"));
            }
            for user in ["alice", "bob"] {
                let what = format!("UPDATE by {user} adding marks {which:03b} (claim requested: {also_request})");
                p.refuses(
                    &what,
                    &update(user, &["gastown-claimers"], new.clone(), old.clone()),
                    403,
                    &[FORGED],
                );
            }
        }
    }
    // A stale claimed-at on the stored object (no label): changing it is a forgery too.
    let mut stale = old.clone();
    set_meta(&mut stale, "annotations", CLAIMED_AT, Some("2026-11-28T10:00:01Z"));
    let mut new = stale.clone();
    set_meta(&mut new, "annotations", CLAIMED_AT, Some("2030-01-01T00:00:00Z"));
    p.refuses(
        "UPDATE changing a stale claimed-at",
        &update("alice", &[], new, stale),
        403,
        &[FORGED],
    );
    p.finish("forging_claim_marks_via_update_is_refused");
}

/// Every change to the claim or to the work of a claimed Automaton, by anyone but the
/// controller (the requester included).
/// A named change to an Automaton.
type Change = (&'static str, fn(&mut Value));

fn claimed_changes() -> Vec<Change> {
    vec![
        ("change claimed-at only", |o| {
            set_meta(o, "annotations", CLAIMED_AT, Some("2030-01-01T00:00:00Z"))
        }),
        ("remove claimed-at only", |o| {
            set_meta(o, "annotations", CLAIMED_AT, None)
        }),
        ("remove claim-requested-by only", |o| {
            set_meta(o, "annotations", REQUESTED_BY, None)
        }),
        ("change claim-requested-by", |o| {
            set_meta(o, "annotations", REQUESTED_BY, Some("mallory"))
        }),
        ("remove the claimed-by label", |o| {
            set_meta(o, "labels", CLAIMED_BY, None)
        }),
        ("claimed-by in upper case", |o| {
            set_meta(o, "labels", CLAIMED_BY, Some("GASTOWN-LOCAL"))
        }),
        ("claimed-by with a capital", |o| {
            set_meta(o, "labels", CLAIMED_BY, Some("Gastown-local"))
        }),
        ("claimed-by with a trailing space", |o| {
            set_meta(o, "labels", CLAIMED_BY, Some("gastown-local "))
        }),
        ("claimed-by with a zero-width space", |o| {
            set_meta(o, "labels", CLAIMED_BY, Some("gastown-local\u{200b}"))
        }),
        ("claimed-by with a Cyrillic o", |o| {
            set_meta(o, "labels", CLAIMED_BY, Some("gast\u{43e}wn-local"))
        }),
        ("claimed-by emptied", |o| set_meta(o, "labels", CLAIMED_BY, Some(""))),
        ("remove the claim annotation", |o| {
            set_meta(o, "annotations", CLAIM_REQUEST, None)
        }),
        ("claim annotation to Local", |o| {
            set_meta(o, "annotations", CLAIM_REQUEST, Some("Local"))
        }),
        ("change spec.rig", |o| o["spec"]["rig"] = json!("webrig")),
        ("remove spec.rig", |o| {
            o["spec"].as_object_mut().unwrap().remove("rig");
        }),
        ("executionMode to kubernetes", |o| {
            o["spec"]["executionMode"] = json!("kubernetes")
        }),
        ("remove executionMode", |o| {
            o["spec"].as_object_mut().unwrap().remove("executionMode");
        }),
        ("change the task title", |o| {
            o["spec"]["task"]["title"] = json!("Something else")
        }),
        ("set a bead ID", |o| o["spec"]["task"]["beadId"] = json!("go-7xq")),
        ("remove the task", |o| {
            o["spec"].as_object_mut().unwrap().remove("task");
        }),
        ("labels null", |o| o["metadata"]["labels"] = Value::Null),
        ("annotations removed", |o| {
            o["metadata"].as_object_mut().unwrap().remove("annotations");
        }),
        ("metadata removed", |o| {
            o.as_object_mut().unwrap().remove("metadata");
        }),
        ("spec removed", |o| {
            o.as_object_mut().unwrap().remove("spec");
        }),
        // The whole spec is the work: frozen (issue 14 item 12).
        ("spec.timeoutSeconds to 999999", |o| {
            o["spec"]["timeoutSeconds"] = json!(999_999)
        }),
        ("spec.timeoutSeconds changed", |o| {
            o["spec"]["timeoutSeconds"] = json!(7_200)
        }),
        ("spec.agent model", |o| o["spec"]["agent"]["model"] = json!("sonnet")),
        ("spec.agent removed", |o| {
            o["spec"].as_object_mut().unwrap().remove("agent");
        }),
        ("spec.mergeStrategy set", |o| {
            o["spec"]["mergeStrategy"] = json!("direct")
        }),
        ("spec.forge changed", |o| o["spec"]["forge"] = json!("other-forge")),
        ("an unknown spec field", |o| {
            o["spec"]["futureField"]["kept"] = json!(false)
        }),
        ("a new spec field", |o| o["spec"]["newField"] = json!("x")),
        // The release finalizer is the controller's.
        ("the release finalizer removed", |o| {
            o["metadata"]["finalizers"] = json!([])
        }),
        ("the release finalizer replaced", |o| {
            o["metadata"]["finalizers"] = json!(["example.com/other"])
        }),
        ("finalizers removed", |o| {
            o["metadata"].as_object_mut().unwrap().remove("finalizers");
        }),
    ]
}

#[test]
fn changes_to_claimed_work_by_non_controller_identities_are_refused() {
    let mut p = Policy::standard();
    let old = claimed_by(CLAIMER);
    let mut users: Vec<&str> = vec![
        "alice", // the requester herself
        "bob",
        "system:anonymous",
        "",
        "system:serviceaccount:gastown-system:default",
    ];
    users.extend_from_slice(CONTROLLER_LOOKALIKES);
    for (change, apply) in claimed_changes() {
        let mut new = old.clone();
        apply(&mut new);
        for user in &users {
            let what = format!("{change} by {user:?}");
            p.refuses(
                &what,
                &update(user, &["gastown-claimers", CONTROLLER], new.clone(), old.clone()),
                403,
                &[CLAIMED],
            );
        }
        // The controller may.
        p.accepts_unchanged(
            &format!("{change} by the controller"),
            &update(CONTROLLER, &[], new, old.clone()),
        );
    }
    // Other changes stay open to users, without a re-claim.
    for (change, apply) in [
        (
            "another label",
            (|o| o["metadata"]["labels"]["app"] = json!("api")) as fn(&mut Value),
        ),
        ("another annotation", |o| {
            o["metadata"]["annotations"]["team.example.com/owner"] = json!("x")
        }),
        ("another finalizer added", |o| {
            o["metadata"]["finalizers"] = json!(["gastown.io/release", "example.com/keep"])
        }),
        ("the status (ignored by the API server on the main resource)", |o| {
            o["status"] = json!({"phase": "Succeeded"})
        }),
    ] {
        let mut new = old.clone();
        apply(&mut new);
        p.accepts_unchanged(
            &format!("{change} changed by alice"),
            &update("alice", &[], new, old.clone()),
        );
    }
    p.finish("changes_to_claimed_work_by_non_controller_identities_are_refused");
}

#[test]
fn a_claim_cannot_be_hijacked_by_a_second_claimer() {
    // This town's policy protects its own claims...
    let mut p = Policy::standard();
    let ours = claimed_by(CLAIMER);
    for to in ["other-town", "town-2", "Gastown-Local"] {
        let mut new = ours.clone();
        set_meta(&mut new, "labels", CLAIMED_BY, Some(to));
        p.refuses(
            &format!("hijack to {to}"),
            &update("alice", &["gastown-claimers"], new.clone(), ours.clone()),
            403,
            &["taken over"],
        );
        // ... also when the hijacker rewrites every mark consistently.
        set_meta(&mut new, "annotations", CLAIMED_AT, Some("2030-01-01T00:00:00Z"));
        set_meta(&mut new, "annotations", REQUESTED_BY, Some("mallory"));
        new["spec"]["rig"] = json!("webrig");
        p.refuses(
            &format!("full hijack to {to}"),
            &update("mallory", &[], new, ours.clone()),
            403,
            &["taken over"],
        );
    }
    // ... and another town's claims from being taken over into this town.
    let theirs = claimed_by("other-town");
    let mut new = theirs.clone();
    set_meta(&mut new, "labels", CLAIMED_BY, Some(CLAIMER));
    p.refuses(
        "taking another town's claim",
        &update("alice", &["gastown-claimers"], new, theirs.clone()),
        403,
        &["taken over"],
    );
    // Asking again for a claim on another town's Automaton does not re-claim it.
    p.accepts_unchanged(
        "re-requesting a claimed Automaton",
        &update("alice", &["gastown-claimers"], theirs.clone(), theirs),
    );
    p.finish("ours");

    // A second town's policy (claimer town-2) sees the first town's claims as claimed.
    let mut second = SettingsModel::standard();
    second.claimer = "town-2".to_string();
    let mut p = Policy::new(second.to_json());
    let mut new = ours.clone();
    set_meta(&mut new, "labels", CLAIMED_BY, Some("town-2"));
    p.refuses(
        "second town hijacking by user",
        &update("alice", &["gastown-claimers"], new.clone(), ours.clone()),
        403,
        &["taken over"],
    );
    // Its own controller may change the object (it is a controller identity of that policy)
    // but a look-alike of it may not.
    for user in CONTROLLER_LOOKALIKES {
        p.refuses(
            &format!("second town hijacking by {user:?}"),
            &update(user, &[], new.clone(), ours.clone()),
            403,
            &["taken over"],
        );
    }
    p.finish("second town");
}

#[test]
fn status_spoofing_is_refused() {
    let mut p = Policy::standard();
    // Claimed by this town or by any other claimer (issue 14 item 14: the same rule as for the
    // main resource).
    for claimer in [CLAIMER, "other-town", "town-2", "Gastown-Local", ""] {
        status_spoofing_of(&mut p, &claimed_by(claimer), claimer);
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
                &["gastown-claimers", CONTROLLER, "system:masters"],
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
        let req = admission_request("UPDATE", "status", CONTROLLER, &[], new, old.clone());
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
    let mut o = automaton("fix-login");
    o["spec"]["executionMode"] = json!("kubernetes");
    o["spec"]["rig"] = json!("gastown");
    o["status"] = json!({
        "phase": "Released",
        "message": "claim released to Kubernetes: the spec could not be dispatched within 600s",
        "claim": {"claimedBy": CLAIMER, "claimedAt": "2026-11-28T10:00:01Z", "requestedBy": "alice"},
        "gastown": {"beadId": "gt-a3f8", "beadCreated": true, "rig": "gastown"},
        "conditions": [{"type": "Released", "status": "True", "reason": "ClaimExpired", "message": "x",
                        "lastTransitionTime": "2026-11-28T10:10:01Z"}]
    });
    o
}

const CONTROLLER_ONLY: &str = "may be written only by the gastown controller";

/// Issue 14 item 11: the fields the controller trusts (`status.claim`, `status.gastown`, the
/// Gas Town phases) are written by nobody else, on any Automaton; the Kubernetes executor's
/// fields stay writable; a planted status cannot be claimed.
#[test]
fn planted_status_is_refused_and_never_claimed() {
    let mut p = Policy::standard();
    let mut users = vec![
        "alice",
        "mallory",
        "k8s-executor",
        "system:anonymous",
        "",
        "system:serviceaccount:gastown-system:default",
    ];
    users.extend_from_slice(CONTROLLER_LOOKALIKES);
    let plain = automaton("fix-login");
    let mut pending = plain.clone();
    pending["status"] = json!({"phase": "Pending"});
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
            json!({"claim": {"claimedBy": CLAIMER, "requestedBy": "alice"}}),
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
    for old in [&plain, &pending] {
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
            let req = admission_request("UPDATE", "status", CONTROLLER, &[], new.clone(), old.clone());
            p.accepts_unchanged(&format!("{what} written by the controller"), &req);
        }
    }
    // The controller's fields of a released Automaton are neither changed nor erased by others.
    let rel = released();
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
    // The Kubernetes executor's fields stay writable, also next to the controller's.
    for old in [&plain, &pending, &rel] {
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
    // A status written by the controller earlier (or planted) is never claimed.
    for (what, status) in [
        (
            "a bead",
            json!({"phase": "Pending", "gastown": {"beadId": "gt-team7.3", "beadCreated": true}}),
        ),
        ("a claim", json!({"claim": {"claimedBy": CLAIMER}})),
        ("beadCreated false", json!({"gastown": {"beadCreated": false}})),
    ] {
        let mut old = plain.clone();
        old["status"] = status;
        for new in [requested(old.clone()), local(old.clone())] {
            p.refuses(
                &format!("claim of an Automaton whose status carries {what}"),
                &update("alice", &[], new, old.clone()),
                409,
                &["cannot be claimed", "Create a new Automaton"],
            );
        }
    }
    p.finish("planted_status_is_refused_and_never_claimed");
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
            ("the annotation", requested(old.clone())),
            ("executionMode local", local(old.clone())),
            ("both", local(requested(old.clone()))),
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
        &create("alice", &[], requested(automaton("fix-login-2"))),
    );
    p.finish("released_automatons_are_not_claimed_again");
}

/// Issue 14 item 12: the release finalizer is added only by the controller, and removed only by
/// it from claimed work (see `changes_to_claimed_work_by_non_controller_identities_are_refused`).
#[test]
fn the_release_finalizer_is_the_controllers() {
    let mut p = Policy::standard();
    const FINALIZER: &str = "finalizer gastown.io/release is added and removed only by the gastown controller";
    for o in [
        automaton("fix-login"),
        local(automaton("fix-login")),
        requested(automaton("fix-login")),
    ] {
        let mut with = o.clone();
        with["metadata"]["finalizers"] = json!(["example.com/keep", "gastown.io/release"]);
        for user in ["alice", "bob", CONTROLLER_LOOKALIKES[0]] {
            p.refuses(
                &format!("CREATE with the finalizer by {user:?}"),
                &create(user, &["gastown-claimers"], with.clone()),
                403,
                &[FINALIZER],
            );
            p.refuses(
                &format!("UPDATE adding the finalizer by {user:?}"),
                &update(user, &["gastown-claimers"], with.clone(), automaton("fix-login")),
                403,
                &[FINALIZER],
            );
        }
        p.accepts_unchanged(
            "CREATE with the finalizer by the controller",
            &create(CONTROLLER, &[], with.clone()),
        );
    }
    // A stray finalizer on an Automaton nobody claims can be removed (the controller does not
    // watch it, so nobody else would).
    let mut stray = automaton("fix-login");
    stray["metadata"]["finalizers"] = json!(["gastown.io/release"]);
    p.accepts_unchanged(
        "removing a stray finalizer",
        &update("alice", &[], automaton("fix-login"), stray),
    );
    p.finish("the_release_finalizer_is_the_controllers");
}

#[test]
fn claims_by_unauthorized_users_are_refused() {
    let mut p = Policy::standard();
    let unauthorized: &[(&str, &[&str])] = &[
        ("bob", &[]),
        ("bob", &["system:authenticated", "developers", "system:masters"]),
        ("bob", &["Gastown-Claimers"]),
        ("bob", &["gastown-claimers "]),
        ("bob", &[" gastown-claimers"]),
        ("bob", &["gastown-claimers\n"]),
        ("Alice", &[]),
        ("ALICE", &[]),
        ("alice ", &[]),
        (" alice", &[]),
        ("alice\n", &[]),
        ("\u{430}lice", &[]), // Cyrillic а
        ("alice\u{200b}", &[]),
        ("gastown-claimers", &[]),
        ("system:anonymous", &["system:unauthenticated"]),
        ("", &[]),
        ("system:serviceaccount:gastown-system:gastown-operator ", &[]),
    ];
    for (user, groups) in unauthorized {
        for (how, object) in [
            ("mode local", local(automaton("fix-login"))),
            ("the claim annotation", requested(automaton("fix-login"))),
        ] {
            let what = format!("CREATE by {user:?} {groups:?} with {how}");
            p.refuses(&what, &create(user, groups, object.clone()), 403, &["may not claim"]);
            let what = format!("UPDATE by {user:?} {groups:?} adding {how}");
            p.refuses(
                &what,
                &update(user, groups, object, automaton("fix-login")),
                403,
                &["may not claim"],
            );
        }
    }
    // The allowed ones claim, and the patch is the claim only.
    for (user, groups) in [("alice", &[][..]), ("bob", &["gastown-claimers"][..])] {
        let patched = p.claims(
            &format!("claim by {user}"),
            &create(user, groups, local(automaton("fix-login"))),
        );
        if let Some(o) = patched {
            assert_eq!(o["metadata"]["annotations"][REQUESTED_BY], json!(user));
        }
    }
    p.finish("standard settings");

    // With no allow-list, any authenticated user may claim; anonymous ones may not.
    let mut p = Policy::new(SettingsModel::defaults().to_json());
    for (user, groups) in [
        ("system:anonymous", &[][..]),
        ("system:anonymous", &["system:unauthenticated"][..]),
        ("", &["system:authenticated"][..]),
        ("bob", &["system:unauthenticated"][..]),
    ] {
        let what = format!("CREATE by {user:?} {groups:?} without allow-list");
        // Defaults have no rig: the refusal may also name the missing rig, but never claims.
        let mut o = local(automaton("fix-login"));
        o["spec"]["rig"] = json!("gastown");
        p.refuses(&what, &create(user, groups, o), 403, &["may not claim"]);
    }
    let mut o = local(automaton("fix-login"));
    o["spec"]["rig"] = json!("gastown");
    p.claims(
        "authenticated bob without allow-list",
        &create("bob", &["system:authenticated"], o),
    );
    p.finish("default settings");
}

#[test]
fn controller_look_alikes_are_not_the_controller() {
    let mut p = Policy::standard();
    let old = claimed_by(CLAIMER);
    let mut released = old.clone();
    set_meta(&mut released, "labels", CLAIMED_BY, None);
    set_meta(&mut released, "annotations", CLAIMED_AT, None);
    set_meta(&mut released, "annotations", REQUESTED_BY, None);
    released["spec"]["executionMode"] = json!("kubernetes");
    let mut users: Vec<&str> = CONTROLLER_LOOKALIKES.to_vec();
    users.push("system:serviceaccount:gastown-system:gastown-operator\r");
    users.push("system:serviceaccount:gastown-system:gastown-operator\u{a0}");
    users.push("system:serviceaccount:gastown-system:gastown-operator\u{2028}");
    for user in users {
        p.refuses(
            &format!("release by {user:?}"),
            &update(user, &[CONTROLLER], released.clone(), old.clone()),
            403,
            &[CLAIMED],
        );
        let status = admission_request("UPDATE", "status", user, &[CONTROLLER], old.clone(), old.clone());
        p.refuses(&format!("status by {user:?}"), &status, 403, &["reported only"]);
        let mut forged = automaton("fix-login");
        set_meta(&mut forged, "labels", CLAIMED_BY, Some(CLAIMER));
        p.refuses(
            &format!("pre-claimed CREATE by {user:?}"),
            &create(user, &[CONTROLLER], forged),
            403,
            &[FORGED],
        );
    }
    // The controller identity only as a group is not the controller either.
    p.refuses(
        "release by a user in a group named like the controller",
        &update("bob", &[CONTROLLER], released.clone(), old.clone()),
        403,
        &[CLAIMED],
    );
    // The real controller may do all three.
    p.accepts_unchanged(
        "release by the controller",
        &update(CONTROLLER, &[], released, old.clone()),
    );
    p.accepts_unchanged(
        "status by the controller",
        &admission_request("UPDATE", "status", CONTROLLER, &[], old.clone(), old),
    );
    let mut forged = automaton("fix-login");
    set_meta(&mut forged, "labels", CLAIMED_BY, Some(CLAIMER));
    p.accepts_unchanged("pre-claimed CREATE by the controller", &create(CONTROLLER, &[], forged));
    p.finish("controller_look_alikes_are_not_the_controller");
}

#[test]
fn injection_through_rig_and_bead_id_is_refused_by_the_policy() {
    let mut p = Policy::standard();
    let mut rigs: Vec<String> = INJECTIONS.iter().map(|s| (*s).to_string()).collect();
    rigs.extend([
        "a".repeat(65),
        "1gastown".to_string(),
        "_gastown".to_string(),
        "gastown\u{301}".to_string(),
        "gas\u{2028}town".to_string(),
    ]);
    for rig in &rigs {
        for (user, how) in [("alice", "CREATE"), ("alice", "UPDATE")] {
            let mut o = local(automaton("fix-login"));
            o["spec"]["rig"] = json!(rig);
            let req = if how == "CREATE" {
                create(user, &[], o)
            } else {
                update(user, &[], o, automaton("fix-login"))
            };
            p.refuses(
                &format!("{how} with spec.rig {rig:?}"),
                &req,
                400,
                &["spec.rig", "rig name"],
            );
        }
    }
    for id in BEAD_ID_INJECTIONS {
        let mut o = requested(automaton("fix-login"));
        o["spec"]["task"]["beadId"] = json!(id);
        p.refuses(
            &format!("spec.task.beadId {id:?}"),
            &create("alice", &[], o),
            400,
            &["spec.task.beadId"],
        );
    }
    // A hostile Forge name is never used as a rig: it maps to nothing, so the default rig is used.
    for forge in ["$(id)", "-rf", "../x", "web-forge;x"] {
        let mut o = local(automaton("fix-login"));
        o["spec"]["forge"] = json!(forge);
        if let Some(patched) = p.claims(&format!("forge {forge:?}"), &create("alice", &[], o)) {
            assert_eq!(patched["spec"]["rig"], json!("gastown"), "forge {forge:?}");
        }
    }
    p.finish("injection_through_rig_and_bead_id_is_refused_by_the_policy");

    // Settings cannot smuggle them in either.
    let instance = module().instance(Arc::new(ScriptedLedger::new())).unwrap();
    for rig in &rigs {
        for settings in [json!({"defaultRig": rig}), json!({"forgeRigs": {"web-forge": rig}})] {
            let answer = instance.validate_settings(&settings).unwrap();
            assert_eq!(answer["valid"], json!(false), "{settings}: {answer}");
        }
    }
    for claimer in ["gas;town", "$(id)", "-town", "Town", "town\n", "t\u{43e}wn", "a.b"] {
        let answer = instance.validate_settings(&json!({"claimer": claimer})).unwrap();
        assert_eq!(answer["valid"], json!(false), "claimer {claimer:?}: {answer}");
    }
}

// ---------------------------------------------------------------------------------------------
// The Gas Town client (controller/src/gastown): public validation and argv
// ---------------------------------------------------------------------------------------------

/// Injection strings that are not valid agent names (`hq` is a fine agent name).
fn agent_injections() -> impl Iterator<Item = &'static str> {
    INJECTIONS.iter().copied().filter(|s| !s.eq_ignore_ascii_case("hq"))
}

#[test]
fn client_validation_refuses_injection() {
    for id in BEAD_ID_INJECTIONS {
        assert!(BeadId::parse(id).is_err(), "bead ID {id:?}");
        assert!(
            serde_json::from_value::<BeadId>(json!(id)).is_err(),
            "bead ID {id:?} via serde"
        );
    }
    for ok in ["go-7xq", "gt-a3f8.1", "hq-cv-x1"] {
        assert_eq!(BeadId::parse(ok).unwrap().as_str(), ok);
    }
    for value in INJECTIONS.iter().chain(&[
        "automaton:ns/../x",
        "automaton:ns/./x",
        "automaton:ns/a b/c",
        "automaton:ns/x/..",
    ]) {
        if *value == "hq" || *value == "HQ" {
            continue; // a valid reference; not an operand position that matters
        }
        assert!(ExternalRef::parse(value).is_err(), "external ref {value:?}");
    }
    // (`hq` is a fine namespace, name and UID.)
    for inj in INJECTIONS.iter().filter(|s| !s.eq_ignore_ascii_case("hq")) {
        for (ns, name, uid) in [(*inj, "a", "u1"), ("ns", *inj, "u1"), ("ns", "a", *inj)] {
            assert!(
                ExternalRef::for_automaton(ns, name, uid).is_err(),
                "{ns:?} {name:?} {uid:?}"
            );
        }
    }
    for inj in agent_injections() {
        for address in [
            format!("{inj}/Toast"),
            format!("gastown/{inj}"),
            format!("gastown/polecats/{inj}"),
            format!("gastown/{inj}/Toast"),
        ] {
            assert!(validate_agent_address(&address).is_err(), "agent address {address:?}");
        }
    }
    for reason in ["a\nb", "a\rb", "done\u{0}", "\u{1b}[2J", "x\u{85}y", ""] {
        assert!(validate_reason(reason).is_err(), "reason {reason:?}");
    }
    for description in ["a\u{0}b", "\u{1b}]0;title\u{7}", "a\u{7f}"] {
        assert!(
            validate_description(description).is_err(),
            "description {description:?}"
        );
    }
}

/// A town with `gt` and `bd` stand-ins that record their argv (NUL-separated) and print a
/// bead ID; none of them goes through a shell interpretation of its arguments.
struct Town {
    _dir: TempDir,
    root: PathBuf,
    client: GasTown,
}

const RECORD: &str = "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\" >> argv.log\necho go-7xq\n";

impl Town {
    fn new() -> Town {
        let dir = TempDir::new("gastown-adversarial").unwrap();
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor")).unwrap();
        std::fs::write(root.join("mayor/town.json"), "{}").unwrap();
        let gt = dir.write_executable("bin/gt", RECORD).unwrap();
        let bd = dir.write_executable("bin/bd", RECORD).unwrap();
        let mut config = GasTownConfig::new(Transport::Exec {
            town_root: root.clone(),
            gt_path: gt,
            bd_path: bd,
            actor: Some("gastown-operator".to_string()),
        });
        config.retries = 0;
        config.command_timeout = Duration::from_secs(10);
        config.backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            multiplier: 1,
        };
        Town {
            _dir: dir,
            root,
            client: GasTown::new(config).unwrap(),
        }
    }

    /// Every recorded invocation, each as its argv (program path first).
    fn invocations(&self) -> Vec<Vec<String>> {
        let log = std::fs::read(self.root.join("argv.log")).unwrap_or_default();
        let log = log.strip_suffix(&[0]).unwrap_or(&log);
        let args: Vec<String> = log
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let mut out: Vec<Vec<String>> = Vec::new();
        for arg in args {
            if arg.ends_with("/bin/gt") || arg.ends_with("/bin/bd") {
                out.push(vec![arg]);
            } else if let Some(last) = out.last_mut() {
                last.push(arg);
            }
        }
        out
    }

    fn no_shell_ran(&self) {
        for marker in ["pwned", "pwned2", "pwned3", "y", "passwd"] {
            assert!(
                !self.root.join(marker).exists(),
                "{marker} exists: a shell interpreted an argument"
            );
        }
    }
}

fn invalid(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.metric_label(), "invalid_argument", "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted ({v:?})"),
    }
}

#[tokio::test]
async fn client_refuses_hostile_operands_before_running_anything() {
    let town = Town::new();
    let bead = BeadId::parse("go-7xq").unwrap();
    for rig in INJECTIONS {
        invalid(
            town.client.sling(&bead, rig, None, None).await,
            &format!("sling to rig {rig:?}"),
        );
    }
    for agent in agent_injections() {
        invalid(
            town.client.sling(&bead, "gastown", None, Some(agent)).await,
            &format!("sling with agent {agent:?}"),
        );
        invalid(
            town.client
                .unsling(&bead, Some(&format!("gastown/polecats/{agent}")), true)
                .await,
            &format!("unsling holder gastown/polecats/{agent:?}"),
        );
    }
    let reference = ExternalRef::for_automaton("team-a", "fix-login", "6f1c2a9e").unwrap();
    let long = "t".repeat(201);
    for title in ["a\nb", "x\u{0}", "\u{1b}[31mred", "", long.as_str()] {
        invalid(
            town.client.create_bead(title, "", &reference).await,
            &format!("title {title:.20?}"),
        );
    }
    for reason in ["done\n--force", "x\u{0}", ""] {
        invalid(
            town.client.close_bead(&bead, reason).await,
            &format!("reason {reason:?}"),
        );
    }
    assert!(town.invocations().is_empty(), "something ran: {:?}", town.invocations());
}

#[tokio::test]
async fn hostile_but_valid_text_stays_one_literal_operand() {
    let town = Town::new();
    let reference = ExternalRef::for_automaton("team-a", "fix-login", "6f1c2a9e").unwrap();
    let titles = [
        "-rf",
        "--help",
        "--external-ref=evil",
        "Fix; touch pwned $(touch pwned2) `touch pwned3` | x > y",
        "'; cat /etc/passwd > passwd; '",
        "\u{202e}gnp.exe",
        "../../etc/passwd",
    ];
    for title in titles {
        let id = town
            .client
            .create_bead(title, "--silent\n-d x\n$(touch pwned)", &reference)
            .await
            .unwrap();
        assert_eq!(id.as_str(), "go-7xq");
    }
    let bead = BeadId::parse("go-7xq").unwrap();
    town.client
        .close_bead(&bead, "--force -- $(touch pwned)")
        .await
        .unwrap();
    let calls = town.invocations();
    assert_eq!(calls.len(), titles.len() + 1, "{calls:?}");
    for (call, title) in calls.iter().zip(titles) {
        let sep = call.iter().position(|a| a == "--").expect("an option terminator");
        assert_eq!(
            &call[sep + 1..],
            [title.to_string()],
            "title after `--` as one operand: {call:?}"
        );
        let d = call.iter().position(|a| a == "-d").unwrap();
        assert_eq!(
            call[d + 1],
            "--silent\n-d x\n$(touch pwned)",
            "description as one option value"
        );
    }
    let close = calls.last().unwrap();
    assert_eq!(close[1..], ["close", "-r", "--force -- $(touch pwned)", "--", "go-7xq"]);
    town.no_shell_ran();
}

#[tokio::test]
async fn proxy_transport_sends_hostile_text_as_literal_argv() {
    let pki = TestPki::new("adversarial CA").unwrap();
    let server = pki.server_cert().unwrap();
    let (_, proxy) = FakeProxyServer::start_with_allow_list(
        pki.ca_pem(),
        &server.cert_pem,
        &server.key_pem,
        Arc::new(EchoHandler),
        None,
    )
    .await
    .unwrap();
    let client_cert = pki.client_cert("gt-operator-controller").unwrap();
    let dir = TempDir::new("gastown-adversarial-proxy").unwrap();
    let mut config = GasTownConfig::new(Transport::Proxy {
        url: proxy.url(),
        client_cert: dir.write("client.crt", &client_cert.cert_pem).unwrap(),
        client_key: dir.write("client.key", &client_cert.key_pem).unwrap(),
        ca: dir.write("ca.crt", pki.ca_pem()).unwrap(),
    });
    config.retries = 0;
    let client = GasTown::new(config).unwrap();
    let bead = BeadId::parse("go-7xq").unwrap();
    // Refused before anything is sent.
    for rig in INJECTIONS {
        invalid(
            client.sling(&bead, rig, None, None).await,
            &format!("proxy sling to {rig:?}"),
        );
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    // Valid operands arrive exactly, after `--`.
    client.sling(&bead, "gastown", None, Some("claude-1.x")).await.unwrap();
    client.close_bead(&bead, "-rf $(id); `id`").await.unwrap();
    let sent: Vec<Vec<String>> = proxy.requests().into_iter().map(|r| r.argv).collect();
    assert_eq!(
        sent,
        [
            vec!["gt", "sling", "--agent", "claude-1.x", "--", "go-7xq", "gastown"],
            vec!["bd", "close", "-r", "-rf $(id); `id`", "--", "go-7xq"],
        ]
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    );
}

#[test]
fn module_path_is_the_compiled_policy() {
    // The adversarial tests must run against the module `make policy` builds.
    assert!(Path::new(&default_module_path()).exists(), "run `make policy` first");
}

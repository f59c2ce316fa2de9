//! Claimed work is the controller's: its claim, spec and finalizer, and no hijack by a
//! second claimer.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER,
    DEFAULT_CONTROLLER_USER, RELEASE_FINALIZER,
};
use gastown_tests::admission_gen::{CONTROLLER_LOOKALIKES, SettingsModel};
use gastown_tests::fixtures::{admission_automaton, claim_requested, running_claim};
use serde_json::{Value, json};

use crate::harness::{CLAIMED, Policy, create, local, set_meta, update};

/// A named change to an Automaton.
type Change = (&'static str, fn(&mut Value));

/// Every change to the claim or to the work of a claimed Automaton, by anyone but the
/// controller (the requester included).
// A table: one row per change.
fn claimed_changes() -> Vec<Change> {
    vec![
        ("change claimed-at only", |o| {
            set_meta(o, "annotations", CLAIMED_AT_ANNOTATION, Some("2030-01-01T00:00:00Z"))
        }),
        ("remove claimed-at only", |o| {
            set_meta(o, "annotations", CLAIMED_AT_ANNOTATION, None)
        }),
        ("remove claim-requested-by only", |o| {
            set_meta(o, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, None)
        }),
        ("change claim-requested-by", |o| {
            set_meta(o, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, Some("mallory"))
        }),
        ("remove the claimed-by label", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, None)
        }),
        ("claimed-by in upper case", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some("GASTOWN-LOCAL"))
        }),
        ("claimed-by with a capital", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some("Gastown-local"))
        }),
        ("claimed-by with a trailing space", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some("gastown-local "))
        }),
        ("claimed-by with a zero-width space", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some("gastown-local\u{200b}"))
        }),
        ("claimed-by with a Cyrillic o", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some("gast\u{43e}wn-local"))
        }),
        ("claimed-by emptied", |o| {
            set_meta(o, "labels", CLAIMED_BY_LABEL, Some(""))
        }),
        ("remove the claim annotation", |o| {
            set_meta(o, "annotations", CLAIM_REQUEST_ANNOTATION, None)
        }),
        ("claim annotation to Local", |o| {
            set_meta(o, "annotations", CLAIM_REQUEST_ANNOTATION, Some("Local"))
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
    let old = running_claim(DEFAULT_CLAIMER);
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
                &update(
                    user,
                    &["gastown-claimers", DEFAULT_CONTROLLER_USER],
                    new.clone(),
                    old.clone(),
                ),
                403,
                &[CLAIMED],
            );
        }
        // The controller may.
        p.accepts_unchanged(
            &format!("{change} by the controller"),
            &update(DEFAULT_CONTROLLER_USER, &[], new, old.clone()),
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
            o["metadata"]["finalizers"] = json!([RELEASE_FINALIZER, "example.com/keep"])
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
    let ours = running_claim(DEFAULT_CLAIMER);
    for to in ["other-town", "town-2", "Gastown-Local"] {
        let mut new = ours.clone();
        set_meta(&mut new, "labels", CLAIMED_BY_LABEL, Some(to));
        p.refuses(
            &format!("hijack to {to}"),
            &update("alice", &["gastown-claimers"], new.clone(), ours.clone()),
            403,
            &["taken over"],
        );
        // ... also when the hijacker rewrites every mark consistently.
        set_meta(
            &mut new,
            "annotations",
            CLAIMED_AT_ANNOTATION,
            Some("2030-01-01T00:00:00Z"),
        );
        set_meta(&mut new, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, Some("mallory"));
        new["spec"]["rig"] = json!("webrig");
        p.refuses(
            &format!("full hijack to {to}"),
            &update("mallory", &[], new, ours.clone()),
            403,
            &["taken over"],
        );
    }
    // ... and another town's claims from being taken over into this town.
    let theirs = running_claim("other-town");
    let mut new = theirs.clone();
    set_meta(&mut new, "labels", CLAIMED_BY_LABEL, Some(DEFAULT_CLAIMER));
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
    second.towns[0].name = "town-2".to_string();
    let mut p = Policy::new(second.to_json());
    let mut new = ours.clone();
    set_meta(&mut new, "labels", CLAIMED_BY_LABEL, Some("town-2"));
    p.refuses(
        "second town hijacking by user",
        &update("alice", &["gastown-claimers"], new.clone(), ours.clone()),
        403,
        &["taken over"],
    );
    // Its own controller may change the object (with single-town settings a controller identity
    // acts on every claim) but a look-alike of it may not.
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

/// Issue 14 item 12: the release finalizer is added only by the controller, and removed only by
/// it from claimed work (see `changes_to_claimed_work_by_non_controller_identities_are_refused`).
#[test]
fn the_release_finalizer_is_the_controllers() {
    let mut p = Policy::standard();
    const FINALIZER: &str = "finalizer gastown.io/release is added and removed only by the gastown controller";
    for o in [
        admission_automaton("fix-login"),
        local(admission_automaton("fix-login")),
        claim_requested(admission_automaton("fix-login")),
    ] {
        let mut with = o.clone();
        with["metadata"]["finalizers"] = json!(["example.com/keep", RELEASE_FINALIZER]);
        for user in ["alice", "bob", CONTROLLER_LOOKALIKES[0]] {
            p.refuses(
                &format!("CREATE with the finalizer by {user:?}"),
                &create(user, &["gastown-claimers"], with.clone()),
                403,
                &[FINALIZER],
            );
            p.refuses(
                &format!("UPDATE adding the finalizer by {user:?}"),
                &update(
                    user,
                    &["gastown-claimers"],
                    with.clone(),
                    admission_automaton("fix-login"),
                ),
                403,
                &[FINALIZER],
            );
        }
        p.accepts_unchanged(
            "CREATE with the finalizer by the controller",
            &create(DEFAULT_CONTROLLER_USER, &[], with.clone()),
        );
    }
    // A stray finalizer on an Automaton nobody claims can be removed (the controller does not
    // watch it, so nobody else would).
    let mut stray = admission_automaton("fix-login");
    stray["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]);
    p.accepts_unchanged(
        "removing a stray finalizer",
        &update("alice", &[], admission_automaton("fix-login"), stray),
    );
    p.finish("the_release_finalizer_is_the_controllers");
}

//! Who may claim, and who is the controller: allow-lists and look-alike identities.

use gastown_crds::contract::{
    CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER,
};
use gastown_tests::admission_gen::{CONTROLLER_LOOKALIKES, SettingsModel, admission_request};
use gastown_tests::fixtures::{admission_automaton, claim_requested, running_claim};
use serde_json::json;

use crate::harness::{CLAIMED, FORGED, Policy, create, local, set_meta, update};

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
            ("mode local", local(admission_automaton("fix-login"))),
            (
                "the claim annotation",
                claim_requested(admission_automaton("fix-login")),
            ),
        ] {
            let what = format!("CREATE by {user:?} {groups:?} with {how}");
            p.refuses(&what, &create(user, groups, object.clone()), 403, &["may not claim"]);
            let what = format!("UPDATE by {user:?} {groups:?} adding {how}");
            p.refuses(
                &what,
                &update(user, groups, object, admission_automaton("fix-login")),
                403,
                &["may not claim"],
            );
        }
    }
    // The allowed ones claim, and the patch is the claim only.
    for (user, groups) in [("alice", &[][..]), ("bob", &["gastown-claimers"][..])] {
        let patched = p.claims(
            &format!("claim by {user}"),
            &create(user, groups, local(admission_automaton("fix-login"))),
        );
        if let Some(o) = patched {
            assert_eq!(o["metadata"]["annotations"][CLAIM_REQUESTED_BY_ANNOTATION], json!(user));
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
        let mut o = local(admission_automaton("fix-login"));
        o["spec"]["rig"] = json!("gastown");
        p.refuses(&what, &create(user, groups, o), 403, &["may not claim"]);
    }
    let mut o = local(admission_automaton("fix-login"));
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
    let old = running_claim(DEFAULT_CLAIMER);
    let mut released = old.clone();
    set_meta(&mut released, "labels", CLAIMED_BY_LABEL, None);
    set_meta(&mut released, "annotations", CLAIMED_AT_ANNOTATION, None);
    set_meta(&mut released, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, None);
    released["spec"]["executionMode"] = json!("kubernetes");
    let mut users: Vec<&str> = CONTROLLER_LOOKALIKES.to_vec();
    users.push("system:serviceaccount:gastown-system:gastown-operator\r");
    users.push("system:serviceaccount:gastown-system:gastown-operator\u{a0}");
    users.push("system:serviceaccount:gastown-system:gastown-operator\u{2028}");
    for user in users {
        p.refuses(
            &format!("release by {user:?}"),
            &update(user, &[DEFAULT_CONTROLLER_USER], released.clone(), old.clone()),
            403,
            &[CLAIMED],
        );
        let status = admission_request(
            "UPDATE",
            "status",
            user,
            &[DEFAULT_CONTROLLER_USER],
            old.clone(),
            old.clone(),
        );
        p.refuses(&format!("status by {user:?}"), &status, 403, &["reported only"]);
        let mut forged = admission_automaton("fix-login");
        set_meta(&mut forged, "labels", CLAIMED_BY_LABEL, Some(DEFAULT_CLAIMER));
        p.refuses(
            &format!("pre-claimed CREATE by {user:?}"),
            &create(user, &[DEFAULT_CONTROLLER_USER], forged),
            403,
            &[FORGED],
        );
    }
    // The controller identity only as a group is not the controller either.
    p.refuses(
        "release by a user in a group named like the controller",
        &update("bob", &[DEFAULT_CONTROLLER_USER], released.clone(), old.clone()),
        403,
        &[CLAIMED],
    );
    // The real controller may do all three.
    p.accepts_unchanged(
        "release by the controller",
        &update(DEFAULT_CONTROLLER_USER, &[], released, old.clone()),
    );
    p.accepts_unchanged(
        "status by the controller",
        &admission_request("UPDATE", "status", DEFAULT_CONTROLLER_USER, &[], old.clone(), old),
    );
    let mut forged = admission_automaton("fix-login");
    set_meta(&mut forged, "labels", CLAIMED_BY_LABEL, Some(DEFAULT_CLAIMER));
    p.accepts_unchanged(
        "pre-claimed CREATE by the controller",
        &create(DEFAULT_CONTROLLER_USER, &[], forged),
    );
    p.finish("controller_look_alikes_are_not_the_controller");
}

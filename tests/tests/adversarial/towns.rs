//! Many Gas Towns under one policy (issue 16): no town's controller, and no user, takes over,
//! releases or reports on another town's claims; an orphaned claim can only be let go.

use gastown_crds::contract::{CLAIMED_BY_LABEL, DEFAULT_CONTROLLER_USER};
use gastown_tests::admission_gen::{
    BOB_CONTROLLER, CAROL_CONTROLLER, CONTROLLER_LOOKALIKES, SettingsModel, admission_request,
};
use gastown_tests::fixtures::running_claim;
use serde_json::json;

use crate::harness::{CLAIMED, Policy, set_meta, update};

/// Every change a controller makes to its own claims, by every identity that is not that
/// town's controller: refused.
#[test]
fn other_towns_controllers_do_not_touch_a_claim() {
    let mut p = Policy::new(SettingsModel::three_towns().to_json());
    let ours = running_claim("town-alice");
    let mut released = ours.clone();
    released["metadata"]["finalizers"] = json!([]);
    let mut unmarked = released.clone();
    set_meta(&mut unmarked, "labels", CLAIMED_BY_LABEL, None);
    let mut taken = ours.clone();
    set_meta(&mut taken, "labels", CLAIMED_BY_LABEL, Some("town-bob"));
    let mut status = ours.clone();
    status["status"] = json!({"phase": "Released", "message": "released by town-bob"});
    let mut others = vec![BOB_CONTROLLER, CAROL_CONTROLLER, "alice", "bob"];
    others.extend_from_slice(CONTROLLER_LOOKALIKES);
    for user in others {
        for (what, new) in [("finalizer", &released), ("marks", &unmarked), ("take over", &taken)] {
            p.refuses(
                &format!("{what} by {user:?}"),
                &update(user, &[], new.clone(), ours.clone()),
                403,
                &[CLAIMED, "\"town-alice\""],
            );
        }
        p.refuses(
            &format!("status by {user:?}"),
            &admission_request("UPDATE", "status", user, &[], status.clone(), ours.clone()),
            403,
            &["claimed by Gas Town \"town-alice\""],
        );
    }
    // Its own controller does all of it.
    for (what, new) in [("finalizer", &released), ("marks", &unmarked)] {
        p.accepts_unchanged(what, &update(DEFAULT_CONTROLLER_USER, &[], new.clone(), ours.clone()));
    }
    p.accepts_unchanged(
        "status",
        &admission_request("UPDATE", "status", DEFAULT_CONTROLLER_USER, &[], status, ours.clone()),
    );
    // ... but does not hand the claim to another town either.
    p.refuses(
        "relabel by its own controller",
        &update(DEFAULT_CONTROLLER_USER, &[], taken, ours),
        403,
        &["not a controller of Gas Town \"town-bob\""],
    );
    p.finish("other_towns_controllers_do_not_touch_a_claim");
}

/// A claim of a town gone from the settings: anyone may remove its finalizer and marks, nobody
/// may change it otherwise, hand it to a town or write its status.
#[test]
fn an_orphaned_claim_can_only_be_let_go() {
    let mut p = Policy::new(SettingsModel::three_towns().to_json());
    let gone = running_claim("town-gone");
    let mut released = gone.clone();
    released["metadata"]["finalizers"] = json!(["example.com/keep"]);
    set_meta(&mut released, "labels", CLAIMED_BY_LABEL, None);
    for user in ["erin", "alice", BOB_CONTROLLER] {
        p.accepts_unchanged(
            &format!("release by {user:?}"),
            &update(user, &[], released.clone(), gone.clone()),
        );
        for town in ["town-alice", "town-bob", "town-gone2"] {
            let mut taken = gone.clone();
            set_meta(&mut taken, "labels", CLAIMED_BY_LABEL, Some(town));
            p.refuses(
                &format!("relabel to {town} by {user:?}"),
                &update(user, &[], taken, gone.clone()),
                403,
                &["taken over"],
            );
        }
        let mut spec = released.clone();
        spec["spec"]["rig"] = json!("api");
        p.refuses(
            &format!("spec by {user:?}"),
            &update(user, &[], spec, gone.clone()),
            403,
            &["not in the policy's settings"],
        );
        // The finalizer may go, not come back.
        let mut bare = gone.clone();
        bare["metadata"]["finalizers"] = json!([]);
        p.refuses(
            &format!("finalizer added by {user:?}"),
            &update(user, &[], gone.clone(), bare),
            403,
            &["metadata.finalizers[gastown.io/release]"],
        );
        let mut status = gone.clone();
        status["status"] = json!({"phase": "Released"});
        p.refuses(
            &format!("status by {user:?}"),
            &admission_request("UPDATE", "status", user, &[], status, gone.clone()),
            403,
            &["claimed by Gas Town \"town-gone\""],
        );
    }
    p.finish("an_orphaned_claim_can_only_be_let_go");
}

//! Claim marks forged on CREATE and UPDATE.

use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_tests::admission_gen::CONTROLLER_LOOKALIKES;
use gastown_tests::fixtures::{CLAIM_TIME, admission_automaton, claim_requested};
use serde_json::json;

use crate::harness::{FORGED, Policy, create, set_meta, update};

#[test]
fn forged_claim_marks_on_create_are_refused() {
    let mut p = Policy::standard();
    let values = [
        DEFAULT_CLAIMER,
        "other-town",
        "",
        "Gastown-Local",
        "gastown-local ",
        "town-2",
    ];
    for which in 1..8u8 {
        for value in values {
            for user in ["alice", "bob", CONTROLLER_LOOKALIKES[0], "system:anonymous"] {
                for mode in [None, Some("local"), Some("kubernetes")] {
                    let mut o = admission_automaton("fix-login");
                    if let Some(m) = mode {
                        o["spec"]["executionMode"] = json!(m);
                    }
                    if which & 1 != 0 {
                        set_meta(&mut o, "labels", CLAIMED_BY_LABEL, Some(value));
                    }
                    if which & 2 != 0 {
                        set_meta(&mut o, "annotations", CLAIMED_AT_ANNOTATION, Some(CLAIM_TIME));
                    }
                    if which & 4 != 0 {
                        set_meta(&mut o, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, Some(value));
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
        let mut o = admission_automaton("fix-login");
        o["metadata"]["labels"][CLAIMED_BY_LABEL] = bad.clone();
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
    let old = admission_automaton("fix-login");
    for which in 1..8u8 {
        for also_request in [false, true] {
            let mut new = if also_request {
                claim_requested(old.clone())
            } else {
                old.clone()
            };
            if which & 1 != 0 {
                set_meta(&mut new, "labels", CLAIMED_BY_LABEL, Some(DEFAULT_CLAIMER));
            }
            if which & 2 != 0 {
                set_meta(&mut new, "annotations", CLAIMED_AT_ANNOTATION, Some(CLAIM_TIME));
            }
            if which & 4 != 0 {
                set_meta(&mut new, "annotations", CLAIM_REQUESTED_BY_ANNOTATION, Some("alice"));
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
    set_meta(&mut stale, "annotations", CLAIMED_AT_ANNOTATION, Some(CLAIM_TIME));
    let mut new = stale.clone();
    set_meta(
        &mut new,
        "annotations",
        CLAIMED_AT_ANNOTATION,
        Some("2030-01-01T00:00:00Z"),
    );
    p.refuses(
        "UPDATE changing a stale claimed-at",
        &update("alice", &[], new, stale),
        403,
        &[FORGED],
    );
    p.finish("forging_claim_marks_via_update_is_refused");
}

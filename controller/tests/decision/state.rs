//! `bead_state()`: what the status and our finalizer say about the claim's bead.

use gastown_controller::decision::{self, BeadState, bead_state};
use serde_json::json;

use crate::fixtures::*;

// A table: one row per case.
#[test]
fn bead_state_table() {
    let no_finalizer = json!({"metadata": {"finalizers": null}});
    let created = |v: serde_json::Value| json!({"status": {"gastown": {"beadCreated": v}}});
    let recorded_as = |created: bool| BeadState::Recorded {
        id: Ok(gt_abc()),
        created,
    };
    let cases = [
        ("recorded, created by us", recorded(json!({})), recorded_as(true)),
        ("recorded, adopted", recorded(created(json!(false))), recorded_as(false)),
        (
            "recorded, beadCreated unset",
            recorded(created(json!(null))),
            recorded_as(false),
        ),
        (
            "recorded without our finalizer",
            recorded(no_finalizer.clone()),
            recorded_as(true),
        ),
        ("nothing ran yet", claimed(no_finalizer.clone()), BeadState::NotStarted),
        (
            "finalizer, no beadCreated",
            claimed(json!({})),
            BeadState::MayExistUnrecorded,
        ),
        (
            "creating mark",
            claimed(created(json!(true))),
            BeadState::MayExistUnrecorded,
        ),
        ("none created", claimed(created(json!(false))), BeadState::NoneCreated),
        (
            "none created, finalizer gone",
            with_patches(&[no_finalizer.clone(), created(json!(false))]),
            BeadState::NoneCreated,
        ),
        (
            "creating mark, finalizer gone",
            with_patches(&[no_finalizer.clone(), created(json!(true))]),
            BeadState::MayExistUnrecorded,
        ),
    ];
    for (name, a, want) in cases {
        let state = bead_state(&a);
        assert_eq!(state, want, "{name}");
        assert_eq!(
            decision::bead_may_exist_unrecorded(&a),
            want == BeadState::MayExistUnrecorded,
            "{name}"
        );
        assert_eq!(decision::creates_first(&a), want == BeadState::NotStarted, "{name}");
        assert_eq!(
            state.recorded().is_some(),
            matches!(want, BeadState::Recorded { .. }),
            "{name}"
        );
    }
}

#[test]
fn an_unparsable_recorded_id_is_kept_as_the_error() {
    let state = bead_state(&recorded(json!({"status": {"gastown": {"beadId": "gt abc!"}}})));
    let BeadState::Recorded { id: Err(e), created } = &state else {
        panic!("{state:?}");
    };
    assert!(e.contains("status.gastown.beadId") && e.contains("gt abc!"), "{e}");
    assert!(created);
    assert_eq!(state.recorded(), None);
}

#[test]
fn a_bead_from_the_spec_never_exists_unrecorded() {
    let a = claimed(json!({"spec": {"task": {"beadId": "gt-xyz.1"}}}));
    assert_eq!(bead_state(&a), BeadState::MayExistUnrecorded);
    assert!(!decision::bead_may_exist_unrecorded(&a));
}

/// [`claimed_json`] with `patches` merged in, in order.
fn with_patches(patches: &[serde_json::Value]) -> gastown_crds::Automaton {
    let mut json = claimed_json();
    for patch in patches {
        json_patch::merge(&mut json, patch);
    }
    let a = automaton(json);
    assert!(!decision::has_finalizer(&a), "the fixtures here drop the finalizer");
    a
}

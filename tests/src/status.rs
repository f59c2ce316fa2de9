//! What the tests read off an Automaton: its bead, its conditions and what is left of its claim.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, RELEASE_FINALIZER,
};
use gastown_crds::{Automaton, Condition, ConditionStatus, ExecutionMode};
use kube::ResourceExt as _;

/// The bead recorded in `status.gastown.beadId`.
pub fn bead_id(a: &Automaton) -> Option<String> {
    a.status.as_ref()?.gastown.as_ref()?.bead_id.clone()
}

/// The condition of type `type_`.
pub fn condition<'a>(a: &'a Automaton, type_: &str) -> Option<&'a Condition> {
    a.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// The status of the condition of type `type_`.
pub fn condition_status(a: &Automaton, type_: &str) -> Option<ConditionStatus> {
    condition(a, type_).map(|c| c.status)
}

/// Whether the controller's release finalizer is on the object.
pub fn has_release_finalizer(a: &Automaton) -> bool {
    a.finalizers().iter().any(|f| f == RELEASE_FINALIZER)
}

/// What still marks `a` as claimed: empty once a release gave it back to Kubernetes
/// (`executionMode: kubernetes`, no claim label, claim annotations or release finalizer).
pub fn claim_left(a: &Automaton) -> Vec<String> {
    let mut left = Vec::new();
    if a.spec.execution_mode != ExecutionMode::Kubernetes {
        left.push(format!("executionMode {:?}", a.spec.execution_mode));
    }
    if let Some(claimer) = a.claimed_by() {
        left.push(format!("claimed by {claimer}"));
    }
    let annotations = a.annotations();
    for mark in [
        CLAIMED_AT_ANNOTATION,
        CLAIM_REQUESTED_BY_ANNOTATION,
        CLAIM_REQUEST_ANNOTATION,
    ] {
        if annotations.contains_key(mark) {
            left.push(format!("annotation {mark}"));
        }
    }
    if has_release_finalizer(a) {
        left.push(format!("finalizer {RELEASE_FINALIZER}"));
    }
    left
}

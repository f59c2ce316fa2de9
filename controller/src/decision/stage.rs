//! Which step an Automaton is at ([`stage`]), read from its metadata, spec and status.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL,
};
use gastown_crds::{Automaton, Phase, validate::validate_rig_name};

use crate::gastown::BeadId;

use super::state::{BeadState, bead_state, has_finalizer};
use super::timeout::timeout_release_pending;

/// The first thing to do for an Automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Not claimed by us: nothing to do.
    NotOurs,
    /// Being deleted with our finalizer: release the work, then remove the finalizer.
    Deleting,
    /// Status says Released but the claim marks are still there (a crash in between): finish.
    FinishRelease,
    /// `spec.timeoutSeconds` ran out and `Failed` is recorded, but the bead is not released yet
    /// (unslung, and closed if the controller created it): do that. Never slings again.
    FinishTimeout(BeadId),
    /// Terminal: nothing more until it is deleted.
    Terminal,
    /// Our finalizer must be added before anything happens in Gas Town.
    AddFinalizer,
    /// No bead yet: find one by external ref, or create one, and record it.
    ObtainBead,
    /// A bead is recorded: read Gas Town and act on it.
    Sync(BeadId),
    /// The spec cannot be acted upon (invalid rig, bead ID); wait for a change.
    Invalid(String),
}

/// Whether any claim mark is still on the object.
pub fn has_claim_marks(a: &Automaton) -> bool {
    a.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CLAIMED_BY_LABEL))
        || a.metadata.annotations.as_ref().is_some_and(|an| {
            [
                CLAIMED_AT_ANNOTATION,
                CLAIM_REQUESTED_BY_ANNOTATION,
                CLAIM_REQUEST_ANNOTATION,
            ]
            .iter()
            .any(|k| an.contains_key(*k))
        })
}

/// Picks the stage for `a`.
pub fn stage(a: &Automaton, claimer: &str) -> Stage {
    if a.metadata.deletion_timestamp.is_some() {
        return if has_finalizer(a) {
            Stage::Deleting
        } else {
            Stage::NotOurs
        };
    }
    if !a.is_claimed_by(claimer) {
        return Stage::NotOurs;
    }
    if a.phase() == Some(Phase::Released) {
        return Stage::FinishRelease;
    }
    let bead = bead_state(a);
    if timeout_release_pending(a)
        && let Some(id) = bead.recorded()
    {
        return Stage::FinishTimeout(id.clone());
    }
    if a.is_terminal() {
        return Stage::Terminal;
    }
    if !has_finalizer(a) {
        return Stage::AddFinalizer;
    }
    match bead {
        BeadState::Recorded { id: Ok(id), .. } => Stage::Sync(id),
        BeadState::Recorded { id: Err(e), .. } => Stage::Invalid(e),
        _ => match a.spec.task.bead_id.as_deref().map(BeadId::parse) {
            Some(Err(e)) => Stage::Invalid(format!("spec.task.beadId: {e}")),
            _ => match a.spec.rig.as_deref().map(validate_rig_name) {
                None => Stage::Invalid(
                    "spec.rig is empty: the claim policy fills it in; set spec.rig or configure the policy's \
                     forgeRigs/defaultRig"
                        .to_string(),
                ),
                Some(Err(e)) => Stage::Invalid(format!("spec.rig: {e}")),
                Some(Ok(())) => Stage::ObtainBead,
            },
        },
    }
}

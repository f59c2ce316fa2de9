//! The bead a claim has, as its status and our finalizer say: [`BeadState`], read by
//! [`bead_state`] and nowhere else.

use gastown_crds::Automaton;
use gastown_crds::contract::RELEASE_FINALIZER;

use crate::gastown::BeadId;

/// What `status.gastown.beadId`, `status.gastown.beadCreated` and our finalizer say together
/// about the claim's bead.
///
/// `bd create` runs only on an object that carries our finalizer, and the finalizer is added
/// with a write conditional on the object read. So an object with the finalizer and no recorded
/// bead may have one, unless `beadCreated: false` says that the last `bd create` certainly made
/// none. `beadCreated: true` without a `beadId` is the "creating a bead" mark (see
/// [`creating_bead`](super::creating_bead)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeadState {
    /// `beadId` is recorded (an ID that does not parse is kept as the error to report).
    Recorded {
        /// The recorded bead.
        id: Result<BeadId, String>,
        /// The controller created it (`beadCreated: true`), so it closes it when it gives the
        /// work back; an adopted bead is left open.
        created: bool,
    },
    /// No bead recorded and nothing can have run in Gas Town: neither our finalizer nor a
    /// `beadCreated`.
    NotStarted,
    /// No bead recorded, and the last `bd create` certainly made none (`beadCreated: false`).
    NoneCreated,
    /// No bead recorded, but one may exist: `bd create` ran and the process died, or the status
    /// write failed, before the ID was recorded (`beadCreated: true`, or our finalizer without a
    /// `beadCreated`).
    MayExistUnrecorded,
}

/// Reads the [`BeadState`] of `a`.
pub fn bead_state(a: &Automaton) -> BeadState {
    let g = a.status.as_ref().and_then(|s| s.gastown.as_ref());
    if let Some(id) = g.and_then(|g| g.bead_id.as_deref()) {
        return BeadState::Recorded {
            id: BeadId::parse(id).map_err(|e| format!("status.gastown.beadId: {e}")),
            created: g.and_then(|g| g.bead_created).unwrap_or(false),
        };
    }
    match g.and_then(|g| g.bead_created) {
        Some(true) => BeadState::MayExistUnrecorded,
        Some(false) => BeadState::NoneCreated,
        None if has_finalizer(a) => BeadState::MayExistUnrecorded,
        None => BeadState::NotStarted,
    }
}

impl BeadState {
    /// The recorded bead, if its ID parses.
    pub fn recorded(&self) -> Option<&BeadId> {
        match self {
            BeadState::Recorded { id: Ok(id), .. } => Some(id),
            _ => None,
        }
    }

    /// Whether the controller created the recorded bead (and so closes it on release).
    pub fn created(&self) -> bool {
        matches!(self, BeadState::Recorded { created: true, .. })
    }
}

/// Whether the object carries our finalizer.
pub fn has_finalizer(a: &Automaton) -> bool {
    a.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == RELEASE_FINALIZER))
}

/// Whether a bead may exist for `a` that its status does not name (see
/// [`BeadState::MayExistUnrecorded`]). Such a bead is found again by its external ref instead of
/// creating another, and closed if the claim is released. Never for a bead from
/// `spec.task.beadId`: the controller does not create one then.
pub fn bead_may_exist_unrecorded(a: &Automaton) -> bool {
    a.spec.task.bead_id.is_none() && bead_state(a) == BeadState::MayExistUnrecorded
}

/// Whether the reconcile that adds our finalizer to `a` may go on to `bd create` without a
/// lookup or a mark: nothing can have run yet ([`BeadState::NotStarted`]), so no `beadCreated`
/// would outweigh the finalizer after a crash.
pub fn creates_first(a: &Automaton) -> bool {
    bead_state(a) == BeadState::NotStarted
}

//! The claim contract between the admission policy, the controller and users.
//!
//! Every key is spelled here once; the policy (wasm) and the controller (native) both use
//! these constants.

/// Annotation a user sets to ask for a claim: [`CLAIM_REQUEST_VALUE`] (the policy chooses the Gas
/// Town) or the name of one of the policy's towns.
pub const CLAIM_REQUEST_ANNOTATION: &str = "gastown.io/claim";
/// The value of [`CLAIM_REQUEST_ANNOTATION`] that requests a claim by the local Gas Town.
pub const CLAIM_REQUEST_VALUE: &str = "local";
/// Label set by the policy; its value is the claimer name. Controllers select on it.
pub const CLAIMED_BY_LABEL: &str = "gastown.io/claimed-by";
/// Annotation set by the policy: when the claim was made (RFC 3339, UTC).
pub const CLAIMED_AT_ANNOTATION: &str = "gastown.io/claimed-at";
/// Annotation set by the policy: the Kubernetes user who asked for the claim.
pub const CLAIM_REQUESTED_BY_ANNOTATION: &str = "gastown.io/claim-requested-by";
/// Finalizer the controller adds so that work is released in Gas Town before deletion.
pub const RELEASE_FINALIZER: &str = "gastown.io/release";
/// The claimer name used when none is configured.
pub const DEFAULT_CLAIMER: &str = "gastown-local";
/// The controller's identity when installed with the default chart values.
pub const DEFAULT_CONTROLLER_USER: &str = "system:serviceaccount:gastown-system:gastown-operator";
/// Field manager under which the controller writes (server-side apply).
pub const FIELD_MANAGER: &str = "gastown-operator";

/// Condition types written by the controller.
pub mod condition {
    /// The Automaton is claimed by this controller's Gas Town.
    pub const CLAIMED: &str = "Claimed";
    /// The work was handed to Gas Town (`gt sling`).
    pub const DISPATCHED: &str = "Dispatched";
    /// A Gas Town worker is working on the bead.
    pub const RUNNING: &str = "Running";
    /// The work finished (successfully or not); see the reason.
    pub const COMPLETED: &str = "Completed";
    /// Gas Town (the `gt`/`bd` commands or gt-proxy-server) answered the last call.
    pub const GASTOWN_REACHABLE: &str = "GasTownReachable";
    /// The claim was released back to Kubernetes.
    pub const RELEASED: &str = "Released";
}

/// The fields of `status` that only the controller writes (through the status subresource):
/// the claim as it saw it (`status.claim`) and Gas Town's side of the work (`status.gastown`:
/// bead ID, `beadCreated`, ...). The controller trusts them on every reconcile (which bead to
/// sync, close or release), so the claim policy refuses them from anyone else, on any
/// Automaton, and refuses to claim an Automaton whose status already carries them.
pub const CONTROLLER_STATUS_FIELDS: [&str; 2] = ["claim", "gastown"];

/// The `status.phase` values that only the controller writes: the Gas Town side of the
/// lifecycle. The Kubernetes executor's phases (`Pending`, `Running`, `Succeeded`, `Failed`)
/// stay writable by others on Automatons that are not claimed.
pub const CONTROLLER_PHASES: [crate::Phase; 3] =
    [crate::Phase::Claimed, crate::Phase::Dispatched, crate::Phase::Released];

#[cfg(test)]
mod controller_status_tests {
    use super::{CONTROLLER_PHASES, CONTROLLER_STATUS_FIELDS};
    use crate::{AutomatonStatus, ClaimStatus, GasTownStatus, Phase};

    /// The names are the ones the status is serialized with.
    #[test]
    fn controller_status_fields_are_the_serialized_names() {
        let status = AutomatonStatus {
            claim: Some(ClaimStatus::default()),
            gastown: Some(GasTownStatus::default()),
            ..AutomatonStatus::default()
        };
        let value = serde_json::to_value(&status).unwrap_or_default();
        let mut keys: Vec<&str> = value
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, CONTROLLER_STATUS_FIELDS);
    }

    #[test]
    fn controller_phases_are_not_the_executors() {
        for phase in [Phase::Pending, Phase::Running, Phase::Succeeded, Phase::Failed] {
            assert!(!CONTROLLER_PHASES.contains(&phase), "{phase:?}");
        }
    }
}

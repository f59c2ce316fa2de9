//! The claim contract between the admission policy, the controller and users.
//!
//! Every key is spelled here once; the policy (wasm) and the controller (native) both use
//! these constants.

/// Annotation a user sets to ask for a local claim; its only accepted value is [`CLAIM_REQUEST_VALUE`].
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

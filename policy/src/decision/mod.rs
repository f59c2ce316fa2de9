//! The claim decision: a pure function of (settings, admission request, now, claim ledger).
//!
//! It works on the request's JSON as received and changes only the fields the policy owns
//! (claim label and annotations, `spec.executionMode`, `spec.rig`): the host computes the
//! JSONPatch from the difference, so everything else must come back exactly as it came in.
//!
//! One module per operation: `create` (with the claim itself), `update` and `status`; DELETE
//! and CONNECT are accepted here. `request` and `view` read the input.

mod create;
mod request;
mod route;
mod status;
mod update;
mod view;

use gastown_crds::Automaton;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use kube::Resource;
use serde_json::Value;

pub use self::request::Request;
use crate::settings::Settings;

/// HTTP-like codes returned with rejections.
pub mod code {
    /// The request is malformed or a value breaks a rule.
    pub const BAD_REQUEST: u16 = 400;
    /// The requester may not do this.
    pub const FORBIDDEN: u16 = 403;
    /// The object's state does not allow it.
    pub const CONFLICT: u16 = 409;
    /// Too many active claims in the namespace.
    pub const TOO_MANY: u16 = 429;
    /// The policy could not read what it needs from the cluster.
    pub const UNAVAILABLE: u16 = 503;
}

/// What the policy answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Accept unchanged.
    Accept,
    /// Accept with this object (the whole object, changed only in the claim fields).
    Mutate(Value),
    /// Refuse; the message says what to change.
    Reject {
        /// HTTP-like status code.
        code: u16,
        /// What is wrong and what to do.
        message: String,
    },
}

pub(crate) fn reject(code: u16, message: impl Into<String>) -> Decision {
    Decision::Reject {
        code,
        message: message.into(),
    }
}

/// Counts the active (non-terminal) claims in a namespace; backed by a host capability in wasm
/// and by fixtures in tests.
pub trait ClaimLedger {
    /// Number of Automatons in `namespace` labelled as claimed by `claimer` and not in a
    /// terminal phase.
    fn active_claims(&self, namespace: &str, claimer: &str) -> Result<u64, String>;
}

/// What the checks conclude: a final decision, or a claim still to be written into the object.
enum Plan {
    Decided(Decision),
    /// Claim the object for this town and rig.
    Claim {
        /// The town's name (the claimed-by value).
        town: String,
        /// The rig.
        rig: String,
    },
}

impl From<Decision> for Plan {
    fn from(decision: Decision) -> Plan {
        Plan::Decided(decision)
    }
}

/// Decides on one admission request. `now` gives the claim timestamp (RFC 3339); it is called
/// only when the request is claimed. The request's object is consumed: a claim is written into
/// it, not into a copy.
pub fn decide(settings: &Settings, req: Request<'_>, now: &dyn Fn() -> String, ledger: &dyn ClaimLedger) -> Decision {
    match plan(settings, &req, ledger) {
        Plan::Decided(decision) => decision,
        Plan::Claim { town, rig } => match create::mark_claimed(req.object, &town, &req.username, &rig, &now()) {
            Some(mutated) => Decision::Mutate(mutated),
            None => reject(code::BAD_REQUEST, "object: metadata and spec must be JSON objects"),
        },
    }
}

fn plan(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    // The policy is registered for automatons only; anything else passes untouched.
    if req.group != Automaton::group(&()) || req.resource != Automaton::plural(&()) {
        return Decision::Accept.into();
    }
    match (&*req.operation, &*req.sub_resource) {
        ("UPDATE", "status") => status::decide_status_update(settings, req).into(),
        ("CREATE", "") => create::decide_create(settings, req, ledger),
        ("UPDATE", "") => update::decide_update(settings, req, ledger),
        // DELETE (no mutation possible), CONNECT and other subresources are not ours.
        _ => Decision::Accept.into(),
    }
}

/// The refusal of claim marks set by anyone but this policy.
fn forged_claim_message(settings: &Settings) -> String {
    let towns = match settings.towns() {
        [town] => format!("Gas Town {:?}", town.name),
        towns => format!(
            "the Gas Towns {}",
            towns
                .iter()
                .map(|t| format!("{:?}", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "the claim marks ({CLAIMED_BY_LABEL} label, {CLAIMED_AT_ANNOTATION} and {CLAIM_REQUESTED_BY_ANNOTATION} \
         annotations) are set only by the gastown claim policy for {towns}; remove them and request a \
         claim with the annotation {CLAIM_REQUEST_ANNOTATION}: {CLAIM_REQUEST_VALUE} or spec.executionMode: local"
    )
}

/// The refusal of a user adding the controller's release finalizer.
fn finalizer_message(settings: &Settings, user: &str) -> String {
    format!(
        "the finalizer {RELEASE_FINALIZER} is added and removed only by the gastown controller ({}), not by {user:?}: \
         it keeps a claimed Automaton until its work is released in Gas Town. Leave metadata.finalizers without it",
        settings.all_controller_users()
    )
}

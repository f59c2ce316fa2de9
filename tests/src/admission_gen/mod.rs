//! A structured generator of AdmissionRequests for the claim policy, and the rules every answer
//! must satisfy.
//!
//! The generator ([`AdmissionGen`]: `generator`, `objects`, `scenarios`, `corrupt`) draws from a
//! seeded [`Rng`](crate::rng::Rng), so a case is reproduced from its seed alone ([`case_seed`]
//! mixes a run seed and a case index). It makes realistic Automaton requests (fresh claims,
//! updates of claimed and unclaimed objects, status writes, deletes, connects) by every kind of
//! user (allowed, not allowed, anonymous, the controller and look-alikes of it), then corrupts
//! some of them: wrong JSON types at any depth, missing fields, huge (100 KB+) and unicode
//! strings, malformed raw payloads.
//!
//! The rule model ([`check`]: `rules`, `reads`, and the [`SettingsModel`]) states what the policy
//! must answer: no trap, valid JSON with `accepted`, a message with every rejection, a JSONPatch
//! that touches only the claim fields, and the security rules (no forged or hijacked claims, no
//! claims by users who may not claim, claimed work, its status and the release finalizer left
//! to the controller, no claim of released work or of a status carrying controller fields).

mod corrupt;
mod generator;
mod objects;
mod reads;
mod rules;
mod scenarios;
mod settings;
mod values;

use serde_json::{Value, json};

use crate::rng::Rng;

pub use generator::{AdmissionGen, Options, admission_request};
pub use reads::{CLAIM_PATHS, CONTROLLER_PHASES, CONTROLLER_STATUS, patch_op_violation};
pub use rules::{check, shorten};
pub use settings::{BOB_CONTROLLER, CAROL_CONTROLLER, SettingsModel, TownModel};
pub use values::{BEAD_ID_INJECTIONS, CONTROLLER_LOOKALIKES, INJECTIONS};

/// The seed of case `index` of a run with seed `run_seed`.
pub fn case_seed(run_seed: u64, index: u64) -> u64 {
    let mut r = Rng::new(run_seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    r.next_u64()
}

/// What the fake API server answers to the policy's claim count.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerAnswer {
    /// A list answer with this many non-terminal items.
    Items {
        /// The `list_resources_by_namespace` answer.
        list: Value,
        /// Non-terminal items in it.
        active: u64,
    },
    /// The host call fails.
    Error(String),
}

impl LedgerAnswer {
    /// The host answer.
    pub fn host_answer(&self) -> Result<Value, String> {
        match self {
            LedgerAnswer::Items { list, .. } => Ok(list.clone()),
            LedgerAnswer::Error(e) => Err(e.clone()),
        }
    }
}

/// Which part of the generator made a case (for coverage statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// CREATE of a fresh Automaton.
    Create,
    /// UPDATE of an unclaimed Automaton.
    UpdateUnclaimed,
    /// UPDATE of a claimed Automaton.
    UpdateClaimed,
    /// UPDATE of the status subresource.
    Status,
    /// DELETE.
    Delete,
    /// CONNECT or another subresource.
    Other,
    /// A resource other than automatons.
    OtherResource,
    /// A malformed raw payload.
    Raw,
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct Case {
    /// The seed it was generated from.
    pub seed: u64,
    /// Which part of the generator made it.
    pub scenario: Scenario,
    /// The settings sent with it.
    pub settings: Value,
    /// `Some(model)` when the settings are valid and known; `None` when they are invalid or
    /// of unknown validity (see `settings_valid`).
    pub model: Option<SettingsModel>,
    /// `Some(true)`/`Some(false)` when the generator knows whether the settings are valid.
    pub settings_valid: Option<bool>,
    /// The AdmissionRequest (`Value::Null` for raw cases).
    pub request: Value,
    /// The claim ledger answer.
    pub ledger: LedgerAnswer,
    /// A raw `validate` payload sent instead of `{"settings", "request"}`.
    pub raw: Option<Vec<u8>>,
    /// Whether corruptions (wrong types, missing fields) were applied.
    pub corrupted: bool,
    /// Whether a 100 KB+ string was put in.
    pub huge: bool,
}

impl Case {
    /// The case as a fixture (policy/test_data/cases format) with `expect` left to be filled
    /// in: what a regression fixture starts from.
    pub fn to_fixture(&self, description: &str) -> Value {
        let mut fixture = json!({
            "description": description,
            "settings": self.settings,
            "request": self.request,
            "expect": {"accepted": "<fill in>"},
        });
        if let Some(raw) = &self.raw {
            fixture["rawPayload"] = json!(String::from_utf8_lossy(raw));
        }
        match &self.ledger {
            LedgerAnswer::Items { list, .. } => fixture["ledger"] = list.clone(),
            LedgerAnswer::Error(e) => fixture["ledger"] = json!({"error": e}),
        }
        fixture
    }
}

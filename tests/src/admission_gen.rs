//! A structured generator of AdmissionRequests for the claim policy, and the invariants every
//! answer must satisfy.
//!
//! [`AdmissionGen`] draws from a deterministic PRNG, so a case is reproduced from its seed
//! alone ([`case_seed`] mixes a run seed and a case index). It produces realistic Automaton
//! requests (fresh claims, updates of claimed and unclaimed objects, status writes, deletes,
//! connects) by every kind of user (allowed, not allowed, anonymous, the controller and
//! look-alikes of it), then corrupts some of them: wrong JSON types at any depth, missing
//! fields, huge (100 KB+) and unicode strings, malformed raw payloads.
//!
//! [`check`] states what the policy must answer: no trap, valid JSON with `accepted`, a message
//! with every rejection, a JSONPatch (computed like policy-server, `json_patch::diff`) that
//! touches only the claim fields, and the security rules (no forged or hijacked claims, no
//! claims by unauthorized users, no changes to the claim marks, the spec or the release
//! finalizer of claimed work by others than the controller, no status writes to claimed work
//! and no controller-owned status fields or phases by others, no finalizer added by others, no
//! claim of an Automaton that Gas Town released or whose status carries controller fields).

use std::collections::BTreeMap;
use std::sync::Mutex;

use gastown_crds::validate::validate_rig_name;
use json_patch::PatchOperation;
use serde_json::{Map, Value, json};

use crate::policy_host::HostCapabilities;

/// The controller identity of the standard settings.
pub const CONTROLLER: &str = "system:serviceaccount:gastown-system:gastown-operator";
/// The claimer of the standard settings.
pub const CLAIMER: &str = "gastown-local";
/// Claim label.
pub const CLAIMED_BY: &str = "gastown.io/claimed-by";
/// Claim annotation: when.
pub const CLAIMED_AT: &str = "gastown.io/claimed-at";
/// Claim annotation: who asked.
pub const REQUESTED_BY: &str = "gastown.io/claim-requested-by";
/// The claim request annotation (value `local`).
pub const CLAIM_REQUEST: &str = "gastown.io/claim";
/// The controller's finalizer.
pub const RELEASE_FINALIZER: &str = "gastown.io/release";
/// The status fields only the controller writes (the policy's rule model; the policy reads
/// `gastown_crds::contract::CONTROLLER_STATUS_FIELDS`).
pub const CONTROLLER_STATUS: [&str; 2] = ["claim", "gastown"];
/// The phases only the controller writes.
pub const CONTROLLER_PHASES: [&str; 3] = ["Claimed", "Dispatched", "Released"];

/// The JSON pointers of the fields a mutation may set.
pub const CLAIM_PATHS: [&str; 5] = [
    "/metadata/labels/gastown.io~1claimed-by",
    "/metadata/annotations/gastown.io~1claimed-at",
    "/metadata/annotations/gastown.io~1claim-requested-by",
    "/spec/executionMode",
    "/spec/rig",
];

/// Values that must never reach Gas Town as a rig name, bead ID or other operand: shell syntax,
/// option look-alikes, path traversal, control characters and unicode look-alikes.
pub const INJECTIONS: &[&str] = &[
    "gas;town",
    "gastown; rm -rf /",
    "$(id)",
    "gas$(id)town",
    "`id`",
    "gas`id`town",
    "gas\ntown",
    "gastown\n",
    "-rf",
    "--help",
    "-",
    "..",
    "../etc/passwd",
    "gas/../town",
    "g\u{430}stown",                       // Cyrillic а
    "\u{ff47}\u{ff41}\u{ff53}\u{ff54}own", // full-width ｇａｓｔ
    "gastown\u{200b}",                     // zero-width space
    "\u{202e}nwotsag",                     // right-to-left override
    "gas town",
    "gas|town",
    "gas&town",
    "gas>town",
    "gas\u{0}town",
    "gastown'",
    "gas\"town",
    "gas\\town",
    "gas\ttown",
    "gas\rtown",
    "%24(id)",
    "gas{a,b}",
    "*",
    "~",
    "hq",
    "HQ",
];

/// Bead IDs that must be refused (shell syntax, options, traversal, look-alikes).
pub const BEAD_ID_INJECTIONS: &[&str] = &[
    "go-7xq;id",
    "go-$(id)",
    "go-`id`",
    "-go-7xq",
    "--go-7xq",
    "go-7xq\n",
    "go-7xq\nrm",
    "../go-7xq",
    "go-7xq/../x",
    "g\u{43e}-7xq", // Cyrillic о
    "go-7xq..1",
    "go-7xq.",
    "go 7xq",
    "go-7xq|x",
    "go-7xq\u{200b}",
    "go-",
    "go",
    "",
];

/// Spellings of the controller identity that are NOT the controller.
pub const CONTROLLER_LOOKALIKES: &[&str] = &[
    "System:serviceaccount:gastown-system:gastown-operator",
    "SYSTEM:SERVICEACCOUNT:GASTOWN-SYSTEM:GASTOWN-OPERATOR",
    "system:serviceaccount:gastown-system:Gastown-Operator",
    " system:serviceaccount:gastown-system:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-operator ",
    "system:serviceaccount:gastown-system:gastown-operator\n",
    "system:serviceaccount:gastown-system:gastown-operator\t",
    "system:serviceaccount:gastown-system:gastown-operator\u{200b}",
    "\u{feff}system:serviceaccount:gastown-system:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-\u{43e}perator", // Cyrillic о
    "system:serviceaccount:gastown-system:gastown-operator\u{0}",
    "system:serviceaccount:gastown-system:gastown-operator2",
    "system:serviceaccount:gastown-system",
    "system:serviceaccount:other:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-operator:x",
    "gastown-operator",
];

/// Unicode strings used as values anywhere.
const UNICODE: &[&str] = &[
    "l\u{43e}cal", // Cyrillic о
    "ĺocal",
    "lo\u{301}cal", // combining accent
    "local\u{200b}",
    "\u{feff}local",
    "\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}", // circled letters
    "🚀🔥",
    "\u{202e}lacol",
    "\u{130}stanbul", // dotted capital I
    "\u{10ffff}",
    "日本語のタスク",
    "\u{1f}\u{7f}\u{85}",
];

const PHASES: &[&str] = &[
    "Pending",
    "Claimed",
    "Dispatched",
    "Running",
    "Succeeded",
    "Failed",
    "Released",
    "running",
    "Unknown",
    "",
];

pub use crate::rng::Rng;

/// The seed of case `index` of a run with seed `run_seed`.
pub fn case_seed(run_seed: u64, index: u64) -> u64 {
    let mut r = Rng::new(run_seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    r.next_u64()
}

/// The policy settings, as the generator knows them (to state what the answer must be).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsModel {
    /// `claimer`.
    pub claimer: String,
    /// `allowedUsers`.
    pub allowed_users: Vec<String>,
    /// `allowedGroups`.
    pub allowed_groups: Vec<String>,
    /// `controllerUsers`.
    pub controller_users: Vec<String>,
    /// `forgeRigs`.
    pub forge_rigs: BTreeMap<String, String>,
    /// `defaultRig`.
    pub default_rig: Option<String>,
    /// `maxActiveClaimsPerNamespace`.
    pub limit: Option<u32>,
}

impl SettingsModel {
    /// The settings of most fixtures.
    pub fn standard() -> SettingsModel {
        SettingsModel {
            claimer: CLAIMER.to_string(),
            allowed_users: vec!["alice".to_string()],
            allowed_groups: vec!["gastown-claimers".to_string()],
            controller_users: vec![CONTROLLER.to_string()],
            forge_rigs: [("web-forge".to_string(), "webrig".to_string())].into(),
            default_rig: Some("gastown".to_string()),
            limit: None,
        }
    }

    /// The policy's defaults (settings `null` or `{}`).
    pub fn defaults() -> SettingsModel {
        SettingsModel {
            claimer: CLAIMER.to_string(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            controller_users: vec![CONTROLLER.to_string()],
            forge_rigs: BTreeMap::new(),
            default_rig: None,
            limit: None,
        }
    }

    /// The settings JSON.
    pub fn to_json(&self) -> Value {
        let mut s = json!({
            "claimer": self.claimer,
            "allowedUsers": self.allowed_users,
            "allowedGroups": self.allowed_groups,
            "controllerUsers": self.controller_users,
            "forgeRigs": self.forge_rigs,
        });
        if let Some(rig) = &self.default_rig {
            s["defaultRig"] = json!(rig);
        }
        if let Some(limit) = self.limit {
            s["maxActiveClaimsPerNamespace"] = json!(limit);
        }
        s
    }

    /// Exactly one of the controller identities (no normalisation of any kind).
    pub fn is_controller(&self, user: &str) -> bool {
        self.controller_users.iter().any(|u| u == user)
    }

    /// Whether `user` with `groups` may ask for a claim.
    pub fn may_claim(&self, user: &str, groups: &[&str]) -> bool {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return !user.is_empty() && user != "system:anonymous" && !groups.contains(&"system:unauthenticated");
        }
        self.allowed_users.iter().any(|u| u == user)
            || groups.iter().any(|g| self.allowed_groups.iter().any(|a| a == g))
    }

    /// The rig a claim gets when `spec.rig` is empty.
    pub fn rig_for_forge(&self, forge: Option<&str>) -> Option<&str> {
        forge
            .and_then(|f| self.forge_rigs.get(f))
            .or(self.default_rig.as_ref())
            .map(String::as_str)
    }
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

/// Host capabilities whose `list_resources_by_namespace` answer is set before each call, so
/// one instance serves many generated cases.
pub struct ScriptedLedger(Mutex<Result<Value, String>>);

impl ScriptedLedger {
    /// Answers an empty list until [`Self::set`] is called.
    pub fn new() -> ScriptedLedger {
        ScriptedLedger(Mutex::new(Ok(json!({"items": []}))))
    }

    /// The answer for the next calls.
    pub fn set(&self, answer: Result<Value, String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = answer;
    }
}

impl Default for ScriptedLedger {
    fn default() -> Self {
        ScriptedLedger::new()
    }
}

impl HostCapabilities for ScriptedLedger {
    fn kubernetes(&self, operation: &str, _request: &Value) -> Result<Value, String> {
        match operation {
            "list_resources_by_namespace" => self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            other => Err(format!("unexpected host capability kubernetes/{other}")),
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

/// A plain, unclaimed Automaton like the fixtures' (no execution mode, no rig).
pub fn automaton(name: &str) -> Value {
    json!({
        "apiVersion": "olympus.io/v1alpha1",
        "kind": "Automaton",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": "6f1c2a9e-1b7d-4c55-9d1e-0a4b2c3d4e5f",
            "creationTimestamp": "2026-11-28T10:00:00Z",
            "generation": 1,
            "labels": {"app": "web"},
            "annotations": {"team.example.com/owner": "web-team"},
            "ownerReferences": [{
                "apiVersion": "olympus.io/v1alpha1",
                "kind": "Forge",
                "name": "web-forge",
                "uid": "0b8f5e2c-0000-4000-8000-000000000001"
            }],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "olympus.io/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}}
            }]
        },
        "spec": {
            "task": {"title": "Fix the login bug", "description": "Users cannot log in with SSO."},
            "forge": "web-forge",
            "agent": {"name": "claude", "model": "opus"},
            "futureField": {"kept": true}
        }
    })
}

/// `object` as the policy leaves it after a claim by `requested_by` for `claimer` on `rig`.
pub fn claimed(mut object: Value, claimer: &str, requested_by: &str, rig: &str) -> Value {
    object["metadata"]["labels"][CLAIMED_BY] = json!(claimer);
    object["metadata"]["annotations"][CLAIMED_AT] = json!("2026-11-28T10:00:01Z");
    object["metadata"]["annotations"][REQUESTED_BY] = json!(requested_by);
    object["spec"]["executionMode"] = json!("local");
    object["spec"]["rig"] = json!(rig);
    object
}

/// An AdmissionRequest for automatons (`sub_resource` "" for the main resource).
pub fn admission_request(
    operation: &str,
    sub_resource: &str,
    username: &str,
    groups: &[&str],
    object: Value,
    old_object: Value,
) -> Value {
    let gvk = json!({"group": "olympus.io", "version": "v1alpha1", "kind": "Automaton"});
    let gvr = json!({"group": "olympus.io", "version": "v1alpha1", "resource": "automatons"});
    let mut req = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": "fix-login",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": username, "uid": "u-1", "groups": groups},
        "object": object,
        "oldObject": old_object,
        "dryRun": false,
        "options": {}
    });
    if !sub_resource.is_empty() {
        req["subResource"] = json!(sub_resource);
    }
    req
}

fn labels_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    object.get_mut("metadata")?.get_mut("labels")?.as_object_mut()
}

/// Floats that serde_json parses back exactly even without `float_roundtrip`.
const SAFE_FLOATS: &[f64] = &[0.5, 1.5, -2.25, 2.71, 1e300, 6.02e23, 1e-7, -0.0, 0.1, 0.0025];

/// Generator options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Put floats with arbitrary bit patterns into fields the policy does not own (the default).
    /// They found the float round-trip bug (a claim rewrote such floats by one ULP, so the
    /// JSONPatch touched fields that are not claim fields; fixed with serde_json's
    /// `float_roundtrip`, see policy/test_data/cases/regression-float-roundtrip.json). Off: only
    /// floats that round-trip under any serde_json configuration.
    pub arbitrary_floats: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { arbitrary_floats: true }
    }
}

/// The generator.
pub struct AdmissionGen {
    rng: Rng,
    seed: u64,
    options: Options,
}

impl AdmissionGen {
    /// A generator for one case seed.
    pub fn new(seed: u64) -> AdmissionGen {
        AdmissionGen::with_options(seed, Options::default())
    }

    /// A generator for one case seed with `options`.
    pub fn with_options(seed: u64, options: Options) -> AdmissionGen {
        AdmissionGen {
            rng: Rng::new(seed),
            seed,
            options,
        }
    }

    /// Case `index` of a run seeded with `run_seed`.
    pub fn case(run_seed: u64, index: u64) -> Case {
        AdmissionGen::case_with(run_seed, index, Options::default())
    }

    /// Case `index` of a run seeded with `run_seed`, with `options`.
    pub fn case_with(run_seed: u64, index: u64, options: Options) -> Case {
        AdmissionGen::with_options(case_seed(run_seed, index), options).generate()
    }

    /// Generates the case of this generator's seed.
    pub fn generate(&mut self) -> Case {
        let (settings, model, settings_valid) = self.settings();
        let ledger = self.ledger();
        if self.rng.one_in(100) {
            let raw = self.raw_payload(&settings);
            return Case {
                seed: self.seed,
                scenario: Scenario::Raw,
                settings,
                model,
                settings_valid,
                request: Value::Null,
                ledger,
                raw: Some(raw),
                corrupted: false,
                huge: false,
            };
        }
        let claimer = model.as_ref().map_or(CLAIMER, |m| m.claimer.as_str()).to_string();
        let (scenario, mut request) = match self.rng.below(100) {
            0..=29 => (Scenario::Create, self.create()),
            30..=51 => (Scenario::UpdateUnclaimed, self.update_unclaimed(&claimer)),
            52..=73 => (Scenario::UpdateClaimed, self.update_claimed(&claimer)),
            74..=83 => (Scenario::Status, self.status_update(&claimer)),
            84..=90 => (Scenario::Delete, self.delete(&claimer)),
            91..=95 => (Scenario::Other, self.other_operation(&claimer)),
            _ => (Scenario::OtherResource, self.other_resource()),
        };
        let huge = self.rng.one_in(100);
        if huge {
            self.put_huge_string(&mut request);
        }
        let corrupted = self.rng.percent(15);
        if corrupted {
            for _ in 0..1 + self.rng.below(3) {
                self.corrupt(&mut request);
            }
        }
        Case {
            seed: self.seed,
            scenario,
            settings,
            model,
            settings_valid,
            request,
            ledger,
            raw: None,
            corrupted,
            huge,
        }
    }

    fn settings(&mut self) -> (Value, Option<SettingsModel>, Option<bool>) {
        let r = &mut self.rng;
        match r.below(100) {
            0..=3 => (Value::Null, Some(SettingsModel::defaults()), Some(true)),
            4..=5 => (json!({}), Some(SettingsModel::defaults()), Some(true)),
            6..=17 => {
                let bad = match r.below(14) {
                    0 => json!({"claimer": "Bad_Claimer"}),
                    1 => json!({"claimer": ""}),
                    2 => json!({"claimer": "gas;town"}),
                    3 => json!({"allowedUser": ["alice"]}),
                    4 => json!({"controllerUsers": []}),
                    5 => json!({"defaultRig": "hq"}),
                    6 => json!({"defaultRig": "x;y"}),
                    7 => json!({"maxActiveClaimsPerNamespace": 0}),
                    8 => json!({"maxActiveClaimsPerNamespace": -1}),
                    9 => json!({"maxActiveClaimsPerNamespace": "3"}),
                    10 => json!({"allowedUsers": [" "]}),
                    11 => json!({"forgeRigs": {"Web": "webrig"}}),
                    12 => json!({"claimer": 5}),
                    _ => json!({"controllerUsers": ["ok", "bad\nname"]}),
                };
                (bad, None, Some(false))
            }
            18..=19 => {
                // Shapes that are not settings objects (an array used to be read positionally).
                let odd = match r.below(5) {
                    0 => json!([]),
                    1 => json!(["gastown-local", [], [], ["mallory"]]),
                    2 => json!("settings"),
                    3 => json!(7),
                    _ => json!({"claimer": null, "allowedUsers": null}),
                };
                (odd, None, Some(false))
            }
            _ => {
                let mut m = SettingsModel::standard();
                if r.percent(15) {
                    m.claimer = "town-2".to_string();
                }
                match r.below(4) {
                    0 => m.allowed_users.clear(),
                    1 => m.allowed_users.push("carol".to_string()),
                    _ => {}
                }
                if r.percent(25) {
                    m.allowed_groups.clear();
                }
                if r.percent(20) {
                    m.controller_users
                        .push("system:serviceaccount:ops:gastown-operator".to_string());
                }
                if r.percent(20) {
                    m.forge_rigs.clear();
                }
                if r.percent(25) {
                    m.default_rig = None;
                }
                if r.percent(35) {
                    m.limit = Some(1 + r.below(4) as u32);
                }
                (m.to_json(), Some(m), Some(true))
            }
        }
    }

    fn ledger(&mut self) -> LedgerAnswer {
        if self.rng.percent(10) {
            return LedgerAnswer::Error(
                self.rng
                    .pick(&["the API server is not reachable", "", "forbidden: list automatons"])
                    .to_string(),
            );
        }
        let n = if self.rng.percent(60) {
            self.rng.below(2)
        } else {
            self.rng.below(7)
        };
        let mut items = Vec::new();
        let mut active = 0;
        for i in 0..n {
            let mut item = json!({"metadata": {"name": format!("a{i}")}});
            if !self.rng.one_in(6) {
                let phase = *self.rng.pick(PHASES);
                item["status"] = json!({"phase": phase});
                if !matches!(phase, "Succeeded" | "Failed" | "Released") {
                    active += 1;
                }
            } else {
                active += 1;
            }
            items.push(item);
        }
        LedgerAnswer::Items {
            list: json!({"items": items}),
            active,
        }
    }

    fn username(&mut self) -> (String, Vec<String>) {
        let r = &mut self.rng;
        let user = match r.below(100) {
            0..=29 => "alice".to_string(),
            30..=39 => "bob".to_string(),
            40..=44 => "carol".to_string(),
            45..=64 => CONTROLLER.to_string(),
            65..=76 => r.pick(CONTROLLER_LOOKALIKES).to_string(),
            77..=81 => "system:anonymous".to_string(),
            82..=84 => String::new(),
            85..=88 => "Alice".to_string(),
            89..=91 => "alice ".to_string(),
            92..=94 => "system:serviceaccount:ops:gastown-operator".to_string(),
            _ => r.pick(UNICODE).to_string(),
        };
        let pool = [
            "gastown-claimers",
            "system:authenticated",
            "system:unauthenticated",
            "developers",
            "Gastown-Claimers",
            "gastown-claimers ",
            "system:masters",
            "system:serviceaccounts",
            CONTROLLER,
        ];
        let mut groups = Vec::new();
        for g in pool {
            if r.percent(if g == "system:authenticated" { 60 } else { 15 }) {
                groups.push(g.to_string());
            }
        }
        (user, groups)
    }

    fn request(&mut self, operation: &str, sub_resource: &str, object: Value, old: Value) -> Value {
        let (user, groups) = self.username();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let mut req = admission_request(operation, sub_resource, &user, &groups, object, old);
        // The empty subresource is spelled three ways.
        if sub_resource.is_empty() {
            match self.rng.below(3) {
                0 => req["subResource"] = json!(""),
                1 => req["subResource"] = Value::Null,
                _ => {}
            }
        }
        if self.rng.one_in(20) {
            remove_at(&mut req, "/userInfo", "groups");
        }
        if self.rng.one_in(30) {
            req["namespace"] = json!(self.rng.pick(UNICODE));
        }
        req
    }

    fn string_value(&mut self) -> String {
        match self.rng.below(4) {
            0 => self.rng.pick(INJECTIONS).to_string(),
            1 => self.rng.pick(UNICODE).to_string(),
            _ => self
                .rng
                .pick(&["gastown", "webrig", "Rig_2", "a", "x", "local", "kubernetes", ""])
                .to_string(),
        }
    }

    /// A random Automaton: execution mode, claim request, rig, forge, bead, phase, extras.
    fn random_automaton(&mut self) -> Value {
        let name = if self.rng.one_in(10) {
            self.string_value()
        } else {
            "fix-login".to_string()
        };
        let mut o = automaton(&name);
        let mode = match self.rng.below(12) {
            0..=3 => None,
            4..=6 => Some(json!("local")),
            7..=8 => Some(json!("kubernetes")),
            9 => Some(Value::Null),
            _ => Some(json!(self.string_value())),
        };
        if let Some(mode) = mode {
            o["spec"]["executionMode"] = mode;
        }
        match self.rng.below(12) {
            0..=6 => {}
            7..=9 => o["metadata"]["annotations"][CLAIM_REQUEST] = json!("local"),
            _ => {
                let v = self
                    .rng
                    .pick(&[
                        "Local",
                        "LOCAL",
                        "true",
                        "",
                        "local ",
                        " local",
                        "kubernetes",
                        "l\u{43e}cal",
                    ])
                    .to_string();
                o["metadata"]["annotations"][CLAIM_REQUEST] = json!(v);
            }
        }
        match self.rng.below(10) {
            0..=4 => {}
            5..=6 => o["spec"]["rig"] = json!(self.rng.pick(&["gastown", "webrig", "Rig_2", "a", "h", "hqx"])),
            7 => o["spec"]["rig"] = json!(""),
            8 => o["spec"]["rig"] = json!(self.rng.pick(INJECTIONS)),
            _ => o["spec"]["rig"] = json!(self.string_value()),
        }
        match self.rng.below(10) {
            0..=5 => {}
            6 => {
                remove_at(&mut o, "/spec", "forge");
            }
            7 => o["spec"]["forge"] = json!("other-forge"),
            8 => o["spec"]["forge"] = Value::Null,
            _ => o["spec"]["forge"] = json!(self.string_value()),
        }
        match self.rng.below(10) {
            0..=6 => {}
            7 => o["spec"]["task"]["beadId"] = json!(self.rng.pick(&["go-7xq", "gt-a3f8.1", "hq-cv-x1"])),
            8 => o["spec"]["task"]["beadId"] = json!(self.rng.pick(BEAD_ID_INJECTIONS)),
            _ => o["spec"]["task"]["beadId"] = Value::Null,
        }
        if self.rng.percent(40) {
            o["status"] = json!({"phase": self.rng.pick(PHASES)});
            if self.rng.one_in(4) {
                self.controller_status(&mut o);
            }
        }
        if self.rng.one_in(8) {
            o["metadata"]["finalizers"] = json!(["gastown.io/release"]);
        }
        if self.rng.one_in(10) {
            self.forge_marks(&mut o);
        }
        if self.rng.one_in(12) {
            // Claim-looking keys that are not the claim keys.
            let key = *self.rng.pick(&[
                "gastown.io/Claimed-By",
                "gastown.io/claimed-by ",
                "gastown.io/claimed_by",
                "gastown.io/claimedby",
                "x.gastown.io/claimed-by",
                "gastown.io/claimed-by/x",
            ]);
            if let Some(l) = labels_mut(&mut o) {
                l.insert(key.to_string(), json!(CLAIMER));
            }
        }
        if self.rng.one_in(15) {
            // Numbers of every kind in an untouched field.
            let f = if self.options.arbitrary_floats {
                f64::from_bits(self.rng.next_u64() & 0x7fef_ffff_ffff_ffff)
            } else {
                *self.rng.pick(SAFE_FLOATS)
            };
            o["spec"]["futureField"]["numbers"] = json!([0, -1, u64::MAX, i64::MIN, 1.5, 1e300, -0.0, f]);
        }
        match self.rng.below(25) {
            0 => {
                remove_at(&mut o, "/metadata", "labels");
            }
            1 => o["metadata"]["labels"] = Value::Null,
            2 => {
                remove_at(&mut o, "/metadata", "annotations");
            }
            3 => o["metadata"]["annotations"] = Value::Null,
            4 => {
                remove_at(&mut o, "", "metadata");
            }
            5 => {
                remove_at(&mut o, "", "spec");
            }
            6 => o["spec"] = Value::Null,
            7 => o["metadata"] = Value::Null,
            _ => {}
        }
        o
    }

    /// Adds one or more claim marks with right or wrong values.
    fn forge_marks(&mut self, o: &mut Value) {
        let value = match self.rng.below(6) {
            0 => CLAIMER.to_string(),
            1 => "other-town".to_string(),
            2 => "Gastown-Local".to_string(),
            3 => String::new(),
            4 => "town-2".to_string(),
            _ => self.string_value(),
        };
        let which = 1 + self.rng.below(7);
        if which & 1 != 0 {
            o["metadata"]["labels"][CLAIMED_BY] = json!(value);
        }
        if which & 2 != 0 {
            o["metadata"]["annotations"][CLAIMED_AT] = json!("2026-11-28T10:00:01Z");
        }
        if which & 4 != 0 {
            o["metadata"]["annotations"][REQUESTED_BY] = json!("alice");
        }
    }

    /// Puts fields only the controller writes into the status: a bead (maybe another team's),
    /// the claim as the controller saw it, or both.
    fn controller_status(&mut self, o: &mut Value) {
        if !o.get("status").is_some_and(Value::is_object) {
            o["status"] = json!({});
        }
        match self.rng.below(4) {
            0 => o["status"]["claim"] = json!({"claimedBy": CLAIMER, "requestedBy": "alice"}),
            1 => o["status"]["gastown"] = Value::Null,
            _ => {
                o["status"]["gastown"] = json!({
                    "beadId": self.rng.pick(&["gt-a3f8", "gt-team7.3", "go-7xq"]),
                    "beadCreated": self.rng.percent(50),
                })
            }
        }
    }

    /// An Automaton that asks for a claim the way users do (mode local or the annotation,
    /// a valid or no rig, no forged marks), so that many cases reach the claim itself.
    fn claim_request(&mut self) -> Value {
        let mut o = automaton("fix-login");
        match self.rng.below(3) {
            0 => o["spec"]["executionMode"] = json!("local"),
            1 => o["metadata"]["annotations"][CLAIM_REQUEST] = json!("local"),
            _ => {
                o["spec"]["executionMode"] = json!("local");
                o["metadata"]["annotations"][CLAIM_REQUEST] = json!("local");
            }
        }
        match self.rng.below(4) {
            0 => o["spec"]["rig"] = json!(self.rng.pick(&["gastown", "webrig", "Rig_2"])),
            1 => remove_at(&mut o, "/spec", "forge"),
            2 => o["spec"]["forge"] = json!("other-forge"),
            _ => {}
        }
        if self.rng.one_in(4) {
            o["spec"]["task"]["beadId"] = json!("go-7xq");
        }
        if self.rng.one_in(5) {
            o["status"] = json!({"phase": self.rng.pick(&["Pending", "Claimed", "Dispatched"])});
        }
        o
    }

    fn create(&mut self) -> Value {
        let claim = self.rng.percent(40);
        let o = if claim {
            self.claim_request()
        } else {
            self.random_automaton()
        };
        let old = if self.rng.one_in(10) {
            self.random_automaton()
        } else {
            Value::Null
        };
        let mut req = self.request("CREATE", "", o, old);
        if claim && self.rng.percent(60) {
            self.authorized_user(&mut req);
        }
        req
    }

    /// Makes the requester one who may claim under the standard settings.
    fn authorized_user(&mut self, req: &mut Value) {
        let (user, groups) = match self.rng.below(3) {
            0 => ("alice", json!(["system:authenticated"])),
            1 => ("bob", json!(["gastown-claimers", "system:authenticated"])),
            _ => ("carol", json!(["developers", "gastown-claimers"])),
        };
        req["userInfo"] = json!({"username": user, "uid": "u-2", "groups": groups});
    }

    fn update_unclaimed(&mut self, claimer: &str) -> Value {
        let old = strip_marks(self.random_automaton());
        let claim = self.rng.percent(30);
        let mut new = if claim {
            let mut n = self.claim_request();
            n["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            old.clone()
        };
        for _ in 0..self.rng.below(4) {
            match self.rng.below(11) {
                0 => new["metadata"]["annotations"][CLAIM_REQUEST] = json!("local"),
                1 => new["spec"]["executionMode"] = json!("local"),
                2 => self.forge_marks(&mut new),
                3 => new["spec"]["rig"] = json!(self.string_value()),
                4 => new["spec"]["task"]["title"] = json!(self.string_value()),
                5 => new["metadata"]["labels"][CLAIMED_BY] = json!(claimer),
                6 => new["spec"]["executionMode"] = json!("kubernetes"),
                7 => new["status"] = json!({"phase": self.rng.pick(PHASES)}),
                8 => new["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]),
                9 => new["metadata"]["finalizers"] = json!([]),
                _ => new = self.random_automaton(),
            }
        }
        if claim && self.rng.one_in(4) {
            // A claim of an Automaton Gas Town released, or whose status someone planted.
            let mut stored = old.clone();
            stored["status"] = json!({"phase": self.rng.pick(&["Released", "Pending", "Claimed"])});
            if self.rng.percent(70) {
                self.controller_status(&mut stored);
            }
            new["status"] = stored["status"].clone();
            let mut req = self.request("UPDATE", "", new, stored);
            self.authorized_user(&mut req);
            return req;
        }
        if self.rng.one_in(10) {
            // Marks already on the stored object (without the label), kept by the update.
            let mut stored = old.clone();
            stored["metadata"]["annotations"][CLAIMED_AT] = json!("2026-11-28T10:00:01Z");
            new["metadata"]["annotations"][CLAIMED_AT] = json!("2026-11-28T10:00:01Z");
            return self.request("UPDATE", "", new, stored);
        }
        let mut req = self.request("UPDATE", "", new, old);
        if claim && self.rng.percent(60) {
            self.authorized_user(&mut req);
        }
        req
    }

    fn claimed_automaton(&mut self, claimer: &str) -> Value {
        let holder = match self.rng.below(10) {
            0..=6 => claimer.to_string(),
            7 => "other-town".to_string(),
            8 => "Gastown-Local".to_string(),
            _ => self.string_value(),
        };
        let rig = self.rng.pick(&["gastown", "webrig"]).to_string();
        let mut o = claimed(automaton("fix-login"), &holder, "alice", &rig);
        if self.rng.percent(40) {
            o["metadata"]["annotations"][CLAIM_REQUEST] = json!("local");
        }
        if self.rng.percent(60) {
            o["status"] = json!({"phase": self.rng.pick(PHASES)});
        }
        if self.rng.percent(50) {
            o["metadata"]["finalizers"] = json!(["gastown.io/release"]);
        }
        o
    }

    fn update_claimed(&mut self, claimer: &str) -> Value {
        let old = self.claimed_automaton(claimer);
        let mut new = old.clone();
        for _ in 0..self.rng.below(4) {
            match self.rng.below(27) {
                20 => new["spec"]["timeoutSeconds"] = json!(self.rng.pick(&[999_999, 1, 0, -1])),
                21 => new["spec"]["agent"]["model"] = json!("sonnet"),
                22 => new["spec"]["mergeStrategy"] = json!(self.rng.pick(&["direct", "mr", "local"])),
                23 => new["spec"]["forge"] = json!("other-forge"),
                24 => new["metadata"]["finalizers"] = json!([RELEASE_FINALIZER, "example.com/keep"]),
                25 => new["metadata"]["finalizers"] = json!(["example.com/keep"]),
                26 => new["spec"]["futureField"] = json!({"kept": false}),
                0 => new["metadata"]["labels"][CLAIMED_BY] = json!("other-town"),
                1 => {
                    let v = new["metadata"]["labels"][CLAIMED_BY]
                        .as_str()
                        .unwrap_or_default()
                        .to_uppercase();
                    new["metadata"]["labels"][CLAIMED_BY] = json!(v);
                }
                2 => {
                    let v = format!(
                        "{} ",
                        new["metadata"]["labels"][CLAIMED_BY].as_str().unwrap_or_default()
                    );
                    new["metadata"]["labels"][CLAIMED_BY] = json!(v);
                }
                3 => {
                    remove_at(&mut new, "/metadata/labels", CLAIMED_BY);
                }
                4 => new["metadata"]["annotations"][CLAIMED_AT] = json!("2030-01-01T00:00:00Z"),
                5 => {
                    remove_at(&mut new, "/metadata/annotations", CLAIMED_AT);
                }
                6 => new["metadata"]["annotations"][REQUESTED_BY] = json!("mallory"),
                7 => {
                    remove_at(&mut new, "/metadata/annotations", REQUESTED_BY);
                }
                8 => {
                    remove_at(&mut new, "/metadata/annotations", CLAIM_REQUEST);
                }
                9 => new["spec"]["rig"] = json!(self.string_value()),
                10 => new["spec"]["executionMode"] = json!("kubernetes"),
                11 => {
                    remove_at(&mut new, "/spec", "executionMode");
                }
                12 => new["spec"]["task"]["title"] = json!("Something else"),
                13 => new["spec"]["task"]["beadId"] = json!(self.rng.pick(BEAD_ID_INJECTIONS)),
                14 => new["metadata"]["labels"]["app"] = json!("changed"),
                15 => new["metadata"]["finalizers"] = json!([]),
                16 => new["status"] = json!({"phase": "Succeeded"}),
                17 => new["metadata"]["labels"] = Value::Null,
                18 => {
                    remove_at(&mut new, "", "metadata");
                }
                _ => new = self.random_automaton(),
            }
        }
        self.request("UPDATE", "", new, old)
    }

    fn status_update(&mut self, claimer: &str) -> Value {
        let old = match self.rng.below(4) {
            0 => strip_marks(self.random_automaton()),
            _ => self.claimed_automaton(claimer),
        };
        let mut old = old;
        if self.rng.one_in(3) {
            // Released by Gas Town, or planted earlier.
            old["status"] = json!({"phase": self.rng.pick(&["Released", "Running", "Pending"])});
            self.controller_status(&mut old);
        }
        let mut new = old.clone();
        match self.rng.below(4) {
            // The executor's way: the controller's fields kept as they are.
            0 => {
                if !new.get("status").is_some_and(Value::is_object) {
                    new["status"] = json!({});
                }
                new["status"]["phase"] = json!(self.rng.pick(PHASES));
                new["status"]["message"] = json!("written by the executor");
            }
            _ => {
                new["status"] = json!({
                    "phase": self.rng.pick(PHASES),
                    "conditions": [{"type": "Completed", "status": "True", "reason": "Spoofed"}]
                });
                if self.rng.one_in(3) {
                    self.controller_status(&mut new);
                }
            }
        }
        if self.rng.one_in(4) {
            remove_at(&mut new, "/metadata/labels", CLAIMED_BY);
        }
        self.request("UPDATE", "status", new, old)
    }

    fn delete(&mut self, claimer: &str) -> Value {
        let old = if self.rng.percent(60) {
            self.claimed_automaton(claimer)
        } else {
            self.random_automaton()
        };
        let object = if self.rng.percent(85) { Value::Null } else { old.clone() };
        let mut req = self.request("DELETE", "", object, old);
        if self.rng.one_in(3) {
            req["options"] =
                json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"});
        }
        req
    }

    fn other_operation(&mut self, claimer: &str) -> Value {
        let object = self.random_automaton();
        let old = self.claimed_automaton(claimer);
        match self.rng.below(6) {
            0 => self.request(
                "CONNECT",
                "",
                json!({"kind": "PodExecOptions", "command": ["sh", "-c", "id"]}),
                Value::Null,
            ),
            1 => self.request(
                "UPDATE",
                "scale",
                json!({"kind": "Scale", "spec": {"replicas": 3}}),
                json!({"kind": "Scale"}),
            ),
            2 => self.request("CREATE", "status", object, Value::Null),
            3 => {
                let op = *self
                    .rng
                    .pick(&["create", "Update", "PATCH", " CREATE", "UPDATE ", "GET", "\u{0}"]);
                self.request(op, "", object, old)
            }
            4 => self.request("UPDATE", "Status", object, old),
            _ => self.request("UPDATE", "finalizers", object, old),
        }
    }

    fn other_resource(&mut self) -> Value {
        let object = self.random_automaton();
        let mut req = self.request("CREATE", "", object, Value::Null);
        let (g, r) = *self.rng.pick(&[
            ("apps", "deployments"),
            ("olympus.io", "forges"),
            ("Olympus.io", "automatons"),
            ("olympus.io", "Automatons"),
            ("olympus.io", "automaton"),
            ("", "automatons"),
            ("olympus.io ", "automatons"),
        ]);
        req["resource"]["group"] = json!(g);
        req["resource"]["resource"] = json!(r);
        req
    }

    /// A 100 KB+ string somewhere that matters.
    fn put_huge_string(&mut self, req: &mut Value) {
        let len = 100_000 + self.rng.below(100_000);
        let unit = *self.rng.pick(&["x", "é", "🚀", "a;b$(id)", "\u{200b}", "local", "\n"]);
        let huge: String = unit.repeat(len / unit.len() + 1);
        let pointer = *self.rng.pick(&[
            "/object/spec/task/title",
            "/object/spec/task/description",
            "/object/spec/rig",
            "/object/spec/executionMode",
            "/object/metadata/name",
            "/object/metadata/labels/app",
            "/object/metadata/labels/gastown.io~1claimed-by",
            "/object/metadata/annotations/gastown.io~1claim",
            "/oldObject/metadata/labels/gastown.io~1claimed-by",
            "/userInfo/username",
            "/namespace",
            "/object/spec/forge",
            "/object/spec/task/beadId",
        ]);
        set_pointer(req, pointer, json!(huge));
        if self.rng.one_in(4) {
            // Many labels instead.
            if let Some(l) = req
                .pointer_mut("/object/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                for i in 0..5_000 {
                    l.insert(format!("example.com/label-{i}"), json!(format!("value-{i}")));
                }
            }
        }
    }

    /// Replaces the value at a random path with one of another JSON type, or removes it.
    fn corrupt(&mut self, req: &mut Value) {
        let mut paths = Vec::new();
        collect_pointers(req, String::new(), &mut paths);
        if paths.is_empty() {
            return;
        }
        // Favour the fields the policy reads.
        let interesting: Vec<&String> = paths
            .iter()
            .filter(|p| {
                [
                    "/operation",
                    "/subResource",
                    "/resource",
                    "/userInfo",
                    "/namespace",
                    "/labels",
                    "/annotations",
                    "/spec",
                    "/status",
                    "/metadata",
                ]
                .iter()
                .any(|k| p.contains(k))
            })
            .collect();
        let path = if !interesting.is_empty() && self.rng.percent(70) {
            interesting[self.rng.below(interesting.len())].clone()
        } else {
            paths[self.rng.below(paths.len())].clone()
        };
        if self.rng.one_in(3) {
            remove_pointer(req, &path);
            return;
        }
        let current_kind = req.pointer(&path).map(kind);
        for _ in 0..8 {
            let v = match self.rng.below(10) {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(0),
                3 => json!(-1),
                4 => json!(1.5),
                5 => json!("string"),
                6 => json!([]),
                7 => json!({}),
                8 => json!([1, "a", null]),
                _ => json!({"a": 1}),
            };
            if Some(kind(&v)) != current_kind {
                set_pointer(req, &path, v);
                return;
            }
        }
    }

    /// A malformed or unusual raw `validate` payload.
    fn raw_payload(&mut self, settings: &Value) -> Vec<u8> {
        let base = json!({"settings": settings, "request": self.create()}).to_string();
        match self.rng.below(14) {
            0 => (0..self.rng.below(300)).map(|_| self.rng.next_u64() as u8).collect(),
            1 => {
                let cut = self.rng.below(base.len());
                base.as_bytes()[..cut].to_vec()
            }
            2 => "[".repeat(10_000).into_bytes(),
            3 => format!(
                "{{\"settings\":null,\"request\":{{\"operation\":\"CREATE\",\"userInfo\":{{}},\"object\":{}1{}}}}}",
                "[".repeat(120),
                "]".repeat(120)
            )
            .into_bytes(),
            4 => {
                let mut v = b"\xEF\xBB\xBF".to_vec();
                v.extend_from_slice(base.as_bytes());
                v
            }
            5 => base
                .replacen("Fix the login bug", "Fix \u{FFFD}", 1)
                .replace('\u{FFFD}', "\u{0}")
                .into_bytes(),
            6 => {
                let mut v = base.into_bytes();
                if let Some(p) = v.windows(3).position(|w| w == b"Fix") {
                    v[p] = 0xff;
                }
                v
            }
            7 => base.replacen("Fix the login bug", "\\ud800", 1).into_bytes(),
            8 => {
                // Duplicate keys: serde_json keeps the last.
                let dup = admission_request("CREATE", "", "bob", &[], automaton("x"), Value::Null).to_string();
                format!(
                    "{{\"settings\":{settings},\"request\":{dup},\"request\":{}}}",
                    &base[base.find("\"request\":").map_or(0, |i| i + 10)..base.len() - 1]
                )
                .into_bytes()
            }
            9 => format!("{}{}", " ".repeat(100_000), "{}").into_bytes(),
            10 => (*self.rng.pick(&[
                "null",
                "[]",
                "\"x\"",
                "1",
                "{}",
                "{\"request\":7}",
                "{\"request\":{}}",
                "{\"settings\":[],\"request\":null}",
            ]))
            .into(),
            11 => base.replacen("\"CREATE\"", "1e999", 1).into_bytes(),
            12 if self.rng.one_in(200) => {
                // Above the 8 MiB cap.
                format!(
                    "{{\"settings\":null,\"request\":{{\"operation\":\"{}\"}}}}",
                    "x".repeat(8 * 1024 * 1024 + 10)
                )
                .into_bytes()
            }
            _ => base.into_bytes(),
        }
    }
}

fn strip_marks(mut o: Value) -> Value {
    remove_at(&mut o, "/metadata/labels", CLAIMED_BY);
    remove_at(&mut o, "/metadata/annotations", CLAIMED_AT);
    remove_at(&mut o, "/metadata/annotations", REQUESTED_BY);
    o
}

/// Removes `key` from the object at `pointer` (`""`: the root), when there is one.
fn remove_at(root: &mut Value, pointer: &str, key: &str) {
    if let Some(Value::Object(m)) = root.pointer_mut(pointer) {
        m.remove(key);
    }
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn collect_pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    if out.len() > 10_000 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{prefix}/{}", escape(k));
                out.push(p.clone());
                collect_pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                collect_pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// Sets the value at a JSON pointer, creating objects on the way (replacing non-objects).
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    set_tokens(root, &tokens, value);
}

fn set_tokens(cur: &mut Value, tokens: &[String], value: Value) {
    let Some((token, rest)) = tokens.split_first() else {
        *cur = value;
        return;
    };
    if let Value::Array(a) = cur
        && let Ok(i) = token.parse::<usize>()
        && i < a.len()
    {
        return set_tokens(&mut a[i], rest, value);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(map) = cur {
        set_tokens(map.entry(token.clone()).or_insert(Value::Null), rest, value);
    }
}

fn remove_pointer(root: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = unescape(last);
    match root.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------------

/// Lenient reads of a request, mirroring how the policy reads it.
struct Req<'a>(&'a Value);

impl<'a> Req<'a> {
    fn str_or_empty(v: Option<&'a Value>) -> Option<&'a str> {
        match v {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s),
            Some(_) => None,
        }
    }
    fn operation(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("operation"))
    }
    fn sub_resource(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("subResource"))
    }
    fn is_automatons(&self) -> bool {
        let r = self.0.get("resource");
        Self::str_or_empty(r.and_then(|r| r.get("group"))) == Some("olympus.io")
            && Self::str_or_empty(r.and_then(|r| r.get("resource"))) == Some("automatons")
            && r.is_some_and(Value::is_object)
    }
    fn username(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("userInfo").and_then(|u| u.get("username")))
    }
    fn groups(&self) -> Vec<&'a str> {
        self.0
            .get("userInfo")
            .and_then(|u| u.get("groups"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
    fn object(&self) -> &'a Value {
        self.0.get("object").unwrap_or(&Value::Null)
    }
    fn old(&self) -> &'a Value {
        self.0.get("oldObject").unwrap_or(&Value::Null)
    }
}

fn meta_str<'a>(o: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    o.get("metadata")?
        .as_object()?
        .get(map)?
        .as_object()?
        .get(key)?
        .as_str()
}

fn has_meta_key(o: &Value, map: &str, key: &str) -> bool {
    o.get("metadata")
        .and_then(Value::as_object)
        .and_then(|m| m.get(map))
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(key))
}

fn marks(o: &Value) -> [Option<&str>; 3] {
    [
        meta_str(o, "labels", CLAIMED_BY),
        meta_str(o, "annotations", CLAIMED_AT),
        meta_str(o, "annotations", REQUESTED_BY),
    ]
}

fn spec_field<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    o.get("spec")?.get(name)
}

fn requests_claim(o: &Value) -> bool {
    spec_field(o, "executionMode").and_then(Value::as_str) == Some("local")
        || meta_str(o, "annotations", CLAIM_REQUEST) == Some("local")
}

fn phase(o: &Value) -> Option<&str> {
    o.get("status")?.as_object()?.get("phase")?.as_str()
}

/// `status.<name>`, `None` when absent or `null`.
fn status_field<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    o.get("status")?.as_object()?.get(name).filter(|v| !v.is_null())
}

fn has_release_finalizer(o: &Value) -> bool {
    o.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(RELEASE_FINALIZER)))
}

/// Why one JSONPatch operation of a mutation is not allowed (`None`: allowed). Allowed: `add`
/// or `replace` of the five claim fields, and `add`/`replace` of `metadata`, `labels`,
/// `annotations` or `spec` where the original has none (absent or `null`), holding only claim
/// fields.
pub fn patch_op_violation(original: &Value, op: &PatchOperation) -> Option<String> {
    let path = op.path().to_string();
    let value = match op {
        PatchOperation::Add(a) => &a.value,
        PatchOperation::Replace(r) => &r.value,
        other => return Some(format!("patch operation {other} is not an add or replace")),
    };
    if CLAIM_PATHS.contains(&path.as_str()) {
        return (!value.is_string()).then(|| format!("{path} set to a non-string {value}"));
    }
    fn only(value: &Value, keys: &[&str]) -> bool {
        value
            .as_object()
            .is_some_and(|m| m.keys().all(|k| keys.contains(&k.as_str())))
    }
    let claim_only = match path.as_str() {
        "/metadata/labels" => only(value, &[CLAIMED_BY]),
        "/metadata/annotations" => only(value, &[CLAIMED_AT, REQUESTED_BY]),
        "/spec" => only(value, &["executionMode", "rig"]),
        "/metadata" => {
            only(value, &["labels", "annotations"])
                && value.get("labels").is_none_or(|l| only(l, &[CLAIMED_BY]))
                && value
                    .get("annotations")
                    .is_none_or(|a| only(a, &[CLAIMED_AT, REQUESTED_BY]))
        }
        _ => return Some(format!("patch touches {path}, which is not a claim field")),
    };
    if !claim_only {
        return Some(format!(
            "patch sets {path} to {value}, which holds more than claim fields"
        ));
    }
    if !matches!(original.pointer(&path), None | Some(Value::Null)) {
        return Some(format!("patch replaces the existing {path}"));
    }
    None
}

/// Checks one answer. `response` is the guest's ValidationResponse; `patch` the JSONPatch the
/// host computed from it (`None` when the object is unchanged).
pub fn check(case: &Case, response: &Value, patch: Option<&json_patch::Patch>) -> Result<(), String> {
    let accepted = response.get("accepted").and_then(Value::as_bool).ok_or_else(|| {
        format!(
            "the answer lacks a boolean `accepted`: {}",
            shorten(&response.to_string())
        )
    })?;
    let code = response.get("code").and_then(Value::as_u64);
    let mutated = response.get("mutated_object").filter(|m| !m.is_null());
    if !accepted {
        let message = response.get("message").and_then(Value::as_str).unwrap_or_default();
        if message.trim().is_empty() {
            return Err(format!(
                "a rejection without a message: {}",
                shorten(&response.to_string())
            ));
        }
        if !matches!(code, Some(400 | 403 | 409 | 429 | 500 | 503)) {
            return Err(format!("a rejection with code {code:?}: {message}"));
        }
        if mutated.is_some() {
            return Err("a rejection with a mutated object".to_string());
        }
    }
    // Raw payloads: the request is what serde_json makes of them.
    let parsed;
    let (request, settings) = match &case.raw {
        Some(raw) => {
            parsed = serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
            (
                parsed.get("request").unwrap_or(&Value::Null),
                parsed.get("settings").unwrap_or(&Value::Null),
            )
        }
        None => (&case.request, &case.settings),
    };
    let req = Req(request);
    let username = req.username();
    if let Some(mutated) = mutated {
        if !(matches!(req.operation(), Some("CREATE" | "UPDATE"))
            && req.sub_resource() == Some("")
            && req.is_automatons())
        {
            return Err(format!(
                "mutation of operation {:?} subresource {:?} resource {}",
                req.operation(),
                req.sub_resource(),
                request.get("resource").map(Value::to_string).unwrap_or_default()
            ));
        }
        let original = req.object();
        let computed = json_patch::diff(original, mutated);
        let patch = patch.unwrap_or(&computed);
        for op in &patch.0 {
            if let Some(v) = patch_op_violation(original, op) {
                return Err(v);
            }
        }
        let mut patched = original.clone();
        json_patch::patch(&mut patched, patch).map_err(|e| format!("the patch does not apply: {e}"))?;
        let claimer = match &case.model {
            Some(m) => m.claimer.clone(),
            None => settings
                .get("claimer")
                .and_then(Value::as_str)
                .unwrap_or(CLAIMER)
                .to_string(),
        };
        let got = |p: &str| patched.pointer(p).and_then(Value::as_str);
        if got(CLAIM_PATHS[0]) != Some(claimer.as_str()) {
            return Err(format!("claimed-by is {:?}, not {claimer:?}", got(CLAIM_PATHS[0])));
        }
        let at = got(CLAIM_PATHS[1]).unwrap_or_default();
        if at.parse::<jiff::Timestamp>().is_err() {
            return Err(format!("claimed-at {at:?} is not RFC 3339"));
        }
        if got(CLAIM_PATHS[2]) != username {
            return Err(format!(
                "claim-requested-by is {:?}, not the requester {username:?}",
                got(CLAIM_PATHS[2])
            ));
        }
        if got(CLAIM_PATHS[3]) != Some("local") {
            return Err("spec.executionMode is not \"local\" after a claim".to_string());
        }
        let rig = got(CLAIM_PATHS[4]).unwrap_or_default();
        if let Err(e) = validate_rig_name(rig) {
            return Err(format!("a claim writes an invalid rig: {e}"));
        }
    }
    if case.raw.is_some() {
        return Ok(());
    }
    match case.settings_valid {
        Some(false) => {
            if accepted || code != Some(500) {
                return Err(format!(
                    "invalid settings were used: {}",
                    shorten(&response.to_string())
                ));
            }
            return Ok(());
        }
        None => return Ok(()),
        Some(true) if code == Some(500) => {
            return Err(format!(
                "valid settings reported as misconfigured: {}",
                shorten(&response.to_string())
            ));
        }
        Some(true) => {}
    }
    let Some(model) = &case.model else { return Ok(()) };
    let op = req.operation();
    let sub = req.sub_resource();
    let automatons = req.is_automatons();
    let controller = username.is_some_and(|u| model.is_controller(u));
    let (new, old) = (req.object(), req.old());
    let rejected = !accepted;
    let plain_accept = accepted && patch.is_none();
    let fail =
        |rule: &str| -> Result<(), String> { Err(format!("{rule}; answer: {}", shorten(&response.to_string()))) };
    if !automatons || controller {
        if mutated.is_some() {
            return fail(if controller {
                "the controller's request was mutated"
            } else {
                "another resource was mutated"
            });
        }
        return Ok(());
    }
    // Changes to claimed work by anyone but the controller.
    if op == Some("UPDATE") && sub == Some("") && has_meta_key(old, "labels", CLAIMED_BY) && !rejected {
        let mut changed = marks(old) != marks(new);
        changed |= meta_str(old, "annotations", CLAIM_REQUEST).is_some()
            && meta_str(old, "annotations", CLAIM_REQUEST) != meta_str(new, "annotations", CLAIM_REQUEST);
        // The whole spec is frozen, and the finalizer is the controller's.
        changed |= old.get("spec") != new.get("spec");
        changed |= has_release_finalizer(old) != has_release_finalizer(new);
        if changed {
            return fail(
                "a claimed Automaton's claim marks, spec or finalizer were changed by a non-controller identity",
            );
        }
        if mutated.is_some() {
            return fail("a claimed Automaton was claimed again");
        }
    }
    // Status spoofing: claimed by any claimer, like the main resource.
    if op == Some("UPDATE") && sub == Some("status") && has_meta_key(old, "labels", CLAIMED_BY) && !rejected {
        return fail("status of a claimed Automaton written by a non-controller identity");
    }
    // Planted status: the controller's fields, on any Automaton.
    if op == Some("UPDATE") && sub == Some("status") && !rejected {
        if CONTROLLER_STATUS
            .iter()
            .any(|f| status_field(old, f) != status_field(new, f))
        {
            return fail("status.claim or status.gastown written by a non-controller identity");
        }
        if let Some(p) = phase(new)
            && phase(new) != phase(old)
            && CONTROLLER_PHASES.contains(&p)
        {
            return fail("a phase only the controller writes was set by a non-controller identity");
        }
    }
    // The finalizer is added only by the controller (and removed only by it from claimed work).
    let adds_finalizer = match op {
        Some("CREATE") => has_release_finalizer(new),
        Some("UPDATE") => has_release_finalizer(new) && !has_release_finalizer(old),
        _ => false,
    };
    if sub == Some("") && adds_finalizer && !rejected {
        return fail("the gastown.io/release finalizer was added by a non-controller identity");
    }
    // Forged claim marks.
    let forged_create = op == Some("CREATE")
        && sub == Some("")
        && (has_meta_key(new, "labels", CLAIMED_BY)
            || has_meta_key(new, "annotations", CLAIMED_AT)
            || has_meta_key(new, "annotations", REQUESTED_BY));
    let forged_update = op == Some("UPDATE")
        && sub == Some("")
        && !has_meta_key(old, "labels", CLAIMED_BY)
        && marks(new).iter().any(Option::is_some)
        && marks(new) != marks(old);
    if (forged_create || forged_update) && !rejected {
        return fail("forged claim marks were accepted");
    }
    // A requested claim is made or refused, never silently ignored.
    let claim_requested = sub == Some("")
        && new.is_object()
        && requests_claim(new)
        && (op == Some("CREATE") || (op == Some("UPDATE") && !has_meta_key(old, "labels", CLAIMED_BY)));
    if claim_requested && plain_accept {
        return fail("a claim request (executionMode local or gastown.io/claim: local) was accepted unchanged");
    }
    if mutated.is_some() {
        let user = username.unwrap_or_default();
        if !model.may_claim(user, &req.groups()) {
            return fail("a claim was made for a user who may not claim");
        }
        if let Some(limit) = model.limit {
            match &case.ledger {
                LedgerAnswer::Error(_) => return fail("a claim was made although the claims could not be counted"),
                LedgerAnswer::Items { active, .. } if *active >= u64::from(limit) => {
                    return fail("a claim was made beyond maxActiveClaimsPerNamespace");
                }
                _ => {}
            }
        }
        if op == Some("UPDATE") && matches!(phase(old), Some("Running" | "Succeeded" | "Failed")) {
            return fail("an Automaton that ran in Kubernetes was claimed");
        }
        if op == Some("UPDATE") && phase(old) == Some("Released") {
            return fail("an Automaton released by Gas Town was claimed again");
        }
        if op == Some("UPDATE") && CONTROLLER_STATUS.iter().any(|f| status_field(old, f).is_some()) {
            return fail("an Automaton whose status carries status.claim or status.gastown was claimed");
        }
        let expected_rig = match spec_field(new, "rig").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => Some(r),
            _ => model.rig_for_forge(spec_field(new, "forge").and_then(Value::as_str)),
        };
        let got = mutated.and_then(|m| m.pointer("/spec/rig")).and_then(Value::as_str);
        if got != expected_rig {
            return fail(&format!("the claim's rig is {got:?}, expected {expected_rig:?}"));
        }
        if let Some(Value::String(id)) = spec_field(new, "task").and_then(|t| t.get("beadId"))
            && gastown_crds::validate::validate_bead_id(id).is_err()
        {
            return fail("a claim with an invalid spec.task.beadId was accepted");
        }
    }
    Ok(())
}

/// At most 1,500 characters of `s`.
pub fn shorten(s: &str) -> String {
    if s.len() <= 1500 {
        return s.to_string();
    }
    let mut end = 1500;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

//! The generator: one case from one seed. Settings, the claim ledger and the requesting user are
//! drawn here; the Automatons in `objects`, the request kinds in `scenarios`, the damage in
//! `corrupt`. Every draw happens in a fixed order, so a seed always gives the same case.

use gastown_crds::Automaton;
use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use kube::Resource as _;
use serde_json::{Value, json};

use super::settings::SettingsModel;
use super::values::{CONTROLLER_LOOKALIKES, INJECTIONS, PHASES, UNICODE};
use super::{Case, LedgerAnswer, Scenario, case_seed};
use crate::rng::Rng;

/// An AdmissionRequest for automatons (`sub_resource` "" for the main resource).
pub fn admission_request(
    operation: &str,
    sub_resource: &str,
    username: &str,
    groups: &[&str],
    object: Value,
    old_object: Value,
) -> Value {
    let (group, version) = (Automaton::group(&()), Automaton::version(&()));
    let gvk = json!({"group": group, "version": version, "kind": Automaton::kind(&())});
    let gvr = json!({"group": group, "version": version, "resource": Automaton::plural(&())});
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

/// Generator options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Put floats with arbitrary bit patterns into fields the policy does not own (the default).
    /// They found the float round-trip bug (see
    /// policy/test_data/cases/regression-float-roundtrip.json). Off: only floats that
    /// round-trip under any serde_json configuration.
    pub arbitrary_floats: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { arbitrary_floats: true }
    }
}

/// The generator.
pub struct AdmissionGen {
    pub(super) rng: Rng,
    seed: u64,
    pub(super) options: Options,
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
        let claimer = model
            .as_ref()
            .map_or(DEFAULT_CLAIMER, |m| m.claimer.as_str())
            .to_string();
        let (scenario, mut request) = self.scenario(&claimer);
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

    /// Settings: the defaults, invalid ones, odd shapes, or a variation of the standard ones.
    fn settings(&mut self) -> (Value, Option<SettingsModel>, Option<bool>) {
        match self.rng.below(100) {
            0..=3 => (Value::Null, Some(SettingsModel::defaults()), Some(true)),
            4..=5 => (json!({}), Some(SettingsModel::defaults()), Some(true)),
            6..=17 => (self.invalid_settings(), None, Some(false)),
            18..=19 => {
                // Shapes that are not settings objects (an array used to be read positionally).
                let odd = match self.rng.below(5) {
                    0 => json!([]),
                    1 => json!(["gastown-local", [], [], ["mallory"]]),
                    2 => json!("settings"),
                    3 => json!(7),
                    _ => json!({"claimer": null, "allowedUsers": null}),
                };
                (odd, None, Some(false))
            }
            _ => {
                let m = self.valid_settings();
                (m.to_json(), Some(m), Some(true))
            }
        }
    }

    fn invalid_settings(&mut self) -> Value {
        match self.rng.below(14) {
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
        }
    }

    fn valid_settings(&mut self) -> SettingsModel {
        let r = &mut self.rng;
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
        m
    }

    /// The policy's claim count: a failing host call, or a list with some non-terminal items.
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

    /// A user and their groups: allowed, not allowed, anonymous, the controller or a look-alike.
    fn username(&mut self) -> (String, Vec<String>) {
        let r = &mut self.rng;
        let user = match r.below(100) {
            0..=29 => "alice".to_string(),
            30..=39 => "bob".to_string(),
            40..=44 => "carol".to_string(),
            45..=64 => DEFAULT_CONTROLLER_USER.to_string(),
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
            DEFAULT_CONTROLLER_USER,
        ];
        let mut groups = Vec::new();
        for g in pool {
            if r.percent(if g == "system:authenticated" { 60 } else { 15 }) {
                groups.push(g.to_string());
            }
        }
        (user, groups)
    }

    /// Makes the requester one who may claim under the standard settings.
    pub(super) fn authorized_user(&mut self, req: &mut Value) {
        let (user, groups) = match self.rng.below(3) {
            0 => ("alice", json!(["system:authenticated"])),
            1 => ("bob", json!(["gastown-claimers", "system:authenticated"])),
            _ => ("carol", json!(["developers", "gastown-claimers"])),
        };
        req["userInfo"] = json!({"username": user, "uid": "u-2", "groups": groups});
    }

    /// A request by a drawn user, with the empty subresource spelled one of three ways.
    pub(super) fn request(&mut self, operation: &str, sub_resource: &str, object: Value, old: Value) -> Value {
        let (user, groups) = self.username();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let mut req = admission_request(operation, sub_resource, &user, &groups, object, old);
        if sub_resource.is_empty() {
            match self.rng.below(3) {
                0 => req["subResource"] = json!(""),
                1 => req["subResource"] = Value::Null,
                _ => {}
            }
        }
        if self.rng.one_in(20) {
            super::corrupt::remove_at(&mut req, "/userInfo", "groups");
        }
        if self.rng.one_in(30) {
            req["namespace"] = json!(self.rng.pick(UNICODE));
        }
        req
    }

    /// A string for any field: an injection, unicode, or a plain value.
    pub(super) fn string_value(&mut self) -> String {
        match self.rng.below(4) {
            0 => self.rng.pick(INJECTIONS).to_string(),
            1 => self.rng.pick(UNICODE).to_string(),
            _ => self
                .rng
                .pick(&["gastown", "webrig", "Rig_2", "a", "x", "local", "kubernetes", ""])
                .to_string(),
        }
    }
}

//! The generator: one case from one seed. Settings, the claim ledger and the requesting user are
//! drawn here; the Automatons in `objects`, the request kinds in `scenarios`, the damage in
//! `corrupt`. Every draw happens in a fixed order, so a seed always gives the same case.

use gastown_crds::Automaton;
use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use kube::Resource as _;
use serde_json::{Value, json};

use super::settings::{BOB_CONTROLLER, CAROL_CONTROLLER, SettingsModel};
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
        // The town whose claims the scenario mostly makes: any town of the settings.
        let claimer = match &model {
            Some(m) => self.rng.pick(&m.towns).name.clone(),
            None => DEFAULT_CLAIMER.to_string(),
        };
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
            20..=29 => (self.invalid_towns(), None, Some(false)),
            30..=59 => {
                let m = self.valid_towns();
                (m.to_json(), Some(m), Some(true))
            }
            _ => {
                let m = self.valid_settings();
                (m.to_json(), Some(m), Some(true))
            }
        }
    }

    /// Settings with a `towns` list that the policy must refuse.
    fn invalid_towns(&mut self) -> Value {
        let mut s = SettingsModel::three_towns().to_json();
        match self.rng.below(10) {
            0 => s["towns"][1]["name"] = json!("local"),
            1 => s["towns"][2]["name"] = json!("town-alice"),
            2 => s["towns"][2]["rigs"] = json!(["docs", "api"]),
            3 => s["claimer"] = json!("gastown-local"),
            4 => s["maxActiveClaimsPerNamespace"] = json!(3),
            5 => s["defaultTown"] = json!("town-zed"),
            6 => s["towns"][0]["controllerUsers"] = json!([]),
            7 => s["towns"][1]["maxActiveClaims"] = json!(0),
            8 => s["towns"][0]["rig"] = json!(["webrig"]),
            _ => s["towns"][1]["rigs"] = json!(["hq"]),
        }
        s
    }

    /// A variation of [`SettingsModel::three_towns`].
    fn valid_towns(&mut self) -> SettingsModel {
        let r = &mut self.rng;
        let mut m = SettingsModel::three_towns();
        m.default_town = match r.below(4) {
            0 => None,
            n => Some(m.towns[n - 1].name.clone()),
        };
        for town in &mut m.towns {
            if r.percent(30) {
                town.limit = Some(1 + r.below(4) as u32);
            }
            if r.percent(15) {
                town.allowed_users.clear();
                town.allowed_groups.clear();
            }
        }
        if r.percent(20) {
            // The first town's rigs move to the last; the default rig may live in a town.
            let rigs = std::mem::take(&mut m.towns[0].rigs);
            m.towns[2].rigs.extend(rigs);
        }
        if r.percent(30) {
            m.towns[2].rigs.push("gastown".to_string());
        }
        if r.percent(20) {
            m.forge_rigs.clear();
        }
        if r.percent(25) {
            m.default_rig = None;
        }
        if r.percent(15) {
            m.towns.truncate(1 + r.below(2));
            m.default_town = m.default_town.filter(|d| m.towns.iter().any(|t| &t.name == d));
        }
        m
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
        let town = &mut m.towns[0];
        if r.percent(15) {
            town.name = "town-2".to_string();
        }
        match r.below(4) {
            0 => town.allowed_users.clear(),
            1 => town.allowed_users.push("carol".to_string()),
            _ => {}
        }
        if r.percent(25) {
            town.allowed_groups.clear();
        }
        if r.percent(20) {
            town.controller_users.push(BOB_CONTROLLER.to_string());
        }
        if r.percent(35) {
            town.limit = Some(1 + r.below(4) as u32);
        }
        if r.percent(20) {
            m.forge_rigs.clear();
        }
        if r.percent(25) {
            m.default_rig = None;
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
            0..=24 => "alice".to_string(),
            25..=32 => "bob".to_string(),
            33..=37 => "carol".to_string(),
            38..=41 => r.pick(&["dave", "erin"]).to_string(),
            42..=59 => DEFAULT_CONTROLLER_USER.to_string(),
            60..=71 => r.pick(CONTROLLER_LOOKALIKES).to_string(),
            72..=76 => "system:anonymous".to_string(),
            77..=79 => String::new(),
            80..=83 => "Alice".to_string(),
            84..=86 => "alice ".to_string(),
            87..=91 => BOB_CONTROLLER.to_string(),
            92..=94 => CAROL_CONTROLLER.to_string(),
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

    /// Makes the requester one who may claim under the standard settings (and in some town of
    /// the three-town settings).
    pub(super) fn authorized_user(&mut self, req: &mut Value) {
        let (user, groups) = match self.rng.below(4) {
            0 => ("alice", json!(["system:authenticated"])),
            1 => ("bob", json!(["gastown-claimers", "system:authenticated"])),
            2 => ("carol", json!(["developers", "gastown-claimers"])),
            _ => ("dave", json!(["system:authenticated"])),
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

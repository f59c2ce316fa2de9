//! The policy settings as the generator knows them, to state what an answer must be: one town
//! (the single-town shorthand) or a list of towns, and how a claim is routed among them.
//!
//! An independent model of `policy/src/settings.rs` and `policy/src/decision/route.rs`, written
//! again on purpose: the rules are checked against this, not against the code under test.

use std::collections::BTreeMap;

use gastown_crds::contract::{CLAIM_REQUEST_VALUE, DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use gastown_crds::validate::validate_rig_name;
use serde_json::{Value, json};

/// One Gas Town of the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TownModel {
    /// `name` (the shorthand's `claimer`).
    pub name: String,
    /// `rigs` (none in the shorthand).
    pub rigs: Vec<String>,
    /// `allowedUsers`.
    pub allowed_users: Vec<String>,
    /// `allowedGroups`.
    pub allowed_groups: Vec<String>,
    /// `controllerUsers`.
    pub controller_users: Vec<String>,
    /// `maxActiveClaims` (the shorthand's `maxActiveClaimsPerNamespace`).
    pub limit: Option<u32>,
}

impl TownModel {
    /// Whether `user` with `groups` may send work to this town.
    pub fn may_claim(&self, user: &str, groups: &[&str]) -> bool {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return !user.is_empty() && user != "system:anonymous" && !groups.contains(&"system:unauthenticated");
        }
        self.lists(user, groups)
    }

    /// Whether the town's own lists name `user` or one of `groups`.
    pub fn lists(&self, user: &str, groups: &[&str]) -> bool {
        self.allowed_users.iter().any(|u| u == user)
            || groups.iter().any(|g| self.allowed_groups.iter().any(|a| a == g))
    }

    fn to_json(&self) -> Value {
        let mut t = json!({
            "name": self.name,
            "rigs": self.rigs,
            "allowedUsers": self.allowed_users,
            "allowedGroups": self.allowed_groups,
            "controllerUsers": self.controller_users,
        });
        if let Some(limit) = self.limit {
            t["maxActiveClaims"] = json!(limit);
        }
        t
    }
}

/// The policy settings, as the generator knows them (to state what the answer must be).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsModel {
    /// The towns; exactly one when `shorthand`.
    pub towns: Vec<TownModel>,
    /// Written as the single-town settings (`claimer`, ...) rather than a `towns` list.
    pub shorthand: bool,
    /// `defaultTown` as written (the shorthand's default is its one town).
    pub default_town: Option<String>,
    /// `forgeRigs`.
    pub forge_rigs: BTreeMap<String, String>,
    /// `defaultRig`.
    pub default_rig: Option<String>,
}

/// A town with the given lists and no rigs or limit.
fn town(name: &str, users: &[&str], groups: &[&str], controller: &str) -> TownModel {
    TownModel {
        name: name.to_string(),
        rigs: Vec::new(),
        allowed_users: users.iter().map(|u| u.to_string()).collect(),
        allowed_groups: groups.iter().map(|g| g.to_string()).collect(),
        controller_users: vec![controller.to_string()],
        limit: None,
    }
}

/// The controller identity of town-bob in [`SettingsModel::three_towns`].
pub const BOB_CONTROLLER: &str = "system:serviceaccount:ops:gastown-operator";
/// The controller identity of town-carol in [`SettingsModel::three_towns`].
pub const CAROL_CONTROLLER: &str = "system:serviceaccount:gastown-carol:gastown-operator";

impl SettingsModel {
    /// The settings of most fixtures.
    pub fn standard() -> SettingsModel {
        SettingsModel {
            towns: vec![town(
                DEFAULT_CLAIMER,
                &["alice"],
                &["gastown-claimers"],
                DEFAULT_CONTROLLER_USER,
            )],
            shorthand: true,
            default_town: None,
            forge_rigs: [("web-forge".to_string(), "webrig".to_string())].into(),
            default_rig: Some("gastown".to_string()),
        }
    }

    /// The policy's defaults (settings `null` or `{}`).
    pub fn defaults() -> SettingsModel {
        SettingsModel {
            towns: vec![town(DEFAULT_CLAIMER, &[], &[], DEFAULT_CONTROLLER_USER)],
            shorthand: true,
            default_town: None,
            forge_rigs: BTreeMap::new(),
            default_rig: None,
        }
    }

    /// Three towns: town-alice (rigs webrig, payments; alice, dave; the default controller),
    /// town-bob (rig api; bob, dave, group gastown-claimers; [`BOB_CONTROLLER`]) and town-carol
    /// (rig docs; anyone authenticated; [`CAROL_CONTROLLER`]).
    pub fn three_towns() -> SettingsModel {
        let mut alice = town("town-alice", &["alice", "dave"], &[], DEFAULT_CONTROLLER_USER);
        alice.rigs = vec!["webrig".to_string(), "payments".to_string()];
        let mut bob = town("town-bob", &["bob", "dave"], &["gastown-claimers"], BOB_CONTROLLER);
        bob.rigs = vec!["api".to_string()];
        let mut carol = town("town-carol", &[], &[], CAROL_CONTROLLER);
        carol.rigs = vec!["docs".to_string()];
        SettingsModel {
            towns: vec![alice, bob, carol],
            shorthand: false,
            default_town: None,
            ..SettingsModel::standard()
        }
    }

    /// The settings JSON.
    pub fn to_json(&self) -> Value {
        let mut s = json!({"forgeRigs": self.forge_rigs});
        match (&self.towns[..], self.shorthand) {
            ([one], true) => {
                s["claimer"] = json!(one.name);
                s["allowedUsers"] = json!(one.allowed_users);
                s["allowedGroups"] = json!(one.allowed_groups);
                s["controllerUsers"] = json!(one.controller_users);
                if let Some(limit) = one.limit {
                    s["maxActiveClaimsPerNamespace"] = json!(limit);
                }
            }
            (towns, _) => s["towns"] = towns.iter().map(TownModel::to_json).collect(),
        }
        if let Some(rig) = &self.default_rig {
            s["defaultRig"] = json!(rig);
        }
        if let Some(town) = &self.default_town {
            s["defaultTown"] = json!(town);
        }
        s
    }

    /// The town named `name`.
    pub fn town(&self, name: &str) -> Option<&TownModel> {
        self.towns.iter().find(|t| t.name == name)
    }

    /// The town of claims that no rig or requester routes.
    pub fn default_town(&self) -> Option<&TownModel> {
        match &self.default_town {
            Some(name) => self.town(name),
            None if self.shorthand => self.towns.first(),
            None => None,
        }
    }

    /// Exactly one of the controller identities of any town (no normalisation of any kind).
    pub fn is_controller(&self, user: &str) -> bool {
        self.towns.iter().any(|t| t.controller_users.iter().any(|u| u == user))
    }

    /// Whether `user` is a controller identity of the town `name`.
    pub fn controls(&self, user: &str, name: &str) -> bool {
        self.town(name)
            .is_some_and(|t| t.controller_users.iter().any(|u| u == user))
    }

    /// What a `gastown.io/claim` value asks for: `Some(None)` for "route it", `Some(Some(town))`
    /// for a town, `None` for a value the policy must refuse.
    pub fn claim_value<'a>(&self, value: &'a str) -> Option<Option<&'a str>> {
        if value == CLAIM_REQUEST_VALUE {
            return Some(None);
        }
        self.town(value).map(|_| Some(value))
    }

    /// The town a claim goes to: the one asked for, else the rig's town, else the requester's
    /// one town, else the default town.
    pub fn route(&self, asked: Option<&str>, rig: Option<&str>, user: &str, groups: &[&str]) -> Option<&TownModel> {
        if let Some(name) = asked {
            return self.town(name);
        }
        let rig = rig.filter(|r| validate_rig_name(r).is_ok());
        if let Some(t) = rig.and_then(|r| self.towns.iter().find(|t| t.rigs.iter().any(|x| x == r))) {
            return Some(t);
        }
        let listing: Vec<&TownModel> = self.towns.iter().filter(|t| t.lists(user, groups)).collect();
        match listing[..] {
            [one] => Some(one),
            _ => self.default_town(),
        }
    }

    /// The town where `rig` lives, if any.
    pub fn rig_home(&self, rig: &str) -> Option<&TownModel> {
        self.towns.iter().find(|t| t.rigs.iter().any(|r| r == rig))
    }

    /// The rig a claim gets when `spec.rig` is empty.
    pub fn rig_for_forge(&self, forge: Option<&str>) -> Option<&str> {
        forge
            .and_then(|f| self.forge_rigs.get(f))
            .or(self.default_rig.as_ref())
            .map(String::as_str)
    }
}

//! The policy settings as the generator knows them, to state what an answer must be.
//!
//! An independent model of `policy/src/settings.rs`, written again on purpose: the rules are
//! checked against this, not against the code under test.

use std::collections::BTreeMap;

use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use serde_json::{Value, json};

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
            claimer: DEFAULT_CLAIMER.to_string(),
            allowed_users: vec!["alice".to_string()],
            allowed_groups: vec!["gastown-claimers".to_string()],
            controller_users: vec![DEFAULT_CONTROLLER_USER.to_string()],
            forge_rigs: [("web-forge".to_string(), "webrig".to_string())].into(),
            default_rig: Some("gastown".to_string()),
            limit: None,
        }
    }

    /// The policy's defaults (settings `null` or `{}`).
    pub fn defaults() -> SettingsModel {
        SettingsModel {
            claimer: DEFAULT_CLAIMER.to_string(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            controller_users: vec![DEFAULT_CONTROLLER_USER.to_string()],
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

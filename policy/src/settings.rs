//! Policy settings, as given in the ClusterAdmissionPolicy's `spec.settings`.

use std::collections::BTreeMap;

use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use gastown_crds::validate::{validate_dns_label, validate_rig_name};
use serde::Deserialize;

/// The policy's settings. Unknown fields are rejected so that a typo never silently turns a
/// restriction off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Name written to the `gastown.io/claimed-by` label (a DNS-1123 label).
    pub claimer: String,
    /// Users who may claim. With `allowedGroups` also empty, any authenticated user may.
    pub allowed_users: Vec<String>,
    /// Groups whose members may claim.
    pub allowed_groups: Vec<String>,
    /// Identities (the controller's ServiceAccount) allowed to change or remove claim marks
    /// and to write the status of claimed Automatons.
    pub controller_users: Vec<String>,
    /// Forge name → Gas Town rig, used when `spec.rig` is empty.
    pub forge_rigs: BTreeMap<String, String>,
    /// Rig used when `spec.rig` is empty and the Forge has no entry in `forgeRigs`.
    pub default_rig: Option<String>,
    /// When set, at most this many non-terminal claims per namespace.
    pub max_active_claims_per_namespace: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            claimer: DEFAULT_CLAIMER.to_string(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            controller_users: vec![DEFAULT_CONTROLLER_USER.to_string()],
            forge_rigs: BTreeMap::new(),
            default_rig: None,
            max_active_claims_per_namespace: None,
        }
    }
}

/// Longest user or group name accepted in settings (Kubernetes does not bound them; this keeps
/// settings sane).
const MAX_IDENTITY_LEN: usize = 512;

impl Settings {
    /// Parses settings from JSON; `null` means all defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Settings, String> {
        if value.is_null() {
            return Ok(Settings::default());
        }
        if !value.is_object() {
            return Err(
                "invalid settings: expected a JSON object of settings (e.g. {\"claimer\": \"gastown-local\"})"
                    .to_string(),
            );
        }
        Settings::deserialize(value).map_err(|e| format!("invalid settings: {e}"))
    }

    /// Checks every value; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        validate_dns_label("claimer", &self.claimer).map_err(|e| format!("settings.claimer: {e}"))?;
        check_identities("allowedUsers", &self.allowed_users)?;
        check_identities("allowedGroups", &self.allowed_groups)?;
        check_identities("controllerUsers", &self.controller_users)?;
        if self.controller_users.is_empty() {
            return Err(
                "settings.controllerUsers: name at least one identity (the controller's \
                        ServiceAccount, e.g. system:serviceaccount:gastown-system:gastown-operator); \
                        otherwise no claim could ever be released"
                    .to_string(),
            );
        }
        for (forge, rig) in &self.forge_rigs {
            validate_dns_label("Forge name", forge).map_err(|e| format!("settings.forgeRigs: {e}"))?;
            validate_rig_name(rig).map_err(|e| format!("settings.forgeRigs[{forge}]: {e}"))?;
        }
        if let Some(rig) = &self.default_rig {
            validate_rig_name(rig).map_err(|e| format!("settings.defaultRig: {e}"))?;
        }
        if self.max_active_claims_per_namespace == Some(0) {
            return Err("settings.maxActiveClaimsPerNamespace: must be at least 1; omit it for no limit".to_string());
        }
        Ok(())
    }

    /// Whether `user` (with `groups`) may ask for a claim.
    pub fn may_claim<G: AsRef<str>>(&self, user: &str, groups: &[G]) -> bool {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return is_authenticated(user, groups);
        }
        self.allowed_users.iter().any(|u| u == user)
            || groups
                .iter()
                .any(|g| self.allowed_groups.iter().any(|a| a == g.as_ref()))
    }

    /// Whether `user` is one of the controller identities.
    pub fn is_controller(&self, user: &str) -> bool {
        self.controller_users.iter().any(|u| u == user)
    }

    /// The rig for a claim: `spec.rig`, else `forgeRigs[forge]`, else `defaultRig`.
    pub fn rig_for_forge(&self, forge: Option<&str>) -> Option<&str> {
        forge
            .and_then(|f| self.forge_rigs.get(f))
            .or(self.default_rig.as_ref())
            .map(String::as_str)
    }
}

fn is_authenticated<G: AsRef<str>>(user: &str, groups: &[G]) -> bool {
    !user.is_empty() && user != "system:anonymous" && !groups.iter().any(|g| g.as_ref() == "system:unauthenticated")
}

fn check_identities(field: &str, names: &[String]) -> Result<(), String> {
    for name in names {
        if name.trim().is_empty() || name.len() > MAX_IDENTITY_LEN || name.chars().any(char::is_control) {
            return Err(format!(
                "settings.{field}: {name:?} is not a valid identity (non-empty, at most {MAX_IDENTITY_LEN} bytes, no control characters)"
            ));
        }
    }
    Ok(())
}

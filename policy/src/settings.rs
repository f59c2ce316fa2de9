//! Policy settings, as given in the ClusterAdmissionPolicy's `spec.settings`: one Gas Town
//! (the single-town shorthand: `claimer`, `allowedUsers`, ...) or a list of `towns`. Both
//! shapes resolve into the same list of [`Town`]s, so the decision never asks which was used.

use std::collections::BTreeMap;

use gastown_crds::contract::{CLAIM_REQUEST_VALUE, DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use gastown_crds::validate::{validate_dns_label, validate_rig_name};
use serde::Deserialize;
use serde_json::Value;

/// One Gas Town: the claims it takes and who may send them, and its controller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Town {
    /// The `gastown.io/claimed-by` value of its claims (the controller's `--claimer`).
    pub name: String,
    /// Rigs that live in this town: a claim for one of them goes here.
    #[serde(default)]
    pub rigs: Vec<String>,
    /// Users who may send work here. With `allowed_groups` also empty, any authenticated user.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Groups whose members may send work here.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The town's controller identities: only they change its claims' marks, finalizer and
    /// status.
    #[serde(default)]
    pub controller_users: Vec<String>,
    /// At most this many of this town's claims active per namespace.
    #[serde(default)]
    pub max_active_claims: Option<u32>,
}

impl Town {
    /// Whether `user` (with `groups`) may send work to this town.
    pub fn may_claim<G: AsRef<str>>(&self, user: &str, groups: &[G]) -> bool {
        if self.allowed_users.is_empty() && self.allowed_groups.is_empty() {
            return is_authenticated(user, groups);
        }
        self.lists_requester(user, groups)
    }

    /// Whether this town's `allowedUsers` lists `user` or its `allowedGroups` one of `groups`
    /// (the requester rule of routing: empty lists list nobody).
    pub fn lists_requester<G: AsRef<str>>(&self, user: &str, groups: &[G]) -> bool {
        self.allowed_users.iter().any(|u| u == user)
            || groups
                .iter()
                .any(|g| self.allowed_groups.iter().any(|a| a == g.as_ref()))
    }

    /// Whether `user` is one of this town's controller identities.
    pub fn is_controller(&self, user: &str) -> bool {
        self.controller_users.iter().any(|u| u == user)
    }

    /// Whether `rig` lives in this town.
    pub fn has_rig(&self, rig: &str) -> bool {
        self.rigs.iter().any(|r| r == rig)
    }
}

/// The settings as written; unknown fields are rejected so that a typo never silently turns a
/// restriction off. The field list here is the one the rejection of an unknown field names.
#[derive(Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct Written {
    claimer: String,
    allowed_users: Vec<String>,
    allowed_groups: Vec<String>,
    controller_users: Vec<String>,
    forge_rigs: BTreeMap<String, String>,
    default_rig: Option<String>,
    max_active_claims_per_namespace: Option<u32>,
    towns: Option<Vec<Value>>,
    default_town: Option<String>,
}

impl Default for Written {
    fn default() -> Self {
        Written {
            claimer: DEFAULT_CLAIMER.to_string(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            controller_users: vec![DEFAULT_CONTROLLER_USER.to_string()],
            forge_rigs: BTreeMap::new(),
            default_rig: None,
            max_active_claims_per_namespace: None,
            towns: None,
            default_town: None,
        }
    }
}

/// The shorthand fields that a `towns` list replaces, and the town field each becomes.
const SHORTHAND_FIELDS: [(&str, &str); 5] = [
    ("claimer", "name"),
    ("allowedUsers", "allowedUsers"),
    ("allowedGroups", "allowedGroups"),
    ("controllerUsers", "controllerUsers"),
    ("maxActiveClaimsPerNamespace", "maxActiveClaims"),
];

/// The policy's settings, resolved: the towns (one for the shorthand), the default town and
/// the global rig mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    towns: Vec<Town>,
    default_town: Option<String>,
    /// Forge name → Gas Town rig, used when `spec.rig` is empty.
    pub forge_rigs: BTreeMap<String, String>,
    /// Rig used when `spec.rig` is empty and the Forge has no entry in `forgeRigs`.
    pub default_rig: Option<String>,
    /// Whether the towns came from the single-town shorthand (it names settings in messages).
    shorthand: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(Written::default(), Vec::new())
    }
}

/// Longest user or group name accepted in settings (Kubernetes does not bound them; this keeps
/// settings sane).
const MAX_IDENTITY_LEN: usize = 512;

impl Settings {
    /// Parses settings from JSON; `null` means all defaults.
    pub fn from_json(value: &Value) -> Result<Settings, String> {
        if value.is_null() {
            return Ok(Settings::default());
        }
        let Some(fields) = value.as_object() else {
            return Err(
                "invalid settings: expected a JSON object of settings (e.g. {\"claimer\": \"gastown-local\"})"
                    .to_string(),
            );
        };
        let written = Written::deserialize(value).map_err(|e| format!("invalid settings: {e}"))?;
        let listed = written.towns.as_deref().unwrap_or_default();
        if listed.is_empty() {
            return Ok(Settings::resolve(written, Vec::new()));
        }
        if let Some((field, town_field)) = SHORTHAND_FIELDS.iter().find(|(f, _)| fields.contains_key(*f)) {
            return Err(format!(
                "settings.{field}: not allowed together with settings.towns; set towns[].{town_field} for each \
                 town instead (the single-town settings and the towns list do not mix)"
            ));
        }
        let towns = listed
            .iter()
            .enumerate()
            .map(|(i, town)| Town::deserialize(town).map_err(|e| format!("settings.towns[{i}]: {e}")))
            .collect::<Result<Vec<Town>, String>>()?;
        Ok(Settings::resolve(written, towns))
    }

    /// The settings of `written` with `towns` (the shorthand's one town when empty).
    fn resolve(written: Written, towns: Vec<Town>) -> Settings {
        let shorthand = towns.is_empty();
        let (towns, default_town) = if shorthand {
            let town = Town {
                name: written.claimer,
                rigs: Vec::new(),
                allowed_users: written.allowed_users,
                allowed_groups: written.allowed_groups,
                controller_users: written.controller_users,
                max_active_claims: written.max_active_claims_per_namespace,
            };
            let default_town = written.default_town.or_else(|| Some(town.name.clone()));
            (vec![town], default_town)
        } else {
            (towns, written.default_town)
        };
        Settings {
            towns,
            default_town,
            forge_rigs: written.forge_rigs,
            default_rig: written.default_rig,
            shorthand,
        }
    }

    /// Checks every value; the message names the field (its path) and the rule.
    pub fn validate(&self) -> Result<(), String> {
        for (index, town) in self.towns.iter().enumerate() {
            self.check_town(index, town)?;
        }
        for (forge, rig) in &self.forge_rigs {
            validate_dns_label("Forge name", forge).map_err(|e| format!("settings.forgeRigs: {e}"))?;
            validate_rig_name(rig).map_err(|e| format!("settings.forgeRigs[{forge}]: {e}"))?;
        }
        if let Some(rig) = &self.default_rig {
            validate_rig_name(rig).map_err(|e| format!("settings.defaultRig: {e}"))?;
        }
        if let Some(name) = &self.default_town
            && self.town(name).is_none()
        {
            return Err(format!(
                "settings.defaultTown: {name:?} names no town; use one of: {}",
                self.town_names()
            ));
        }
        Ok(())
    }

    /// The checks of the town at `index`, with the paths of the shape it was written in.
    fn check_town(&self, index: usize, town: &Town) -> Result<(), String> {
        let path = |field: &str| self.path(index, field);
        let name_what = if self.shorthand { "claimer" } else { "town name" };
        validate_dns_label(name_what, &town.name).map_err(|e| format!("{}: {e}", path("name")))?;
        if !self.shorthand && town.name == CLAIM_REQUEST_VALUE {
            return Err(format!(
                "{}: {CLAIM_REQUEST_VALUE:?} is reserved (gastown.io/claim: {CLAIM_REQUEST_VALUE} asks the \
                 policy to choose a town); name the town otherwise",
                path("name")
            ));
        }
        if let Some(first) = self.towns[..index].iter().position(|t| t.name == town.name) {
            return Err(format!(
                "{}: {:?} is already the name of settings.towns[{first}]; town names are unique",
                path("name"),
                town.name
            ));
        }
        self.check_rigs(index, town)?;
        check_identities(&path("allowedUsers"), &town.allowed_users)?;
        check_identities(&path("allowedGroups"), &town.allowed_groups)?;
        check_identities(&path("controllerUsers"), &town.controller_users)?;
        if town.controller_users.is_empty() {
            return Err(format!(
                "{}: name at least one identity (the controller's ServiceAccount, e.g. \
                 system:serviceaccount:gastown-system:gastown-operator); otherwise no claim could ever be released",
                path("controllerUsers")
            ));
        }
        if town.max_active_claims == Some(0) {
            return Err(format!(
                "{}: must be at least 1; omit it for no limit",
                path("maxActiveClaims")
            ));
        }
        Ok(())
    }

    /// Each rig of the town at `index` is a valid rig name and in no earlier town.
    fn check_rigs(&self, index: usize, town: &Town) -> Result<(), String> {
        let path = self.path(index, "rigs");
        for (n, rig) in town.rigs.iter().enumerate() {
            validate_rig_name(rig).map_err(|e| format!("{path}: {e}"))?;
            let earlier = self.towns[..index]
                .iter()
                .find(|t| t.has_rig(rig))
                .or_else(|| town.rigs[..n].contains(rig).then_some(town));
            if let Some(holder) = earlier {
                return Err(format!(
                    "{path}: rig {rig:?} is already in town {:?}; a rig lives in exactly one town",
                    holder.name
                ));
            }
        }
        Ok(())
    }

    /// The settings path of `field` of the town at `index`, as the operator wrote it.
    fn path(&self, index: usize, field: &str) -> String {
        if !self.shorthand {
            return format!("settings.towns[{index}].{field}");
        }
        let top = SHORTHAND_FIELDS
            .iter()
            .find(|(_, town_field)| *town_field == field)
            .map_or(field, |(top, _)| top);
        format!("settings.{top}")
    }

    /// The towns, in the order of the settings (one for the single-town shorthand).
    pub fn towns(&self) -> &[Town] {
        &self.towns
    }

    /// The town named `name`.
    pub fn town(&self, name: &str) -> Option<&Town> {
        self.towns.iter().find(|t| t.name == name)
    }

    /// The town whose `rigs` lists `rig` (validation keeps it to at most one).
    pub fn home_of(&self, rig: &str) -> Option<&Town> {
        self.towns.iter().find(|t| t.has_rig(rig))
    }

    /// The town for claims no rig or requester rule routes (the shorthand's one town).
    pub fn default_town(&self) -> Option<&Town> {
        self.default_town.as_deref().and_then(|name| self.town(name))
    }

    /// The towns' names, comma-separated, for messages.
    pub fn town_names(&self) -> String {
        self.towns
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The setting that limits `town`'s active claims, as messages name it.
    pub fn limit_setting(&self, town: &Town) -> String {
        if self.shorthand {
            return "maxActiveClaimsPerNamespace".to_string();
        }
        let index = self.towns.iter().position(|t| t.name == town.name).unwrap_or_default();
        format!("towns[{index}].maxActiveClaims")
    }

    /// Whether `user` acts as the controller for a claim of the town `holder`: a controller of
    /// that town. With the single-town settings, as before towns: any controller identity,
    /// whatever the claim's label.
    pub fn serves(&self, user: &str, holder: &str) -> bool {
        if self.shorthand {
            return self.is_controller(user);
        }
        self.town(holder).is_some_and(|t| t.is_controller(user))
    }

    /// Whether a claim of the town `holder` is an orphan: `towns` are listed and none is named
    /// `holder` (with the single-town settings, claims keep today's protection).
    pub fn is_orphan(&self, holder: &str) -> bool {
        !self.shorthand && self.town(holder).is_none()
    }

    /// Whether `user` is a controller identity of any town.
    pub fn is_controller(&self, user: &str) -> bool {
        self.towns.iter().any(|t| t.is_controller(user))
    }

    /// The controller identities of every town, comma-separated, for messages.
    pub fn all_controller_users(&self) -> String {
        let mut users: Vec<&str> = Vec::new();
        for user in self.towns.iter().flat_map(|t| &t.controller_users) {
            if !users.contains(&user.as_str()) {
                users.push(user);
            }
        }
        users.join(", ")
    }

    /// The rig for a claim whose `spec.rig` is empty: `forgeRigs[forge]`, else `defaultRig`.
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

fn check_identities(path: &str, names: &[String]) -> Result<(), String> {
    for name in names {
        if name.trim().is_empty() || name.len() > MAX_IDENTITY_LEN || name.chars().any(char::is_control) {
            return Err(format!(
                "{path}: {name:?} is not a valid identity (non-empty, at most {MAX_IDENTITY_LEN} bytes, no control characters)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use serde_json::json;

    use super::Settings;

    /// Both shapes give the same `Town` type, so the decision never asks which was written.
    #[test]
    fn both_shapes_resolve_to_towns() {
        let one =
            Settings::from_json(&json!({"claimer": "a", "allowedUsers": ["alice"], "maxActiveClaimsPerNamespace": 2}))
                .unwrap();
        let [town] = one.towns() else {
            panic!("one town: {one:?}")
        };
        assert_eq!((town.name.as_str(), town.max_active_claims), ("a", Some(2)));
        assert_eq!(town.allowed_users, ["alice"]);
        assert_eq!(town.controller_users, [gastown_crds::contract::DEFAULT_CONTROLLER_USER]);
        assert_eq!(one.default_town().map(|t| t.name.as_str()), Some("a"));
        assert!(one.serves(gastown_crds::contract::DEFAULT_CONTROLLER_USER, "any-claimer"));
        assert!(!one.is_orphan("any-claimer"));

        let many = Settings::from_json(&json!({"towns": [
            {"name": "a", "rigs": ["web"], "controllerUsers": ["sa-a"]},
            {"name": "b", "controllerUsers": ["sa-b"], "maxActiveClaims": 1}
        ]}))
        .unwrap();
        many.validate().unwrap();
        let names: Vec<&str> = many.towns().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(many.default_town().is_none());
        assert!(many.serves("sa-a", "a") && !many.serves("sa-a", "b") && !many.serves("sa-a", "gone"));
        assert!(many.is_orphan("gone") && !many.is_orphan("b"));
        assert_eq!(many.limit_setting(&many.towns()[1]), "towns[1].maxActiveClaims");
    }
}

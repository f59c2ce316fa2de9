//! A read-only view of the claim-related parts of an Automaton's JSON: the decision reads
//! labels, annotations, spec and status through it, never by raw lookups.

use gastown_crds::Phase;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, CONTROLLER_STATUS_FIELDS, RELEASE_FINALIZER,
};
use serde_json::{Map, Value};

use crate::settings::Settings;

/// What a claim request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked<'a> {
    /// `gastown.io/claim: local` or `spec.executionMode: local`: the policy chooses the town.
    Route,
    /// `gastown.io/claim: <town>`: that town.
    Town(&'a str),
}

/// A read-only view of the claim-related parts of an Automaton's JSON.
pub(super) struct View<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> View<'a> {
    pub(super) fn new(value: &'a Value, which: &str) -> Result<View<'a>, String> {
        let obj = value
            .as_object()
            .ok_or_else(|| format!("request.{which}: expected the Automaton as a JSON object"))?;
        let view = View { obj };
        // Type-check the maps the policy reads so that later lookups cannot be misled.
        view.string_map("labels", which)?;
        view.string_map("annotations", which)?;
        Ok(view)
    }

    fn section(&self, name: &str) -> Option<&'a Map<String, Value>> {
        self.obj.get(name).and_then(Value::as_object)
    }

    fn string_map(&self, name: &str, which: &str) -> Result<(), String> {
        match self.obj.get("metadata") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(_)) => {}
            Some(_) => return Err(format!("request.{which}.metadata: expected an object")),
        }
        match self.section("metadata").and_then(|m| m.get(name)) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => Ok(()),
            Some(_) => Err(format!("request.{which}.metadata.{name}: expected a map of strings")),
        }
    }

    fn meta_str(&self, map: &str, key: &str) -> Option<&'a str> {
        self.section("metadata")?.get(map)?.as_object()?.get(key)?.as_str()
    }

    pub(super) fn label(&self, key: &str) -> Option<&'a str> {
        self.meta_str("labels", key)
    }

    pub(super) fn annotation(&self, key: &str) -> Option<&'a str> {
        self.meta_str("annotations", key)
    }

    pub(super) fn spec(&self) -> Option<&'a Value> {
        self.obj.get("spec")
    }

    pub(super) fn spec_field(&self, name: &str) -> Option<&'a Value> {
        self.spec()?.get(name)
    }

    pub(super) fn spec_str(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.spec_field(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("spec.{name}: expected a string")),
        }
    }

    pub(super) fn execution_mode(&self) -> Result<&'a str, String> {
        match self.spec_str("executionMode")? {
            None => Ok("kubernetes"),
            Some(m @ ("kubernetes" | "local")) => Ok(m),
            Some(other) => Err(format!(
                "spec.executionMode: {other:?} is not a valid mode; use \"kubernetes\" or \"local\""
            )),
        }
    }

    pub(super) fn phase(&self) -> Option<Phase> {
        self.phase_str().and_then(Phase::parse)
    }

    pub(super) fn phase_str(&self) -> Option<&'a str> {
        self.section("status")?.get("phase")?.as_str()
    }

    /// `status.<name>`, `None` when absent or `null`.
    pub(super) fn status_field(&self, name: &str) -> Option<&'a Value> {
        self.section("status")?.get(name).filter(|v| !v.is_null())
    }

    /// The controller-owned status fields this status carries, as `status.<name>`.
    pub(super) fn controller_status(&self) -> Vec<String> {
        CONTROLLER_STATUS_FIELDS
            .iter()
            .filter(|field| self.status_field(field).is_some())
            .map(|field| format!("status.{field}"))
            .collect()
    }

    /// Whether `metadata.finalizers` holds the controller's release finalizer.
    pub(super) fn has_release_finalizer(&self) -> bool {
        self.section("metadata")
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(RELEASE_FINALIZER)))
    }

    /// The claim request annotation: `local` (the policy routes the claim), the name of a town,
    /// or an error for any other value.
    pub(super) fn claim_request(&self, settings: &Settings) -> Result<Option<Asked<'a>>, String> {
        match self.annotation(CLAIM_REQUEST_ANNOTATION) {
            None => Ok(None),
            Some(CLAIM_REQUEST_VALUE) => Ok(Some(Asked::Route)),
            Some(town) if settings.town(town).is_some() => Ok(Some(Asked::Town(town))),
            Some(other) => Err(format!(
                "metadata.annotations[{CLAIM_REQUEST_ANNOTATION}]: {other:?} is not a valid claim request; use \
                 {CLAIM_REQUEST_VALUE:?} (the policy chooses the Gas Town) or the name of one of the Gas Towns: {}",
                settings.town_names()
            )),
        }
    }

    /// The claim marks the policy sets: (claimed-by, claimed-at, claim-requested-by).
    pub(super) fn claim_marks(&self) -> [Option<&'a str>; 3] {
        [
            self.label(CLAIMED_BY_LABEL),
            self.annotation(CLAIMED_AT_ANNOTATION),
            self.annotation(CLAIM_REQUESTED_BY_ANNOTATION),
        ]
    }

    pub(super) fn has_claim_marks(&self) -> bool {
        self.claim_marks().iter().any(Option::is_some)
    }

    pub(super) fn name(&self) -> &'a str {
        self.section("metadata")
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

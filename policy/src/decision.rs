//! The claim decision: a pure function of (settings, admission request, now, claim ledger).
//!
//! It works on the request's JSON as received and changes only the fields the policy owns
//! (claim label and annotations, `spec.executionMode`, `spec.rig`): the host computes the
//! JSONPatch from the difference, so everything else must come back exactly as it came in.

use std::borrow::Cow;

use gastown_crds::Phase;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, CONTROLLER_PHASES, CONTROLLER_STATUS_FIELDS, RELEASE_FINALIZER,
};
use gastown_crds::validate::{validate_bead_id, validate_rig_name};
use serde_json::{Map, Value};

use crate::payload::{Object, RequestFields, Text, TextList};
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

/// The fields of an AdmissionRequest the decision reads.
#[derive(Debug)]
pub struct Request<'a> {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Cow<'a, str>,
    /// `status` for the status subresource, empty for the main resource.
    pub sub_resource: Cow<'a, str>,
    /// API group of the resource.
    pub group: Cow<'a, str>,
    /// Resource (plural).
    pub resource: Cow<'a, str>,
    /// Namespace of the object.
    pub namespace: Cow<'a, str>,
    /// Requesting user.
    pub username: Cow<'a, str>,
    /// Groups of the requesting user.
    pub groups: Vec<Cow<'a, str>>,
    /// The object as it would be stored (`null` when absent).
    pub object: Value,
    /// The stored object (UPDATE and DELETE; `null` when absent).
    pub old_object: Value,
}

impl<'a> Request<'a> {
    /// Takes the fields from a parsed AdmissionRequest; the error names the first missing or
    /// wrongly typed field.
    pub(crate) fn from_fields(request: Object<RequestFields<'a>>) -> Result<Request<'a>, String> {
        let Object::Fields(req) = request else {
            return Err("request: expected a JSON object (an AdmissionRequest)".to_string());
        };
        fn text<'a>(value: Text<'a>, name: &str) -> Result<Cow<'a, str>, String> {
            match value {
                Text::Missing => Ok(Cow::Borrowed("")),
                Text::Str(s) => Ok(s),
                Text::Other => Err(format!("request.{name}: expected a string")),
            }
        }
        let operation = text(req.operation, "operation")?;
        if operation.is_empty() {
            return Err("request.operation: missing".to_string());
        }
        let sub_resource = text(req.sub_resource, "subResource")?;
        let namespace = text(req.namespace, "namespace")?;
        let (group, resource) = match req.resource {
            Object::Missing => (Cow::Borrowed(""), Cow::Borrowed("")),
            Object::Fields(r) => (text(r.group, "resource.group")?, text(r.resource, "resource.resource")?),
            Object::Other => return Err("request.resource: expected an object".to_string()),
        };
        let user = match req.user_info {
            Object::Fields(u) => u,
            Object::Missing => return Err("request.userInfo: missing".to_string()),
            Object::Other => return Err("request.userInfo: expected an object".to_string()),
        };
        let username = text(user.username, "userInfo.username")?;
        let groups = match user.groups {
            TextList::Missing => Vec::new(),
            TextList::List(groups) => groups,
            TextList::Other => return Err("request.userInfo.groups: expected a list of strings".to_string()),
        };
        Ok(Request {
            operation,
            sub_resource,
            group,
            resource,
            namespace,
            username,
            groups,
            object: req.object,
            old_object: req.old_object,
        })
    }
}

/// A read-only view of the claim-related parts of an Automaton's JSON.
struct View<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> View<'a> {
    fn new(value: &'a Value, which: &str) -> Result<View<'a>, String> {
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

    fn label(&self, key: &str) -> Option<&'a str> {
        self.meta_str("labels", key)
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.meta_str("annotations", key)
    }

    fn spec(&self) -> Option<&'a Value> {
        self.obj.get("spec")
    }

    fn spec_field(&self, name: &str) -> Option<&'a Value> {
        self.spec()?.get(name)
    }

    fn spec_str(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.spec_field(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("spec.{name}: expected a string")),
        }
    }

    fn execution_mode(&self) -> Result<&'a str, String> {
        match self.spec_str("executionMode")? {
            None => Ok("kubernetes"),
            Some(m @ ("kubernetes" | "local")) => Ok(m),
            Some(other) => Err(format!(
                "spec.executionMode: {other:?} is not a valid mode; use \"kubernetes\" or \"local\""
            )),
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.phase_str().and_then(Phase::parse)
    }

    fn phase_str(&self) -> Option<&'a str> {
        self.section("status")?.get("phase")?.as_str()
    }

    /// `status.<name>`, `None` when absent or `null`.
    fn status_field(&self, name: &str) -> Option<&'a Value> {
        self.section("status")?.get(name).filter(|v| !v.is_null())
    }

    /// The controller-owned status fields this status carries, as `status.<name>`.
    fn controller_status(&self) -> Vec<String> {
        CONTROLLER_STATUS_FIELDS
            .iter()
            .filter(|field| self.status_field(field).is_some())
            .map(|field| format!("status.{field}"))
            .collect()
    }

    /// Whether `metadata.finalizers` holds the controller's release finalizer.
    fn has_release_finalizer(&self) -> bool {
        self.section("metadata")
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(RELEASE_FINALIZER)))
    }

    /// The claim request annotation: `Ok(true)` for `local`, an error for any other value.
    fn claim_requested(&self) -> Result<bool, String> {
        match self.annotation(CLAIM_REQUEST_ANNOTATION) {
            None => Ok(false),
            Some(CLAIM_REQUEST_VALUE) => Ok(true),
            Some(other) => Err(format!(
                "metadata.annotations[{CLAIM_REQUEST_ANNOTATION}]: {other:?} is not a valid claim request; \
                 the only accepted value is {CLAIM_REQUEST_VALUE:?}"
            )),
        }
    }

    /// The claim marks the policy sets: (claimed-by, claimed-at, claim-requested-by).
    fn claim_marks(&self) -> [Option<&'a str>; 3] {
        [
            self.label(CLAIMED_BY_LABEL),
            self.annotation(CLAIMED_AT_ANNOTATION),
            self.annotation(CLAIM_REQUESTED_BY_ANNOTATION),
        ]
    }

    fn has_claim_marks(&self) -> bool {
        self.claim_marks().iter().any(Option::is_some)
    }

    fn name(&self) -> &'a str {
        self.section("metadata")
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// What the checks conclude: a final decision, or a claim still to be written into the object.
enum Plan {
    Decided(Decision),
    /// Claim the object for this rig.
    Claim(String),
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
        Plan::Claim(rig) => match mark_claimed(req.object, settings, &req.username, &rig, &now()) {
            Some(mutated) => Decision::Mutate(mutated),
            None => reject(code::BAD_REQUEST, "object: metadata and spec must be JSON objects"),
        },
    }
}

fn plan(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    // The policy is registered for automatons only; anything else passes untouched.
    if req.group != "olympus.io" || req.resource != "automatons" {
        return Decision::Accept.into();
    }
    match (&*req.operation, &*req.sub_resource) {
        ("UPDATE", "status") => decide_status_update(settings, req).into(),
        ("CREATE", "") => decide_create(settings, req, ledger),
        ("UPDATE", "") => decide_update(settings, req, ledger),
        // DELETE (no mutation possible), CONNECT and other subresources are not ours.
        _ => Decision::Accept.into(),
    }
}

fn decide_status_update(settings: &Settings, req: &Request<'_>) -> Decision {
    if settings.is_controller(&req.username) {
        return Decision::Accept;
    }
    let old = match View::new(&req.old_object, "oldObject") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e),
    };
    // Claimed by any claimer, like the main resource: a claim label that this policy did not
    // set came from a controller identity (users' marks are refused as forged), so the work is
    // some Gas Town's and its status that controller's.
    if let Some(claimer) = old.label(CLAIMED_BY_LABEL) {
        return reject(
            code::FORBIDDEN,
            format!(
                "Automaton {}/{} is claimed by Gas Town {claimer:?}: its status is reported only by the \
                 gastown controller ({}); user {:?} may not write it",
                req.namespace,
                old.name(),
                settings.controller_users.join(", "),
                req.username
            ),
        );
    }
    // Not claimed: the Kubernetes executor's fields (phase, conditions, message, ...) are
    // writable; what the controller trusts when it (re)claims the Automaton is not.
    let new = match View::new(&req.object, "object") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e),
    };
    let mut changed: Vec<String> = CONTROLLER_STATUS_FIELDS
        .iter()
        .filter(|field| old.status_field(field) != new.status_field(field))
        .map(|field| format!("status.{field}"))
        .collect();
    if let Some(phase) = new.phase_str()
        && new.phase_str() != old.phase_str()
        && CONTROLLER_PHASES.iter().any(|p| p.as_str() == phase)
    {
        changed.push(format!("status.phase {phase}"));
    }
    if changed.is_empty() {
        return Decision::Accept;
    }
    reject(
        code::FORBIDDEN,
        format!(
            "Automaton {}/{}: {} may be written only by the gastown controller ({}), not by {:?}; the \
             controller trusts them to find the Gas Town bead of a claim. Leave them as they are (the phases \
             Pending, Running, Succeeded and Failed, the conditions and the message stay writable)",
            req.namespace,
            old.name(),
            changed.join(", "),
            settings.controller_users.join(", "),
            req.username
        ),
    )
}

fn decide_create(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    let new = match View::new(&req.object, "object") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    if settings.is_controller(&req.username) {
        return Decision::Accept.into();
    }
    if new.has_claim_marks() {
        return reject(code::FORBIDDEN, forged_claim_message(settings)).into();
    }
    if new.has_release_finalizer() {
        return reject(code::FORBIDDEN, finalizer_message(settings, &req.username)).into();
    }
    let mode = match new.execution_mode() {
        Ok(m) => m,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let requested = match new.claim_requested() {
        Ok(r) => r,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    if mode != "local" && !requested {
        return Decision::Accept.into();
    }
    claim(settings, req, &new, ledger)
}

fn decide_update(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    let new = match View::new(&req.object, "object") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let old = match View::new(&req.old_object, "oldObject") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    // The controller adds its finalizer, writes status and releases claims: taken as is.
    if settings.is_controller(&req.username) {
        return Decision::Accept.into();
    }
    if let Some(holder) = old.label(CLAIMED_BY_LABEL) {
        return decide_update_of_claimed(settings, req, &old, &new, holder).into();
    }
    if new.has_claim_marks() && new.claim_marks() != old.claim_marks() {
        return reject(code::FORBIDDEN, forged_claim_message(settings)).into();
    }
    // Removing it from an Automaton that is not claimed is allowed: the controller, which
    // watches claimed Automatons only, would never remove it, and deletion would hang.
    if new.has_release_finalizer() && !old.has_release_finalizer() {
        return reject(code::FORBIDDEN, finalizer_message(settings, &req.username)).into();
    }
    let requested = match new.claim_requested() {
        Ok(r) => r,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let mode = match new.execution_mode() {
        Ok(m) => m,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    if !requested && mode != "local" {
        return Decision::Accept.into();
    }
    if let Some(phase @ (Phase::Running | Phase::Succeeded | Phase::Failed)) = old.phase() {
        return reject(
            code::CONFLICT,
            format!(
                "Automaton {}/{} already {} in Kubernetes (status.phase {}); it cannot be claimed by Gas Town \
                 now: remove the {CLAIM_REQUEST_ANNOTATION} annotation and set spec.executionMode to \
                 \"kubernetes\", or create a new Automaton",
                req.namespace,
                old.name(),
                if phase == Phase::Running { "runs" } else { "ran" },
                phase.as_str()
            ),
        )
        .into();
    }
    if old.phase() == Some(Phase::Released) {
        // The controller gave this claim back (see controller/src/reconcile.rs
        // `release_claim`); a claim on it would be released again at once.
        return reject(
            code::CONFLICT,
            format!(
                "Automaton {}/{} was released by Gas Town (status.phase Released) and cannot be claimed again: \
                 its status keeps the earlier claim's bead and history. Create a new Automaton to claim the work \
                 again, or run this one in Kubernetes (remove the {CLAIM_REQUEST_ANNOTATION} annotation and set \
                 spec.executionMode to \"kubernetes\")",
                req.namespace,
                old.name()
            ),
        )
        .into();
    }
    let carried = old.controller_status();
    if !carried.is_empty() {
        return reject(
            code::CONFLICT,
            format!(
                "Automaton {}/{} cannot be claimed: its status already carries {}, which only the gastown \
                 controller writes for a claim of its own. Create a new Automaton to claim the work",
                req.namespace,
                old.name(),
                carried.join(" and ")
            ),
        )
        .into();
    }
    claim(settings, req, &new, ledger)
}

fn decide_update_of_claimed(
    settings: &Settings,
    req: &Request<'_>,
    old: &View<'_>,
    new: &View<'_>,
    holder: &str,
) -> Decision {
    let mut changed: Vec<String> = Vec::new();
    let old_marks = old.claim_marks();
    let new_marks = new.claim_marks();
    let mark_names = [
        "metadata.labels[gastown.io/claimed-by]",
        "metadata.annotations[gastown.io/claimed-at]",
        "metadata.annotations[gastown.io/claim-requested-by]",
    ];
    for ((o, n), name) in old_marks.iter().zip(new_marks.iter()).zip(mark_names) {
        if o != n {
            changed.push(name.to_string());
        }
    }
    if old.annotation(CLAIM_REQUEST_ANNOTATION).is_some()
        && old.annotation(CLAIM_REQUEST_ANNOTATION) != new.annotation(CLAIM_REQUEST_ANNOTATION)
    {
        changed.push(format!("metadata.annotations[{CLAIM_REQUEST_ANNOTATION}]"));
    }
    if old.has_release_finalizer() != new.has_release_finalizer() {
        changed.push(format!("metadata.finalizers[{RELEASE_FINALIZER}]"));
    }
    // The whole spec is the work Gas Town was given: frozen.
    match (old.spec(), new.spec()) {
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            for (key, value) in o {
                if n.get(key) != Some(value) {
                    changed.push(format!("spec.{key}"));
                }
            }
            for key in n.keys().filter(|k| !o.contains_key(*k)) {
                changed.push(format!("spec.{key}"));
            }
        }
        (o, n) if o != n => changed.push("spec".to_string()),
        _ => {}
    }
    if changed.is_empty() {
        // Re-admission of a claimed object (idempotent): no patch, the timestamp stays.
        return Decision::Accept;
    }
    let hint = if new.label(CLAIMED_BY_LABEL).is_some_and(|c| c != holder) {
        " (a claim cannot be taken over by another claimer)"
    } else {
        ""
    };
    reject(
        code::FORBIDDEN,
        format!(
            "Automaton {}/{} is claimed by Gas Town {holder:?}{hint}: {} may be changed only by the gastown \
             controller ({}), not by {:?}. Leave these fields as they are (the spec of claimed work is frozen); \
             to stop or change the work, delete the Automaton (the controller releases it in Gas Town) and \
             create a new one",
            req.namespace,
            old.name(),
            changed.join(", "),
            settings.controller_users.join(", "),
            req.username
        ),
    )
}

fn forged_claim_message(settings: &Settings) -> String {
    format!(
        "the claim marks ({CLAIMED_BY_LABEL} label, {CLAIMED_AT_ANNOTATION} and {CLAIM_REQUESTED_BY_ANNOTATION} \
         annotations) are set only by the gastown claim policy for Gas Town {:?}; remove them and request a \
         claim with the annotation {CLAIM_REQUEST_ANNOTATION}: {CLAIM_REQUEST_VALUE} or spec.executionMode: local",
        settings.claimer
    )
}

fn finalizer_message(settings: &Settings, user: &str) -> String {
    format!(
        "the finalizer {RELEASE_FINALIZER} is added and removed only by the gastown controller ({}), not by {user:?}: \
         it keeps a claimed Automaton until its work is released in Gas Town. Leave metadata.finalizers without it",
        settings.controller_users.join(", ")
    )
}

fn claim(settings: &Settings, req: &Request<'_>, new: &View<'_>, ledger: &dyn ClaimLedger) -> Plan {
    if !new.spec().is_some_and(Value::is_object) {
        return reject(
            code::BAD_REQUEST,
            "spec: expected an object with at least spec.task.title",
        )
        .into();
    }
    if !settings.may_claim(&req.username, &req.groups) {
        return reject(
            code::FORBIDDEN,
            format!(
                "user {:?} may not claim Automatons for Gas Town {:?}: ask an administrator to add the user to \
                 the policy's allowedUsers (or one of its groups to allowedGroups), or run the work in \
                 Kubernetes (spec.executionMode: kubernetes, no {CLAIM_REQUEST_ANNOTATION} annotation)",
                req.username, settings.claimer
            ),
        )
        .into();
    }
    let rig = match new.spec_str("rig") {
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
        Ok(Some(rig)) if !rig.is_empty() => rig,
        Ok(_) => {
            let forge = match new.spec_str("forge") {
                Ok(f) => f,
                Err(e) => return reject(code::BAD_REQUEST, e).into(),
            };
            match settings.rig_for_forge(forge) {
                Some(rig) => rig,
                None => {
                    return reject(
                        code::BAD_REQUEST,
                        format!(
                            "no Gas Town rig for this claim: set spec.rig, or have an administrator map the \
                             Forge {:?} in the policy's forgeRigs or set its defaultRig",
                            forge.unwrap_or("")
                        ),
                    )
                    .into();
                }
            }
        }
    };
    if let Err(e) = validate_rig_name(rig) {
        return reject(code::BAD_REQUEST, format!("spec.rig: {e}")).into();
    }
    let task = new.spec_field("task");
    match task.and_then(|t| t.get("beadId")) {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => {
            if let Err(e) = validate_bead_id(id) {
                return reject(code::BAD_REQUEST, format!("spec.task.beadId: {e}")).into();
            }
        }
        Some(_) => return reject(code::BAD_REQUEST, "spec.task.beadId: expected a string").into(),
    }
    if let Some(limit) = settings.max_active_claims_per_namespace {
        match ledger.active_claims(&req.namespace, &settings.claimer) {
            Ok(active) if active >= u64::from(limit) => {
                return reject(
                    code::TOO_MANY,
                    format!(
                        "namespace {:?} already has {active} active Gas Town claims (limit {limit}, \
                         maxActiveClaimsPerNamespace): wait for some to finish, or run this one in Kubernetes",
                        req.namespace
                    ),
                )
                .into();
            }
            Ok(_) => {}
            Err(e) => {
                return reject(
                    code::UNAVAILABLE,
                    format!(
                        "cannot count the active Gas Town claims in namespace {:?}: {e}; retry",
                        req.namespace
                    ),
                )
                .into();
            }
        }
    }
    Plan::Claim(rig.to_string())
}

/// Returns `object` with the claim marks set, `spec.executionMode: local` and `spec.rig`;
/// nothing else changes. `None` when the object's shape does not allow it (callers have checked
/// `metadata` and `spec` are objects, so this does not happen for valid input).
fn mark_claimed(mut object: Value, settings: &Settings, username: &str, rig: &str, now: &str) -> Option<Value> {
    let obj = object.as_object_mut()?;
    let metadata = object_entry(obj, "metadata")?;
    object_entry(metadata, "labels")?.insert(CLAIMED_BY_LABEL.to_string(), Value::from(settings.claimer.as_str()));
    let annotations = object_entry(metadata, "annotations")?;
    annotations.insert(CLAIMED_AT_ANNOTATION.to_string(), Value::from(now));
    annotations.insert(CLAIM_REQUESTED_BY_ANNOTATION.to_string(), Value::from(username));
    let spec = object_entry(obj, "spec")?;
    spec.insert("executionMode".to_string(), Value::from("local"));
    spec.insert("rig".to_string(), Value::from(rig));
    Some(object)
}

/// The object at `key`, created when absent or null; `None` when it holds something else.
fn object_entry<'m>(map: &'m mut Map<String, Value>, key: &str) -> Option<&'m mut Map<String, Value>> {
    if !map.contains_key(key) {
        map.insert(key.to_string(), Value::Null);
    }
    let entry = map.get_mut(key)?;
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

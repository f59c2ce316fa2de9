//! CREATE of an Automaton, and the claim itself: the checks a claim passes (on CREATE or on
//! UPDATE) and the marks it writes into the object.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL,
};
use gastown_crds::validate::{validate_bead_id, validate_rig_name};
use serde_json::{Map, Value};

use super::view::View;
use super::{ClaimLedger, Decision, Plan, Request, code, finalizer_message, forged_claim_message, reject};
use crate::settings::Settings;

pub(super) fn decide_create(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
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

/// A requested claim: `Plan::Claim` with its rig when every check passes, else the refusal.
pub(super) fn claim(settings: &Settings, req: &Request<'_>, new: &View<'_>, ledger: &dyn ClaimLedger) -> Plan {
    match check_claim(settings, req, new, ledger) {
        Ok(rig) => Plan::Claim(rig.to_string()),
        Err(refusal) => refusal.into(),
    }
}

/// The claim checks in the order their refusals take precedence; the rig on success.
fn check_claim<'a>(
    settings: &'a Settings,
    req: &Request<'_>,
    new: &View<'a>,
    ledger: &dyn ClaimLedger,
) -> Result<&'a str, Decision> {
    if !new.spec().is_some_and(Value::is_object) {
        return Err(reject(
            code::BAD_REQUEST,
            "spec: expected an object with at least spec.task.title",
        ));
    }
    if !settings.may_claim(&req.username, &req.groups) {
        return Err(reject(
            code::FORBIDDEN,
            format!(
                "user {:?} may not claim Automatons for Gas Town {:?}: ask an administrator to add the user to \
                 the policy's allowedUsers (or one of its groups to allowedGroups), or run the work in \
                 Kubernetes (spec.executionMode: kubernetes, no {CLAIM_REQUEST_ANNOTATION} annotation)",
                req.username, settings.claimer
            ),
        ));
    }
    let rig = claim_rig(settings, new)?;
    validate_rig_name(rig).map_err(|e| reject(code::BAD_REQUEST, format!("spec.rig: {e}")))?;
    match new.spec_field("task").and_then(|t| t.get("beadId")) {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => {
            validate_bead_id(id).map_err(|e| reject(code::BAD_REQUEST, format!("spec.task.beadId: {e}")))?;
        }
        Some(_) => return Err(reject(code::BAD_REQUEST, "spec.task.beadId: expected a string")),
    }
    check_claim_limit(settings, req, ledger)?;
    Ok(rig)
}

/// `spec.rig`, else the rig the settings map the Forge (or every Forge) to.
fn claim_rig<'a>(settings: &'a Settings, new: &View<'a>) -> Result<&'a str, Decision> {
    match new.spec_str("rig") {
        Err(e) => Err(reject(code::BAD_REQUEST, e)),
        Ok(Some(rig)) if !rig.is_empty() => Ok(rig),
        Ok(_) => {
            let forge = new.spec_str("forge").map_err(|e| reject(code::BAD_REQUEST, e))?;
            settings.rig_for_forge(forge).ok_or_else(|| {
                reject(
                    code::BAD_REQUEST,
                    format!(
                        "no Gas Town rig for this claim: set spec.rig, or have an administrator map the \
                         Forge {:?} in the policy's forgeRigs or set its defaultRig",
                        forge.unwrap_or("")
                    ),
                )
            })
        }
    }
}

/// Refuses the claim when the namespace is at `maxActiveClaimsPerNamespace`, or when the
/// active claims cannot be counted.
fn check_claim_limit(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Result<(), Decision> {
    let Some(limit) = settings.max_active_claims_per_namespace else {
        return Ok(());
    };
    match ledger.active_claims(&req.namespace, &settings.claimer) {
        Ok(active) if active >= u64::from(limit) => Err(reject(
            code::TOO_MANY,
            format!(
                "namespace {:?} already has {active} active Gas Town claims (limit {limit}, \
                 maxActiveClaimsPerNamespace): wait for some to finish, or run this one in Kubernetes",
                req.namespace
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(reject(
            code::UNAVAILABLE,
            format!(
                "cannot count the active Gas Town claims in namespace {:?}: {e}; retry",
                req.namespace
            ),
        )),
    }
}

/// Returns `object` with the claim marks set, `spec.executionMode: local` and `spec.rig`;
/// nothing else changes. `None` when the object's shape does not allow it (callers have checked
/// `metadata` and `spec` are objects, so this does not happen for valid input).
pub(super) fn mark_claimed(
    mut object: Value,
    settings: &Settings,
    username: &str,
    rig: &str,
    now: &str,
) -> Option<Value> {
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

//! CREATE of an Automaton, and the claim itself: the checks a claim passes (on CREATE or on
//! UPDATE) and the marks it writes into the object.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL,
};
use gastown_crds::validate::{validate_bead_id, validate_rig_name};
use serde_json::{Map, Value};

use super::route::{check_rig_home, route};
use super::view::{Asked, View};
use super::{ClaimLedger, Decision, Plan, Request, code, finalizer_message, forged_claim_message, reject};
use crate::settings::{Settings, Town};

pub(super) fn decide_create(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    let new = match View::new(&req.object, "object") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    if settings.is_controller(&req.username) {
        return controller_marks(settings, req, &new).unwrap_or(Decision::Accept).into();
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
    let asked = match new.claim_request(settings) {
        Ok(a) => a,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    match asked.or((mode == "local").then_some(Asked::Route)) {
        None => Decision::Accept.into(),
        Some(asked) => claim(settings, req, &new, asked, ledger),
    }
}

/// A controller's request that labels the object as claimed by a town whose controller it is
/// not: the refusal (a town's marks are its own controller's).
pub(super) fn controller_marks(settings: &Settings, req: &Request<'_>, new: &View<'_>) -> Option<Decision> {
    let label = new.label(CLAIMED_BY_LABEL)?;
    let town = settings.town(label)?;
    if town.is_controller(&req.username) {
        return None;
    }
    Some(reject(
        code::FORBIDDEN,
        format!(
            "{:?} is not a controller of Gas Town {label:?} ({}): only that town's controller marks its claims",
            req.username,
            town.controller_users.join(", ")
        ),
    ))
}

/// A requested claim: `Plan::Claim` with its town and rig when every check passes, else the
/// refusal.
pub(super) fn claim(
    settings: &Settings,
    req: &Request<'_>,
    new: &View<'_>,
    asked: Asked<'_>,
    ledger: &dyn ClaimLedger,
) -> Plan {
    match check_claim(settings, req, new, asked, ledger) {
        Ok((town, rig)) => Plan::Claim {
            town: town.name.clone(),
            rig: rig.to_string(),
        },
        Err(refusal) => refusal.into(),
    }
}

/// The claim checks in the order their refusals take precedence; the town and rig on success.
fn check_claim<'a>(
    settings: &'a Settings,
    req: &Request<'_>,
    new: &View<'a>,
    asked: Asked<'_>,
    ledger: &dyn ClaimLedger,
) -> Result<(&'a Town, &'a str), Decision> {
    if !new.spec().is_some_and(Value::is_object) {
        return Err(reject(
            code::BAD_REQUEST,
            "spec: expected an object with at least spec.task.title",
        ));
    }
    let rig = claim_rig(settings, new);
    // A claim no rule routes and without a rig is refused for its rig, the more basic fault.
    let town = route(settings, asked, rig.as_ref().ok().copied(), &req.username, &req.groups)
        .map_err(|refusal| rig.as_ref().err().cloned().unwrap_or(refusal))?;
    if !town.may_claim(&req.username, &req.groups) {
        return Err(reject(
            code::FORBIDDEN,
            format!(
                "user {:?} may not claim Automatons for Gas Town {:?}: ask an administrator to add the user to \
                 the town's allowedUsers (or one of its groups to allowedGroups), or run the work in \
                 Kubernetes (spec.executionMode: kubernetes, no {CLAIM_REQUEST_ANNOTATION} annotation)",
                req.username, town.name
            ),
        ));
    }
    let rig = rig?;
    validate_rig_name(rig).map_err(|e| reject(code::BAD_REQUEST, format!("spec.rig: {e}")))?;
    check_rig_home(settings, town, rig)?;
    match new.spec_field("task").and_then(|t| t.get("beadId")) {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => {
            validate_bead_id(id).map_err(|e| reject(code::BAD_REQUEST, format!("spec.task.beadId: {e}")))?;
        }
        Some(_) => return Err(reject(code::BAD_REQUEST, "spec.task.beadId: expected a string")),
    }
    check_claim_limit(settings, town, req, ledger)?;
    Ok((town, rig))
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

/// Refuses the claim when the namespace has `town`'s limit of its active claims, or when they
/// cannot be counted.
fn check_claim_limit(
    settings: &Settings,
    town: &Town,
    req: &Request<'_>,
    ledger: &dyn ClaimLedger,
) -> Result<(), Decision> {
    let Some(limit) = town.max_active_claims else {
        return Ok(());
    };
    match ledger.active_claims(&req.namespace, &town.name) {
        Ok(active) if active >= u64::from(limit) => Err(reject(
            code::TOO_MANY,
            format!(
                "namespace {:?} already has {active} active claims of Gas Town {:?} (limit {limit}, {}): wait \
                 for some to finish, or run this one in Kubernetes",
                req.namespace,
                town.name,
                settings.limit_setting(town)
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(reject(
            code::UNAVAILABLE,
            format!(
                "cannot count the active claims of Gas Town {:?} in namespace {:?}: {e}; retry",
                town.name, req.namespace
            ),
        )),
    }
}

/// Returns `object` with the claim marks of `town` set, `spec.executionMode: local` and `spec.rig`;
/// nothing else changes. `None` when the object's shape does not allow it (callers have checked
/// `metadata` and `spec` are objects, so this does not happen for valid input).
pub(super) fn mark_claimed(mut object: Value, town: &str, username: &str, rig: &str, now: &str) -> Option<Value> {
    let obj = object.as_object_mut()?;
    let metadata = object_entry(obj, "metadata")?;
    object_entry(metadata, "labels")?.insert(CLAIMED_BY_LABEL.to_string(), Value::from(town));
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

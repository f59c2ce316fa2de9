//! UPDATE of the status subresource: who may write which status fields.

use gastown_crds::contract::{CLAIMED_BY_LABEL, CONTROLLER_PHASES, CONTROLLER_STATUS_FIELDS};

use super::view::View;
use super::{Decision, Request, code, reject};
use crate::settings::Settings;

pub(super) fn decide_status_update(settings: &Settings, req: &Request<'_>) -> Decision {
    let old = View::new(&req.old_object, "oldObject");
    if settings.is_controller(&req.username) {
        // A town's claims are its own controller's; unclaimed objects are any controller's.
        let holder = old
            .ok()
            .and_then(|old| Some((old.name(), old.label(CLAIMED_BY_LABEL)?)));
        return match holder {
            Some((name, holder)) if !settings.serves(&req.username, holder) => {
                reject(code::FORBIDDEN, other_towns_status(settings, req, name, holder))
            }
            _ => Decision::Accept,
        };
    }
    let old = match old {
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
                town_controllers(settings, claimer),
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
            settings.all_controller_users(),
            req.username
        ),
    )
}

/// The controller identities that act for claims of the town `name`, for messages (none for
/// an orphan's).
pub(super) fn town_controllers(settings: &Settings, name: &str) -> String {
    match settings.town(name) {
        Some(town) => town.controller_users.join(", "),
        None if settings.is_orphan(name) => format!("none: Gas Town {name:?} is not in the policy's settings"),
        None => settings.all_controller_users(),
    }
}

/// The refusal of a controller's status write to a claim of a town it does not serve.
fn other_towns_status(settings: &Settings, req: &Request<'_>, name: &str, holder: &str) -> String {
    format!(
        "Automaton {}/{} is claimed by Gas Town {holder:?}: its status is written only by that town's controller \
         ({}); {:?} is the controller of another Gas Town and may not write it",
        req.namespace,
        name,
        town_controllers(settings, holder),
        req.username
    )
}

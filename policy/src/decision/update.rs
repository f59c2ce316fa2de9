//! UPDATE of an Automaton's main resource: a claim requested on an existing Automaton, and
//! the fields of a claimed one that only the controller may change.

use gastown_crds::Phase;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use serde_json::Value;

use super::create::{claim, controller_marks};
use super::status::town_controllers;
use super::view::{Asked, View};
use super::{ClaimLedger, Decision, Plan, Request, code, finalizer_message, forged_claim_message, reject};
use crate::settings::Settings;

pub(super) fn decide_update(settings: &Settings, req: &Request<'_>, ledger: &dyn ClaimLedger) -> Plan {
    let new = match View::new(&req.object, "object") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let old = match View::new(&req.old_object, "oldObject") {
        Ok(v) => v,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let holder = old.label(CLAIMED_BY_LABEL);
    // A town's controller adds its finalizer, writes status and releases its town's claims:
    // taken as is. Another town's controller is any other user for those claims.
    let serves_holder = holder.is_none_or(|h| settings.serves(&req.username, h));
    if settings.is_controller(&req.username) && serves_holder {
        return controller_marks(settings, req, &new).unwrap_or(Decision::Accept).into();
    }
    if let Some(holder) = holder {
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
    // The annotation before spec.executionMode (CREATE reads them the other way round): this
    // order decides which refusal a request with both malformed gets.
    let asked = match new.claim_request(settings) {
        Ok(a) => a,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let mode = match new.execution_mode() {
        Ok(m) => m,
        Err(e) => return reject(code::BAD_REQUEST, e).into(),
    };
    let Some(asked) = asked.or((mode == "local").then_some(Asked::Route)) else {
        return Decision::Accept.into();
    };
    if let Some(refusal) = refuse_reclaim(req, &old) {
        return refusal.into();
    }
    claim(settings, req, &new, asked, ledger)
}

/// Why an existing, unclaimed Automaton cannot be claimed now: it already ran in Kubernetes,
/// it was released, or its status carries an earlier claim's controller fields.
fn refuse_reclaim(req: &Request<'_>, old: &View<'_>) -> Option<Decision> {
    if let Some(phase @ (Phase::Running | Phase::Succeeded | Phase::Failed)) = old.phase() {
        return Some(reject(
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
        ));
    }
    if old.phase() == Some(Phase::Released) {
        // The controller gave this claim back (see the controller's
        // `reconcile::write::release_claim`); a claim on it would be released again at once.
        return Some(reject(
            code::CONFLICT,
            format!(
                "Automaton {}/{} was released by Gas Town (status.phase Released) and cannot be claimed again: \
                 its status keeps the earlier claim's bead and history. Create a new Automaton to claim the work \
                 again, or run this one in Kubernetes (remove the {CLAIM_REQUEST_ANNOTATION} annotation and set \
                 spec.executionMode to \"kubernetes\")",
                req.namespace,
                old.name()
            ),
        ));
    }
    let carried = old.controller_status();
    if carried.is_empty() {
        return None;
    }
    Some(reject(
        code::CONFLICT,
        format!(
            "Automaton {}/{} cannot be claimed: its status already carries {}, which only the gastown \
             controller writes for a claim of its own. Create a new Automaton to claim the work",
            req.namespace,
            old.name(),
            carried.join(" and ")
        ),
    ))
}

fn decide_update_of_claimed(
    settings: &Settings,
    req: &Request<'_>,
    old: &View<'_>,
    new: &View<'_>,
    holder: &str,
) -> Decision {
    let changed = changed_claim_fields(old, new);
    if changed.is_empty() {
        // Re-admission of a claimed object (idempotent): no patch, the timestamp stays.
        return Decision::Accept;
    }
    let orphan = settings.is_orphan(holder);
    if orphan && releases_only(old, new) {
        // The town is gone from the settings: nobody else will ever release its claims.
        return Decision::Accept;
    }
    let hint = if new.label(CLAIMED_BY_LABEL).is_some_and(|c| c != holder) {
        " (a claim cannot be taken over by another claimer)"
    } else {
        ""
    };
    let orphan_hint = if orphan {
        format!(
            " Gas Town {holder:?} is not in the policy's settings: anyone may remove its finalizer and claim \
             marks, nothing else."
        )
    } else {
        String::new()
    };
    reject(
        code::FORBIDDEN,
        format!(
            "Automaton {}/{} is claimed by Gas Town {holder:?}{hint}: {} may be changed only by the gastown \
             controller of that town ({}), not by {:?}. Leave these fields as they are (the spec of claimed work \
             is frozen); to stop or change the work, delete the Automaton (the controller releases it in Gas Town) \
             and create a new one.{orphan_hint}",
            req.namespace,
            old.name(),
            changed.join(", "),
            town_controllers(settings, holder),
            req.username
        ),
    )
}

/// Whether `new` differs from `old` only by claim marks, the claim request annotation or the
/// release finalizer removed: what anyone may do to the claim of a town that is gone.
fn releases_only(old: &View<'_>, new: &View<'_>) -> bool {
    let kept_or_removed = |o: Option<&str>, n: Option<&str>| n.is_none() || n == o;
    old.claim_marks()
        .iter()
        .zip(new.claim_marks().iter())
        .all(|(o, n)| kept_or_removed(*o, *n))
        && kept_or_removed(
            old.annotation(CLAIM_REQUEST_ANNOTATION),
            new.annotation(CLAIM_REQUEST_ANNOTATION),
        )
        && (old.has_release_finalizer() || !new.has_release_finalizer())
        && old.spec() == new.spec()
}

/// The fields of a claimed Automaton that only the controller may change and that differ
/// between `old` and `new`, named as the refusal names them.
fn changed_claim_fields(old: &View<'_>, new: &View<'_>) -> Vec<String> {
    let mut changed: Vec<String> = Vec::new();
    // In the order of `View::claim_marks`.
    let marks = [
        ("labels", CLAIMED_BY_LABEL),
        ("annotations", CLAIMED_AT_ANNOTATION),
        ("annotations", CLAIM_REQUESTED_BY_ANNOTATION),
    ];
    for ((o, n), (map, key)) in old.claim_marks().iter().zip(new.claim_marks().iter()).zip(marks) {
        if o != n {
            changed.push(format!("metadata.{map}[{key}]"));
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
    changed
}

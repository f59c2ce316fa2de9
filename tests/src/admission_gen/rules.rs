//! The rule model: what the policy must answer to a case, one function per family of rules.
//! [`check`] runs them in a fixed order and reports the first one broken.

use gastown_crds::contract::{CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_crds::validate::{validate_bead_id, validate_rig_name};
use serde_json::Value;

use super::reads::{
    CLAIM_PATHS, CONTROLLER_PHASES, CONTROLLER_STATUS, Req, claim_annotation, has_any_mark, has_release_finalizer,
    is_claimed, marks, meta_str, patch_op_violation, phase, readable_meta, requests_claim, spec_field, status_field,
};
use super::{Case, LedgerAnswer, SettingsModel};

/// Checks one answer. `response` is the guest's ValidationResponse; `patch` the JSONPatch the
/// host computed from it (`None` when the object is unchanged).
pub fn check(case: &Case, response: &Value, patch: Option<&json_patch::Patch>) -> Result<(), String> {
    let answer = Answer::read(response)?;
    // Raw payloads: the request is what serde_json makes of them.
    let parsed = case
        .raw
        .as_ref()
        .map(|raw| serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null));
    let (request, settings) = match &parsed {
        Some(p) => (
            p.get("request").unwrap_or(&Value::Null),
            p.get("settings").unwrap_or(&Value::Null),
        ),
        None => (&case.request, &case.settings),
    };
    let req = Req(request);
    if let Some(mutated) = answer.mutated {
        check_mutation(case, &req, settings, mutated, patch)?;
    }
    if case.raw.is_some() || !settings_were_used_rightly(case, &answer)? {
        return Ok(());
    }
    let Some(model) = &case.model else { return Ok(()) };
    if !req.is_automatons() {
        if answer.mutated.is_some() {
            return answer.fail("another resource was mutated");
        }
        return Ok(());
    }
    let seen = Seen {
        op: req.operation(),
        sub: req.sub_resource(),
        new: req.object(),
        old: req.old(),
        answer: &answer,
        model,
    };
    let user = req.username().unwrap_or_default();
    if model.is_controller(user) && seen.serves_holder(user) {
        if answer.mutated.is_some() {
            return answer.fail("the controller's request was mutated");
        }
        return seen.controllers_mark_only_their_towns(user);
    }
    seen.claimed_work_is_left_alone()?;
    seen.status_is_the_controllers()?;
    seen.the_finalizer_is_the_controllers()?;
    seen.marks_are_not_forged()?;
    seen.claim_requests_are_not_ignored(patch.is_none())?;
    if answer.mutated.is_some() {
        seen.the_claim_is_allowed(&req, &case.ledger)?;
    }
    Ok(())
}

/// The answer's shape: a boolean `accepted`, and a rejection with a message, a known code and no
/// mutated object.
struct Answer<'a> {
    response: &'a Value,
    accepted: bool,
    code: Option<u64>,
    mutated: Option<&'a Value>,
}

impl<'a> Answer<'a> {
    fn read(response: &'a Value) -> Result<Answer<'a>, String> {
        let accepted = response.get("accepted").and_then(Value::as_bool).ok_or_else(|| {
            format!(
                "the answer lacks a boolean `accepted`: {}",
                shorten(&response.to_string())
            )
        })?;
        let code = response.get("code").and_then(Value::as_u64);
        let mutated = response.get("mutated_object").filter(|m| !m.is_null());
        if !accepted {
            let message = response.get("message").and_then(Value::as_str).unwrap_or_default();
            if message.trim().is_empty() {
                return Err(format!(
                    "a rejection without a message: {}",
                    shorten(&response.to_string())
                ));
            }
            if !matches!(code, Some(400 | 403 | 409 | 429 | 500 | 503)) {
                return Err(format!("a rejection with code {code:?}: {message}"));
            }
            if mutated.is_some() {
                return Err("a rejection with a mutated object".to_string());
            }
        }
        Ok(Answer {
            response,
            accepted,
            code,
            mutated,
        })
    }

    fn fail(&self, rule: &str) -> Result<(), String> {
        Err(format!("{rule}; answer: {}", shorten(&self.response.to_string())))
    }
}

/// A mutation is a claim of an Automaton: only on CREATE or UPDATE of the main resource, a patch
/// of claim fields only, and the claim marks right.
fn check_mutation(
    case: &Case,
    req: &Req<'_>,
    settings: &Value,
    mutated: &Value,
    patch: Option<&json_patch::Patch>,
) -> Result<(), String> {
    if !(matches!(req.operation(), Some("CREATE" | "UPDATE")) && req.sub_resource() == Some("") && req.is_automatons())
    {
        return Err(format!(
            "mutation of operation {:?} subresource {:?} resource {}",
            req.operation(),
            req.sub_resource(),
            req.0.get("resource").map(Value::to_string).unwrap_or_default()
        ));
    }
    let original = req.object();
    let computed = json_patch::diff(original, mutated);
    let patch = patch.unwrap_or(&computed);
    for op in &patch.0 {
        if let Some(v) = patch_op_violation(original, op) {
            return Err(v);
        }
    }
    let mut patched = original.clone();
    json_patch::patch(&mut patched, patch).map_err(|e| format!("the patch does not apply: {e}"))?;
    let towns: Vec<String> = match &case.model {
        Some(m) => m.towns.iter().map(|t| t.name.clone()).collect(),
        None => match settings
            .get("towns")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
        {
            Some(towns) => towns
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                .collect(),
            None => vec![
                settings
                    .get("claimer")
                    .and_then(Value::as_str)
                    .unwrap_or(DEFAULT_CLAIMER)
                    .to_string(),
            ],
        },
    };
    check_claim_fields(&patched, &towns, req.username())
}

/// The five claim fields after a claim: one of the towns, a timestamp, the requester, mode
/// `local` and a valid rig.
fn check_claim_fields(patched: &Value, towns: &[String], username: Option<&str>) -> Result<(), String> {
    let got = |p: &str| patched.pointer(p).and_then(Value::as_str);
    if !got(CLAIM_PATHS[0]).is_some_and(|town| towns.iter().any(|t| t == town)) {
        return Err(format!("claimed-by is {:?}, not one of {towns:?}", got(CLAIM_PATHS[0])));
    }
    let at = got(CLAIM_PATHS[1]).unwrap_or_default();
    if at.parse::<jiff::Timestamp>().is_err() {
        return Err(format!("claimed-at {at:?} is not RFC 3339"));
    }
    if got(CLAIM_PATHS[2]) != username {
        return Err(format!(
            "claim-requested-by is {:?}, not the requester {username:?}",
            got(CLAIM_PATHS[2])
        ));
    }
    if got(CLAIM_PATHS[3]) != Some("local") {
        return Err("spec.executionMode is not \"local\" after a claim".to_string());
    }
    let rig = got(CLAIM_PATHS[4]).unwrap_or_default();
    if let Err(e) = validate_rig_name(rig) {
        return Err(format!("a claim writes an invalid rig: {e}"));
    }
    Ok(())
}

/// Invalid settings are reported as a misconfiguration (code 500), valid ones never are.
/// `Ok(false)`: nothing more is known about the case.
fn settings_were_used_rightly(case: &Case, answer: &Answer<'_>) -> Result<bool, String> {
    match case.settings_valid {
        Some(false) => {
            if answer.accepted || answer.code != Some(500) {
                return Err(format!(
                    "invalid settings were used: {}",
                    shorten(&answer.response.to_string())
                ));
            }
            Ok(false)
        }
        None => Ok(false),
        Some(true) if answer.code == Some(500) => Err(format!(
            "valid settings reported as misconfigured: {}",
            shorten(&answer.response.to_string())
        )),
        Some(true) => Ok(true),
    }
}

/// A request on automatons by anyone but the controller, and the answer to it.
struct Seen<'a> {
    op: Option<&'a str>,
    sub: Option<&'a str>,
    new: &'a Value,
    old: &'a Value,
    answer: &'a Answer<'a>,
    model: &'a SettingsModel,
}

impl Seen<'_> {
    /// The town of the stored object, as the policy reads it (`None`: not claimed, or metadata
    /// the policy cannot read).
    fn holder(&self) -> Option<&str> {
        (self.op == Some("UPDATE") && readable_meta(self.old))
            .then(|| meta_str(self.old, "labels", CLAIMED_BY_LABEL))?
    }

    /// Whether `user` may act as the controller for this object: it is unclaimed, or claimed by
    /// a town `user` is a controller of (single-town settings: by anyone).
    fn serves_holder(&self, user: &str) -> bool {
        self.holder().is_none_or(|h| {
            if self.model.shorthand {
                self.model.is_controller(user)
            } else {
                self.model.controls(user, h)
            }
        })
    }

    /// A controller puts no claim label of a town it does not serve on an object.
    fn controllers_mark_only_their_towns(&self, user: &str) -> Result<(), String> {
        let writes_main = matches!(self.op, Some("CREATE" | "UPDATE")) && self.sub == Some("");
        let foreign = meta_str(self.new, "labels", CLAIMED_BY_LABEL)
            .is_some_and(|t| self.model.town(t).is_some() && !self.model.controls(user, t));
        if writes_main && foreign && self.accepted() {
            return self
                .answer
                .fail("a controller put the claim label of another town on an Automaton");
        }
        Ok(())
    }

    /// A change of claimed work that only removes the claim of a town gone from the `towns` list:
    /// marks, claim annotation and finalizer kept or removed, nothing added, the spec as it was.
    fn releases_an_orphan(&self) -> bool {
        let (old, new) = (self.old, self.new);
        let Some(holder) = meta_str(old, "labels", CLAIMED_BY_LABEL) else {
            return false;
        };
        let kept_or_removed = |o: Option<&str>, n: Option<&str>| n.is_none() || n == o;
        !self.model.shorthand
            && self.model.town(holder).is_none()
            && marks(old)
                .iter()
                .zip(marks(new).iter())
                .all(|(o, n)| kept_or_removed(*o, *n))
            && (claim_annotation(old).is_none() || kept_or_removed(claim_annotation(old), claim_annotation(new)))
            && (has_release_finalizer(old) || !has_release_finalizer(new))
            && old.get("spec") == new.get("spec")
    }

    fn main_update(&self) -> bool {
        self.op == Some("UPDATE") && self.sub == Some("")
    }

    fn status_update(&self) -> bool {
        self.op == Some("UPDATE") && self.sub == Some("status")
    }

    fn accepted(&self) -> bool {
        self.answer.accepted
    }

    /// Claimed work keeps its claim marks, claim annotation, spec and finalizer, and is not
    /// claimed again.
    fn claimed_work_is_left_alone(&self) -> Result<(), String> {
        let (old, new) = (self.old, self.new);
        if !(self.main_update() && is_claimed(old) && self.accepted()) {
            return Ok(());
        }
        let mut changed = marks(old) != marks(new);
        changed |= claim_annotation(old).is_some() && claim_annotation(old) != claim_annotation(new);
        // The whole spec is frozen, and the finalizer is the controller's.
        changed |= old.get("spec") != new.get("spec");
        changed |= has_release_finalizer(old) != has_release_finalizer(new);
        if changed && !self.releases_an_orphan() {
            return self.answer.fail(
                "a claimed Automaton's claim marks, spec or finalizer were changed by an identity that is not \
                 its town's controller",
            );
        }
        if self.answer.mutated.is_some() {
            return self.answer.fail("a claimed Automaton was claimed again");
        }
        Ok(())
    }

    /// No status of claimed work (by any claimer), and no controller-owned status field or
    /// phase on any Automaton.
    fn status_is_the_controllers(&self) -> Result<(), String> {
        if !(self.status_update() && self.accepted()) {
            return Ok(());
        }
        let (old, new) = (self.old, self.new);
        if is_claimed(old) {
            return self
                .answer
                .fail("status of a claimed Automaton written by a non-controller identity");
        }
        if CONTROLLER_STATUS
            .iter()
            .any(|f| status_field(old, f) != status_field(new, f))
        {
            return self
                .answer
                .fail("status.claim or status.gastown written by a non-controller identity");
        }
        if let Some(p) = phase(new)
            && phase(new) != phase(old)
            && CONTROLLER_PHASES.contains(&p)
        {
            return self
                .answer
                .fail("a phase only the controller writes was set by a non-controller identity");
        }
        Ok(())
    }

    /// The release finalizer is added only by the controller (and removed only by it from
    /// claimed work: see [`Self::claimed_work_is_left_alone`]).
    fn the_finalizer_is_the_controllers(&self) -> Result<(), String> {
        let adds_finalizer = match self.op {
            Some("CREATE") => has_release_finalizer(self.new),
            Some("UPDATE") => has_release_finalizer(self.new) && !has_release_finalizer(self.old),
            _ => false,
        };
        if self.sub == Some("") && adds_finalizer && self.accepted() {
            return self
                .answer
                .fail("the gastown.io/release finalizer was added by a non-controller identity");
        }
        Ok(())
    }

    /// Claim marks come only from the policy: none on a CREATE, none new on unclaimed work.
    fn marks_are_not_forged(&self) -> Result<(), String> {
        let forged_create = self.op == Some("CREATE") && self.sub == Some("") && has_any_mark(self.new);
        let forged_update = self.main_update()
            && !is_claimed(self.old)
            && marks(self.new).iter().any(Option::is_some)
            && marks(self.new) != marks(self.old);
        if (forged_create || forged_update) && self.accepted() {
            return self.answer.fail("forged claim marks were accepted");
        }
        Ok(())
    }

    /// A requested claim is made or refused, never silently ignored.
    fn claim_requests_are_not_ignored(&self, unpatched: bool) -> Result<(), String> {
        let asks_for_town = claim_annotation(self.new).is_some_and(|v| self.model.town(v).is_some());
        let claim_requested = self.sub == Some("")
            && self.new.is_object()
            && (requests_claim(self.new) || asks_for_town)
            && (self.op == Some("CREATE") || (self.op == Some("UPDATE") && !is_claimed(self.old)));
        if claim_requested && self.accepted() && unpatched {
            return self
                .answer
                .fail("a claim request (executionMode local or gastown.io/claim: local) was accepted unchanged");
        }
        Ok(())
    }

    /// A claim is made only to the town the routing rules give, for a user that town allows,
    /// within its limit, of work that never ran in Kubernetes, was not released and carries no
    /// controller status, on the rig the settings give (one that lives in no other town), with a
    /// valid bead ID.
    fn the_claim_is_allowed(&self, req: &Req<'_>, ledger: &LedgerAnswer) -> Result<(), String> {
        let fail = |rule: &str| self.answer.fail(rule);
        let (old, new, update) = (self.old, self.new, self.op == Some("UPDATE"));
        let (user, groups) = (req.username().unwrap_or_default(), req.groups());
        let asked = match claim_annotation(new).map(|v| self.model.claim_value(v)) {
            None => None,
            Some(Some(asked)) => asked,
            Some(None) => return fail("a claim was made for a gastown.io/claim value that names no town"),
        };
        let expected_rig = match spec_field(new, "rig").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => Some(r),
            _ => self
                .model
                .rig_for_forge(spec_field(new, "forge").and_then(Value::as_str)),
        };
        let Some(town) = self.model.route(asked, expected_rig, user, &groups) else {
            return fail("a claim was made that no routing rule gives a town");
        };
        let got_town = self
            .answer
            .mutated
            .and_then(|m| meta_str(m, "labels", CLAIMED_BY_LABEL));
        if got_town != Some(town.name.as_str()) {
            return fail(&format!(
                "the claim went to {got_town:?}, the rules give {:?}",
                town.name
            ));
        }
        if !town.may_claim(user, &groups) {
            return fail("a claim was made for a user the town does not allow");
        }
        if let Some(limit) = town.limit {
            match ledger {
                LedgerAnswer::Error(_) => return fail("a claim was made although the claims could not be counted"),
                LedgerAnswer::Items { active, .. } if *active >= u64::from(limit) => {
                    return fail("a claim was made beyond the town's limit of active claims");
                }
                _ => {}
            }
        }
        if expected_rig
            .and_then(|r| self.model.rig_home(r))
            .is_some_and(|home| home.name != town.name)
        {
            return fail("a claim went to a town other than the one its rig lives in");
        }
        if update && matches!(phase(old), Some("Running" | "Succeeded" | "Failed")) {
            return fail("an Automaton that ran in Kubernetes was claimed");
        }
        if update && phase(old) == Some("Released") {
            return fail("an Automaton released by Gas Town was claimed again");
        }
        if update && CONTROLLER_STATUS.iter().any(|f| status_field(old, f).is_some()) {
            return fail("an Automaton whose status carries status.claim or status.gastown was claimed");
        }
        let got = self
            .answer
            .mutated
            .and_then(|m| m.pointer("/spec/rig"))
            .and_then(Value::as_str);
        if got != expected_rig {
            return fail(&format!("the claim's rig is {got:?}, expected {expected_rig:?}"));
        }
        if let Some(Value::String(id)) = spec_field(new, "task").and_then(|t| t.get("beadId"))
            && validate_bead_id(id).is_err()
        {
            return fail("a claim with an invalid spec.task.beadId was accepted");
        }
        Ok(())
    }
}

/// At most 1,500 characters of `s`.
pub fn shorten(s: &str) -> String {
    if s.len() <= 1500 {
        return s.to_string();
    }
    let mut end = 1500;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

//! The invariants of a run, from the fake's call log, the beads and the objects as last seen.
//! Each broken one is recorded as a violation, so that one run reports all of them.

use std::collections::{BTreeMap, HashMap};

use gastown_crds::{Automaton, ConditionStatus, Phase};
use gastown_tests::fake_gastown::Call;
use gastown_tests::status::{bead_id, claim_left, condition_status, has_release_finalizer};
use serde_json::Value;

use crate::claims::{Claim, external_ref, status_json};
use crate::report::Report;
use crate::run::Run;
use crate::{Kind, OTHER_BEADS};

/// What Gas Town holds for one claim: the bead with its external ref and how often it was
/// hooked.
struct Work<'a> {
    bead: Option<&'a Value>,
    bead_id: &'a str,
    hooked: usize,
}

impl Run {
    /// The invariants, from the call log, the beads and the objects as last seen.
    pub(crate) fn check(&self, claims: &BTreeMap<String, Claim>, report: &mut Report) {
        let calls: Vec<Call> = self.town.calls().unwrap();
        let beads = self.town.beads().unwrap();
        count(&calls, claims, report);
        let v = &mut report.violations;
        let dispatches = dispatches_per_bead(&calls, &beads);
        let ours = |b: &&Value| !self.other_beads.iter().any(|o| b["id"].as_str() == Some(o.as_str()));
        check_other_work(&beads, &ours, v);
        let mut by_ref: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for b in beads.iter().filter(ours) {
            let r = b["external_ref"].as_str().unwrap_or("(none)");
            by_ref.entry(r).or_default().push(b);
            let id = b["id"].as_str().unwrap_or_default();
            if b["status"] != "closed" {
                v.push(format!(
                    "orphaned bead: {id} ({r}) is {} after every Automaton was deleted (assignee {}, slung {} time(s))",
                    b["status"],
                    b["assignee"],
                    dispatches.get(id).copied().unwrap_or(0)
                ));
            }
        }
        for (bead, n) in &dispatches {
            if *n > 1 {
                v.push(format!(
                    "duplicate dispatch: bead {bead} was hooked by {n} `gt sling` calls"
                ));
            }
        }
        let mut known_refs = Vec::new();
        for (name, c) in claims {
            let r = external_ref(self.ns.name(), name, &c.uid);
            let found = by_ref.get(r.as_str()).cloned().unwrap_or_default();
            known_refs.push(r);
            if found.len() > 1 {
                let ids: Vec<&str> = found.iter().filter_map(|b| b["id"].as_str()).collect();
                v.push(format!("{name}: {} beads for one Automaton: {ids:?}", found.len()));
            }
            let bead = found.first().copied();
            let bead_id = bead.and_then(|b| b["id"].as_str()).unwrap_or_default();
            let work = Work {
                bead,
                bead_id,
                hooked: dispatches.get(bead_id).copied().unwrap_or(0),
            };
            check_claim(name, c, &work, v);
        }
        for (r, found) in &by_ref {
            if !known_refs.iter().any(|k| k == r) {
                let ids: Vec<&str> = found.iter().filter_map(|b| b["id"].as_str()).collect();
                v.push(format!(
                    "beads {ids:?} have an external ref of no Automaton of this run: {r}"
                ));
            }
        }
    }
}

/// The report's counts of calls, faults, slings and releases.
fn count(calls: &[Call], claims: &BTreeMap<String, Claim>, report: &mut Report) {
    report.calls = calls.len();
    report.injected_failures = calls.iter().filter(|c| c.fault.as_deref() == Some("fail")).count();
    report.injected_hangs = calls.iter().filter(|c| c.hung).count();
    report.after_work_faults = calls
        .iter()
        .filter(|c| c.fault.as_deref().is_some_and(|f| f.starts_with("after_work")))
        .count();
    report.slings = calls
        .iter()
        .filter(|c| c.tool == "gt" && c.verb() == Some("sling"))
        .count();
    report.dispatches = calls.iter().filter(|c| c.dispatched).count();
    report.releases = claims
        .values()
        .filter(|c| c.last.as_ref().and_then(Automaton::phase) == Some(Phase::Released))
        .count();
}

/// `FakeGasTown::dispatch_count` for every bead at once: slings that really hooked it.
fn dispatches_per_bead<'a>(calls: &[Call], beads: &'a [Value]) -> HashMap<&'a str, usize> {
    let mut dispatches: HashMap<&str, usize> = HashMap::new();
    for c in calls.iter().filter(|c| c.dispatched) {
        if let Some(bead) = beads
            .iter()
            .filter_map(|b| b["id"].as_str())
            .find(|id| c.is_sling_of(id))
        {
            *dispatches.entry(bead).or_default() += 1;
        }
    }
    dispatches
}

/// The town's other work is all there and untouched.
fn check_other_work(beads: &[Value], ours: &dyn Fn(&&Value) -> bool, v: &mut Vec<String>) {
    let others_left = beads.iter().filter(|b| !ours(b)).count();
    if others_left != OTHER_BEADS {
        v.push(format!(
            "the town's other work changed: {others_left} of its {OTHER_BEADS} beads left"
        ));
    }
    for b in beads.iter().filter(|b| !ours(b) && b["status"] != "open") {
        v.push(format!("the town's other work was touched: {b}"));
    }
}

/// One claim ended as its kind says, with its bead hooked as often as it should be.
fn check_claim(name: &str, c: &Claim, work: &Work, v: &mut Vec<String>) {
    let last = c.last.as_ref();
    let recorded = last.and_then(bead_id);
    if let (Some(recorded), Some(_)) = (&recorded, work.bead)
        && recorded != work.bead_id
    {
        v.push(format!(
            "{name}: status records bead {recorded}, but the bead with its external ref is {}",
            work.bead_id
        ));
    }
    let (bead_id, hooked) = (work.bead_id, work.hooked);
    match c.kind {
        Kind::Merge | Kind::Reject => {
            let want = if c.kind == Kind::Merge {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
            let phase = last.and_then(Automaton::phase);
            if phase != Some(want) {
                v.push(format!(
                    "{name}: ended {phase:?}, expected {want:?}: {}",
                    status_json(last)
                ));
            }
            if let Some(a) = last
                && (!a.is_claimed_by("gastown-local") || !has_release_finalizer(a))
            {
                v.push(format!(
                    "{name}: claim lost: claimed-by {:?}, finalizers {:?} while {phase:?}",
                    a.claimed_by(),
                    a.metadata.finalizers
                ));
            }
            if work.bead.is_none() || hooked != 1 {
                v.push(format!("{name}: bead {bead_id:?} hooked {hooked} times, expected once"));
            }
        }
        Kind::Cancel => {
            if work.bead.is_none() || hooked != 1 {
                v.push(format!(
                    "{name}: bead {bead_id:?} hooked {hooked} times before the deletion, expected once"
                ));
            }
            if let Some(b) = work.bead
                && !b["close_reason"].as_str().unwrap_or_default().contains("deleted")
            {
                v.push(format!(
                    "{name}: deleted while running, but bead {bead_id} closed with {}",
                    b["close_reason"]
                ));
            }
        }
        Kind::Expire => check_released(name, last, hooked, bead_id, v),
    }
}

/// A claim meant to expire was never hooked and went back to Kubernetes whole.
fn check_released(name: &str, last: Option<&Automaton>, hooked: usize, bead_id: &str, v: &mut Vec<String>) {
    if hooked != 0 {
        v.push(format!(
            "{name}: bead {bead_id} for an unknown rig was hooked {hooked} times"
        ));
    }
    match last {
        Some(a) if a.phase() == Some(Phase::Released) => {
            let left = claim_left(a);
            if !left.is_empty() {
                v.push(format!("{name}: claim lost: Released but still {left:?}"));
            }
            if condition_status(a, "Released") != Some(ConditionStatus::True) {
                v.push(format!(
                    "{name}: Released without condition Released=True: {}",
                    status_json(last)
                ));
            }
        }
        other => v.push(format!(
            "{name}: ended {:?}, expected Released",
            other.and_then(Automaton::phase)
        )),
    }
}

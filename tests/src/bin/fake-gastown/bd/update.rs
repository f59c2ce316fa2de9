//! `bd update` and `bd close`: changes to existing beads.

use serde_json::Value;

use crate::args::{Flag, Kind, Parsed, flag};
use crate::records::Bead;
use crate::state::State;
use crate::{Ctx, Outcome};

use super::{parse_priority, pretty, set_status, split_labels, usage_error};

pub(super) const UPDATE: &[Flag] = &[
    flag("status", Some('s'), Kind::Value),
    flag("assignee", Some('a'), Kind::Value),
    flag("set-metadata", None, Kind::Multi),
    flag("unset-metadata", None, Kind::Multi),
    flag("title", None, Kind::Value),
    flag("description", Some('d'), Kind::Value),
    flag("priority", Some('p'), Kind::Value),
    flag("external-ref", None, Kind::Value),
    flag("add-label", None, Kind::Multi),
    flag("remove-label", None, Kind::Multi),
    flag("claim", None, Kind::Bool),
];

pub(super) const CLOSE: &[Flag] = &[
    flag("reason", Some('r'), Kind::Value),
    flag("force", Some('f'), Kind::Bool),
];

/// Built-in statuses (Gas Town adds `tombstone`). Spelled here apart from the controller's
/// list on purpose: the fake models `bd`, so it checks the controller rather than echoes it.
const STATUSES: &[&str] = &[
    "open",
    "in_progress",
    "blocked",
    "deferred",
    "closed",
    "pinned",
    "hooked",
    "tombstone",
];

/// What a valid `bd update` changes besides the plain flags.
struct Changes {
    status: Option<&'static str>,
    priority: Option<i64>,
    set_meta: Vec<(String, String)>,
    claim: bool,
}

/// The flags `bd update` applies as given.
const PLAIN_UPDATE_FLAGS: &[&str] = &[
    "assignee",
    "title",
    "description",
    "external-ref",
    "unset-metadata",
    "add-label",
    "remove-label",
];

pub(super) fn update(p: &Parsed, st: &mut State, ctx: &Ctx, actor: &str, json: bool) -> Outcome {
    let changes = match update_changes(p, st, actor) {
        Ok(c) => c,
        Err(ended) => return ended,
    };
    let anything = changes.status.is_some()
        || changes.priority.is_some()
        || changes.claim
        || !changes.set_meta.is_empty()
        || PLAIN_UPDATE_FLAGS.iter().any(|f| p.has(f));
    if !anything {
        return Outcome::ok("No updates specified\n");
    }
    let mut updated = Vec::new();
    for id in &p.positionals {
        let Some(b) = st.bead_mut(id) else { continue };
        apply_update(b, p, &changes, actor, ctx.now_ms);
        updated.push(b.to_json());
    }
    let out = if json {
        pretty(&Value::Array(updated))
    } else {
        p.positionals
            .iter()
            .map(|id| format!("✓ Updated issue: {id}\n"))
            .collect()
    };
    Outcome::ok(out).changed()
}

/// Checks a `bd update` before it changes anything: the beads exist, the status and priority
/// are valid, metadata is `key=value`, and `--claim` takes only unclaimed beads (or the
/// actor's own). `Err` is the failure the call ends with.
fn update_changes(p: &Parsed, st: &mut State, actor: &str) -> Result<Changes, Outcome> {
    if p.positionals.is_empty() {
        return Err(usage_error("update", "at least one issue ID is required"));
    }
    if let Some(missing) = p.positionals.iter().find(|id| st.bead(id).is_none()) {
        return Err(Outcome::fail(format!("Error: no issue found matching \"{missing}\"\n")));
    }
    let status = match p.value("status") {
        Some(s) => match STATUSES.iter().find(|known| **known == s) {
            Some(known) => Some(*known),
            None => {
                return Err(Outcome::fail(format!(
                    "Error: invalid status \"{s}\" (valid: {})\n",
                    STATUSES.join(", ")
                )));
            }
        },
        None => None,
    };
    let priority = p
        .value("priority")
        .map(parse_priority)
        .transpose()
        .map_err(|e| Outcome::fail(format!("Error: {e}\n")))?;
    let mut set_meta = Vec::new();
    for kv in p.values("set-metadata") {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => set_meta.push((k.to_string(), v.to_string())),
            _ => {
                return Err(Outcome::fail(format!(
                    "Error: invalid --set-metadata \"{kv}\" (expected key=value)\n"
                )));
            }
        }
    }
    let claim = p.bool("claim");
    if claim {
        for id in &p.positionals {
            if let Some(b) = st.bead(id)
                && let Some(a) = &b.assignee
                && a != actor
            {
                return Err(Outcome::fail(format!("Error: {id} is already claimed by {a}\n")));
            }
        }
    }
    Ok(Changes {
        status,
        priority,
        set_meta,
        claim,
    })
}

/// Applies a checked `bd update` to one bead.
fn apply_update(b: &mut Bead, p: &Parsed, changes: &Changes, actor: &str, now: u64) {
    let new_status = if changes.claim {
        Some("in_progress")
    } else {
        changes.status
    };
    if let Some(s) = new_status {
        set_status(b, s, now);
    }
    if changes.claim {
        b.assignee = Some(actor.to_string());
    }
    if let Some(a) = p.value("assignee") {
        b.assignee = Some(a.to_string()).filter(|a| !a.is_empty());
    }
    if let Some(t) = p.value("title") {
        b.title = t.to_string();
    }
    if let Some(d) = p.value("description") {
        b.description = d.to_string();
    }
    if let Some(r) = p.value("external-ref") {
        b.external_ref = Some(r.to_string()).filter(|r| !r.is_empty());
    }
    if let Some(pr) = changes.priority {
        b.priority = pr;
    }
    for (k, v) in &changes.set_meta {
        b.metadata.insert(k.clone(), Value::String(v.clone()));
    }
    for k in p.values("unset-metadata") {
        b.metadata.remove(k);
    }
    for l in split_labels(p.values("add-label")) {
        if !b.labels.contains(&l) {
            b.labels.push(l);
        }
    }
    let remove = split_labels(p.values("remove-label"));
    b.labels.retain(|l| !remove.contains(l));
    b.updated_at_ms = now;
}

pub(super) fn close(p: &Parsed, st: &mut State, ctx: &Ctx, json: bool) -> Outcome {
    if p.positionals.is_empty() {
        return usage_error("close", "at least one issue ID is required");
    }
    if let Some(missing) = p.positionals.iter().find(|id| st.bead(id).is_none()) {
        return Outcome::fail(format!("Error: no issue found matching \"{missing}\"\n"));
    }
    let reason = p.value("reason").unwrap_or("Closed");
    let mut out = String::new();
    let mut closed = Vec::new();
    for id in &p.positionals {
        let Some(b) = st.bead_mut(id) else { continue };
        if b.status == "closed" {
            out.push_str(&format!("{id} is already closed\n"));
        } else {
            set_status(b, "closed", ctx.now_ms);
            b.closed_at_ms = Some(ctx.now_ms);
            b.close_reason = Some(reason.to_string());
            b.updated_at_ms = ctx.now_ms;
            out.push_str(&format!("✓ Closed {id}: {reason}\n"));
        }
        closed.push(b.to_json());
    }
    if json {
        out = pretty(&Value::Array(closed));
    }
    Outcome::ok(out).changed()
}

//! `gt unsling [bead-id] [target]`: takes hooked work back off an agent's hook.

use crate::args::{Flag, Kind, flag, parse};
use crate::config::Config;
use crate::state::State;
use crate::{Ctx, Outcome};

use super::{assignee, parse_assignee, run_error, session_name, usage_error};

const UNSLING: &[Flag] = &[
    flag("force", Some('f'), Kind::Bool),
    flag("dry-run", Some('n'), Kind::Bool),
];

const UNSLING_LINE: &str = "gt unsling [bead-id] [target] [flags]";

/// Whether `target` names an agent rather than a bead (gastown `internal/cmd/unsling.go`
/// `isAgentTarget`: it contains `/` or is a role name).
fn is_agent_target(target: &str) -> bool {
    target.contains('/') || matches!(target, "mayor" | "deacon" | "witness" | "refinery" | "crew")
}

/// Resolves an unsling target to the agent ID the way real `gt` does (gastown
/// `internal/cmd/sling_target.go` `resolveTargetAgent`): through the agent's tmux session,
/// which must exist (`tmux list-panes -t <session>` fails otherwise). The fake has polecats
/// only: a crew member, witness or refinery has no session here.
fn resolve_target_agent(target: &str, st: &mut State, cfg: &Config) -> Result<String, String> {
    let parts: Vec<&str> = target.split('/').collect();
    let (rig, name) = match parts.as_slice() {
        [rig, "polecats", name] if !name.is_empty() => (*rig, *name),
        [rig, "crew", name] => {
            let session = format!("{}-crew-{name}", cfg.prefix());
            let _ = rig;
            return Err(format!("getting pane for {session}: exit status 1"));
        }
        [rig, second] => match second.to_lowercase().as_str() {
            "witness" | "refinery" => {
                return Err(format!(
                    "getting pane for {}-{}: exit status 1",
                    cfg.prefix(),
                    second.to_lowercase()
                ));
            }
            "crew" => return Err(format!("crew path requires name: {rig}/crew/<name>")),
            "polecats" => return Err(format!("polecats path requires name: {rig}/polecats/<name>")),
            _ => (*rig, *second),
        },
        _ if !target.contains('/') => {
            return Err(format!("getting pane for {target}: exit status 1"));
        }
        _ => {
            return Err(format!(
                "cannot parse path '{target}' - expected <rig>/<polecat>, <rig>/crew/<name>, <rig>/witness, or <rig>/refinery"
            ));
        }
    };
    let session = session_name(cfg, name);
    let known = st
        .polecats()
        .into_iter()
        .find(|pc| pc.rig == rig && pc.name.eq_ignore_ascii_case(name));
    match known {
        Some(pc) if !pc.session_ended => Ok(assignee(&pc.rig, &name.to_lowercase())),
        _ => Err(format!("getting pane for {session}: exit status 1")),
    }
}

/// `gt unsling [bead-id] [target]`, as gastown `internal/cmd/unsling.go` `runUnslingWith`
/// (lines cited at gastown commit a8bd79bf8: target or self 80-93, the `hooked` query 121-131,
/// nothing hooked → exit 0 162-175, another bead 177-180, incomplete 200-205, the update
/// 224-236; `internal/cmd/sling_target.go` `resolveTargetAgent` 20-44; `internal/cmd/handoff.go`
/// `resolvePathToSession` 686-738 and `getSessionPane` 1232-1243):
/// - the target is resolved through its tmux session (a worker whose session is gone cannot
///   be named); without a target it acts on the caller's own identity, which a caller
///   without `GT_ROLE` (such as the controller) does not have;
/// - it looks for a bead with status `hooked` assigned to that agent: none (e.g. the agent
///   has started, `in_progress`) prints "No work hooked" and exits 0 **without changing
///   anything**;
/// - a named bead must be the one hooked; unfinished work needs `--force`;
/// - the bead goes back to `open` without an assignee.
pub fn unsling(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    steps(args, st, cfg, ctx).unwrap_or_else(|ended| ended)
}

/// The steps of an unsling; `Err` is the outcome the call ends with early.
fn steps(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Result<Outcome, Outcome> {
    let p = parse(args, UNSLING).map_err(|e| usage_error("unsling", &e))?;
    if p.bool("help") {
        return Ok(Outcome::ok(format!(
            "Remove work from an agent's hook (the inverse of sling/hook).\n\nUsage:\n  {UNSLING_LINE}\n"
        )));
    }
    let (bead_arg, target) = operands(&p.positionals)?;
    let agent = agent(target, st, cfg, ctx)?;
    let Some((hooked_id, title)) = hooked_by(st, &agent) else {
        return Ok(Outcome::ok(format!("ℹ No work hooked for {agent}\n")));
    };
    if let Some(wanted) = bead_arg
        && wanted != hooked_id
    {
        return Err(run_error(
            UNSLING_LINE,
            &format!("bead {wanted} is not hooked (current hook: {hooked_id})"),
        ));
    }
    // The bead is `hooked`, so never complete (closed).
    if !p.bool("force") {
        return Err(run_error(
            UNSLING_LINE,
            &format!("hooked work {hooked_id} is incomplete ({title})\n  Use --force to unsling anyway"),
        ));
    }
    let mut out = format!("🪝 Unslinging {hooked_id} from {agent}...\n");
    if p.bool("dry-run") {
        out.push_str(&format!("Would unsling hooked bead from {agent}\n"));
        return Ok(Outcome::ok(out));
    }
    reopen(st, ctx, &hooked_id);
    out.push_str(&format!(
        "✓ Work removed from hook\n  Agent {agent} hook cleared (was: {hooked_id})\n"
    ));
    Ok(Outcome::ok(out).changed())
}

/// (bead, target) from the operands: one operand is a target when it names an agent.
fn operands(positionals: &[String]) -> Result<(Option<&str>, Option<&str>), Outcome> {
    match positionals {
        [] => Ok((None, None)),
        [one] if is_agent_target(one) => Ok((None, Some(one.as_str()))),
        [one] => Ok((Some(one.as_str()), None)),
        [bead, target] => Ok((Some(bead.as_str()), Some(target.as_str()))),
        more => Err(run_error(
            UNSLING_LINE,
            &format!("accepts at most 2 arg(s), received {}", more.len()),
        )),
    }
}

/// The agent to unsling from: the target's, or the caller's own identity, which a caller
/// without `GT_ROLE` (such as the controller) does not have.
fn agent(target: Option<&str>, st: &mut State, cfg: &Config, ctx: &Ctx) -> Result<String, Outcome> {
    if let Some(t) = target {
        return resolve_target_agent(t, st, cfg)
            .map_err(|e| run_error(UNSLING_LINE, &format!("resolving target agent: {e}")));
    }
    match (&ctx.env_gt_role, &ctx.env_gt_polecat) {
        (None, None) => Err(run_error(
            UNSLING_LINE,
            "detecting agent identity: cannot determine agent identity (role: unknown)",
        )),
        _ => Err(Outcome::fail(
            "Error: gt unsling without a target as an agent is not supported by fake-gastown\n",
        )),
    }
}

/// The first bead (in `bd list` order) with status `hooked` assigned to `agent`: (ID, title).
fn hooked_by(st: &mut State, agent: &str) -> Option<(String, String)> {
    let mut hooked: Vec<(i64, std::cmp::Reverse<u64>, String, String)> = Vec::new();
    for id in st.bead_ids() {
        if let Some(b) = st.loaded_bead(&id)
            && b.status == "hooked"
            && b.assignee.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(agent))
        {
            hooked.push((
                b.priority,
                std::cmp::Reverse(b.created_at_ms),
                id.clone(),
                b.title.clone(),
            ));
        }
    }
    hooked.sort();
    hooked.into_iter().next().map(|(_, _, id, title)| (id, title))
}

/// Frees the bead's polecat and puts the bead back to `open` without an assignee.
fn reopen(st: &mut State, ctx: &Ctx, id: &str) {
    let previous = st.bead(id).and_then(|b| b.assignee.clone());
    if let Some((rig, name)) = previous.as_deref().and_then(parse_assignee)
        && let Some(pc) = st.polecat_mut(rig, name)
    {
        pc.issue = None;
        pc.last_activity_ms = ctx.now_ms;
    }
    if let Some(b) = st.bead_mut(id) {
        crate::bd::set_status(b, "open", ctx.now_ms);
        b.assignee = None;
        b.updated_at_ms = ctx.now_ms;
    }
}

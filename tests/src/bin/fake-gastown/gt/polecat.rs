//! `gt polecat status|list`: the workers as `gt` reports them, and the fake's own
//! `gt _end-session` (test support).

use serde_json::{Value, json};

use crate::args::{Flag, Kind, flag, parse, split_verb};
use crate::clock::gt_time;
use crate::config::Config;
use crate::records::Polecat;
use crate::state::State;
use crate::{Ctx, Outcome};

use super::{JSON_ONLY, parse_target, session_name, usage_error};

const POLECAT_LIST: &[Flag] = &[flag("json", None, Kind::Bool), flag("all", None, Kind::Bool)];

/// `gt _end-session <rig>/<name>` (test support only, not a real command): the polecat's tmux
/// session is gone, as after `tmux kill-session`, a crash or a reboot. Its bead is untouched.
pub fn end_session(args: &[String], st: &mut State, ctx: &Ctx) -> Outcome {
    let [target] = args else {
        return Outcome::fail("usage: gt _end-session <rig>/<name>\n");
    };
    let Some((rig, name)) = target.split_once('/') else {
        return Outcome::fail("usage: gt _end-session <rig>/<name>\n");
    };
    let name = name.strip_prefix("polecats/").unwrap_or(name);
    match st.polecat_mut(rig, name) {
        Some(pc) => {
            pc.session_ended = true;
            pc.last_activity_ms = ctx.now_ms;
            Outcome::ok(format!("ended the session of {rig}/{name}\n")).changed()
        }
        None => Outcome::fail(format!("Error: polecat '{rig}/{name}' not found\n")),
    }
}

/// Polecat state as `gt polecat status` reports it, derived from its bead.
fn polecat_state(st: &mut State, pc: &Polecat) -> &'static str {
    match pc.issue.as_deref().and_then(|id| st.bead(id)) {
        Some(b) if b.is_active() => "working",
        Some(b) if b.status == "closed" => "done",
        _ => "idle",
    }
}

fn polecat_json(st: &mut State, pc: &Polecat, cfg: &Config, ctx: &Ctx) -> Value {
    let state = polecat_state(st, pc);
    let running = state == "working" && !pc.session_ended;
    json!({
        "rig": pc.rig,
        "name": pc.name,
        "state": state,
        "issue": pc.issue,
        "clone_path": ctx.town.join(&pc.rig).join("polecats").join(&pc.name).display().to_string(),
        "branch": pc.branch,
        "session_running": running,
        "session_id": session_name(cfg, &pc.name),
        "attached": false,
        "windows": if running { 1 } else { 0 },
        "created_at": gt_time(pc.created_at_ms),
        "last_activity": gt_time(pc.last_activity_ms),
    })
}
pub fn polecat(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let (sub, rest) = match split_verb(args, &[]) {
        Ok(v) => v,
        Err(e) => return usage_error("polecat", &e),
    };
    match sub.as_deref() {
        Some("status") => status(&rest, st, cfg, ctx).unwrap_or_else(|ended| ended),
        Some("list") => list(&rest, st, cfg, ctx),
        Some(other) => Outcome::fail(format!("Error: unknown command \"{other}\" for \"gt polecat\"\n")),
        None => Outcome::ok("Usage:\n  gt polecat [status|list]\n"),
    }
}

/// `gt polecat status <rig>/<name>`; reading the bead applies its auto progress.
fn status(rest: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Result<Outcome, Outcome> {
    let p = parse(rest, JSON_ONLY).map_err(|e| usage_error("polecat", &e))?;
    let [target] = p.positionals.as_slice() else {
        return Err(usage_error("polecat", "accepts 1 arg(s): <rig>/<name>"));
    };
    let t = parse_target(target, cfg).map_err(|e| Outcome::fail(format!("Error: {e}\n")))?;
    let Some(name) = t.name else {
        return Err(Outcome::fail("Error: polecat status needs <rig>/<name>\n"));
    };
    let Some(pc) = st.polecat(&t.rig, &name).cloned() else {
        return Err(Outcome::fail(format!("Error: polecat '{}/{name}' not found\n", t.rig)));
    };
    let mut changed = false;
    if let Some(issue) = &pc.issue
        && let Some(b) = st.bead_mut(issue)
    {
        changed = b.auto_progress(cfg, ctx.now_ms);
    }
    let v = polecat_json(st, &pc, cfg, ctx);
    let out = if p.bool("json") {
        format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
    } else {
        format!(
            "Polecat: {}/{}\n  State: {}\n  Issue: {}\n  Session: {}\n",
            t.rig,
            name,
            v["state"].as_str().unwrap_or(""),
            v["issue"].as_str().unwrap_or("(none)"),
            v["session_id"].as_str().unwrap_or("")
        )
    };
    Ok(Outcome {
        changed,
        ..Outcome::ok(out)
    })
}

/// `gt polecat list [rig]`.
fn list(rest: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let p = match parse(rest, POLECAT_LIST) {
        Ok(p) => p,
        Err(e) => return usage_error("polecat", &e),
    };
    let rig = p.positionals.first().map(String::as_str);
    let rows: Vec<Value> = st
        .polecats()
        .iter()
        .filter(|pc| rig.is_none_or(|r| pc.rig == r))
        .map(|pc| polecat_json(st, pc, cfg, ctx))
        .collect();
    let out = if p.bool("json") {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&Value::Array(rows)).unwrap_or_default()
        )
    } else {
        rows.iter()
            .map(|v| {
                format!(
                    "{}/{}  {}  {}\n",
                    v["rig"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or(""),
                    v["state"].as_str().unwrap_or(""),
                    v["issue"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    Outcome::ok(out)
}

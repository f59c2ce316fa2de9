//! `gt` (Gas Town): sling, unsling, status, polecat status/list, and stubs for hook, mail,
//! convoy and nudge.

use crate::args::{Flag, Kind, Parsed, flag, parse, split_verb};
use crate::store::{Config, Convoy, Polecat, State, gt_time};
use crate::{Ctx, Outcome};
use serde_json::{Value, json};
use std::collections::HashMap;

const GLOBAL: &[Flag] = &[flag("version", None, Kind::Bool)];

const SLING: &[Flag] = &[
    flag("message", Some('m'), Kind::Value),
    flag("subject", Some('s'), Kind::Value),
    flag("dry-run", Some('n'), Kind::Bool),
    flag("on", None, Kind::Value),
    flag("var", None, Kind::Multi),
    flag("args", Some('a'), Kind::Value),
    flag("stdin", None, Kind::Bool),
    flag("create", None, Kind::Bool),
    flag("force", None, Kind::Bool),
    flag("account", None, Kind::Value),
    flag("agent", None, Kind::Value),
    flag("no-convoy", None, Kind::Bool),
    flag("convoy", None, Kind::Value),
    flag("owned", None, Kind::Bool),
    flag("hook-raw-bead", None, Kind::Bool),
    flag("no-merge", None, Kind::Bool),
    flag("merge", None, Kind::Value),
    flag("no-boot", None, Kind::Bool),
    flag("max-concurrent", None, Kind::Value),
    flag("base-branch", None, Kind::Value),
    flag("naked", None, Kind::Bool),
    flag("quality", Some('q'), Kind::Value),
];

const UNSLING: &[Flag] = &[
    flag("force", Some('f'), Kind::Bool),
    flag("dry-run", Some('n'), Kind::Bool),
];

const JSON_ONLY: &[Flag] = &[flag("json", None, Kind::Bool)];

const POLECAT_LIST: &[Flag] = &[flag("json", None, Kind::Bool), flag("all", None, Kind::Bool)];

fn usage_error(cmd: &str, msg: &str) -> Outcome {
    let line = match cmd {
        "sling" => "gt sling <bead> <target> [flags]",
        "unsling" => "gt unsling <bead> [target] [flags]",
        "polecat" => "gt polecat [command]",
        "status" => "gt status [flags]",
        _ => "gt [command]",
    };
    Outcome::fail(format!(
        "Error: {msg}\nUsage:\n  {line}\n\nRun 'gt {cmd} --help' for usage.\n"
    ))
}

/// The verb of a `gt` command line (for fault matching), if any.
pub fn verb(args: &[String]) -> String {
    split_verb(args, GLOBAL).ok().and_then(|(v, _)| v).unwrap_or_default()
}

pub fn run(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let (verb, rest) = match split_verb(args, GLOBAL) {
        Ok(v) => v,
        Err(e) => return usage_error("", &e),
    };
    let Some(verb) = verb else {
        if args.iter().any(|a| a == "--version") {
            return Outcome::ok("gt version 0.0.0-fake (fake-gastown)\n");
        }
        return Outcome::ok("Gas Town (fake) - multi-agent workspace manager\n\nUsage:\n  gt [command]\n");
    };
    match verb.as_str() {
        "sling" => sling(&rest, st, cfg, ctx),
        "unsling" | "unhook" => unsling(&rest, st, cfg, ctx),
        "_end-session" if ctx.internal => end_session(&rest, st, ctx),
        "status" => status(&rest, st, cfg, ctx),
        "polecat" | "polecats" => polecat(&rest, st, cfg, ctx),
        "version" => Outcome::ok("gt version 0.0.0-fake (fake-gastown)\n"),
        // Minimal stubs: they succeed with human text and change nothing.
        "hook" => Outcome::ok("🪝 Hook is empty\n"),
        "mail" => match rest.first().map(String::as_str) {
            Some("send") => Outcome::ok(format!(
                "✓ Message sent to {}\n",
                rest.get(1).map(String::as_str).unwrap_or("mayor/")
            )),
            _ => Outcome::ok("📬 Inbox: 0 messages (0 unread)\n"),
        },
        "convoy" => convoy(&rest, st),
        "nudge" => Outcome::ok(format!(
            "✓ Nudged {}\n",
            rest.first().map(String::as_str).unwrap_or("mayor")
        )),
        other => Outcome::fail(format!(
            "Error: unknown command \"{other}\" for \"gt\"\nRun 'gt --help' for usage.\n"
        )),
    }
}

/// A sling/unsling/polecat target: a rig, optionally with a polecat name.
struct Target {
    rig: String,
    name: Option<String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_target(target: &str, cfg: &Config) -> Result<Target, String> {
    let parts: Vec<&str> = target.split('/').collect();
    let (rig, name) = match parts.as_slice() {
        [rig] => (*rig, None),
        [rig, name] => (*rig, Some(*name)),
        [rig, "polecats", name] => (*rig, Some(*name)),
        _ => {
            return Err(format!("invalid target \"{target}\" (want <rig> or <rig>/<name>)"));
        }
    };
    if rig.is_empty() || rig.contains(['-', '.', ' ']) || rig == "hq" {
        return Err(format!(
            "invalid rig name \"{rig}\": rig names may not contain '-', '.', '/' or spaces, and 'hq' is reserved"
        ));
    }
    let rigs = cfg.rigs();
    if !rigs.iter().any(|r| r == rig) {
        return Err(format!("rig \"{rig}\" not found (known rigs: {})", rigs.join(", ")));
    }
    if let Some(n) = name
        && !valid_name(n)
    {
        return Err(format!("invalid polecat name \"{n}\""));
    }
    Ok(Target {
        rig: rig.to_string(),
        name: name.map(str::to_string),
    })
}

/// `<rig>/polecats/<Name>` split back into (rig, name).
fn parse_assignee(a: &str) -> Option<(&str, &str)> {
    let mut parts = a.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(rig), Some("polecats"), Some(name)) => Some((rig, name)),
        _ => None,
    }
}

fn assignee(rig: &str, name: &str) -> String {
    format!("{rig}/polecats/{name}")
}

/// A bead other than `except` that the polecat is busy with (hooked or in progress), if any.
fn busy_with(st: &State, rig: &str, name: &str, except: &str) -> Option<String> {
    st.busy()
        .remove(&assignee(rig, name))
        .and_then(|ids| ids.into_iter().find(|id| id != except))
}

/// The first free name of the rig's pool (then `Name2`, `Name3`, ... when all are busy).
fn allocate_name(st: &State, cfg: &Config, rig: &str) -> String {
    let busy = st.busy();
    let pool = cfg.polecat_names();
    let mut round = 1u64;
    loop {
        for base in &pool {
            let name = if round == 1 {
                base.clone()
            } else {
                format!("{base}{round}")
            };
            if !busy.contains_key(&assignee(rig, &name)) {
                return name;
            }
        }
        round += 1;
    }
}

fn refused_by_role(ctx: &Ctx) -> Option<Outcome> {
    if let Some(polecat) = &ctx.env_gt_polecat {
        return Some(Outcome::fail(format!(
            "Error: polecats cannot sling (use gt done for handoff) [GT_POLECAT={polecat}]\n"
        )));
    }
    ctx.env_gt_role.as_ref().map(|role| {
        Outcome::fail(format!(
            "Error: gt sling refused: the caller is a Gas Town agent (GT_ROLE={role}); agents cannot sling\n"
        ))
    })
}

fn sling(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let p: Parsed = match parse(args, SLING) {
        Ok(p) => p,
        Err(e) => return usage_error("sling", &e),
    };
    if p.bool("help") {
        return Outcome::ok(
            "Usage:\n  gt sling <bead> <target> [flags]\n\nFlags:\n      --merge string         Merge strategy: direct|mr|local\n      --agent string         Agent runtime\n      --base-branch string   Base branch\n      --no-convoy            Skip auto-convoy\n      --force                Re-sling to another target\n  -n, --dry-run              Show what would be done\n",
        );
    }
    if let Some(refusal) = refused_by_role(ctx) {
        return refusal;
    }
    let (bead_id, target) = match p.positionals.as_slice() {
        [b, t] => (b.as_str(), t.as_str()),
        [] => return usage_error("sling", "requires at least 1 arg(s), only received 0"),
        [_] => {
            return Outcome::fail("Error: no target given and not running as an agent: use gt sling <bead> <rig>\n");
        }
        _ => {
            return Outcome::fail("Error: batch sling (several beads) is not supported by fake-gastown\n");
        }
    };
    let merge = p.value("merge");
    if let Some(m) = merge
        && !matches!(m, "direct" | "mr" | "local")
    {
        return Outcome::fail(format!(
            "Error: invalid --merge value \"{m}\": must be direct, mr or local\n"
        ));
    }
    let target = match parse_target(target, cfg) {
        Ok(t) => t,
        Err(e) => return Outcome::fail(format!("Error: {e}\n")),
    };
    let force = p.bool("force");
    let dry_run = p.bool("dry-run");
    let Some(bead) = st.bead(bead_id) else {
        return Outcome::fail(format!("Error: bead '{bead_id}' not found\n"));
    };
    if matches!(bead.status.as_str(), "closed" | "tombstone" | "deferred") {
        return Outcome::fail(format!(
            "Error: cannot sling {bead_id}: bead is {} (only open work can be slung)\n",
            bead.status
        ));
    }
    let current = bead
        .assignee
        .as_deref()
        .filter(|_| bead.is_active())
        .and_then(parse_assignee)
        .map(|(r, n)| (r.to_string(), n.to_string()));
    if let Some((rig, name)) = &current {
        let same = *rig == target.rig && target.name.as_ref().is_none_or(|n| n == name);
        if same {
            return Outcome::ok(format!(
                "✓ {bead_id} is already slung to {} (status={}); nothing to do\n",
                assignee(rig, name),
                bead.status
            ));
        }
        if !force {
            return Outcome::fail(format!(
                "Error: {bead_id} is already hooked by {} (status={}); use --force to re-sling it to {}\n",
                assignee(rig, name),
                bead.status,
                target.rig
            ));
        }
    }
    let title = bead.title.clone();
    let name = match &target.name {
        Some(n) => {
            if let Some(other) = busy_with(st, &target.rig, n, bead_id)
                && !force
            {
                return Outcome::fail(format!(
                    "Error: polecat {} already has work hooked ({other}); use --force\n",
                    assignee(&target.rig, n)
                ));
            }
            n.clone()
        }
        None => allocate_name(st, cfg, &target.rig),
    };
    let who = assignee(&target.rig, &name);
    if let Some(c) = p.value("convoy")
        && st.convoy(c).is_none()
    {
        return Outcome::fail(format!("Error: convoy '{c}' not found\n"));
    }
    if dry_run {
        return Outcome::ok(format!("Would sling {bead_id} to {who} (dry run: nothing changed)\n"));
    }

    let mut out = format!("🎯 Slinging {bead_id} to {}...\n", target.rig);
    if let Some((rig, name)) = &current {
        out.push_str(&format!("↪ Released {} (--force)\n", assignee(rig, name)));
        if let Some(pc) = st.polecat_mut(rig, name) {
            pc.issue = None;
            pc.last_activity_ms = ctx.now_ms;
        }
    }
    let branch = format!("polecat/{name}/{bead_id}");
    match st.polecat_mut(&target.rig, &name) {
        Some(pc) => {
            pc.issue = Some(bead_id.to_string());
            pc.session_ended = false;
            pc.branch = Some(branch);
            pc.agent = p.value("agent").map(str::to_string);
            pc.base_branch = p.value("base-branch").map(str::to_string);
            pc.last_activity_ms = ctx.now_ms;
        }
        None => st.add_polecat(Polecat {
            rig: target.rig.clone(),
            name: name.clone(),
            issue: Some(bead_id.to_string()),
            branch: Some(branch),
            agent: p.value("agent").map(str::to_string),
            base_branch: p.value("base-branch").map(str::to_string),
            created_at_ms: ctx.now_ms,
            last_activity_ms: ctx.now_ms,
            session_ended: false,
        }),
    }
    out.push_str(&format!("✓ Allocated polecat: {who}\n"));

    if let Some(b) = st.bead_mut(bead_id) {
        b.status = "hooked".to_string();
        b.assignee = Some(who.clone());
        b.updated_at_ms = ctx.now_ms;
        b.slung_at_ms = Some(ctx.now_ms);
        b.merge = merge.map(str::to_string);
        b.closed_at_ms = None;
        b.close_reason = None;
    }
    out.push_str("✓ Work attached to hook (status=hooked)\n");

    if let Some(c) = p.value("convoy") {
        if let Some(cv) = st.convoy_mut(c)
            && !cv.beads.iter().any(|b| b == bead_id)
        {
            cv.beads.push(bead_id.to_string());
        }
        out.push_str(&format!("🚚 Added to convoy {c}\n"));
    } else if !p.bool("no-convoy") {
        let Some(id) = st.new_convoy_id(ctx.seq) else {
            return Outcome::fail("Error: could not generate a convoy ID\n");
        };
        out.push_str(&format!("🚚 Created convoy {id} tracking {bead_id}\n"));
        st.add_convoy(Convoy {
            id,
            title: format!("Work: {title}"),
            beads: vec![bead_id.to_string()],
            created_at_ms: ctx.now_ms,
            created_by: "mayor".to_string(),
            order: 0,
        });
    }
    out.push_str(&format!(
        "▶ Started polecat session {}{}\n",
        session_name(cfg, &name),
        merge.map(|m| format!(" (merge={m})")).unwrap_or_default()
    ));
    Outcome {
        dispatched: true,
        ..Outcome::ok(out).changed()
    }
}

/// A command that failed in its `RunE`: cobra prints `Error: <err>` and the usage (gastown's
/// root command sets no `SilenceUsage`), and `gt` exits 1 (gastown `internal/cmd/root.go`
/// `Execute`).
fn run_error(line: &str, msg: &str) -> Outcome {
    Outcome::fail(format!("Error: {msg}\nUsage:\n  {line}\n"))
}

const UNSLING_LINE: &str = "gt unsling [bead-id] [target] [flags]";

/// The tmux session of a polecat: `<rig prefix>-<name in lower case>` (gastown
/// `internal/session/names.go` `PolecatSessionName`; `resolvePathToSession` lower-cases the
/// name). The fake has one bead prefix for every rig.
fn session_name(cfg: &Config, name: &str) -> String {
    format!("{}-{}", cfg.prefix(), name.to_lowercase())
}

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

/// `gt unsling [bead-id] [target]`, as gastown `internal/cmd/unsling.go` `runUnslingWith`:
/// - the target is resolved through its tmux session (a worker whose session is gone cannot
///   be named); without a target it acts on the caller's own identity, which a caller
///   without `GT_ROLE` (such as the controller) does not have;
/// - it looks for a bead with status `hooked` assigned to that agent: none (e.g. the agent
///   has started, `in_progress`) prints "No work hooked" and exits 0 **without changing
///   anything**;
/// - a named bead must be the one hooked; unfinished work needs `--force`;
/// - the bead goes back to `open` without an assignee.
fn unsling(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let p = match parse(args, UNSLING) {
        Ok(p) => p,
        Err(e) => return usage_error("unsling", &e),
    };
    if p.bool("help") {
        return Outcome::ok(format!(
            "Remove work from an agent's hook (the inverse of sling/hook).\n\nUsage:\n  {UNSLING_LINE}\n"
        ));
    }
    let (bead_arg, target) = match p.positionals.as_slice() {
        [] => (None, None),
        [one] if is_agent_target(one) => (None, Some(one.as_str())),
        [one] => (Some(one.as_str()), None),
        [bead, target] => (Some(bead.as_str()), Some(target.as_str())),
        more => {
            return run_error(
                UNSLING_LINE,
                &format!("accepts at most 2 arg(s), received {}", more.len()),
            );
        }
    };
    let agent = match target {
        Some(t) => match resolve_target_agent(t, st, cfg) {
            Ok(agent) => agent,
            Err(e) => return run_error(UNSLING_LINE, &format!("resolving target agent: {e}")),
        },
        None => match (&ctx.env_gt_role, &ctx.env_gt_polecat) {
            (None, None) => {
                return run_error(
                    UNSLING_LINE,
                    "detecting agent identity: cannot determine agent identity (role: unknown)",
                );
            }
            _ => {
                return Outcome::fail(
                    "Error: gt unsling without a target as an agent is not supported by fake-gastown\n",
                );
            }
        },
    };
    // The agent's hooked beads, in `bd list` order.
    let mut hooked: Vec<(i64, std::cmp::Reverse<u64>, String, String)> = Vec::new();
    for id in st.bead_ids() {
        if let Some(b) = st.loaded_bead(&id)
            && b.status == "hooked"
            && b.assignee.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(&agent))
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
    let Some((_, _, hooked_id, title)) = hooked.into_iter().next() else {
        return Outcome::ok(format!("ℹ No work hooked for {agent}\n"));
    };
    if let Some(wanted) = bead_arg
        && wanted != hooked_id
    {
        return run_error(
            UNSLING_LINE,
            &format!("bead {wanted} is not hooked (current hook: {hooked_id})"),
        );
    }
    // The bead is `hooked`, so never complete (closed).
    if !p.bool("force") {
        return run_error(
            UNSLING_LINE,
            &format!("hooked work {hooked_id} is incomplete ({title})\n  Use --force to unsling anyway"),
        );
    }
    let mut out = format!("🪝 Unslinging {hooked_id} from {agent}...\n");
    if p.bool("dry-run") {
        out.push_str(&format!("Would unsling hooked bead from {agent}\n"));
        return Outcome::ok(out);
    }
    let previous = st.bead(&hooked_id).and_then(|b| b.assignee.clone());
    if let Some((rig, name)) = previous.as_deref().and_then(parse_assignee)
        && let Some(pc) = st.polecat_mut(rig, name)
    {
        pc.issue = None;
        pc.last_activity_ms = ctx.now_ms;
    }
    if let Some(b) = st.bead_mut(&hooked_id) {
        crate::bd::set_status(b, "open", ctx.now_ms);
        b.assignee = None;
        b.updated_at_ms = ctx.now_ms;
    }
    out.push_str(&format!(
        "✓ Work removed from hook\n  Agent {agent} hook cleared (was: {hooked_id})\n"
    ));
    Outcome::ok(out).changed()
}

/// `gt _end-session <rig>/<name>` (test support only, not a real command): the polecat's tmux
/// session is gone, as after `tmux kill-session`, a crash or a reboot. Its bead is untouched.
fn end_session(args: &[String], st: &mut State, ctx: &Ctx) -> Outcome {
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

fn status(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let p = match parse(args, JSON_ONLY) {
        Ok(p) => p,
        Err(e) => return usage_error("status", &e),
    };
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for id in st.bead_ids() {
        if let Some(b) = st.loaded_bead(&id) {
            *by_status.entry(b.status.clone()).or_default() += 1;
        }
    }
    let count = |s: &str| by_status.get(s).copied().unwrap_or(0);
    let busy = st.busy();
    let working = st
        .polecats()
        .iter()
        .filter(|pc| busy.contains_key(&assignee(&pc.rig, &pc.name)))
        .count();
    let convoys = st.convoys().len();
    if p.bool("json") {
        let v = json!({
            "town": ctx.town.display().to_string(),
            "rigs": cfg.rigs(),
            "polecats_working": working,
            "beads": {
                "open": count("open"),
                "hooked": count("hooked"),
                "in_progress": count("in_progress"),
                "closed": count("closed"),
            },
            "convoys": convoys,
        });
        return Outcome::ok(format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()));
    }
    Outcome::ok(format!(
        "🏙  Gas Town (fake) at {}\nRigs: {}\nPolecats working: {working}\nBeads: {} open, {} hooked, {} in progress, {} closed\nConvoys: {}\n",
        ctx.town.display(),
        cfg.rigs().join(", "),
        count("open"),
        count("hooked"),
        count("in_progress"),
        count("closed"),
        convoys,
    ))
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

fn polecat(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    let (sub, rest) = match split_verb(args, &[]) {
        Ok(v) => v,
        Err(e) => return usage_error("polecat", &e),
    };
    match sub.as_deref() {
        Some("status") => {
            let p = match parse(&rest, JSON_ONLY) {
                Ok(p) => p,
                Err(e) => return usage_error("polecat", &e),
            };
            let [target] = p.positionals.as_slice() else {
                return usage_error("polecat", "accepts 1 arg(s): <rig>/<name>");
            };
            let t = match parse_target(target, cfg) {
                Ok(t) => t,
                Err(e) => return Outcome::fail(format!("Error: {e}\n")),
            };
            let Some(name) = t.name else {
                return Outcome::fail("Error: polecat status needs <rig>/<name>\n");
            };
            let Some(pc) = st.polecat(&t.rig, &name).cloned() else {
                return Outcome::fail(format!("Error: polecat '{}/{name}' not found\n", t.rig));
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
            Outcome {
                changed,
                ..Outcome::ok(out)
            }
        }
        Some("list") => {
            let p = match parse(&rest, POLECAT_LIST) {
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
        Some(other) => Outcome::fail(format!("Error: unknown command \"{other}\" for \"gt polecat\"\n")),
        None => Outcome::ok("Usage:\n  gt polecat [status|list]\n"),
    }
}

fn convoy(args: &[String], st: &mut State) -> Outcome {
    match args.first().map(String::as_str) {
        Some("status" | "show") => match args.get(1).and_then(|id| st.convoy(id)) {
            Some(c) => Outcome::ok(format!(
                "🚚 {}: {}\n  Tracking: {}\n",
                c.id,
                c.title,
                c.beads.join(", ")
            )),
            None => Outcome::fail("Error: convoy not found\n"),
        },
        Some("list") | None => Outcome::ok(
            st.convoys()
                .iter()
                .map(|c| format!("🚚 {}  {}  ({} beads)\n", c.id, c.title, c.beads.len()))
                .collect::<String>(),
        ),
        Some(_) => Outcome::ok("✓ Done\n"),
    }
}

//! `gt sling <bead> <target>`: hooks an open bead on a polecat of the target rig (allocating
//! one from the rig's name pool), tracks it in a convoy and starts the polecat's session.

use crate::args::{Flag, Kind, flag, parse};
use crate::config::Config;
use crate::records::{Convoy, Polecat};
use crate::state::State;
use crate::{Ctx, Outcome};

use super::{Target, assignee, parse_assignee, parse_target, session_name, usage_error};

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

const HELP: &str = "Usage:\n  gt sling <bead> <target> [flags]\n\nFlags:\n      --merge string         Merge strategy: direct|mr|local\n      --agent string         Agent runtime\n      --base-branch string   Base branch\n      --no-convoy            Skip auto-convoy\n      --force                Re-sling to another target\n  -n, --dry-run              Show what would be done\n";

/// A sling request, as its command line asks for it.
struct Request {
    bead_id: String,
    target: Target,
    merge: Option<String>,
    force: bool,
    dry_run: bool,
    convoy: Option<String>,
    no_convoy: bool,
    agent: Option<String>,
    base_branch: Option<String>,
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

pub fn sling(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    steps(args, st, cfg, ctx).unwrap_or_else(|ended| ended)
}

/// The steps of a sling; `Err` is the outcome the call ends with early (an error, help, a
/// no-op).
fn steps(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Result<Outcome, Outcome> {
    let req = request(args, cfg, ctx)?;
    let (current, title) = check_bead(st, &req)?;
    let name = choose_polecat(st, cfg, &req)?;
    let who = assignee(&req.target.rig, &name);
    if let Some(c) = &req.convoy
        && st.convoy(c).is_none()
    {
        return Err(Outcome::fail(format!("Error: convoy '{c}' not found\n")));
    }
    if req.dry_run {
        let bead_id = &req.bead_id;
        return Ok(Outcome::ok(format!(
            "Would sling {bead_id} to {who} (dry run: nothing changed)\n"
        )));
    }
    let mut out = format!("🎯 Slinging {} to {}...\n", req.bead_id, req.target.rig);
    out.push_str(&hook(st, ctx, &req, current, &name));
    out.push_str(&track_in_convoy(st, ctx, &req, &title)?);
    out.push_str(&format!(
        "▶ Started polecat session {}{}\n",
        session_name(cfg, &name),
        req.merge.as_ref().map(|m| format!(" (merge={m})")).unwrap_or_default()
    ));
    Ok(Outcome {
        dispatched: true,
        ..Outcome::ok(out).changed()
    })
}

/// The command line: help, the caller's role, the bead and target, the merge strategy.
fn request(args: &[String], cfg: &Config, ctx: &Ctx) -> Result<Request, Outcome> {
    let p = parse(args, SLING).map_err(|e| usage_error("sling", &e))?;
    if p.bool("help") {
        return Err(Outcome::ok(HELP));
    }
    if let Some(refusal) = refused_by_role(ctx) {
        return Err(refusal);
    }
    let (bead_id, target) = match p.positionals.as_slice() {
        [b, t] => (b.clone(), t.as_str()),
        [] => return Err(usage_error("sling", "requires at least 1 arg(s), only received 0")),
        [_] => {
            return Err(Outcome::fail(
                "Error: no target given and not running as an agent: use gt sling <bead> <rig>\n",
            ));
        }
        _ => {
            return Err(Outcome::fail(
                "Error: batch sling (several beads) is not supported by fake-gastown\n",
            ));
        }
    };
    let merge = p.value("merge");
    if let Some(m) = merge
        && !matches!(m, "direct" | "mr" | "local")
    {
        return Err(Outcome::fail(format!(
            "Error: invalid --merge value \"{m}\": must be direct, mr or local\n"
        )));
    }
    let target = parse_target(target, cfg).map_err(|e| Outcome::fail(format!("Error: {e}\n")))?;
    let owned = |v: Option<&str>| v.map(str::to_string);
    Ok(Request {
        bead_id,
        target,
        merge: owned(merge),
        force: p.bool("force"),
        dry_run: p.bool("dry-run"),
        convoy: owned(p.value("convoy")),
        no_convoy: p.bool("no-convoy"),
        agent: owned(p.value("agent")),
        base_branch: owned(p.value("base-branch")),
    })
}

/// The bead must be open work; a bead already on the target is a no-op, on another target it
/// needs `--force`. Returns its current holder (rig, name) and its title.
fn check_bead(st: &mut State, req: &Request) -> Result<(Option<(String, String)>, String), Outcome> {
    let bead_id = req.bead_id.as_str();
    let Some(bead) = st.bead(bead_id) else {
        return Err(Outcome::fail(format!("Error: bead '{bead_id}' not found\n")));
    };
    if matches!(bead.status.as_str(), "closed" | "tombstone" | "deferred") {
        return Err(Outcome::fail(format!(
            "Error: cannot sling {bead_id}: bead is {} (only open work can be slung)\n",
            bead.status
        )));
    }
    let current = bead
        .assignee
        .as_deref()
        .filter(|_| bead.is_active())
        .and_then(parse_assignee)
        .map(|(r, n)| (r.to_string(), n.to_string()));
    if let Some((rig, name)) = &current {
        let same = *rig == req.target.rig && req.target.name.as_ref().is_none_or(|n| n == name);
        if same {
            return Err(Outcome::ok(format!(
                "✓ {bead_id} is already slung to {} (status={}); nothing to do\n",
                assignee(rig, name),
                bead.status
            )));
        }
        if !req.force {
            return Err(Outcome::fail(format!(
                "Error: {bead_id} is already hooked by {} (status={}); use --force to re-sling it to {}\n",
                assignee(rig, name),
                bead.status,
                req.target.rig
            )));
        }
    }
    Ok((current, bead.title.clone()))
}

/// The named polecat (free, unless `--force`) or the first free name of the rig.
fn choose_polecat(st: &State, cfg: &Config, req: &Request) -> Result<String, Outcome> {
    let Some(n) = &req.target.name else {
        return Ok(allocate_name(st, cfg, &req.target.rig));
    };
    if let Some(other) = busy_with(st, &req.target.rig, n, &req.bead_id)
        && !req.force
    {
        return Err(Outcome::fail(format!(
            "Error: polecat {} already has work hooked ({other}); use --force\n",
            assignee(&req.target.rig, n)
        )));
    }
    Ok(n.clone())
}

/// Releases the current holder (`--force`), puts the bead on polecat `name` and marks it
/// hooked; returns the lines printed for it.
fn hook(st: &mut State, ctx: &Ctx, req: &Request, current: Option<(String, String)>, name: &str) -> String {
    let bead_id = req.bead_id.as_str();
    let mut out = String::new();
    if let Some((rig, name)) = &current {
        out.push_str(&format!("↪ Released {} (--force)\n", assignee(rig, name)));
        if let Some(pc) = st.polecat_mut(rig, name) {
            pc.issue = None;
            pc.last_activity_ms = ctx.now_ms;
        }
    }
    let branch = format!("polecat/{name}/{bead_id}");
    match st.polecat_mut(&req.target.rig, name) {
        Some(pc) => {
            pc.issue = Some(bead_id.to_string());
            pc.session_ended = false;
            pc.branch = Some(branch);
            pc.agent = req.agent.clone();
            pc.base_branch = req.base_branch.clone();
            pc.last_activity_ms = ctx.now_ms;
        }
        None => st.add_polecat(Polecat {
            rig: req.target.rig.clone(),
            name: name.to_string(),
            issue: Some(bead_id.to_string()),
            branch: Some(branch),
            agent: req.agent.clone(),
            base_branch: req.base_branch.clone(),
            created_at_ms: ctx.now_ms,
            last_activity_ms: ctx.now_ms,
            session_ended: false,
        }),
    }
    let who = assignee(&req.target.rig, name);
    out.push_str(&format!("✓ Allocated polecat: {who}\n"));
    if let Some(b) = st.bead_mut(bead_id) {
        b.status = "hooked".to_string();
        b.assignee = Some(who);
        b.updated_at_ms = ctx.now_ms;
        b.slung_at_ms = Some(ctx.now_ms);
        b.merge = req.merge.clone();
        b.closed_at_ms = None;
        b.close_reason = None;
    }
    out.push_str("✓ Work attached to hook (status=hooked)\n");
    out
}

/// Adds the bead to `--convoy`, or to a new convoy unless `--no-convoy`; returns the line
/// printed for it.
fn track_in_convoy(st: &mut State, ctx: &Ctx, req: &Request, title: &str) -> Result<String, Outcome> {
    let bead_id = req.bead_id.as_str();
    if let Some(c) = &req.convoy {
        if let Some(cv) = st.convoy_mut(c)
            && !cv.beads.iter().any(|b| b == bead_id)
        {
            cv.beads.push(bead_id.to_string());
        }
        return Ok(format!("🚚 Added to convoy {c}\n"));
    }
    if req.no_convoy {
        return Ok(String::new());
    }
    let Some(id) = st.new_convoy_id(ctx.seq) else {
        return Err(Outcome::fail("Error: could not generate a convoy ID\n"));
    };
    let line = format!("🚚 Created convoy {id} tracking {bead_id}\n");
    st.add_convoy(Convoy {
        id,
        title: format!("Work: {title}"),
        beads: vec![bead_id.to_string()],
        created_at_ms: ctx.now_ms,
        created_by: "mayor".to_string(),
        order: 0,
    });
    Ok(line)
}

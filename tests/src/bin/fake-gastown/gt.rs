//! `gt` (Gas Town): sling, unsling, status, polecat status/list, and stubs for hook, mail,
//! convoy and nudge.

mod polecat;
mod sling;
mod unsling;

use crate::args::{Flag, Kind, flag, parse, split_verb};
use crate::config::Config;
use crate::state::State;
use crate::{Ctx, Outcome};
use serde_json::json;
use std::collections::HashMap;

const GLOBAL: &[Flag] = &[flag("version", None, Kind::Bool)];

const JSON_ONLY: &[Flag] = &[flag("json", None, Kind::Bool)];

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
        "sling" => sling::sling(&rest, st, cfg, ctx),
        "unsling" | "unhook" => unsling::unsling(&rest, st, cfg, ctx),
        "_end-session" if ctx.internal => polecat::end_session(&rest, st, ctx),
        "status" => status(&rest, st, cfg, ctx),
        "polecat" | "polecats" => polecat::polecat(&rest, st, cfg, ctx),
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

/// A command that failed in its `RunE`: cobra prints `Error: <err>` and the usage (gastown's
/// root command sets no `SilenceUsage`), and `gt` exits 1 (gastown `internal/cmd/root.go`
/// `Execute`).
fn run_error(line: &str, msg: &str) -> Outcome {
    Outcome::fail(format!("Error: {msg}\nUsage:\n  {line}\n"))
}

/// The tmux session of a polecat: `<rig prefix>-<name in lower case>` (gastown
/// `internal/session/names.go` `PolecatSessionName`; `resolvePathToSession` lower-cases the
/// name). The fake has one bead prefix for every rig.
fn session_name(cfg: &Config, name: &str) -> String {
    format!("{}-{}", cfg.prefix(), name.to_lowercase())
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

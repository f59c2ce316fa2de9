//! `bd` (Beads): create, show, update, close, list.

mod list;
mod update;

use crate::args::{Flag, Kind, Parsed, flag, parse, split_verb};
use crate::config::Config;
use crate::records::Bead;
use crate::state::State;
use crate::{Ctx, Outcome};
use serde_json::Value;

/// bd's persistent (root) flags, accepted before or after any sub-command.
const GLOBAL: &[Flag] = &[
    flag("json", None, Kind::Bool),
    flag("actor", None, Kind::Value),
    flag("db", None, Kind::Value),
    flag("no-daemon", None, Kind::Bool),
    flag("sandbox", None, Kind::Bool),
    flag("quiet", Some('q'), Kind::Bool),
    flag("verbose", Some('v'), Kind::Bool),
    flag("readonly", None, Kind::Bool),
    flag("allow-stale", None, Kind::Bool),
    flag("no-auto-flush", None, Kind::Bool),
    flag("no-auto-import", None, Kind::Bool),
];

const CREATE: &[Flag] = &[
    flag("type", Some('t'), Kind::Value),
    flag("priority", Some('p'), Kind::Value),
    flag("description", Some('d'), Kind::Value),
    flag("external-ref", None, Kind::Value),
    flag("labels", Some('l'), Kind::Multi),
    flag("assignee", Some('a'), Kind::Value),
    flag("title", None, Kind::Value),
    flag("silent", None, Kind::Bool),
];

const SHOW: &[Flag] = &[
    flag("id", None, Kind::Multi),
    flag("short", None, Kind::Bool),
    flag("local-time", None, Kind::Bool),
];

const TYPES: &[&str] = &[
    "task",
    "bug",
    "feature",
    "epic",
    "chore",
    "message",
    "merge-request",
    "molecule",
    "gate",
    "agent",
    "role",
    "convoy",
    "event",
];

fn usage(cmd: &str) -> &'static str {
    match cmd {
        "create" => {
            "bd create [title] [flags]\n\nFlags:\n  -t, --type string           Issue type (task|bug|feature|epic|chore) (default \"task\")\n  -p, --priority string       Priority (0-4 or P0-P4) (default \"2\")\n  -d, --description string    Issue description\n      --external-ref string   External reference\n  -l, --labels strings        Labels (comma-separated)\n      --silent                Output only the issue ID\n"
        }
        "show" => "bd show [id...] [--id=<id>...] [flags]\n",
        "update" => {
            "bd update [id...] [flags]\n\nFlags:\n  -s, --status string          New status\n  -a, --assignee string        Assignee\n      --set-metadata strings   Set metadata key=value\n"
        }
        "close" => "bd close [id...] [flags]\n\nFlags:\n  -r, --reason string   Reason for closing\n",
        "list" => {
            "bd list [flags]\n\nFlags:\n  -s, --status string   Filter by status\n      --all             Include closed issues\n"
        }
        _ => "bd [command]\n\nAvailable Commands:\n  close, create, list, show, update, version\n",
    }
}

fn usage_error(cmd: &str, msg: &str) -> Outcome {
    Outcome::fail(format!(
        "Error: {msg}\nUsage:\n  {}\nRun 'bd {cmd} --help' for usage.\n",
        usage(cmd)
    ))
}

fn specs(extra: &[Flag]) -> Vec<Flag> {
    GLOBAL.iter().chain(extra).copied().collect()
}

/// The verb of a `bd` command line (for fault matching), if any.
pub fn verb(args: &[String]) -> String {
    split_verb(args, GLOBAL).ok().and_then(|(v, _)| v).unwrap_or_default()
}

pub fn run(args: &[String], st: &mut State, cfg: &Config, ctx: &Ctx) -> Outcome {
    if args.iter().any(|a| a == "--version") && args.len() == 1 {
        return Outcome::ok("bd version 0.0.0-fake (fake-gastown)\n");
    }
    let (verb, rest) = match split_verb(args, GLOBAL) {
        Ok(v) => v,
        Err(e) => return usage_error("", &e),
    };
    let Some(verb) = verb else {
        return Outcome::ok(format!("Usage:\n  {}", usage("")));
    };
    let table = match verb.as_str() {
        "create" | "new" => CREATE,
        "show" | "view" => SHOW,
        "update" => update::UPDATE,
        "close" => update::CLOSE,
        "list" => list::LIST,
        "version" => &[],
        "help" => return Outcome::ok(format!("Usage:\n  {}", usage(""))),
        other => {
            return Outcome::fail(format!(
                "Error: unknown command \"{other}\" for \"bd\"\nRun 'bd --help' for usage.\n"
            ));
        }
    };
    let p = match parse(&rest, &specs(table)) {
        Ok(p) => p,
        Err(e) => return usage_error(&verb, &e),
    };
    if p.bool("help") {
        return Outcome::ok(format!("Usage:\n  {}", usage(&verb)));
    }
    let actor = p
        .value("actor")
        .map(str::to_string)
        .unwrap_or_else(|| ctx.actor.clone());
    let json = p.bool("json");
    match verb.as_str() {
        "create" | "new" => create(&p, st, cfg, ctx, &actor, json),
        "show" | "view" => show(&p, st, cfg, ctx, json),
        "update" => update::update(&p, st, ctx, &actor, json),
        "close" => update::close(&p, st, ctx, json),
        "list" => list::list(&p, st, cfg, ctx, json),
        _ => Outcome::ok("bd version 0.0.0-fake (fake-gastown)\n"),
    }
}

fn parse_priority(v: &str) -> Result<i64, String> {
    let digits = v.strip_prefix('P').or_else(|| v.strip_prefix('p')).unwrap_or(v);
    match digits.parse::<i64>() {
        Ok(n) if (0..=4).contains(&n) => Ok(n),
        _ => Err(format!("invalid priority \"{v}\" (expected 0-4 or P0-P4)")),
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_string());
    s.push('\n');
    s
}

fn split_labels(values: Vec<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for label in values.iter().flat_map(|v| v.split(',')) {
        let label = label.trim();
        if !label.is_empty() && !out.iter().any(|l| l == label) {
            out.push(label.to_string());
        }
    }
    out
}

fn create(p: &Parsed, st: &mut State, cfg: &Config, ctx: &Ctx, actor: &str, json: bool) -> Outcome {
    let title = match (p.positionals.as_slice(), p.value("title")) {
        ([t], None) => t.as_str(),
        ([], Some(t)) => t,
        ([t], Some(f)) if t == f => f,
        ([], None) => return usage_error("create", "title required"),
        ([_], Some(_)) => {
            return usage_error("create", "cannot specify both title argument and --title flag");
        }
        (many, _) => {
            return usage_error("create", &format!("accepts at most 1 arg(s), received {}", many.len()));
        }
    };
    if title.trim().is_empty() {
        return Outcome::fail("Error: title cannot be empty\n");
    }
    let priority = match p.value("priority").map(parse_priority).transpose() {
        Ok(p) => p.unwrap_or(2),
        Err(e) => return Outcome::fail(format!("Error: {e}\n")),
    };
    let issue_type = p.value("type").unwrap_or("task");
    if !TYPES.contains(&issue_type) {
        return Outcome::fail(format!(
            "Error: invalid issue type \"{issue_type}\" (valid: {})\n",
            TYPES.join(", ")
        ));
    }
    let Some(id) = st.new_bead_id(cfg.prefix(), ctx.seq) else {
        return Outcome::fail("Error: could not generate a unique issue ID\n");
    };
    let bead = Bead {
        id: id.clone(),
        title: title.to_string(),
        description: p.value("description").unwrap_or_default().to_string(),
        status: "open".to_string(),
        priority,
        issue_type: issue_type.to_string(),
        assignee: p.value("assignee").filter(|a| !a.is_empty()).map(str::to_string),
        owner: Some(actor.to_string()),
        created_at_ms: ctx.now_ms,
        created_by: actor.to_string(),
        updated_at_ms: ctx.now_ms,
        external_ref: p.value("external-ref").filter(|r| !r.is_empty()).map(str::to_string),
        labels: split_labels(p.values("labels")),
        ..Bead::default()
    };
    let out = if p.bool("silent") {
        format!("{id}\n")
    } else if json {
        pretty(&bead.to_json())
    } else {
        format!(
            "✓ Created issue: {id}\n  Title: {}\n  Priority: P{priority}\n  Status: open\n",
            bead.title
        )
    };
    st.add_bead(bead);
    Outcome {
        created: Some(id),
        ..Outcome::ok(out).changed()
    }
}

fn not_found(id: &str) -> String {
    format!("Error fetching {id}: no issue found matching \"{id}\"\n")
}

fn human(b: &Value) -> String {
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = format!(
        "\n○ {} · {}   [● P{} · {}]\nOwner: {} · Type: {}\nCreated: {} · Updated: {}\n",
        s("id"),
        s("title"),
        b.get("priority").and_then(Value::as_i64).unwrap_or(2),
        s("status").to_uppercase(),
        s("owner"),
        s("issue_type"),
        s("created_at"),
        s("updated_at"),
    );
    if !s("assignee").is_empty() {
        out.push_str(&format!("Assignee: {}\n", s("assignee")));
    }
    if !s("description").is_empty() {
        out.push_str(&format!("\nDESCRIPTION\n{}\n", s("description")));
    }
    out
}

fn show(p: &Parsed, st: &mut State, cfg: &Config, ctx: &Ctx, json: bool) -> Outcome {
    let ids: Vec<String> = p
        .positionals
        .iter()
        .cloned()
        .chain(p.values("id").into_iter().map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Outcome::fail("Error: at least one issue ID is required (use positional args or --id flag)\n");
    }
    let mut changed = false;
    let mut found = Vec::new();
    let mut errors = String::new();
    for id in &ids {
        if let Some(b) = st.bead_mut(id) {
            changed |= b.auto_progress(cfg, ctx.now_ms);
            found.push(b.to_json());
        } else if let Some(c) = st.convoy_json(id) {
            found.push(c);
        } else {
            errors.push_str(&not_found(id));
        }
    }
    // Real `bd show` (beads `cmd/bd/show.go` lines 117-133 and 412-425 at commit fbcee6c62,
    // since v0.50.0 commit dccac5a2c) prints
    // "Error fetching <id>: ..." on stderr for each unknown ID and goes on: it exits 0 with the
    // beads it found, and non-zero only when it found none (with `--json`, a JSON error object
    // on stdout).
    let none_found = found.is_empty();
    let stdout = if json {
        if none_found {
            pretty(&serde_json::json!({"error": "no issues found matching the provided IDs"}))
        } else {
            pretty(&Value::Array(found))
        }
    } else if p.bool("short") {
        found
            .iter()
            .map(|b| {
                format!(
                    "{} [{}] {}\n",
                    b["id"].as_str().unwrap_or(""),
                    b["status"].as_str().unwrap_or(""),
                    b["title"].as_str().unwrap_or("")
                )
            })
            .collect()
    } else {
        found.iter().map(human).collect()
    };
    Outcome {
        code: if none_found { 1 } else { 0 },
        stdout,
        stderr: errors,
        changed,
        ..Outcome::default()
    }
}

/// Changes a bead's status with bd's side effects on `started_at` / `closed_at`.
pub fn set_status(b: &mut Bead, status: &str, now: u64) {
    match status {
        "in_progress" => {
            b.started_at_ms.get_or_insert(now);
        }
        "closed" => {
            b.closed_at_ms.get_or_insert(now);
        }
        _ => {}
    }
    if status != "closed" {
        b.closed_at_ms = None;
        b.close_reason = None;
    }
    if status == "open" {
        b.slung_at_ms = None;
    }
    b.status = status.to_string();
}

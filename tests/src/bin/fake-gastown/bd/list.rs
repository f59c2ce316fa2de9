//! `bd list`: the beads, filtered, sorted and limited as the real `bd list` does it.

use serde_json::Value;

use crate::args::{Flag, Kind, Parsed, flag};
use crate::config::Config;
use crate::records::Bead;
use crate::state::State;
use crate::{Ctx, Outcome};

use super::{pretty, split_labels, usage_error};

pub(super) const LIST: &[Flag] = &[
    flag("status", Some('s'), Kind::Value),
    flag("assignee", Some('a'), Kind::Value),
    flag("label", Some('l'), Kind::Multi),
    flag("type", Some('t'), Kind::Value),
    flag("limit", Some('n'), Kind::Value),
    flag("all", None, Kind::Bool),
];
/// Real `bd list`'s default limit (beads `cmd/bd/list.go`: `IntP("limit", "n", 50, "Limit
/// results (default 50, use 0 for unlimited)")`, since bd v0.42.0).
const LIST_DEFAULT_LIMIT: i64 = 50;

/// `bd list`, as beads `cmd/bd/list.go` does it (lines at beads commit fbcee6c62: the limit
/// flag 1236, the limit resolution 643-652, the default status filter 726-741): without
/// `--all` (or `--status`) closed and
/// pinned beads are hidden; `-l/--label` filters (AND); rows are sorted by priority, then
/// newest first, then ID (`ORDER BY priority ASC, created_at DESC, id ASC`, beads
/// `internal/storage/domain/db/issue_search.go`); at most 50 are printed unless `--limit`
/// says otherwise (`--limit 0` or negative: all), with a hint on stderr when rows were cut.
/// `--all` without `--limit` keeps the limit as bd v0.42.0-v0.49.4 did, unless the town's
/// `bd_all_lifts_limit` models bd >= v0.49.5 (commit 2b90ed1df "bd list --all disables default
/// limit", required by Gas Town since its MinBeadsVersion 0.57.0).
pub(super) fn list(p: &Parsed, st: &mut State, cfg: &Config, ctx: &Ctx, json: bool) -> Outcome {
    let all = p.bool("all");
    let limit = match p.value("limit").map(str::parse::<i64>).transpose() {
        Ok(Some(l)) => l,
        Ok(None) if all && cfg.bd_all_lifts_limit.unwrap_or(false) => 0,
        Ok(None) => LIST_DEFAULT_LIMIT,
        Err(_) => {
            let v = p.value("limit").unwrap_or_default();
            return usage_error(
                "list",
                &format!(
                    "invalid argument \"{v}\" for \"-n, --limit\" flag: strconv.ParseInt: parsing \"{v}\": invalid syntax"
                ),
            );
        }
    };
    let mut changed = false;
    let ids = st.bead_ids();
    for id in &ids {
        if let Some(b) = st.bead_mut(id) {
            changed |= b.auto_progress(cfg, ctx.now_ms);
        }
    }
    let statuses: Vec<&str> = p
        .value("status")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let labels = split_labels(p.values("label"));
    let mut rows: Vec<&Bead> = ids
        .iter()
        .filter_map(|id| st.loaded_bead(id))
        .filter(|b| {
            if statuses.is_empty() {
                all || !matches!(b.status.as_str(), "closed" | "tombstone" | "pinned")
            } else {
                statuses.contains(&b.status.as_str())
            }
        })
        .filter(|b| p.value("assignee").is_none_or(|a| b.assignee.as_deref() == Some(a)))
        .filter(|b| p.value("type").is_none_or(|t| b.issue_type == t))
        .filter(|b| labels.iter().all(|l| b.labels.contains(l)))
        .collect();
    rows.sort_by(|a, b| {
        (a.priority, std::cmp::Reverse(a.created_at_ms), &a.id).cmp(&(
            b.priority,
            std::cmp::Reverse(b.created_at_ms),
            &b.id,
        ))
    });
    let mut stderr = String::new();
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
        && rows.len() > limit
    {
        rows.truncate(limit);
        stderr = format!(
            "\nShowing {limit} issues; more results matched but were hidden by --limit. Use --limit 0 for all, or --limit N to raise the cap.\n"
        );
    }
    let out = if json {
        pretty(&Value::Array(rows.iter().map(|b| b.to_json()).collect()))
    } else {
        rows.iter()
            .map(|b| {
                format!(
                    "{} [P{}] [{}] {} - {}\n",
                    b.id, b.priority, b.issue_type, b.status, b.title
                )
            })
            .collect()
    };
    Outcome {
        changed,
        stderr,
        ..Outcome::ok(out)
    }
}

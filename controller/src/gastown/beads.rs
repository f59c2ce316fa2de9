//! Beads as `bd` prints them, and the rules for reading `bd` output.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::operands::{BeadId, ExternalRef};

/// The status of a bead. The contract's statuses, `tombstone` (deleted; Gas Town treats it as
/// gone) and any site-defined custom status as [`BeadStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum BeadStatus {
    /// Created, not slung.
    Open,
    /// An agent is working on it.
    InProgress,
    /// Waiting on a dependency.
    Blocked,
    /// Put off; `gt sling` refuses it.
    Deferred,
    /// Done; see `close_reason`.
    Closed,
    /// Pinned (kept open on purpose).
    Pinned,
    /// Slung to an agent (on its hook), not started yet.
    Hooked,
    /// Deleted.
    Tombstone,
    /// A site-defined status.
    Other(String),
}

impl BeadStatus {
    /// The status as `bd` spells it.
    pub fn as_str(&self) -> &str {
        match self {
            BeadStatus::Open => "open",
            BeadStatus::InProgress => "in_progress",
            BeadStatus::Blocked => "blocked",
            BeadStatus::Deferred => "deferred",
            BeadStatus::Closed => "closed",
            BeadStatus::Pinned => "pinned",
            BeadStatus::Hooked => "hooked",
            BeadStatus::Tombstone => "tombstone",
            BeadStatus::Other(s) => s,
        }
    }

    /// `hooked` or `in_progress`: the bead is with an agent.
    pub fn is_dispatched(&self) -> bool {
        matches!(self, BeadStatus::Hooked | BeadStatus::InProgress)
    }

    /// `tombstone`: the bead was deleted.
    pub fn is_gone(&self) -> bool {
        matches!(self, BeadStatus::Tombstone)
    }
}

impl From<String> for BeadStatus {
    fn from(value: String) -> Self {
        match value.as_str() {
            "open" => BeadStatus::Open,
            "in_progress" => BeadStatus::InProgress,
            "blocked" => BeadStatus::Blocked,
            "deferred" => BeadStatus::Deferred,
            "closed" => BeadStatus::Closed,
            "pinned" => BeadStatus::Pinned,
            "hooked" => BeadStatus::Hooked,
            "tombstone" => BeadStatus::Tombstone,
            _ => BeadStatus::Other(value),
        }
    }
}

impl From<BeadStatus> for String {
    fn from(status: BeadStatus) -> String {
        match status {
            BeadStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for BeadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bead as printed by `bd show --json` / `bd list --json` (snake_case fields). Only `id`
/// and `status` are required; unknown fields are ignored; timestamps are kept as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bead {
    /// The bead ID (not re-validated: `bd` is the authority on its own IDs).
    pub id: String,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Status.
    pub status: BeadStatus,
    /// Priority, 0 (highest) to 4.
    #[serde(default)]
    pub priority: Option<i64>,
    /// `task`, `bug`, `epic`, ...
    #[serde(default)]
    pub issue_type: Option<String>,
    /// The agent holding it, `<rig>/polecats/<Name>` once slung.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Who created it (`BD_ACTOR`).
    #[serde(default)]
    pub created_by: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// When work started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it was closed.
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Why it was closed.
    #[serde(default)]
    pub close_reason: Option<String>,
    /// The `--external-ref` it was created with.
    #[serde(default)]
    pub external_ref: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: Vec<String>,
}

impl Bead {
    /// The bead `bd create` has just made: open and unassigned, as `bd create` leaves it. Saves
    /// reading it back before the first sling (nobody else knows its ID yet).
    pub fn just_created(id: &BeadId, title: &str, external_ref: &ExternalRef) -> Bead {
        Bead {
            id: id.as_str().to_string(),
            title: Some(title.to_string()),
            description: None,
            status: BeadStatus::Open,
            priority: None,
            issue_type: None,
            assignee: None,
            owner: None,
            created_at: None,
            created_by: None,
            updated_at: None,
            started_at: None,
            closed_at: None,
            close_reason: None,
            external_ref: Some(external_ref.as_str().to_string()),
            metadata: None,
            labels: Vec::new(),
        }
    }

    /// The ID as a validated [`BeadId`] (fails if `bd` printed an ID outside the naming rule).
    pub fn bead_id(&self) -> Result<BeadId, super::Error> {
        BeadId::parse(&self.id)
    }

    /// The rig of the assignee (`gastown` in `gastown/polecats/Toast`), if assigned.
    pub fn assignee_rig(&self) -> Option<&str> {
        let assignee = self.assignee.as_deref()?;
        let rig = assignee.split('/').next()?;
        (!rig.is_empty()).then_some(rig)
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `bd create --silent` prints only the new ID. Take the last non-empty line (a warning
/// printed before it must not break us) and validate it.
pub(crate) fn parse_created_id(stdout: &str) -> Result<BeadId, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or("no bead ID printed")?;
    BeadId::parse(line).map_err(|e| format!("not a bead ID: {e}"))
}

/// `bd show --json -- <id>` prints a JSON array with one object per ID. An empty array means
/// no such bead; an array without our ID (bd resolving to another bead) is an error, never a
/// silent "not found". A single object is accepted too, for older `bd` builds.
pub(crate) fn parse_show(stdout: &str, id: &BeadId) -> Result<Option<Bead>, String> {
    let value: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("`bd show --json` did not print JSON: {e}"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        object @ serde_json::Value::Object(_) => vec![object],
        _ => return Err("`bd show --json` printed neither an array nor an object".to_owned()),
    };
    if items.is_empty() {
        return Ok(None);
    }
    for item in items {
        if item.get("id").and_then(serde_json::Value::as_str) == Some(id.as_str()) {
            return serde_json::from_value(item)
                .map(Some)
                .map_err(|e| format!("bead {id} does not match the contract: {e}"));
        }
    }
    Err(format!("`bd show` answered with beads other than {id}"))
}

/// The beads of a `bd show --json` of several IDs, by ID. An item that does not parse is left
/// out (its ID is then read on its own, which reports exactly what is wrong with it).
pub(crate) fn parse_show_many(stdout: &str) -> Result<std::collections::HashMap<String, Bead>, String> {
    let value: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("`bd show --json` did not print JSON: {e}"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        object @ serde_json::Value::Object(_) => vec![object],
        _ => return Err("`bd show --json` printed neither an array nor an object".to_owned()),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value::<Bead>(item).ok())
        .map(|b| (b.id.clone(), b))
        .collect())
}

/// The beads of `bd list --json` whose `external_ref` equals `wanted`, oldest first
/// (by `created_at`, then ID). Other beads are not parsed, so one odd bead elsewhere in the
/// town cannot break the lookup. `null` (an empty Go slice) is an empty list.
pub(crate) fn parse_list_matching(stdout: &str, wanted: &ExternalRef) -> Result<Vec<Bead>, String> {
    let value: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("`bd list --json` did not print JSON: {e}"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        _ => return Err("`bd list --json` did not print an array".to_owned()),
    };
    let mut matching = Vec::new();
    for item in items {
        if item.get("external_ref").and_then(serde_json::Value::as_str) == Some(wanted.as_str()) {
            let bead: Bead = serde_json::from_value(item)
                .map_err(|e| format!("a bead with our external_ref does not match the contract: {e}"))?;
            matching.push(bead);
        }
    }
    matching.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(matching)
}

/// Phrases with which `bd` reports an unknown ID ("Issue X not found",
/// "Error fetching X: no issue found matching \"X\"").
const NOT_FOUND_PHRASES: &[&str] = &[
    "not found",
    "no issue found",
    "no issues found",
    "no such issue",
    "does not exist",
];

/// The rule for "unknown bead" after a non-zero `bd show`: some line of stderr or stdout
/// names the requested ID **and** says it was not found. A generic failure ("database
/// locked", ".beads directory not found") names no ID and stays an error, so a broken town is
/// never mistaken for a missing bead (which would make the controller create a new one).
pub(crate) fn says_not_found(id: &BeadId, stderr: &str, stdout: &str) -> bool {
    let wanted = id.as_str().to_ascii_lowercase();
    stderr.lines().chain(stdout.lines()).any(|line| {
        let line = line.to_lowercase();
        mentions_id(&line, &wanted) && NOT_FOUND_PHRASES.iter().any(|p| line.contains(p))
    })
}

/// `line` contains `id` as a whole token: `go-7x` does not match `go-7xq`, nor does the
/// child `go-7xq.1`, but a sentence-ending `go-7xq.` does.
fn mentions_id(line: &str, id: &str) -> bool {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    line.match_indices(id).any(|(start, _)| {
        let boundary_before = !line[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_id_char(c) || c == '.');
        let mut after = line[start + id.len()..].chars();
        let boundary_after = match after.next() {
            None => true,
            Some('.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
            Some(c) => !is_id_char(c),
        };
        boundary_before && boundary_after
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> BeadId {
        BeadId::parse(s).unwrap()
    }

    const FULL: &str = r#"[{
        "id": "go-7xq", "title": "Fix login", "description": "multi\nline",
        "status": "hooked", "priority": 2, "issue_type": "task",
        "assignee": "gastown/polecats/Toast", "owner": "mayor",
        "created_at": "2026-01-02T03:04:05Z", "created_by": "gastown-operator",
        "updated_at": "2026-01-02T03:05:00Z", "started_at": null, "closed_at": null,
        "close_reason": "", "external_ref": "automaton:ns/a/u1",
        "metadata": {"k": "v"}, "labels": ["a", "b"],
        "dependency_count": 0, "some_future_field": {"nested": [1, 2]}
    }]"#;

    #[test]
    fn show_parses_full_array_and_ignores_unknown_fields() {
        let bead = parse_show(FULL, &id("go-7xq")).unwrap().unwrap();
        assert_eq!(bead.id, "go-7xq");
        assert_eq!(bead.status, BeadStatus::Hooked);
        assert!(bead.status.is_dispatched());
        assert_eq!(bead.priority, Some(2));
        assert_eq!(bead.assignee.as_deref(), Some("gastown/polecats/Toast"));
        assert_eq!(bead.assignee_rig(), Some("gastown"));
        assert_eq!(bead.external_ref.as_deref(), Some("automaton:ns/a/u1"));
        assert_eq!(bead.labels, vec!["a", "b"]);
        assert_eq!(bead.metadata, Some(serde_json::json!({"k": "v"})));
        assert_eq!(bead.started_at, None);
        assert_eq!(bead.description.as_deref(), Some("multi\nline"));
    }

    #[test]
    fn show_parses_minimal_and_custom_status() {
        let bead = parse_show(r#"[{"id":"go-7xq","status":"review"}]"#, &id("go-7xq"))
            .unwrap()
            .unwrap();
        assert_eq!(bead.status, BeadStatus::Other("review".into()));
        assert_eq!(bead.title, None);
        assert!(bead.labels.is_empty());
        assert_eq!(bead.assignee_rig(), None);
        let nulls = parse_show(r#"[{"id":"go-7xq","status":"tombstone","labels":null}]"#, &id("go-7xq"))
            .unwrap()
            .unwrap();
        assert!(nulls.status.is_gone());
        let object = parse_show(r#"{"id":"go-7xq","status":"closed"}"#, &id("go-7xq"))
            .unwrap()
            .unwrap();
        assert_eq!(object.status, BeadStatus::Closed);
    }

    #[test]
    fn show_edge_cases() {
        assert_eq!(parse_show("[]", &id("go-7xq")).unwrap(), None);
        assert!(parse_show(r#"[{"id":"go-other","status":"open"}]"#, &id("go-7xq")).is_err());
        assert!(
            parse_show(r#"[{"id":"go-7xq"}]"#, &id("go-7xq")).is_err(),
            "status is required"
        );
        assert!(parse_show("Issue go-7xq", &id("go-7xq")).is_err());
        assert!(parse_show("", &id("go-7xq")).is_err());
        assert!(parse_show("42", &id("go-7xq")).is_err());
    }

    #[test]
    fn status_round_trip() {
        // The wire names spelled out on purpose: an independent check of `BeadStatus`, not
        // shared with the fake bd's list (tests/src/bin/fake_gastown/bd.rs).
        let table = [
            (BeadStatus::Open, "open"),
            (BeadStatus::InProgress, "in_progress"),
            (BeadStatus::Blocked, "blocked"),
            (BeadStatus::Deferred, "deferred"),
            (BeadStatus::Closed, "closed"),
            (BeadStatus::Pinned, "pinned"),
            (BeadStatus::Hooked, "hooked"),
            (BeadStatus::Tombstone, "tombstone"),
            (BeadStatus::Other("custom".into()), "custom"),
        ];
        for (known, s) in table {
            let status = BeadStatus::from(s.to_owned());
            assert_eq!(status, known);
            assert_eq!(status.as_str(), s);
            assert_eq!(String::from(status.clone()), s);
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn created_id() {
        assert_eq!(parse_created_id("go-7xq\n").unwrap().as_str(), "go-7xq");
        assert_eq!(parse_created_id("  gt-a3f8.1  ").unwrap().as_str(), "gt-a3f8.1");
        assert_eq!(
            parse_created_id("warning: slow\ngo-7xq\n\n").unwrap().as_str(),
            "go-7xq"
        );
        assert!(parse_created_id("").is_err());
        assert!(parse_created_id("Created issue go-7xq").is_err());
        assert!(parse_created_id("{\"id\":\"go-7xq\"}").is_err());
    }

    #[test]
    fn list_filters_by_external_ref() {
        let wanted = ExternalRef::parse("automaton:ns/a/u1").unwrap();
        let out = r#"[
            {"id":"go-2","status":"open","external_ref":"automaton:ns/a/u1","created_at":"2026-01-02T00:00:00Z"},
            {"id":"go-1","status":"open","external_ref":"automaton:ns/a/u1","created_at":"2026-01-01T00:00:00Z"},
            {"id":"go-3","status":"open","external_ref":"automaton:ns/a/u2"},
            {"id":"go-4","weird":true},
            {"id":"go-5","status":"open"}
        ]"#;
        let found = parse_list_matching(out, &wanted).unwrap();
        assert_eq!(
            found.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            vec!["go-1", "go-2"]
        );
        assert!(parse_list_matching("[]", &wanted).unwrap().is_empty());
        assert!(parse_list_matching("null", &wanted).unwrap().is_empty());
        assert!(parse_list_matching("", &wanted).is_err());
        assert!(parse_list_matching("{}", &wanted).is_err());
        assert!(parse_list_matching(r#"[{"id":"go-9","external_ref":"automaton:ns/a/u1"}]"#, &wanted).is_err());
    }

    #[test]
    fn not_found_rule() {
        let go = id("go-7xq");
        assert!(says_not_found(&go, "Issue go-7xq not found\n", ""));
        assert!(says_not_found(
            &go,
            "Error fetching go-7xq: no issue found matching \"go-7xq\"\n",
            ""
        ));
        assert!(says_not_found(&go, "Error: issue GO-7XQ does not exist.\n", ""));
        assert!(says_not_found(&go, "", "Issue go-7xq not found."));
        // Generic failures name no ID.
        assert!(!says_not_found(&go, "Error: .beads directory not found\n", ""));
        assert!(!says_not_found(&go, "Error: database locked\n", ""));
        assert!(!says_not_found(
            &go,
            "",
            "{\"error\": \"no issues found matching the provided IDs\"}"
        ));
        // Another bead's failure, the ID on an unrelated line, a longer or child ID.
        assert!(!says_not_found(&go, "Issue go-7xqz not found\n", ""));
        assert!(!says_not_found(&go, "Issue go-7xq.1 not found\n", ""));
        assert!(!says_not_found(&go, "Issue xgo-7xq not found\n", ""));
        assert!(!says_not_found(
            &go,
            "Error fetching go-7xq: connection refused\nconfig not found\n",
            ""
        ));
    }
}

//! The records of the town: beads, the convoys `gt sling` makes, and polecats (workers).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::clock::rfc3339;
use crate::config::Config;

/// One bead (issue). Times are kept in Unix milliseconds and printed as RFC 3339.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Bead {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: i64,
    pub issue_type: String,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub created_at_ms: u64,
    pub created_by: String,
    pub updated_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub closed_at_ms: Option<u64>,
    pub close_reason: Option<String>,
    pub external_ref: Option<String>,
    pub metadata: Map<String, Value>,
    pub labels: Vec<String>,
    /// When the bead was last slung (drives auto progress); never printed.
    pub slung_at_ms: Option<u64>,
    /// The merge strategy it was slung with (`local` closes with reason `Closed`); never printed.
    pub merge: Option<String>,
    /// Creation order (`bd list` order); never printed.
    pub order: u64,
}

impl Bead {
    /// The JSON object `bd show --json` / `bd list --json` print.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "issue_type": self.issue_type,
            "assignee": self.assignee,
            "owner": self.owner,
            "created_at": rfc3339(self.created_at_ms),
            "created_by": self.created_by,
            "updated_at": rfc3339(self.updated_at_ms),
            "started_at": self.started_at_ms.map(rfc3339),
            "closed_at": self.closed_at_ms.map(rfc3339),
            "close_reason": self.close_reason,
            "external_ref": self.external_ref,
            "metadata": Value::Object(self.metadata.clone()),
            "labels": self.labels,
        })
    }

    /// Whether a worker holds the bead (slung and not finished).
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "hooked" | "in_progress")
    }

    /// Applies auto progress (see [`AutoProgress`]); returns whether the bead changed.
    pub fn auto_progress(&mut self, cfg: &Config, now: u64) -> bool {
        let (Some(ap), Some(slung)) = (&cfg.auto_progress, self.slung_at_ms) else {
            return false;
        };
        if !self.is_active() {
            return false;
        }
        let elapsed = now.saturating_sub(slung);
        let rig = self.assignee.as_deref().and_then(|a| a.split('/').next()).unwrap_or("");
        let close_after = ap
            .close_after_ms
            .filter(|_| ap.close_rigs.as_ref().is_none_or(|rigs| rigs.iter().any(|r| r == rig)));
        if let Some(close_after) = close_after
            && elapsed >= close_after
        {
            self.started_at_ms
                .get_or_insert(slung + ap.start_after_ms.min(close_after));
            self.status = "closed".to_string();
            self.closed_at_ms = Some(slung + close_after);
            // `gt done` of a local merge closes without a reason (see `AutoProgress`).
            let reason = if self.merge.as_deref() == Some("local") {
                "Closed".to_string()
            } else {
                ap.close_reason.clone().unwrap_or_else(|| "merged".into())
            };
            self.close_reason = Some(reason);
            self.updated_at_ms = now;
            return true;
        }
        if self.status == "hooked" && elapsed >= ap.start_after_ms {
            self.status = "in_progress".to_string();
            self.started_at_ms.get_or_insert(slung + ap.start_after_ms);
            self.updated_at_ms = now;
            return true;
        }
        false
    }
}

/// A convoy created by `gt sling` (tracks the slung beads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Convoy {
    pub id: String,
    pub title: String,
    pub beads: Vec<String>,
    pub created_at_ms: u64,
    pub created_by: String,
    /// Creation order; never printed.
    pub order: u64,
}

impl Convoy {
    /// A convoy seen through `bd show` (convoys are beads of type `convoy` in the real town);
    /// `done` when every bead it tracks is closed.
    pub fn to_json(&self, done: bool) -> Value {
        let status = if done { "closed" } else { "open" };
        Bead {
            id: self.id.clone(),
            title: self.title.clone(),
            description: format!("Tracks: {}", self.beads.join(", ")),
            status: status.to_string(),
            priority: 2,
            issue_type: "convoy".to_string(),
            owner: Some(self.created_by.clone()),
            created_at_ms: self.created_at_ms,
            created_by: self.created_by.clone(),
            updated_at_ms: self.created_at_ms,
            ..Bead::default()
        }
        .to_json()
    }
}

/// A worker known to the town.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Polecat {
    pub rig: String,
    pub name: String,
    pub issue: Option<String>,
    pub branch: Option<String>,
    pub agent: Option<String>,
    pub base_branch: Option<String>,
    pub created_at_ms: u64,
    pub last_activity_ms: u64,
    /// Its tmux session is gone (killed, crashed, machine restarted); `gt sling` to it starts
    /// a new one.
    pub session_ended: bool,
}

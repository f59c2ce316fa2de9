//! The files the fake town reads at every call and the call log it writes, as the test side
//! sees them: `faults.json`, `config.json` and `calls.jsonl` under `<town>/.fake-gastown/`.

use serde::{Deserialize, Serialize};

/// Fault injection (`<town>/.fake-gastown/faults.json`), read by the binary at every call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability in [0, 1] that a matching call fails (exit 1, state unchanged).
    pub fail_rate: f64,
    /// Probability that a matching call hangs for `hang_seconds` (logged with `hung: true`).
    pub hang_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang_seconds: Option<u64>,
    /// Delay added to every call.
    pub delay_ms: u64,
    /// Every call fails with exit 1 and a "cannot connect to Dolt server" error.
    pub down: bool,
    /// Verbs the rates apply to (`"sling"`, `"create"`, or `"gt sling"`); `None` = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_verbs: Option<Vec<String>>,
    /// Makes fail/hang decisions reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Probability that a matching call that succeeded (its change saved) then exits 1 with an
    /// error and none of its output: the work was done, then the call failed. Logged with
    /// `fault: "after_work_fail"`.
    pub after_work_fail_rate: f64,
    /// Probability that a matching call that succeeded (its change saved) then hangs for
    /// `hang_seconds` (default 3600), until the caller's timeout kills it. Logged (before
    /// hanging) with `hung: true`, `fault: "after_work_hang"`.
    pub after_work_hang_rate: f64,
    /// Probability that a matching call that succeeded (its change saved, its output printed)
    /// is then killed by a signal (no exit code; through gt-proxy-server `exitCode: -1`).
    /// Logged with `fault: "after_work_kill"`.
    pub after_work_kill_rate: f64,
    /// Verbs the after-work rates apply to (`"create"`, `"bd create"`, ...); `None` = the same
    /// as `fail_verbs` (and `None` there too = all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_work_verbs: Option<Vec<String>>,
}

impl Faults {
    /// Gas Town is unreachable: every call fails.
    pub fn down() -> Faults {
        Faults {
            down: true,
            ..Faults::default()
        }
    }

    /// Matching calls fail with probability `rate`.
    pub fn fail(rate: f64) -> Faults {
        Faults {
            fail_rate: rate,
            ..Faults::default()
        }
    }

    /// Matching calls hang for `seconds` with probability `rate`.
    pub fn hang(rate: f64, seconds: u64) -> Faults {
        Faults {
            hang_rate: rate,
            hang_seconds: Some(seconds),
            ..Faults::default()
        }
    }

    /// Restricts the rates to these verbs.
    pub fn verbs<I, S>(mut self, verbs: I) -> Faults
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fail_verbs = Some(verbs.into_iter().map(Into::into).collect());
        self
    }

    /// Matching calls do their work, then fail (exit 1, no output) with probability `rate`.
    pub fn fail_after_work(rate: f64) -> Faults {
        Faults::default().with_fail_after_work(rate)
    }

    /// Matching calls do their work, then hang for `seconds` with probability `rate` (until
    /// the caller's timeout kills them).
    pub fn hang_after_work(rate: f64, seconds: u64) -> Faults {
        Faults::default().with_hang_after_work(rate, seconds)
    }

    /// Matching calls do their work, then are killed by a signal with probability `rate`.
    pub fn kill_after_work(rate: f64) -> Faults {
        Faults::default().with_kill_after_work(rate)
    }

    /// Adds "did the work, then failed" with probability `rate` to these faults.
    pub fn with_fail_after_work(mut self, rate: f64) -> Faults {
        self.after_work_fail_rate = rate;
        self
    }

    /// Adds "did the work, then hung for `seconds`" with probability `rate` (`seconds` is
    /// shared with the before-work hang).
    pub fn with_hang_after_work(mut self, rate: f64, seconds: u64) -> Faults {
        self.after_work_hang_rate = rate;
        self.hang_seconds = Some(seconds);
        self
    }

    /// Adds "did the work, then was killed" with probability `rate`.
    pub fn with_kill_after_work(mut self, rate: f64) -> Faults {
        self.after_work_kill_rate = rate;
        self
    }

    /// Restricts the after-work rates to these verbs (the before-work rates keep
    /// [`Faults::verbs`]).
    pub fn after_work_verbs<I, S>(mut self, verbs: I) -> Faults
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after_work_verbs = Some(verbs.into_iter().map(Into::into).collect());
        self
    }

    pub fn seed(mut self, seed: u64) -> Faults {
        self.seed = Some(seed);
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Faults {
        self.delay_ms = ms;
        self
    }
}

/// Lazy progress of slung beads: when a hooked bead is read (`bd show`, `bd list`,
/// `gt polecat status`) `start_after_ms` after it was slung it becomes `in_progress`; after
/// `close_after_ms` it becomes `closed` with `close_reason` (default `merged`). Beads slung
/// with `--merge=local` close too, with reason `Closed`: the polecat's `gt done` closes its
/// hooked bead in every merge mode (gastown `internal/cmd/done.go`: the `local` strategy skips
/// push and merge queue, then `updateAgentStateOnDone` runs `bd close` without a reason, which
/// beads `cmd/bd/close.go` records as `Closed`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoProgress {
    pub start_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// Only beads held by a worker of these rigs close by themselves (default: every rig): the
    /// others' agents take longer than the test, which closes or cancels that work itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_rigs: Option<Vec<String>>,
}

/// Town configuration (`<town>/.fake-gastown/config.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Bead ID prefix (default `gt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Known rigs (default `["gastown", "demo"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rigs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_progress: Option<AutoProgress>,
    /// Polecat name pool (default Toast, Nux, Capable, Furiosa, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polecat_names: Option<Vec<String>>,
    /// `Some(true)`: `bd list --all` without `--limit` lists every bead, as bd >= v0.49.5
    /// (which Gas Town requires) does. Default: it keeps `bd list`'s limit of 50, as bd
    /// v0.42.0-v0.49.4 did. Either way `--limit 0` lists all and rows are sorted by priority,
    /// then newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bd_all_lifts_limit: Option<bool>,
}

/// One line of `calls.jsonl`: one invocation of `gt` or `bd`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub ts_ms: u64,
    /// `gt` or `bd`.
    pub tool: String,
    /// The arguments after the tool name.
    pub argv: Vec<String>,
    /// The exit code; `-1` for a call that hung (logged before hanging).
    pub exit_code: i32,
    /// `GT_ROLE` or `GT_POLECAT` was set in the caller's environment.
    pub env_gt_role: bool,
    #[serde(default)]
    pub hung: bool,
    /// `down`, `fail` or `hang` when a fault was injected before the work (nothing changed);
    /// `after_work_fail`, `after_work_hang` or `after_work_kill` when it was injected after the
    /// work was done and saved.
    #[serde(default)]
    pub fault: Option<String>,
    /// A `gt sling` that hooked the bead (not a no-op re-sling, dry run or failure), even if
    /// an after-work fault then made the call fail.
    #[serde(default)]
    pub dispatched: bool,
    /// The bead a `bd create` made, even if an after-work fault then made the call fail.
    #[serde(default)]
    pub created: Option<String>,
    /// Made by this test-support API.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub seq: u64,
}

impl Call {
    /// The sub-command: the first argument that does not look like a flag (good enough for
    /// calls that put the verb first, as the controller does).
    pub fn verb(&self) -> Option<&str> {
        self.argv.iter().find(|a| !a.starts_with('-')).map(String::as_str)
    }

    /// Whether this is a `gt sling` of `bead` (dry runs excluded).
    pub fn is_sling_of(&self, bead: &str) -> bool {
        self.tool == "gt"
            && self.verb() == Some("sling")
            && self.argv.iter().any(|a| a == bead)
            && !self
                .argv
                .iter()
                .any(|a| a == "--dry-run" || a == "-n" || a == "--dry-run=true")
    }
}

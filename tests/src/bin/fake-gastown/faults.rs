//! Fault injection settings (`faults.json`): failures and hangs before the work, and
//! "the work was done, then the call failed / hung / was killed" after it.

use serde::Deserialize;

/// Fault injection settings (`faults.json`), re-read at every call.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability that a matching call fails with exit 1 and changes nothing.
    pub fail_rate: f64,
    /// Probability that a matching call hangs for `hang_seconds`.
    pub hang_rate: f64,
    pub hang_seconds: Option<u64>,
    /// Delay before every call.
    pub delay_ms: u64,
    /// Every call fails as if the Dolt server were down.
    pub down: bool,
    /// Verbs (`sling`, `create`, or qualified `gt sling`) the rates apply to; absent = all.
    pub fail_verbs: Option<Vec<String>>,
    /// Makes the fail/hang decisions reproducible (per call sequence number).
    pub seed: Option<u64>,
    /// Probability that a matching call that succeeded (its change saved) then exits 1 with
    /// an error and without its normal output: "the work was done, then the call failed".
    pub after_work_fail_rate: f64,
    /// Probability that a matching call that succeeded (its change saved, the lock released)
    /// then hangs for `hang_seconds` (default 3600) until the caller's timeout kills it.
    pub after_work_hang_rate: f64,
    /// Probability that a matching call that succeeded (its change saved) is then killed by a
    /// signal (`SIGABRT`): no exit code, as a child killed by the OOM killer or a timeout.
    pub after_work_kill_rate: f64,
    /// Verbs the after-work rates apply to; absent = `fail_verbs` (absent too = all).
    pub after_work_verbs: Option<Vec<String>>,
}

/// What an after-work fault does to a call that did its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterWork {
    Fail,
    Hang,
    Kill,
}

impl AfterWork {
    /// The `fault` written to `calls.jsonl`.
    pub fn label(self) -> &'static str {
        match self {
            AfterWork::Fail => "after_work_fail",
            AfterWork::Hang => "after_work_hang",
            AfterWork::Kill => "after_work_kill",
        }
    }
}

fn matches_verb(verbs: Option<&Vec<String>>, tool: &str, verb: &str) -> bool {
    match verbs {
        None => true,
        Some(verbs) => verbs.iter().any(|v| v == verb || *v == format!("{tool} {verb}")),
    }
}

impl Faults {
    pub fn applies_to(&self, tool: &str, verb: &str) -> bool {
        matches_verb(self.fail_verbs.as_ref(), tool, verb)
    }

    /// Whether the after-work rates apply to this verb.
    pub fn after_work_applies_to(&self, tool: &str, verb: &str) -> bool {
        matches_verb(self.after_work_verbs.as_ref().or(self.fail_verbs.as_ref()), tool, verb)
    }

    /// The after-work fault for a call that did its work, given a roll in [0, 1).
    pub fn after_work(&self, tool: &str, verb: &str, roll: f64) -> Option<AfterWork> {
        if !self.after_work_applies_to(tool, verb) {
            return None;
        }
        let fail = self.after_work_fail_rate.max(0.0);
        let hang = fail + self.after_work_hang_rate.max(0.0);
        let kill = hang + self.after_work_kill_rate.max(0.0);
        if roll < fail {
            Some(AfterWork::Fail)
        } else if roll < hang {
            Some(AfterWork::Hang)
        } else if roll < kill {
            Some(AfterWork::Kill)
        } else {
            None
        }
    }
}

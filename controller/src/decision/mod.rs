//! The controller's decisions as pure functions of (Automaton, Gas Town view, now, settings).
//!
//! The reconciler ([`crate::reconcile`]) fetches, calls these, and applies the result; everything
//! here is tested without I/O. [`stage()`] picks the step; [`BeadState`] is what the status says of
//! the bead; [`plan_sync`], [`plan_deletion`] and [`plan_timeout_release`] plan the Gas Town side.

mod create;
mod release;
mod stage;
mod state;
mod status;
mod sync;
mod timeout;

use std::time::Duration;

use gastown_crds::contract::CLAIMED_AT_ANNOTATION;
use gastown_crds::{Automaton, AutomatonStatus, MergeStrategy};
use jiff::Timestamp;

use crate::gastown::{Bead, BeadId};

pub use create::*;
pub use release::*;
pub use stage::*;
pub use state::*;
pub use status::*;
pub use sync::*;
pub use timeout::*;

/// Timing and identity the decisions depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our claimer name (`gastown.io/claimed-by` value).
    pub claimer: String,
    /// How long Gas Town has to take a claim before it is released back to Kubernetes.
    pub claim_timeout: Duration,
    /// How often Gas Town is read for progress.
    pub sync_interval: Duration,
    /// Longest time between status writes when nothing but `lastSyncTime` changes.
    pub status_heartbeat: Duration,
    /// How long deletion waits for Gas Town to release the work before it lets go anyway.
    pub release_timeout: Duration,
    /// How long after the start of a `bd create` call that may still be running (the controller
    /// died during it, so its answer never came) the controller only looks its bead up and
    /// never creates another: longer than the call can go on in Gas Town (see
    /// [`create_outcome_wait`]).
    pub create_outcome_wait: Duration,
}

/// The default [`Settings::create_outcome_wait`]: one `bd create` call of the client may make
/// `attempts` attempts, each one given up after `command_timeout` and, when its outcome is
/// unknown, followed by a wait until it has certainly ended (`lifetime`, see
/// `GasTown::command_lifetime`) and a lookup before the next; the last one can run `lifetime`
/// more. Counted from the mark written before the call.
pub fn create_outcome_wait(command_timeout: Duration, attempts: u32, lifetime: Duration) -> Duration {
    (command_timeout.max(lifetime) + command_timeout + Duration::from_secs(5)) * attempts.max(1)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            claimer: gastown_crds::contract::DEFAULT_CLAIMER.to_string(),
            claim_timeout: Duration::from_secs(600),
            sync_interval: Duration::from_secs(15),
            status_heartbeat: Duration::from_secs(300),
            release_timeout: Duration::from_secs(600),
            create_outcome_wait: create_outcome_wait(Duration::from_secs(70), 3, Duration::from_secs(70)),
        }
    }
}

/// What the controller knows of the bead after reading Gas Town.
// Short-lived (one per reconcile); boxing the bead would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum GasTownView {
    /// `bd show` returned the bead.
    Bead(Bead),
    /// `bd show` says the bead does not exist.
    Missing,
    /// Gas Town could not be asked.
    Unreachable {
        /// The metric label of the error (`transport`, `timeout`, ...).
        reason: String,
        /// What went wrong.
        message: String,
    },
}

/// A Gas Town command the controller must run.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `gt sling`.
    Sling {
        /// The bead.
        bead: BeadId,
        /// The rig.
        rig: String,
        /// `--merge`.
        merge: Option<MergeStrategy>,
        /// `--agent`.
        agent: Option<String>,
    },
    /// Give hooked or running work back (`gt unsling`, or reopening the bead through the proxy).
    Unsling {
        /// The bead.
        bead: BeadId,
        /// Its current assignee.
        holder: Option<String>,
    },
    /// `bd close -r`.
    Close {
        /// The bead.
        bead: BeadId,
        /// Why.
        reason: String,
    },
}

/// What to do after reading the bead.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write (if it differs from the current one beyond `lastSyncTime`).
    pub status: AutomatonStatus,
    /// A Gas Town command to run first; `status` is what holds once it succeeded.
    pub command: Option<Command>,
    /// Give the claim back to Kubernetes after writing `status`.
    pub release_claim: bool,
    /// An Event to record.
    pub event: Option<Event>,
    /// When to look again (`None`: only on change).
    pub requeue: Option<Duration>,
}

/// An Event to record on the Automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// A `Warning` Event rather than a `Normal` one.
    pub warning: bool,
    /// Its reason, in CamelCase.
    pub reason: String,
    /// What happened.
    pub note: String,
}

impl Event {
    /// An Event of type `Warning` when `warning`, else `Normal`.
    pub fn new(warning: bool, reason: &str, note: impl Into<String>) -> Event {
        Event {
            warning,
            reason: reason.to_string(),
            note: note.into(),
        }
    }
}

/// When the claim was made (the policy's annotation, else the creation time), in whole
/// seconds like every time the API server stores.
pub fn claimed_at(a: &Automaton) -> Option<Timestamp> {
    a.metadata
        .annotations
        .as_ref()
        .and_then(|an| an.get(CLAIMED_AT_ANNOTATION))
        .and_then(|s| s.parse::<Timestamp>().ok())
        .or_else(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(whole_seconds)
}

/// `t` without its fraction of a second. The API server stores `metav1.Time` in whole seconds,
/// so a status built from finer times would never compare equal to the stored one and would be
/// written again on every reconcile.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let d = now.duration_since(since);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Whether the claim is older than the claim timeout.
pub fn claim_expired(a: &Automaton, now: Timestamp, settings: &Settings) -> bool {
    claimed_at(a).is_some_and(|t| elapsed(t, now) >= settings.claim_timeout)
}

/// Whether `assignee` (`<rig>/polecats/<Name>` or `<rig>/<Name>`) belongs to `rig`.
pub fn assignee_in_rig(assignee: Option<&str>, rig: &str) -> bool {
    assignee.and_then(|a| a.split('/').next()).is_some_and(|r| r == rig)
}

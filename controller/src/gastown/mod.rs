//! The Gas Town client: typed `gt`/`bd` operations over one argv-based runner with two
//! transports, local exec and gt-proxy-server (HTTPS with mutual TLS).
//!
//! - Every operation validates its inputs with the shared naming rules
//!   ([`gastown_crds::validate`]) before building an argv laid out as
//!   `<verb> <options> -- <operands>`; no shell is ever involved.
//! - Every command has a timeout, runs under a concurrency limit, and is retried with
//!   exponential backoff and jitter only for transient failures ([`Error::is_retryable`]).
//! - Each attempt is reported to an optional [`CommandObserver`] (metrics).
//!
//! Where things are: settings in `config`; validated IDs and text in `operands`; the argv of
//! each operation in `argv`; one command (slot, transport, retries) in `run`; the operations in
//! `create` (create and look up), `reads` (show) and `dispatch` (sling, release, close); `bd`'s
//! output in `beads`; errors in `error` and what they mean in `classify`; the transports in
//! `exec` and `proxy`; batched reads in `batch`; test helpers in `testing`.
//!
//! # Timeouts
//!
//! gt-proxy-server kills a command after 60 s ([`PROXY_EXEC_LIMIT`]; gastown
//! `internal/proxy/server.go`: `ExecTimeout ... 0 uses the default (60s)`, not configurable in
//! `cmd/gt-proxy-server`) and answers `exitCode: -1`. The client's per-command timeout
//! ([`GasTownConfig::command_timeout`], default [`DEFAULT_COMMAND_TIMEOUT`] = 70 s, the
//! controller's `--command-timeout`, the chart's `gastown.commandTimeout`) is longer, so the
//! client normally gets the proxy's own answer instead of giving up on a command that still
//! runs. A local command is killed at the timeout and reaped before its error is returned.
//!
//! # Commands whose outcome is unknown
//!
//! A failed command either certainly did nothing ([`Error::is_definite_failure`]: it never
//! started, or ran to its end and exited non-zero) or may have done its work
//! ([`Error::outcome_unknown`]: timeout, connection lost after the request was sent, killed by
//! a signal, gt-proxy-server's `exitCode: -1`, unreadable output). Retrying an idempotent
//! command is harmless, but `bd create` is not, so the rule is:
//!
//! **After a `bd create` whose outcome is unknown, never create again until the first create
//! is known to have ended and its bead has been looked for by its external reference.**
//!
//! [`GasTown::create_bead`] keeps the rule within one call. When it returns an error with
//! [`Error::outcome_unknown`], the caller keeps it: record that a bead may exist and look it up
//! before any new create. That lookup is conclusive (the last attempt has ended by then); a
//! caller that restarts (crash, new leader) without the answer first waits
//! [`GasTown::command_lifetime`] from when the create was sent.
//!
//! # Releasing work
//!
//! Real `gt unsling` only releases a `hooked` bead of a worker whose tmux session still runs,
//! and exits 0 without changing anything for work `in_progress` (see [`GasTown::unsling`]);
//! gt-proxy-server does not allow it at all. [`GasTown::release_bead`] reads the bead, tries
//! `gt unsling` locally, reads again, and reopens a bead still held with `bd update --status
//! open --assignee ""` ([`GasTown::reopen_bead`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gastown_controller::gastown::Error> {
//! use gastown_controller::gastown::{ExternalRef, GasTown, GasTownConfig, Transport};
//! let town = GasTown::new(GasTownConfig::new(Transport::exec("/home/gt/gt")))?;
//! let reference = ExternalRef::for_automaton("team-a", "fix-login", "0f9c-1")?;
//! let bead = match town.find_bead_by_external_ref(&reference).await? {
//!     Some(existing) => existing.bead_id()?,
//!     None => town.create_bead("Fix login", "Users cannot log in", &reference).await?,
//! };
//! town.sling(&bead, "gastown", None, None).await?;
//! # Ok(()) }
//! ```

mod argv;
mod batch;
mod beads;
mod classify;
mod config;
mod create;
mod dispatch;
mod error;
mod exec;
mod operands;
mod proxy;
mod reads;
mod run;
#[cfg(feature = "test-support")]
pub mod testing;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use crate::backoff::Backoff;
pub use argv::{CommandLine, Tool};
pub use batch::BatchedReader;
pub use beads::{Bead, BeadStatus};
pub use classify::PROXY_KILLED_EXIT_CODE;
pub use config::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_REMOTE_COMMAND_LIMIT, GasTownConfig, PROXY_EXEC_LIMIT, Transport};
pub use dispatch::Release;
pub use error::{Error, STDERR_EXCERPT_CHARS};
pub use operands::{
    BeadId, EXTERNAL_REF_MAX_CHARS, EXTERNAL_REF_RULE, ExternalRef, OPERATOR_LABEL, REASON_MAX_CHARS, REF_LABEL_PREFIX,
    validate_agent_address, validate_description, validate_reason,
};
pub use run::CommandObserver;

use exec::ExecTransport;
use proxy::ProxyTransport;

enum Runner {
    Exec(ExecTransport),
    Proxy(ProxyTransport),
}

struct Inner {
    runner: Runner,
    timeout: Duration,
    remote_command_limit: Duration,
    retries: u32,
    backoff: Backoff,
    permits: Semaphore,
}

/// The Gas Town client. Cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct GasTown {
    inner: Arc<Inner>,
    observer: Option<Arc<dyn CommandObserver>>,
}

impl fmt::Debug for GasTown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GasTown")
            .field("transport", &self.transport_kind())
            .field("timeout", &self.inner.timeout)
            .field("retries", &self.inner.retries)
            .finish_non_exhaustive()
    }
}

impl GasTown {
    /// Builds the client. For the proxy transport this checks the URL and loads the
    /// certificates and key now; errors say which file is wrong.
    pub fn new(config: GasTownConfig) -> Result<Self, Error> {
        if config.command_timeout.is_zero() {
            return Err(Error::config("command timeout must be greater than zero"));
        }
        if config.max_concurrency == 0 {
            return Err(Error::config("max concurrency must be at least 1"));
        }
        if config.max_output_bytes < 1024 {
            return Err(Error::config("max output must be at least 1024 bytes"));
        }
        let runner = match config.transport {
            Transport::Exec {
                town_root,
                gt_path,
                bd_path,
                actor,
            } => Runner::Exec(ExecTransport::new(
                town_root,
                gt_path,
                bd_path,
                actor.as_deref(),
                config.max_output_bytes,
            )?),
            Transport::Proxy {
                url,
                client_cert,
                client_key,
                ca,
            } => Runner::Proxy(ProxyTransport::new(
                &url,
                &client_cert,
                &client_key,
                &ca,
                config.max_output_bytes,
            )?),
        };
        let permits = Semaphore::new(config.max_concurrency.min(Semaphore::MAX_PERMITS));
        Ok(GasTown {
            inner: Arc::new(Inner {
                runner,
                timeout: config.command_timeout,
                remote_command_limit: config.remote_command_limit,
                retries: config.retries,
                backoff: config.backoff,
                permits,
            }),
            observer: None,
        })
    }

    /// Reports every command attempt to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CommandObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `exec` or `proxy`, for logs.
    pub fn transport_kind(&self) -> &'static str {
        match self.inner.runner {
            Runner::Exec(_) => "exec",
            Runner::Proxy(_) => "proxy",
        }
    }

    /// The longest a command sent by this client can go on running in Gas Town, counted from
    /// when it was sent, even if the caller never learns how it ended (its process died):
    /// through gt-proxy-server [`GasTownConfig::remote_command_limit`] (the proxy kills it at
    /// its 60 s limit); locally the command timeout (a local command dies with the controller's
    /// container, whose main process the controller is). A caller that finds a create of its
    /// own recorded as started but unanswered must not create again before this has passed
    /// since then; a lookup after that is conclusive.
    pub fn command_lifetime(&self) -> Duration {
        match self.inner.runner {
            Runner::Exec(_) => self.inner.timeout,
            Runner::Proxy(_) => self.inner.remote_command_limit.max(self.inner.timeout),
        }
    }
}

#[cfg(test)]
mod tests;

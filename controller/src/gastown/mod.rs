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
//! [`GasTown::create_bead`] keeps the rule inside one call: after any failure of an attempt
//! that ran (or may have), it waits until that attempt has certainly ended (a local child is
//! reaped; through gt-proxy-server, an attempt without an answer may run until
//! [`GasTownConfig::remote_command_limit`] after it was sent), then looks the bead up
//! ([`GasTown::find_bead_by_external_ref`]), returns the bead if it exists, and only then tries
//! again. When it returns an error with [`Error::outcome_unknown`] (retries used up, or the
//! lookup itself failed: [`Error::OutcomeUnknown`]), the caller must keep to the rule: record
//! that a bead may exist, and look it up before any new create. Its last attempt has ended by
//! then, so that lookup is conclusive; a caller that restarts (crash, new leader) without the
//! answer must wait [`GasTown::command_lifetime`] from the time the create was sent.
//! [`Error::is_definite_failure`] from `create_bead` means no bead was made.
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
mod error;
mod exec;
mod proxy;
#[cfg(feature = "test-support")]
pub mod testing;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gastown_crds::MergeStrategy;
use tokio::sync::Semaphore;

pub use crate::backoff::Backoff;
pub use argv::{
    BeadId, CommandLine, EXTERNAL_REF_MAX_CHARS, EXTERNAL_REF_RULE, ExternalRef, OPERATOR_LABEL, REASON_MAX_CHARS,
    REF_LABEL_PREFIX, Tool, validate_agent_address, validate_description, validate_reason,
};
pub use batch::BatchedReader;
pub use beads::{Bead, BeadStatus};
pub use error::{Error, PROXY_KILLED_EXIT_CODE, STDERR_EXCERPT_CHARS};

/// How long gt-proxy-server lets a command run before it kills it (gastown
/// `internal/proxy/server.go` lines 58-60 and 153-156 at commit a8bd79bf8, `ExecTimeout`: "0
/// uses the default (60s)"; `cmd/gt-proxy-server` does not set it).
pub const PROXY_EXEC_LIMIT: Duration = Duration::from_secs(60);

/// The default per-command timeout: longer than [`PROXY_EXEC_LIMIT`], so that a command the
/// proxy still runs is not given up on (and then looked for, or retried) before the proxy
/// has answered.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(70);

/// The default [`GasTownConfig::remote_command_limit`]: gt-proxy-server's limit plus 5 s for
/// the request to reach it.
pub const DEFAULT_REMOTE_COMMAND_LIMIT: Duration = Duration::from_secs(65);

use exec::{ExecTransport, Output};
use proxy::ProxyTransport;

/// Receives one call per command attempt, e.g. to count them in Prometheus.
///
/// `tool` is `gt` or `bd`, `verb` the subcommand, `result` `ok` or an
/// [`Error::metric_label`], `duration` the time of the attempt (not of waiting for a slot).
pub trait CommandObserver: Send + Sync {
    /// Called after every attempt.
    fn observe(&self, tool: &str, verb: &str, result: &str, duration: Duration);
}

/// How commands reach Gas Town.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Run the binaries locally, with the town root as working directory.
    Exec {
        /// The town directory (the one with `mayor/town.json`).
        town_root: PathBuf,
        /// The `gt` binary (a bare name is looked up in `PATH`).
        gt_path: PathBuf,
        /// The `bd` binary (a bare name is looked up in `PATH`).
        bd_path: PathBuf,
        /// `BD_ACTOR`: the name bead changes are audited under.
        actor: Option<String>,
    },
    /// Send commands to gt-proxy-server.
    Proxy {
        /// Base URL, `https://host:9876`; `http://` is refused.
        url: String,
        /// Client certificate chain (PEM).
        client_cert: PathBuf,
        /// Client private key (PEM).
        client_key: PathBuf,
        /// CA that signed the server's certificate (PEM).
        ca: PathBuf,
    },
}

impl Transport {
    /// Local exec of `gt` and `bd` from `PATH` in `town_root`, no actor.
    pub fn exec(town_root: impl Into<PathBuf>) -> Self {
        Transport::Exec {
            town_root: town_root.into(),
            gt_path: "gt".into(),
            bd_path: "bd".into(),
            actor: None,
        }
    }
}

/// Client settings. Start from [`GasTownConfig::new`], which fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasTownConfig {
    /// Exec or proxy.
    pub transport: Transport,
    /// Per-command (per attempt) timeout. Default [`DEFAULT_COMMAND_TIMEOUT`] (70 s), longer
    /// than gt-proxy-server's own limit of 60 s.
    pub command_timeout: Duration,
    /// How long after sending a request gt-proxy-server may still be running its command:
    /// after a `bd create` through the proxy got no answer (timeout, lost connection), the
    /// client waits until then before it looks for the bead. Default
    /// [`DEFAULT_REMOTE_COMMAND_LIMIT`] (65 s: the proxy's 60 s limit plus 5 s to reach it);
    /// only tests change it.
    pub remote_command_limit: Duration,
    /// Commands in flight at once. Default 4.
    pub max_concurrency: usize,
    /// Retries after the first attempt for transient failures. Default 2 (3 attempts): the
    /// reconciler requeues anyway.
    pub retries: u32,
    /// Delays between retries.
    pub backoff: Backoff,
    /// Most stdout bytes kept per command; longer output fails to parse. Default 16 MiB.
    pub max_output_bytes: usize,
}

impl GasTownConfig {
    /// The defaults for `transport`.
    pub fn new(transport: Transport) -> Self {
        GasTownConfig {
            transport,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            remote_command_limit: DEFAULT_REMOTE_COMMAND_LIMIT,
            max_concurrency: 4,
            retries: 2,
            backoff: Backoff::default(),
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What [`GasTown::release_bead`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// `gt unsling` released it.
    Unslung,
    /// It was put back to `open` without an assignee with `bd update` (through the proxy, or
    /// after `gt unsling` refused or did nothing).
    Reopened,
    /// Nobody held it (it was not `hooked` or `in_progress`): nothing was changed.
    NotHeld,
    /// No such bead.
    Missing,
}

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

    /// Creates a task bead (`bd create -t task -p 2 -d <description> --external-ref <ref>
    /// -l gastown-operator,<lookup label> --silent -- <title>`) and returns its ID.
    ///
    /// Keeps the rule of the module documentation: after an attempt that ran or may have run
    /// and failed (any failure except one that never started), it waits until that attempt has
    /// certainly ended, then looks the bead up by `external_ref`; a bead found is returned (the
    /// create worked after all), and only when none exists is the create tried again (for
    /// transient failures, up to the configured retries). So one call never creates two beads.
    ///
    /// Errors: [`Error::is_definite_failure`] means no bead was created: the command never
    /// started, or it exited non-zero and no bead with `external_ref` was found afterwards (or
    /// the lookup failed too, as when Gas Town is down; a non-zero exit is then taken at its
    /// word, although real `bd create` can exit 1 after making the bead, e.g. "The issue was
    /// created locally but not synced to the remote" in beads `cmd/bd/create.go`).
    /// [`Error::outcome_unknown`] means a bead may exist: the caller must look it up
    /// ([`Self::find_bead_by_external_ref`]) before creating again; if the lookup after the
    /// failure failed too, the error is [`Error::OutcomeUnknown`] (never the lookup's own
    /// error, which could look definite).
    pub async fn create_bead(
        &self,
        title: &str,
        description: &str,
        external_ref: &ExternalRef,
    ) -> Result<BeadId, Error> {
        let command = argv::create_bead(title, description, external_ref)?;
        let mut retry = 0;
        loop {
            let (result, started) = self
                .attempt_timed(&command, |out| {
                    require_success(&command, &out)?;
                    require_complete(&command, &out)?;
                    beads::parse_created_id(&out.stdout).map_err(|m| Error::parse(&command, m))
                })
                .await;
            let error = match result {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            let ran = error.outcome_unknown() || matches!(error, Error::Exit { .. });
            if ran {
                self.wait_until_ended(&error, started).await;
                // Also lets a commit sent just before a kill land before we look.
                let delay = self.inner.backoff.delay(retry);
                tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, %external_ref, "bd create failed; looking for its bead before anything else");
                tokio::time::sleep(delay).await;
                match self.find_bead_by_external_ref(external_ref).await {
                    Ok(Some(bead)) => {
                        tracing::info!(bead = %bead.id, %external_ref, "bead created by an attempt that seemed to fail");
                        return bead.bead_id();
                    }
                    Ok(None) => {}
                    // A create that ran may have made its bead even when it exited non-zero
                    // (bd adds labels and commits after inserting the bead), so without the
                    // lookup's answer nothing is known.
                    Err(check) => {
                        return Err(Error::OutcomeUnknown {
                            source: Box::new(error),
                            check: Box::new(check),
                        });
                    }
                }
            }
            if error.is_retryable() && retry < self.inner.retries {
                if !ran {
                    self.pause_before_retry(&error, retry).await;
                }
                retry += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// Waits until a command that failed with `error` after starting at `started` has
    /// certainly ended in Gas Town: at once for a local command (killed and reaped before its
    /// error is returned) and for any answer of gt-proxy-server; after a proxy request that got
    /// no answer, until [`GasTownConfig::remote_command_limit`] after `started`.
    async fn wait_until_ended(&self, error: &Error, started: Instant) {
        if !matches!(self.inner.runner, Runner::Proxy(_)) || !error.may_still_run_remotely() {
            return;
        }
        let ended_by = started + self.inner.remote_command_limit;
        let now = Instant::now();
        if ended_by > now {
            let wait = ended_by - now;
            tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "gt-proxy-server may still run the command; waiting until its limit has passed");
            tokio::time::sleep(wait).await;
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

    /// Reads a bead (`bd show --json -- <id>`). `Ok(None)` when the bead does not exist.
    ///
    /// "Does not exist" is decided narrowly: `bd` printed an empty array, or it exited
    /// non-zero **and** a line of its output names this ID and says "not found" / "no issue
    /// found" (real `bd` prints `Error fetching <id>: no issue found matching "<id>"`). Any
    /// other failure is an error, so a broken town is never taken for a missing bead. A
    /// deleted bead may also come back with status [`BeadStatus::Tombstone`].
    pub async fn show_bead(&self, id: &BeadId) -> Result<Option<Bead>, Error> {
        let command = argv::show_bead(id);
        self.run(&command, |out| {
            if out.exit_code != Some(0) {
                if beads::says_not_found(id, &out.stderr, &out.stdout) {
                    return Ok(None);
                }
                return Err(Error::exit(&command, out.exit_code, &out.stderr, &out.stdout));
            }
            require_complete(&command, &out)?;
            beads::parse_show(&out.stdout, id).map_err(|m| Error::parse(&command, m))
        })
        .await
    }

    /// Reads several beads with one `bd show --json -- <id>...`, by ID. Beads missing from the
    /// answer are missing from the map: real `bd` (beads `cmd/bd/show.go`, since v0.50.0)
    /// reports an unknown ID on stderr and exits 0 with the beads it found, non-zero only when
    /// it found none. Read the missing ones with [`Self::show_bead`], which tells "no such
    /// bead" from a failure.
    pub async fn show_beads(&self, ids: &[BeadId]) -> Result<std::collections::HashMap<String, Bead>, Error> {
        let command = argv::show_beads(ids);
        self.run(&command, |out| {
            require_success(&command, &out)?;
            require_complete(&command, &out)?;
            beads::parse_show_many(&out.stdout).map_err(|m| Error::parse(&command, m))
        })
        .await
    }

    /// Finds the bead created with `external_ref`, e.g. after a crash between `bd create` and
    /// recording the ID: `bd list --json --all --limit 0 -l <lookup label>`, then the
    /// `external_ref` compared here. Complete (closed beads and any number of other beads in
    /// the town; real `bd list` shows only 50 without `--limit 0`) and cheap (the label
    /// narrows the answer to this reference's beads; see [`ExternalRef::lookup_label`]).
    /// Tombstoned beads are skipped; if several match, the oldest (by `created_at`, then ID)
    /// wins.
    ///
    /// Only beads created with the lookup label are found: a bead made by an earlier
    /// controller build, which set no labels, is not (finding those would take listing the
    /// whole town). Those builds recorded a bead's ID in the Automaton's status as soon as
    /// `bd create` answered, so only a create whose answer was lost across the upgrade is
    /// affected; find such a bead with `bd list --json --all --limit 0` and its `external_ref`
    /// (`automaton:<namespace>/<name>/<uid>`).
    pub async fn find_bead_by_external_ref(&self, external_ref: &ExternalRef) -> Result<Option<Bead>, Error> {
        let command = argv::list_beads(external_ref);
        self.run(&command, |out| {
            require_success(&command, &out)?;
            require_complete(&command, &out)?;
            let matching =
                beads::parse_list_matching(&out.stdout, external_ref).map_err(|m| Error::parse(&command, m))?;
            Ok(matching.into_iter().find(|b| !b.status.is_gone()))
        })
        .await
    }

    /// Dispatches a bead to a rig: `gt sling [--merge=<m>] [--agent <a>] -- <bead> <rig>`.
    /// Re-slinging to the same rig is a no-op in Gas Town, so retries are safe.
    pub async fn sling(
        &self,
        bead: &BeadId,
        rig: &str,
        merge: Option<MergeStrategy>,
        agent: Option<&str>,
    ) -> Result<(), Error> {
        let command = argv::sling(bead, rig, merge, agent)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Runs `gt unsling [--force] -- <bead> [<holder>]` and nothing else; exit 0 is success.
    ///
    /// Exit 0 does **not** mean the bead was released. Real `gt unsling` (gastown
    /// `internal/cmd/unsling.go` `runUnslingWith`):
    /// - resolves `holder` (`<rig>/<Name>` or `<rig>/polecats/<Name>`) through the worker's tmux
    ///   session (`resolveTargetAgent` in `internal/cmd/sling_target.go`: `tmux list-panes`):
    ///   a worker whose session is gone fails with `resolving target agent: getting pane for
    ///   <session>: exit status 1`;
    /// - without `holder` acts on the caller's own identity, which the controller (no
    ///   `GT_ROLE`) does not have: "detecting agent identity: cannot determine agent identity";
    /// - looks only for a bead with status `hooked` assigned to that worker: a bead the worker
    ///   has started (`in_progress`) is not found, and gt prints "No work hooked" and **exits
    ///   0 without changing anything**;
    /// - refuses unfinished work without `force` (`hooked work <id> is incomplete`);
    /// - otherwise sets the bead to `open` without an assignee.
    ///
    /// gt-proxy-server does not allow `gt unsling` (403). Use [`Self::release_bead`], which
    /// checks the result and falls back to `bd`.
    pub async fn unsling(&self, bead: &BeadId, holder: Option<&str>, force: bool) -> Result<(), Error> {
        let command = argv::unsling(bead, holder, force)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Puts a bead back to `open` without an assignee (`bd update --status open --assignee ""
    /// -- <id>`; beads `cmd/bd/update.go` sets the assignee whenever `--assignee` is given, so
    /// `""` clears it): the bead-side effect of `gt unsling`, with a subcommand gt-proxy-server
    /// allows, and needing no worker session.
    pub async fn reopen_bead(&self, id: &BeadId) -> Result<(), Error> {
        let command = argv::reopen_bead(id);
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Takes a bead back from whoever holds it, completely, in every case real `gt unsling`
    /// leaves open (see [`Self::unsling`]):
    ///
    /// 1. `bd show` the bead: missing → [`Release::Missing`]; not `hooked`/`in_progress` →
    ///    [`Release::NotHeld`], nothing changed.
    /// 2. Local transport: `gt unsling --force -- <bead> <holder>` (Gas Town logs the unhook),
    ///    `holder` defaulting to the bead's assignee; then `bd show` again: released →
    ///    [`Release::Unslung`]. A failure or a no-op of `gt unsling` is not final: a worker
    ///    whose session is gone, a bead the worker has started (`in_progress`, which `gt
    ///    unsling` does not look for), another bead on the worker's hook all leave it held.
    /// 3. Still held (or through gt-proxy-server, which does not allow `gt unsling`):
    ///    `bd update --status open --assignee "" -- <bead>` → [`Release::Reopened`].
    ///
    /// An error means the bead may still be held (the error of the `bd show` or `bd update`
    /// that failed). The worker's session is never stopped (`gt unsling` does not stop it
    /// either). The worker may finish between the read and the update, which then reopens
    /// finished work: release only work you mean to take back.
    pub async fn release_bead(&self, bead: &BeadId, holder: Option<&str>) -> Result<Release, Error> {
        let Some(current) = self.show_bead(bead).await? else {
            return Ok(Release::Missing);
        };
        if !current.status.is_dispatched() {
            return Ok(Release::NotHeld);
        }
        let holder = holder.or(current.assignee.as_deref());
        if let (Runner::Exec(_), Some(holder)) = (&self.inner.runner, holder) {
            match self.unsling(bead, Some(holder), true).await {
                Ok(()) => match self.show_bead(bead).await? {
                    None => return Ok(Release::Missing),
                    Some(after) if !after.status.is_dispatched() => return Ok(Release::Unslung),
                    Some(after) => {
                        tracing::info!(%bead, status = %after.status, "gt unsling exited 0 but the bead is still held; reopening it with bd");
                    }
                },
                Err(e) => {
                    tracing::info!(%bead, holder, error = %e, "gt unsling did not release the bead; reopening it with bd");
                }
            }
        }
        self.reopen_bead(bead).await?;
        Ok(Release::Reopened)
    }

    /// Closes a bead: `bd close -r <reason> -- <id>`.
    pub async fn close_bead(&self, id: &BeadId, reason: &str) -> Result<(), Error> {
        let command = argv::close_bead(id, reason)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Runs `command`, retrying transient failures.
    async fn run<T>(&self, command: &CommandLine, interpret: impl Fn(Output) -> Result<T, Error>) -> Result<T, Error> {
        let mut retry = 0;
        loop {
            match self.attempt(command, &interpret).await {
                Err(e) if e.is_retryable() && retry < self.inner.retries => {
                    self.pause_before_retry(&e, retry).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    async fn pause_before_retry(&self, error: &Error, retry: u32) {
        let delay = self.inner.backoff.delay(retry);
        tracing::warn!(error = %error, retry = retry + 1, delay_ms = delay.as_millis() as u64, "retrying Gas Town command");
        tokio::time::sleep(delay).await;
    }

    /// One attempt: wait for a slot, run, interpret, report.
    async fn attempt<T>(
        &self,
        command: &CommandLine,
        interpret: impl Fn(Output) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.attempt_timed(command, interpret).await.0
    }

    /// [`Self::attempt`], also returning when the command was started (after the slot).
    async fn attempt_timed<T>(
        &self,
        command: &CommandLine,
        interpret: impl Fn(Output) -> Result<T, Error>,
    ) -> (Result<T, Error>, Instant) {
        let Ok(_permit) = self.inner.permits.acquire().await else {
            // Never started: the semaphore is only closed on shutdown.
            let error = Error::config(format!("the Gas Town client is shut down; `{command}` was not run"));
            return (Err(error), Instant::now());
        };
        tracing::debug!(command = %command, transport = self.transport_kind(), "running Gas Town command");
        let started = Instant::now();
        let output = match &self.inner.runner {
            Runner::Exec(exec) => exec.run(command, self.inner.timeout).await,
            Runner::Proxy(proxy) => proxy.run(command, self.inner.timeout).await,
        };
        let result = output.and_then(interpret);
        if let Some(observer) = &self.observer {
            let label = result.as_ref().map_or_else(Error::metric_label, |_| "ok");
            observer.observe(command.tool().as_str(), command.verb(), label, started.elapsed());
        }
        (result, started)
    }
}

fn require_success(command: &CommandLine, out: &Output) -> Result<(), Error> {
    if out.exit_code == Some(0) {
        Ok(())
    } else {
        Err(Error::exit(command, out.exit_code, &out.stderr, &out.stdout))
    }
}

fn require_complete(command: &CommandLine, out: &Output) -> Result<(), Error> {
    if out.stdout_truncated {
        Err(Error::parse(
            command,
            "output exceeded the configured maximum size and was cut",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;

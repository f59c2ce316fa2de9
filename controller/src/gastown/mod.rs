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
mod backoff;
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

pub use argv::{
    BeadId, CommandLine, EXTERNAL_REF_MAX_CHARS, EXTERNAL_REF_RULE, ExternalRef, REASON_MAX_CHARS, Tool,
    validate_agent_address, validate_description, validate_reason,
};
pub use backoff::Backoff;
pub use batch::BatchedReader;
pub use beads::{Bead, BeadStatus};
pub use error::{Error, STDERR_EXCERPT_CHARS};

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
    /// Per-command (per attempt) timeout. Default 60 s, gt-proxy-server's own limit.
    pub command_timeout: Duration,
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
            command_timeout: Duration::from_secs(60),
            max_concurrency: 4,
            retries: 2,
            backoff: Backoff::default(),
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

enum Runner {
    Exec(ExecTransport),
    Proxy(ProxyTransport),
}

struct Inner {
    runner: Runner,
    timeout: Duration,
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
    /// --silent -- <title>`) and returns its ID.
    ///
    /// If an attempt fails in a way that may have created the bead anyway (timeout, lost
    /// connection), the retry first looks the bead up by `external_ref`, so a retry never
    /// creates a second bead.
    pub async fn create_bead(
        &self,
        title: &str,
        description: &str,
        external_ref: &ExternalRef,
    ) -> Result<BeadId, Error> {
        let command = argv::create_bead(title, description, external_ref)?;
        let mut retry = 0;
        loop {
            let result = self
                .attempt(&command, |out| {
                    require_success(&command, &out)?;
                    require_complete(&command, &out)?;
                    beads::parse_created_id(&out.stdout).map_err(|m| Error::parse(&command, m))
                })
                .await;
            match result {
                Err(e) if e.is_retryable() && retry < self.inner.retries => {
                    self.pause_before_retry(&e, retry).await;
                    retry += 1;
                    if let Some(bead) = self.find_bead_by_external_ref(external_ref).await? {
                        tracing::info!(bead = %bead.id, %external_ref, "bead created by an attempt that seemed to fail");
                        return bead.bead_id();
                    }
                }
                other => return other,
            }
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
    /// answer are missing from the map. Fails as a whole when `bd` does (real `bd` exits
    /// non-zero when any ID is unknown): read those one by one with [`Self::show_bead`].
    pub async fn show_beads(&self, ids: &[BeadId]) -> Result<std::collections::HashMap<String, Bead>, Error> {
        let command = argv::show_beads(ids);
        self.run(&command, |out| {
            require_success(&command, &out)?;
            require_complete(&command, &out)?;
            beads::parse_show_many(&out.stdout).map_err(|m| Error::parse(&command, m))
        })
        .await
    }

    /// Finds the bead created with `external_ref` (`bd list --json --all`, filtered here),
    /// e.g. after a crash between `bd create` and recording the ID. Tombstoned beads are
    /// skipped; if several match, the oldest (by `created_at`, then ID) wins.
    pub async fn find_bead_by_external_ref(&self, external_ref: &ExternalRef) -> Result<Option<Bead>, Error> {
        let command = argv::list_beads();
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

    /// Takes a bead back from its agent: `gt unsling [--force] -- <bead> [<holder>]`; the bead
    /// returns to `open`.
    ///
    /// Real `gt` resolves a missing `holder` to the caller's own hook (which the controller
    /// does not have), and refuses to release unfinished work without `force`: pass the bead's
    /// assignee (`<rig>/polecats/<Name>`) and `force = true` to release work in progress. Note
    /// that gt-proxy-server does not allow `gt unsling` by default; see [`Self::reopen_bead`].
    pub async fn unsling(&self, bead: &BeadId, holder: Option<&str>, force: bool) -> Result<(), Error> {
        let command = argv::unsling(bead, holder, force)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Puts a bead back to `open` without an assignee (`bd update --status open --assignee ""
    /// -- <id>`): the bead-side effect of `gt unsling`, with a subcommand gt-proxy-server
    /// allows by default.
    pub async fn reopen_bead(&self, id: &BeadId) -> Result<(), Error> {
        let command = argv::reopen_bead(id);
        self.run(&command, |out| require_success(&command, &out)).await
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
        let _permit = self.inner.permits.acquire().await.map_err(|_| Error::Transport {
            command: Box::new(command.clone()),
            message: "the Gas Town client is shut down".to_owned(),
        })?;
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
        result
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

//! Client settings: how commands reach Gas Town and how long they may take.

use std::path::PathBuf;
use std::time::Duration;

use super::Backoff;

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

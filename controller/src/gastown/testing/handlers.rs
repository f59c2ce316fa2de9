//! What the fake gt-proxy-server answers an allowed `/v1/exec` with: echo, a table of
//! replies, or the stand-in binaries of a town.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::gastown::exec::{ProcessError, base_env, run_program};

/// The body of a 200 answer of `/v1/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReply {
    /// Standard output of the command.
    pub stdout: String,
    /// Standard error of the command.
    pub stderr: String,
    /// Exit code (`-1` when killed, as Go reports it).
    #[serde(rename = "exitCode")]
    pub exit_code: i32,
}

impl ExecReply {
    /// Exit 0 with `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        ExecReply {
            stdout: stdout.into(),
            stderr: String::new(),
            exit_code: 0,
        }
    }

    /// Exit `code` with `stderr`.
    pub fn fail(exit_code: i32, stderr: impl Into<String>) -> Self {
        ExecReply {
            stdout: String::new(),
            stderr: stderr.into(),
            exit_code,
        }
    }
}

/// Answers an allowed `/v1/exec` request.
pub trait ExecHandler: Send + Sync + 'static {
    /// Runs (or pretends to run) `argv`.
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply>;
}

impl<F, Fut> ExecHandler for F
where
    F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ExecReply> + Send + 'static,
{
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        self(argv).boxed()
    }
}

/// Prints the argv, one element per line, and exits 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl ExecHandler for EchoHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let mut stdout = argv.join("\n");
        stdout.push('\n');
        futures::future::ready(ExecReply::ok(stdout)).boxed()
    }
}

/// Answers from a table keyed by the exact argv; anything else exits 1.
#[derive(Debug, Clone, Default)]
pub struct TableHandler {
    entries: Vec<(Vec<String>, ExecReply)>,
}

impl TableHandler {
    /// An empty table.
    pub fn new() -> Self {
        TableHandler::default()
    }

    /// Answers `argv` with `reply`.
    pub fn with(mut self, argv: &[&str], reply: ExecReply) -> Self {
        self.entries
            .push((argv.iter().map(|s| (*s).to_owned()).collect(), reply));
        self
    }
}

impl ExecHandler for TableHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let reply = self
            .entries
            .iter()
            .find(|(key, _)| *key == argv)
            .map(|(_, reply)| reply.clone())
            .unwrap_or_else(|| ExecReply::fail(1, format!("fake proxy: no table entry for {argv:?}\n")));
        futures::future::ready(reply).boxed()
    }
}

/// Execs the stand-in binaries like gt-proxy-server does: `argv[0]` `gt`/`bd` mapped to the
/// configured paths, working directory the town root (the fake tools find the town there),
/// environment `PATH`, `HOME` and `GT_PROXY_IDENTITY`.
#[derive(Debug, Clone)]
pub struct TownExecHandler {
    /// The town directory.
    pub town_root: PathBuf,
    /// The stand-in `gt`.
    pub gt_path: PathBuf,
    /// The stand-in `bd`.
    pub bd_path: PathBuf,
    /// `GT_PROXY_IDENTITY` passed to the commands (`<rig>/<name>` from the client CN).
    pub identity: Option<String>,
    /// Kill commands after this long (gt-proxy-server: 60 s).
    pub timeout: Duration,
}

impl TownExecHandler {
    /// Runs `gt_path`/`bd_path` in `town_root`, identity `operator/controller`, 60 s timeout.
    pub fn new(town_root: impl Into<PathBuf>, gt_path: impl Into<PathBuf>, bd_path: impl Into<PathBuf>) -> Self {
        TownExecHandler {
            town_root: town_root.into(),
            gt_path: gt_path.into(),
            bd_path: bd_path.into(),
            identity: Some("operator/controller".to_owned()),
            timeout: Duration::from_secs(60),
        }
    }
}

impl ExecHandler for TownExecHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let program = match argv.first().map(String::as_str) {
            Some("gt") => self.gt_path.clone(),
            Some("bd") => self.bd_path.clone(),
            other => {
                let reply = ExecReply::fail(127, format!("fake proxy: no binary for {other:?}\n"));
                return futures::future::ready(reply).boxed();
            }
        };
        let mut env = base_env();
        if let Some(identity) = &self.identity {
            env.push(("GT_PROXY_IDENTITY".into(), identity.into()));
        }
        let town_root = self.town_root.clone();
        let timeout = self.timeout;
        async move {
            let args = argv.get(1..).unwrap_or_default();
            match run_program(&program, args, &town_root, &env, timeout, 64 * 1024 * 1024).await {
                Ok(out) => ExecReply {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code.unwrap_or(-1),
                },
                Err(ProcessError::Timeout) => ExecReply::fail(-1, "signal: killed\n"),
                Err(ProcessError::NotFound) => ExecReply::fail(
                    1,
                    format!("fork/exec {}: no such file or directory\n", program.display()),
                ),
                Err(ProcessError::Spawn(e) | ProcessError::Io(e)) => ExecReply::fail(1, format!("{e}\n")),
            }
        }
        .boxed()
    }
}

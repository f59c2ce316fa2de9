//! Local transport: runs `gt`/`bd` as child processes with the town root as working directory.
//!
//! No shell is involved: the program is exec'd with the argv as built in [`super::argv`]. The
//! environment is cleared and only `PATH`, `HOME` (from the controller's environment) and
//! `BD_ACTOR` (configured) are passed: in particular never `GT_ROLE`/`GT_POLECAT`, which would
//! make `gt sling` believe it is called by a worker agent and refuse. A command that outlives
//! its timeout is killed (`SIGKILL` to the direct child; children it started in their own
//! sessions, such as tmux, are left alone on purpose: those are Gas Town's agents), and the
//! error is returned only once it has exited.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::argv::{CommandLine, Tool};
use super::error::Error;

/// Most stderr bytes kept per command (the rest is read and discarded).
pub(crate) const STDERR_CAP: usize = 64 * 1024;
/// `PATH` for the commands when the controller has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Linux/macOS `ETXTBSY`: exec of a file another thread still holds open for writing (a
/// binary being replaced, or a script just written). Short-lived, so spawning is retried.
const ETXTBSY: i32 = 26;

/// What one command printed and how it ended, from either transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8), cut at the configured size.
    pub stdout: String,
    /// Standard error (lossy UTF-8), cut at [`STDERR_CAP`].
    pub stderr: String,
    /// Whether stdout was cut: JSON parsing must then fail loudly.
    pub stdout_truncated: bool,
}

/// Runs commands in a local town.
#[derive(Debug, Clone)]
pub(crate) struct ExecTransport {
    town_root: PathBuf,
    gt_path: PathBuf,
    bd_path: PathBuf,
    env: Vec<(OsString, OsString)>,
    max_output: usize,
}

impl ExecTransport {
    pub(crate) fn new(
        town_root: PathBuf,
        gt_path: PathBuf,
        bd_path: PathBuf,
        actor: Option<&str>,
        max_output: usize,
    ) -> Result<Self, Error> {
        let mut env = base_env();
        if let Some(actor) = actor {
            let count = actor.chars().count();
            if !(1..=128).contains(&count) || actor.chars().any(char::is_control) {
                return Err(Error::config(format!(
                    "actor {actor:?} is not usable as BD_ACTOR: use 1-128 characters without control characters"
                )));
            }
            env.push(("BD_ACTOR".into(), actor.into()));
        }
        Ok(ExecTransport {
            town_root,
            gt_path,
            bd_path,
            env,
            max_output,
        })
    }

    pub(crate) async fn run(&self, command: &CommandLine, timeout: Duration) -> Result<Output, Error> {
        let program = match command.tool() {
            Tool::Gt => &self.gt_path,
            Tool::Bd => &self.bd_path,
        };
        let result = run_program(
            program,
            command.args(),
            &self.town_root,
            &self.env,
            timeout,
            self.max_output,
        )
        .await;
        result.map_err(|failure| match failure {
            ProcessError::NotFound if !self.town_root.is_dir() => Error::Missing {
                what: "town root",
                path: self.town_root.clone(),
            },
            ProcessError::NotFound => Error::Missing {
                what: command.tool().as_str(),
                path: program.clone(),
            },
            ProcessError::Spawn(source) => Error::Spawn {
                command: Box::new(command.clone()),
                source,
            },
            ProcessError::Timeout => Error::Timeout {
                command: Box::new(command.clone()),
                after: timeout,
            },
            ProcessError::Io(e) => Error::Transport {
                command: Box::new(command.clone()),
                message: format!("reading the output of the local command: {e}"),
            },
        })
    }
}

/// `PATH` and `HOME` from the controller's own environment; nothing else.
pub(crate) fn base_env() -> Vec<(OsString, OsString)> {
    let mut env = vec![(
        "PATH".into(),
        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    )];
    if let Some(home) = std::env::var_os("HOME") {
        env.push(("HOME".into(), home));
    }
    env
}

/// Why a process gave no [`Output`].
#[derive(Debug)]
pub(crate) enum ProcessError {
    /// The program (or the working directory) does not exist.
    NotFound,
    /// Another spawn failure.
    Spawn(io::Error),
    /// Killed after the timeout.
    Timeout,
    /// Reading its pipes or waiting for it failed.
    Io(io::Error),
}

/// Runs `program args...` in `cwd` with exactly `env`, stdin closed, stdout kept up to
/// `max_stdout` bytes, and kills it after `timeout`.
pub(crate) async fn run_program(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(OsString, OsString)],
    timeout: Duration,
    max_stdout: usize,
) -> Result<Output, ProcessError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = spawn(&mut cmd).await?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, max_stdout),
            read_capped(stderr, STDERR_CAP),
            child.wait()
        );
        let (stdout, stdout_truncated) = out.map_err(ProcessError::Io)?;
        let (stderr, _) = err.map_err(ProcessError::Io)?;
        let status = status.map_err(ProcessError::Io)?;
        Ok(Output {
            exit_code: status.code(),
            stdout,
            stderr,
            stdout_truncated,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => {
            end(&mut child).await;
            Err(e)
        }
        Err(_) => {
            end(&mut child).await;
            Err(ProcessError::Timeout)
        }
    }
}

/// Longest wait for a killed child to be gone.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// Kills the child (`SIGKILL`) and waits until it has exited, so that a command reported as
/// failed is no longer running: a `bd create` that timed out cannot create its bead after the
/// caller has looked for it.
async fn end(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    if tokio::time::timeout(REAP_WAIT, child.wait()).await.is_err() {
        tracing::warn!(pid = child.id(), "a killed Gas Town command has not exited after 5 s");
    }
}

async fn spawn(cmd: &mut tokio::process::Command) -> Result<tokio::process::Child, ProcessError> {
    let mut busy_retries = 0u64;
    loop {
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ProcessError::NotFound),
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && busy_retries < 5 => {
                busy_retries += 1;
                tokio::time::sleep(Duration::from_millis(10 * busy_retries)).await;
            }
            Err(e) => return Err(ProcessError::Spawn(e)),
        }
    }
}

/// Reads to EOF, keeping at most `cap` bytes; the rest is drained so the child never blocks
/// on a full pipe. Returns the text and whether it was cut.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> io::Result<(String, bool)> {
    let Some(mut reader) = reader else {
        return Ok((String::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let room = cap.saturating_sub(kept.len());
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    Ok((String::from_utf8_lossy(&kept).into_owned(), truncated))
}

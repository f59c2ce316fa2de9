//! The one error type of the Gas Town client; what each failure means (retry, unreachable,
//! definite or unknown outcome) is in [`super::classify`].

use std::path::PathBuf;
use std::time::Duration;

use super::argv::CommandLine;

/// Longest stderr (or stdout) excerpt kept in an [`Error::Exit`].
pub const STDERR_EXCERPT_CHARS: usize = 2000;

/// Everything that can go wrong talking to Gas Town.
///
/// Variants that concern one command carry it ([`CommandLine`] prints the verb and a quoted,
/// truncated argv; it never holds secrets). Use [`Error::metric_label`] for metrics,
/// [`Error::is_unreachable`] for the `GasTownReachable` condition, [`Error::is_retryable`]
/// to decide on a quick retry and [`Error::is_definite_failure`] /
/// [`Error::outcome_unknown`] to decide whether a command that changes Gas Town may have done
/// its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument failed validation; nothing was run. Fix the input.
    #[error("{message}")]
    InvalidArgument {
        /// What kind of value (e.g. "rig name").
        what: &'static str,
        /// The rule that was broken, with the offending value.
        message: String,
    },

    /// The client configuration is unusable (bad URL, unreadable or invalid PEM files, ...).
    #[error("invalid Gas Town client configuration: {message}")]
    Config {
        /// What is wrong and what to change.
        message: String,
    },

    /// A binary or the town directory does not exist.
    #[error("{}", missing_message(what, path))]
    Missing {
        /// `gt`, `bd` or `town root`.
        what: &'static str,
        /// The path that was tried.
        path: PathBuf,
    },

    /// The command could not be started (e.g. permission denied).
    #[error("`{command}` could not be started: {source}")]
    Spawn {
        /// The command.
        command: Box<CommandLine>,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// The command did not finish in time and was killed (exec) or abandoned (proxy).
    #[error("`{command}` timed out after {after:?}")]
    Timeout {
        /// The command.
        command: Box<CommandLine>,
        /// The configured per-command timeout.
        after: Duration,
    },

    /// No connection to gt-proxy-server could be made (refused, unreachable, DNS): the request
    /// was never sent.
    #[error("`{command}`: cannot connect to gt-proxy-server: {message}")]
    Connect {
        /// The command.
        command: Box<CommandLine>,
        /// The error chain.
        message: String,
    },

    /// Talking to gt-proxy-server failed after the request may have been sent (I/O, HTTP
    /// protocol, lost connection), or reading a local command's output failed.
    #[error("`{command}` failed: {message}")]
    Transport {
        /// The command.
        command: Box<CommandLine>,
        /// The error chain.
        message: String,
    },

    /// TLS with gt-proxy-server failed: the server's certificate is not signed by the
    /// configured CA, or the server refused our client certificate (both end the session
    /// before gt-proxy-server reads a request).
    #[error("`{command}`: TLS with gt-proxy-server failed: {message}")]
    Tls {
        /// The command.
        command: Box<CommandLine>,
        /// The error chain.
        message: String,
    },

    /// gt-proxy-server answered with an HTTP status other than 200 (403: command not on its
    /// allow-list, 429: rate limit, 503: busy).
    #[error("`{command}`: gt-proxy-server answered HTTP {status}: {body}")]
    HttpStatus {
        /// The command.
        command: Box<CommandLine>,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },

    /// The command ran and exited non-zero (or was killed by a signal: no code).
    #[error("`{command}` exited with {}: {stderr}", code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")))]
    Exit {
        /// The command.
        command: Box<CommandLine>,
        /// Exit code; `None` when killed by a signal.
        code: Option<i32>,
        /// The start of stderr, or of stdout when stderr was empty (bd prints `--json`
        /// errors on stdout).
        stderr: String,
    },

    /// The command succeeded but its output is not what the contract says.
    #[error("`{command}`: unexpected output: {message}")]
    Parse {
        /// The command.
        command: Box<CommandLine>,
        /// What was wrong.
        message: String,
    },

    /// A command that changes Gas Town (`bd create`) failed in a way that may have left its
    /// change done, and the check that would have told (looking the bead up) failed too.
    #[error("{source}; whether it took effect is unknown: the check failed: {check}")]
    OutcomeUnknown {
        /// The failure of the command itself.
        source: Box<Error>,
        /// The failure of the check.
        check: Box<Error>,
    },
}

impl Error {
    /// The command the error is about, if any.
    pub fn command(&self) -> Option<&CommandLine> {
        match self {
            Error::OutcomeUnknown { source, .. } => source.command(),
            Error::Spawn { command, .. }
            | Error::Connect { command, .. }
            | Error::Timeout { command, .. }
            | Error::Transport { command, .. }
            | Error::Tls { command, .. }
            | Error::HttpStatus { command, .. }
            | Error::Exit { command, .. }
            | Error::Parse { command, .. } => Some(command),
            Error::InvalidArgument { .. } | Error::Config { .. } | Error::Missing { .. } => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn parse(command: &CommandLine, message: impl Into<String>) -> Self {
        Error::Parse {
            command: Box::new(command.clone()),
            message: message.into(),
        }
    }

    pub(crate) fn exit(command: &CommandLine, code: Option<i32>, stderr: &str, stdout: &str) -> Self {
        let text = if stderr.trim().is_empty() { stdout } else { stderr };
        Error::Exit {
            command: Box::new(command.clone()),
            code,
            stderr: excerpt(text.trim(), STDERR_EXCERPT_CHARS),
        }
    }
}

/// A copy of an `io::Error`: its OS error code if it has one, else its kind and message.
fn copy_io_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Errors are cloned to answer every read of a batch that failed as a whole. By hand, because
/// the `io::Error` of [`Error::Spawn`] is not `Clone`.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::InvalidArgument { what, message } => Error::InvalidArgument {
                what,
                message: message.clone(),
            },
            Error::Config { message } => Error::Config {
                message: message.clone(),
            },
            Error::Missing { what, path } => Error::Missing {
                what,
                path: path.clone(),
            },
            Error::Spawn { command, source } => Error::Spawn {
                command: command.clone(),
                source: copy_io_error(source),
            },
            Error::Timeout { command, after } => Error::Timeout {
                command: command.clone(),
                after: *after,
            },
            Error::Connect { command, message } => Error::Connect {
                command: command.clone(),
                message: message.clone(),
            },
            Error::Transport { command, message } => Error::Transport {
                command: command.clone(),
                message: message.clone(),
            },
            Error::Tls { command, message } => Error::Tls {
                command: command.clone(),
                message: message.clone(),
            },
            Error::HttpStatus { command, status, body } => Error::HttpStatus {
                command: command.clone(),
                status: *status,
                body: body.clone(),
            },
            Error::Exit { command, code, stderr } => Error::Exit {
                command: command.clone(),
                code: *code,
                stderr: stderr.clone(),
            },
            Error::Parse { command, message } => Error::Parse {
                command: command.clone(),
                message: message.clone(),
            },
            Error::OutcomeUnknown { source, check } => Error::OutcomeUnknown {
                source: source.clone(),
                check: check.clone(),
            },
        }
    }
}

/// "gt not installed at /opt/bin/gt", or "... not found in PATH" for a bare program name.
fn missing_message(what: &str, path: &std::path::Path) -> String {
    if path.components().count() == 1 && !path.has_root() && what != "town root" {
        format!(
            "{what} not installed: {:?} not found in PATH",
            path.display().to_string()
        )
    } else if what == "town root" {
        format!("town root {} does not exist", path.display())
    } else {
        format!("{what} not installed at {}", path.display())
    }
}

/// The first `max` characters of `text`, with `…` when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Sample errors for the tests of this module and of [`super::classify`].
#[cfg(test)]
pub(crate) mod samples {
    use std::time::Duration;

    use super::{CommandLine, Error};
    use crate::gastown::BeadId;
    use crate::gastown::argv::show_bead;

    pub(crate) fn cmd() -> Box<CommandLine> {
        Box::new(show_bead(&BeadId::parse("go-7xq").unwrap()))
    }

    pub(crate) fn http(status: u16) -> Error {
        Error::HttpStatus {
            command: cmd(),
            status,
            body: "x".into(),
        }
    }

    pub(crate) fn exit(code: Option<i32>) -> Error {
        Error::exit(&cmd(), code, "boom", "")
    }

    pub(crate) fn timeout() -> Error {
        Error::Timeout {
            command: cmd(),
            after: Duration::from_secs(1),
        }
    }

    /// A connection lost after the request was sent.
    pub(crate) fn lost(message: &str) -> Error {
        Error::Transport {
            command: cmd(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::cmd;
    use super::*;

    #[test]
    fn a_cloned_spawn_error_keeps_its_os_error() {
        let e = Error::Spawn {
            command: cmd(),
            source: std::io::Error::from_raw_os_error(13),
        };
        match e.clone() {
            Error::Spawn { source, .. } => assert_eq!(source.raw_os_error(), Some(13)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn display_carries_command_code_and_stderr() {
        let err = Error::exit(&cmd(), Some(3), &"e".repeat(5000), "");
        let text = err.to_string();
        assert!(
            text.starts_with("`bd show --json -- go-7xq` exited with code 3: eee"),
            "{text}"
        );
        assert!(text.len() < 2200);
        let stdout_only = Error::exit(&cmd(), None, "  ", "{\"error\":\"x\"}");
        assert_eq!(
            stdout_only.to_string(),
            "`bd show --json -- go-7xq` exited with a signal: {\"error\":\"x\"}"
        );
        let missing = Error::Missing {
            what: "gt",
            path: "/opt/gt/bin/gt".into(),
        };
        assert_eq!(missing.to_string(), "gt not installed at /opt/gt/bin/gt");
        let bare = Error::Missing {
            what: "bd",
            path: "bd".into(),
        };
        assert_eq!(bare.to_string(), "bd not installed: \"bd\" not found in PATH");
        let town = Error::Missing {
            what: "town root",
            path: "/srv/town".into(),
        };
        assert_eq!(town.to_string(), "town root /srv/town does not exist");
        assert!(err.command().is_some());
    }
}

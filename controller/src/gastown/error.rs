//! The one error type of the Gas Town client.

use std::path::PathBuf;
use std::time::Duration;

use super::argv::CommandLine;

/// Longest stderr (or stdout) excerpt kept in an [`Error::Exit`].
pub const STDERR_EXCERPT_CHARS: usize = 2000;

/// Everything that can go wrong talking to Gas Town.
///
/// Variants that concern one command carry it ([`CommandLine`] prints the verb and a quoted,
/// truncated argv; it never holds secrets). Use [`Error::metric_label`] for metrics,
/// [`Error::is_unreachable`] for the `GasTownReachable` condition and [`Error::is_retryable`]
/// to decide on a quick retry.
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

    /// Talking to gt-proxy-server failed (connect, I/O, HTTP protocol), or reading a local
    /// command's output failed.
    #[error("`{command}` failed: {message}")]
    Transport {
        /// The command.
        command: Box<CommandLine>,
        /// The error chain.
        message: String,
    },

    /// TLS with gt-proxy-server failed: the server's certificate is not signed by the
    /// configured CA, or the server refused our client certificate.
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
}

impl Error {
    /// A low-cardinality label for metrics: `invalid_argument`, `config`, `not_found`,
    /// `transport`, `tls`, `timeout`, `http_status`, `exit` or `parse`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Config { .. } => "config",
            Error::Missing { .. } => "not_found",
            Error::Spawn { .. } | Error::Transport { .. } => "transport",
            Error::Tls { .. } => "tls",
            Error::Timeout { .. } => "timeout",
            Error::HttpStatus { .. } => "http_status",
            Error::Exit { .. } => "exit",
            Error::Parse { .. } => "parse",
        }
    }

    /// True when Gas Town could not be reached or did not answer: the controller reports
    /// `GasTownReachable=False` and backs off. False for validation errors and for answers
    /// (a non-zero exit or unexpected output is an answer).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Missing { .. }
                | Error::Spawn { .. }
                | Error::Timeout { .. }
                | Error::Transport { .. }
                | Error::Tls { .. }
                | Error::HttpStatus { .. }
        )
    }

    /// True for transient failures worth an immediate retry with backoff: transport errors,
    /// timeouts and HTTP 429/502/503/504. Never for validation errors, configuration
    /// problems, TLS trust failures, missing binaries or a definite non-zero exit.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// True when the command certainly did not do its work: it was never started (invalid
    /// input, configuration, missing binary, spawn failure, TLS refused) or it answered with a
    /// non-zero exit. False when it may have run: timeouts, lost connections, HTTP errors from
    /// gt-proxy-server, unreadable output.
    pub fn is_definite_failure(&self) -> bool {
        matches!(
            self,
            Error::InvalidArgument { .. }
                | Error::Config { .. }
                | Error::Missing { .. }
                | Error::Spawn { .. }
                | Error::Tls { .. }
                | Error::Exit { .. }
        )
    }

    /// The command the error is about, if any.
    pub fn command(&self) -> Option<&CommandLine> {
        match self {
            Error::Spawn { command, .. }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gastown::argv::{BeadId, show_bead};

    fn cmd() -> Box<CommandLine> {
        Box::new(show_bead(&BeadId::parse("go-7xq").unwrap()))
    }

    #[test]
    fn classification() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases: Vec<(Error, &str, bool, bool)> = vec![
            (
                Error::InvalidArgument {
                    what: "rig name",
                    message: "bad".into(),
                },
                "invalid_argument",
                false,
                false,
            ),
            (Error::config("bad url"), "config", false, false),
            (
                Error::Missing {
                    what: "gt",
                    path: "/x/gt".into(),
                },
                "not_found",
                true,
                false,
            ),
            (
                Error::Spawn {
                    command: cmd(),
                    source: io(),
                },
                "transport",
                true,
                false,
            ),
            (
                Error::Timeout {
                    command: cmd(),
                    after: Duration::from_secs(1),
                },
                "timeout",
                true,
                true,
            ),
            (
                Error::Transport {
                    command: cmd(),
                    message: "refused".into(),
                },
                "transport",
                true,
                true,
            ),
            (
                Error::Tls {
                    command: cmd(),
                    message: "UnknownIssuer".into(),
                },
                "tls",
                true,
                false,
            ),
            (
                Error::HttpStatus {
                    command: cmd(),
                    status: 403,
                    body: "no".into(),
                },
                "http_status",
                true,
                false,
            ),
            (
                Error::HttpStatus {
                    command: cmd(),
                    status: 429,
                    body: "slow".into(),
                },
                "http_status",
                true,
                true,
            ),
            (
                Error::HttpStatus {
                    command: cmd(),
                    status: 503,
                    body: "busy".into(),
                },
                "http_status",
                true,
                true,
            ),
            (Error::exit(&cmd(), Some(1), "boom", ""), "exit", false, false),
            (Error::parse(&cmd(), "not JSON"), "parse", false, false),
        ];
        // Certainly did not do its work: never started, or a non-zero exit (in `cases` order).
        let definite = [
            true, true, true, true, false, false, true, false, false, false, true, false,
        ];
        assert_eq!(cases.len(), definite.len());
        for ((err, label, unreachable, retryable), definite) in cases.into_iter().zip(definite) {
            assert_eq!(err.metric_label(), label, "{err}");
            assert_eq!(err.is_unreachable(), unreachable, "{err}");
            assert_eq!(err.is_retryable(), retryable, "{err}");
            assert_eq!(err.is_definite_failure(), definite, "{err}");
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

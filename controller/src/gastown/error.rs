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

/// HTTP statuses gt-proxy-server answers before it runs anything (gastown
/// `internal/proxy/exec.go` `handleExec`: 405 wrong method, 400 bad body or empty argv, 403
/// command or subcommand not allowed, 429 rate limit, 503 all exec slots busy; the mux
/// answers 404 for other paths). Once it has run the command it always answers 200 with the
/// exit code in the body.
const STATUSES_BEFORE_EXEC: &[u16] = &[400, 403, 404, 405, 429, 503];

/// The `exitCode` gt-proxy-server reports for a command it killed at its 60 s limit (or
/// because the client went away): Go's `ExitError.ExitCode()` is -1 for a process ended by a
/// signal (gastown `internal/proxy/exec.go` `runCommand`, `exec.CommandContext`).
pub const PROXY_KILLED_EXIT_CODE: i32 = -1;

impl Error {
    /// A low-cardinality label for metrics: `invalid_argument`, `config`, `not_found`,
    /// `transport`, `tls`, `timeout`, `http_status`, `exit` or `parse` (for
    /// [`Error::OutcomeUnknown`], the label of the command's own failure).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Config { .. } => "config",
            Error::Missing { .. } => "not_found",
            Error::Spawn { .. } | Error::Connect { .. } | Error::Transport { .. } => "transport",
            Error::Tls { .. } => "tls",
            Error::Timeout { .. } => "timeout",
            Error::HttpStatus { .. } => "http_status",
            Error::Exit { .. } => "exit",
            Error::Parse { .. } => "parse",
            Error::OutcomeUnknown { source, .. } => source.metric_label(),
        }
    }

    /// True when Gas Town could not be reached or did not answer: the controller reports
    /// `GasTownReachable=False` and backs off. False for validation errors and for answers
    /// (a non-zero exit or unexpected output is an answer).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::OutcomeUnknown { source, check } => source.is_unreachable() || check.is_unreachable(),
            _ => matches!(
                self,
                Error::Missing { .. }
                    | Error::Spawn { .. }
                    | Error::Connect { .. }
                    | Error::Timeout { .. }
                    | Error::Transport { .. }
                    | Error::Tls { .. }
                    | Error::HttpStatus { .. }
            ),
        }
    }

    /// True for transient failures worth an immediate retry with backoff: transport errors,
    /// timeouts and HTTP 429/502/503/504. Never for validation errors, configuration
    /// problems, TLS trust failures, missing binaries or a definite non-zero exit.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// True only when it is known that the command did nothing: it never started, or it ran
    /// to its end and said it failed.
    ///
    /// - Never started: invalid input ([`Error::InvalidArgument`]), configuration
    ///   ([`Error::Config`]), missing binary or town ([`Error::Missing`]), exec failed
    ///   ([`Error::Spawn`]), no connection ([`Error::Connect`]), TLS refused before a request was
    ///   read ([`Error::Tls`]), or gt-proxy-server refused the request before running it
    ///   ([`Error::HttpStatus`] 400, 403, 404, 405, 429 or 503).
    /// - Ran to completion and failed: [`Error::Exit`] with an exit code from 1 to 128.
    ///
    /// Everything else is [`Error::outcome_unknown`]: a timeout (the command was killed or
    /// abandoned), a connection lost after the request was sent, a process killed by a signal
    /// (exit code `None`, or 129-255 as a shell reports a killed child), gt-proxy-server's
    /// `exitCode: -1` (it killed the command at its 60 s limit or when the client went away),
    /// an HTTP status it does not answer before running, unreadable output of a command that
    /// exited 0, and [`Error::OutcomeUnknown`].
    pub fn is_definite_failure(&self) -> bool {
        match self {
            Error::InvalidArgument { .. }
            | Error::Config { .. }
            | Error::Missing { .. }
            | Error::Spawn { .. }
            | Error::Connect { .. }
            | Error::Tls { .. } => true,
            Error::HttpStatus { status, .. } => STATUSES_BEFORE_EXEC.contains(status),
            Error::Exit { code, .. } => matches!(code, Some(1..=128)),
            Error::Timeout { .. } | Error::Transport { .. } | Error::Parse { .. } | Error::OutcomeUnknown { .. } => {
                false
            }
        }
    }

    /// The negation of [`Error::is_definite_failure`]: the command may have done its work (a
    /// `bd create` may have made the bead). After such a failure of a create, never create
    /// again before the bead has been looked up by its external reference (see
    /// [`super::GasTown::create_bead`]).
    pub fn outcome_unknown(&self) -> bool {
        !self.is_definite_failure()
    }

    /// True when the command may still be running in Gas Town after the error was returned:
    /// gt-proxy-server may go on running a command whose answer never arrived (timeout, lost
    /// connection, an HTTP status it does not answer before running) until its own 60 s limit.
    /// A local command is always killed and reaped before its error is returned.
    pub(crate) fn may_still_run_remotely(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Transport { .. } => true,
            Error::HttpStatus { status, .. } => !STATUSES_BEFORE_EXEC.contains(status),
            _ => false,
        }
    }

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

/// Errors are cloned to answer every read of a batch that failed as a whole.
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
        let http = |status| Error::HttpStatus {
            command: cmd(),
            status,
            body: "x".into(),
        };
        let exit = |code| Error::exit(&cmd(), code, "boom", "");
        // (error, label, unreachable, retryable, definite: certainly did nothing)
        let cases: Vec<(Error, &str, bool, bool, bool)> = vec![
            (
                Error::InvalidArgument {
                    what: "rig name",
                    message: "bad".into(),
                },
                "invalid_argument",
                false,
                false,
                true,
            ),
            (Error::config("bad url"), "config", false, false, true),
            (
                Error::Missing {
                    what: "gt",
                    path: "/x/gt".into(),
                },
                "not_found",
                true,
                false,
                true,
            ),
            (
                Error::Spawn {
                    command: cmd(),
                    source: io(),
                },
                "transport",
                true,
                false,
                true,
            ),
            (
                Error::Connect {
                    command: cmd(),
                    message: "connection refused".into(),
                },
                "transport",
                true,
                true,
                true,
            ),
            (
                Error::Timeout {
                    command: cmd(),
                    after: Duration::from_secs(1),
                },
                "timeout",
                true,
                true,
                false,
            ),
            (
                Error::Transport {
                    command: cmd(),
                    message: "connection reset".into(),
                },
                "transport",
                true,
                true,
                false,
            ),
            (
                Error::Tls {
                    command: cmd(),
                    message: "UnknownIssuer".into(),
                },
                "tls",
                true,
                false,
                true,
            ),
            (http(403), "http_status", true, false, true),
            (http(400), "http_status", true, false, true),
            (http(429), "http_status", true, true, true),
            (http(503), "http_status", true, true, true),
            // Not answered by gt-proxy-server before it runs anything: may have run.
            (http(500), "http_status", true, false, false),
            (http(502), "http_status", true, true, false),
            (http(504), "http_status", true, true, false),
            (exit(Some(1)), "exit", false, false, true),
            (exit(Some(2)), "exit", false, false, true),
            (exit(Some(128)), "exit", false, false, true),
            // Killed by a signal: locally (no code), by a shell (128 + signal), by
            // gt-proxy-server at its limit (-1).
            (exit(None), "exit", false, false, false),
            (exit(Some(137)), "exit", false, false, false),
            (exit(Some(PROXY_KILLED_EXIT_CODE)), "exit", false, false, false),
            (Error::parse(&cmd(), "not JSON"), "parse", false, false, false),
            (
                Error::OutcomeUnknown {
                    source: Box::new(Error::Timeout {
                        command: cmd(),
                        after: Duration::from_secs(1),
                    }),
                    check: Box::new(exit(Some(1))),
                },
                "timeout",
                true,
                false,
                false,
            ),
            (
                Error::OutcomeUnknown {
                    source: Box::new(exit(None)),
                    check: Box::new(exit(Some(1))),
                },
                "exit",
                false,
                false,
                false,
            ),
        ];
        for (err, label, unreachable, retryable, definite) in cases {
            assert_eq!(err.metric_label(), label, "{err}");
            assert_eq!(err.is_unreachable(), unreachable, "{err}");
            assert_eq!(err.is_retryable(), retryable, "{err}");
            assert_eq!(err.is_definite_failure(), definite, "{err}");
            assert_eq!(err.outcome_unknown(), !definite, "{err}");
            let copy = err.clone();
            assert_eq!(copy.to_string(), err.to_string());
            assert_eq!(copy.is_definite_failure(), definite);
        }
    }

    #[test]
    fn only_remote_failures_without_an_answer_may_still_run() {
        let timeout = Error::Timeout {
            command: cmd(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.may_still_run_remotely());
        let lost = Error::Transport {
            command: cmd(),
            message: "reset".into(),
        };
        assert!(lost.may_still_run_remotely());
        // gt-proxy-server answered: the command ended (or never ran).
        assert!(!Error::exit(&cmd(), Some(PROXY_KILLED_EXIT_CODE), "", "").may_still_run_remotely());
        assert!(!Error::parse(&cmd(), "x").may_still_run_remotely());
        for (status, may) in [(429, false), (503, false), (502, true), (504, true)] {
            let e = Error::HttpStatus {
                command: cmd(),
                status,
                body: String::new(),
            };
            assert_eq!(e.may_still_run_remotely(), may, "{status}");
        }
    }

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

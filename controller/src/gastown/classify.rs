//! What a failure means: its metric label, whether Gas Town was unreachable, whether a quick
//! retry is worth it, and whether the command certainly did nothing or may have done its work.

use super::error::Error;

/// HTTP statuses gt-proxy-server answers before it runs anything (gastown
/// `internal/proxy/exec.go` `handleExec`, lines 26-95 at commit a8bd79bf8, before `runCommand`
/// at line 103: 405 wrong method, 400 bad body or empty argv, 403
/// command or subcommand not allowed, 429 rate limit, 503 all exec slots busy; the mux
/// answers 404 for other paths). Once it has run the command it always answers 200 with the
/// exit code in the body.
const STATUSES_BEFORE_EXEC: &[u16] = &[400, 403, 404, 405, 429, 503];

/// The `exitCode` gt-proxy-server reports for a command it killed at its 60 s limit (or
/// because the client went away): Go's `ExitError.ExitCode()` is -1 for a process ended by a
/// signal (gastown `internal/proxy/exec.go` `runCommand`, lines 206-227 at commit a8bd79bf8:
/// `exec.CommandContext` with the 60 s deadline of lines 97-103, then `exit.ExitCode()`).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gastown::error::samples::{cmd, exit, http, lost, timeout};

    /// `source` whose lookup afterwards failed with exit 1.
    fn unknown(source: Error) -> Error {
        Error::OutcomeUnknown {
            source: Box::new(source),
            check: Box::new(exit(Some(1))),
        }
    }

    // A table: one row per kind of failure.
    #[test]
    fn classification() {
        let invalid = Error::InvalidArgument {
            what: "rig name",
            message: "bad".into(),
        };
        let missing = Error::Missing {
            what: "gt",
            path: "/x/gt".into(),
        };
        let spawn = Error::Spawn {
            command: cmd(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let connect = Error::Connect {
            command: cmd(),
            message: "connection refused".into(),
        };
        let tls = Error::Tls {
            command: cmd(),
            message: "UnknownIssuer".into(),
        };
        // (error, label, unreachable, retryable, definite: certainly did nothing)
        let cases: Vec<(Error, &str, bool, bool, bool)> = vec![
            (invalid, "invalid_argument", false, false, true),
            (Error::config("bad url"), "config", false, false, true),
            (missing, "not_found", true, false, true),
            (spawn, "transport", true, false, true),
            (connect, "transport", true, true, true),
            (timeout(), "timeout", true, true, false),
            (lost("connection reset"), "transport", true, true, false),
            (tls, "tls", true, false, true),
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
            (unknown(timeout()), "timeout", true, false, false),
            (unknown(exit(None)), "exit", false, false, false),
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
        assert!(timeout().may_still_run_remotely());
        assert!(lost("reset").may_still_run_remotely());
        // gt-proxy-server answered: the command ended (or never ran).
        assert!(!exit(Some(PROXY_KILLED_EXIT_CODE)).may_still_run_remotely());
        assert!(!Error::parse(&cmd(), "x").may_still_run_remotely());
        for (status, may) in [(429, false), (503, false), (502, true), (504, true)] {
            assert_eq!(http(status).may_still_run_remotely(), may, "{status}");
        }
    }
}

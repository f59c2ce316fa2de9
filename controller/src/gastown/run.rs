//! Running one command: a concurrency slot, the transport, the observer, and retries of
//! transient failures.

use std::time::{Duration, Instant};

use super::exec::Output;
use super::{CommandLine, Error, GasTown, Runner};

/// Receives one call per command attempt, e.g. to count them in Prometheus.
///
/// `tool` is `gt` or `bd`, `verb` the subcommand, `result` `ok` or an
/// [`Error::metric_label`], `duration` the time of the attempt (not of waiting for a slot).
pub trait CommandObserver: Send + Sync {
    /// Called after every attempt.
    fn observe(&self, tool: &str, verb: &str, result: &str, duration: Duration);
}

impl GasTown {
    /// Runs `command`, retrying transient failures.
    pub(super) async fn run<T>(
        &self,
        command: &CommandLine,
        interpret: impl Fn(Output) -> Result<T, Error>,
    ) -> Result<T, Error> {
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

    /// Sleeps the backoff delay of retry number `retry` (0-based), logging why.
    pub(super) async fn pause_before_retry(&self, error: &Error, retry: u32) {
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
    pub(super) async fn attempt_timed<T>(
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

/// `Ok` when the command exited 0, else its [`Error::Exit`].
pub(super) fn require_success(command: &CommandLine, out: &Output) -> Result<(), Error> {
    if out.exit_code == Some(0) {
        Ok(())
    } else {
        Err(Error::exit(command, out.exit_code, &out.stderr, &out.stdout))
    }
}

/// `Ok` unless stdout was cut at the size limit (cut JSON must never be parsed).
pub(super) fn require_complete(command: &CommandLine, out: &Output) -> Result<(), Error> {
    if out.stdout_truncated {
        Err(Error::parse(
            command,
            "output exceeded the configured maximum size and was cut",
        ))
    } else {
        Ok(())
    }
}

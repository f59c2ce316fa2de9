//! Creating a bead exactly once, and finding it again by its external reference (the rule
//! of the module documentation: never create again while an earlier create may have worked).

use std::time::Instant;

use super::run::{require_complete, require_success};
use super::{Bead, BeadId, Error, ExternalRef, GasTown, Runner, argv, beads};

impl GasTown {
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
    /// started, or it exited non-zero and the lookup afterwards found no bead with
    /// `external_ref`. [`Error::outcome_unknown`] means a bead may exist: the caller must look it
    /// up ([`Self::find_bead_by_external_ref`]) before creating again. A failed lookup after a
    /// failed create makes [`Error::OutcomeUnknown`], never the lookup's own error (which could
    /// look definite): real `bd create` can exit 1 after making the bead ("The issue was created
    /// locally but not synced to the remote" in beads `cmd/bd/create.go`).
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
    /// no answer, until [`super::GasTownConfig::remote_command_limit`] after `started`.
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
}

//! Sending a bead to a rig and taking it back: `gt sling`, `gt unsling`, reopening with `bd
//! update`, the complete release, and `bd close`.

use gastown_crds::MergeStrategy;

use super::run::require_success;
use super::{BeadId, Error, GasTown, Runner, argv};

/// What [`GasTown::release_bead`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// `gt unsling` released it.
    Unslung,
    /// It was put back to `open` without an assignee with `bd update` (through the proxy, or
    /// after `gt unsling` refused or did nothing).
    Reopened,
    /// Nobody held it (it was not `hooked` or `in_progress`): nothing was changed.
    NotHeld,
    /// No such bead.
    Missing,
}

impl GasTown {
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

    /// Runs `gt unsling [--force] -- <bead> [<holder>]` and nothing else; exit 0 is success.
    ///
    /// Exit 0 does **not** mean the bead was released. Real `gt unsling` (gastown
    /// `internal/cmd/unsling.go` `runUnslingWith`):
    /// - resolves `holder` (`<rig>/<Name>` or `<rig>/polecats/<Name>`) through the worker's tmux
    ///   session (`resolveTargetAgent` in `internal/cmd/sling_target.go`: `tmux list-panes`):
    ///   a worker whose session is gone fails with `resolving target agent: getting pane for
    ///   <session>: exit status 1`;
    /// - without `holder` acts on the caller's own identity, which the controller (no
    ///   `GT_ROLE`) does not have: "detecting agent identity: cannot determine agent identity";
    /// - looks only for a bead with status `hooked` assigned to that worker: a bead the worker
    ///   has started (`in_progress`) is not found, and gt prints "No work hooked" and **exits
    ///   0 without changing anything**;
    /// - refuses unfinished work without `force` (`hooked work <id> is incomplete`);
    /// - otherwise sets the bead to `open` without an assignee.
    ///
    /// gt-proxy-server does not allow `gt unsling` (403). Use [`Self::release_bead`], which
    /// checks the result and falls back to `bd`.
    pub async fn unsling(&self, bead: &BeadId, holder: Option<&str>, force: bool) -> Result<(), Error> {
        let command = argv::unsling(bead, holder, force)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Puts a bead back to `open` without an assignee (`bd update --status open --assignee ""
    /// -- <id>`; beads `cmd/bd/update.go` sets the assignee whenever `--assignee` is given, so
    /// `""` clears it): the bead-side effect of `gt unsling`, with a subcommand gt-proxy-server
    /// allows, and needing no worker session.
    pub async fn reopen_bead(&self, id: &BeadId) -> Result<(), Error> {
        let command = argv::reopen_bead(id);
        self.run(&command, |out| require_success(&command, &out)).await
    }

    /// Takes a bead back from whoever holds it, completely, in every case real `gt unsling`
    /// leaves open (see [`Self::unsling`]):
    ///
    /// 1. `bd show` the bead: missing → [`Release::Missing`]; not `hooked`/`in_progress` →
    ///    [`Release::NotHeld`], nothing changed.
    /// 2. Local transport: `gt unsling --force -- <bead> <holder>` (Gas Town logs the unhook),
    ///    `holder` defaulting to the bead's assignee; then `bd show` again: released →
    ///    [`Release::Unslung`]. A failure or a no-op of `gt unsling` is not final: a worker
    ///    whose session is gone, a bead the worker has started (`in_progress`, which `gt
    ///    unsling` does not look for), another bead on the worker's hook all leave it held.
    /// 3. Still held (or through gt-proxy-server, which does not allow `gt unsling`):
    ///    `bd update --status open --assignee "" -- <bead>` → [`Release::Reopened`].
    ///
    /// An error means the bead may still be held (the error of the `bd show` or `bd update`
    /// that failed). The worker's session is never stopped (`gt unsling` does not stop it
    /// either). The worker may finish between the read and the update, which then reopens
    /// finished work: release only work you mean to take back.
    pub async fn release_bead(&self, bead: &BeadId, holder: Option<&str>) -> Result<Release, Error> {
        let Some(current) = self.show_bead(bead).await? else {
            return Ok(Release::Missing);
        };
        if !current.status.is_dispatched() {
            return Ok(Release::NotHeld);
        }
        let holder = holder.or(current.assignee.as_deref());
        if let (Runner::Exec(_), Some(holder)) = (&self.inner.runner, holder) {
            match self.unsling(bead, Some(holder), true).await {
                Ok(()) => match self.show_bead(bead).await? {
                    None => return Ok(Release::Missing),
                    Some(after) if !after.status.is_dispatched() => return Ok(Release::Unslung),
                    Some(after) => {
                        tracing::info!(%bead, status = %after.status, "gt unsling exited 0 but the bead is still held; reopening it with bd");
                    }
                },
                Err(e) => {
                    tracing::info!(%bead, holder, error = %e, "gt unsling did not release the bead; reopening it with bd");
                }
            }
        }
        self.reopen_bead(bead).await?;
        Ok(Release::Reopened)
    }

    /// Closes a bead: `bd close -r <reason> -- <id>`.
    pub async fn close_bead(&self, id: &BeadId, reason: &str) -> Result<(), Error> {
        let command = argv::close_bead(id, reason)?;
        self.run(&command, |out| require_success(&command, &out)).await
    }
}

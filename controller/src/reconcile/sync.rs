//! Dispatch and sync: read the bead, run the planned Gas Town command, write the status.

use gastown_crds::{Automaton, AutomatonStatus};
use jiff::Timestamp;
use kube::Api;
use kube::runtime::controller::Action;
use tracing::info;

use crate::decision::{self, Command, GasTownView};
use crate::gastown::{self, BeadId};

use super::release::{finish_timeout, release_recorded_first};
use super::write::write_status;
use super::{Context, Error};

pub(super) async fn read_bead(ctx: &Context, bead: &BeadId) -> GasTownView {
    match ctx.reader.show(bead).await {
        Ok(Some(b)) => GasTownView::Bead(b),
        Ok(None) => GasTownView::Missing,
        Err(e) => GasTownView::Unreachable {
            reason: e.metric_label().to_string(),
            message: e.to_string(),
        },
    }
}

pub(super) async fn sync(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let view = read_bead(ctx, bead).await;
    sync_with(api, a, bead, view, ctx, now).await
}

pub(super) async fn sync_with(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    view: GasTownView,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let unreachable = matches!(view, GasTownView::Unreachable { .. });
    let plan = decision::plan_sync(a, bead, &view, now, &ctx.settings);
    if plan.release_claim {
        return release_recorded_first(api, a, &plan, ctx, now).await;
    }
    let mut status = plan.status.clone();
    let mut requeue = plan.requeue;
    let event = plan.event.clone();
    if let Some(command) = &plan.command {
        ctx.ensure_leader()?;
        if let Err(e) = run_command(ctx, command).await {
            // The command did not happen: report why and retry later; nothing else changes.
            let st = decision::command_failed(a, command, &e, now, &ctx.settings);
            if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
                write_status(api, a, &st, ctx).await?;
            }
            return Err(Error::GasTown(e));
        } else if let Command::Sling { .. } = command {
            if let Some(at) = decision::claimed_at(a) {
                let secs = Timestamp::now().duration_since(at).as_secs_f64().max(0.0);
                ctx.metrics.claim_to_dispatch.observe(secs);
            }
            // Read the sling's result (hooked, assignee) now, so that one status write
            // records both; if that read fails, the next sync does it.
            if let Some(after) = after_sling(a, &status, bead, ctx, now).await {
                status = after.status;
                requeue = after.requeue;
            }
        }
    }
    let mut written = None;
    if decision::status_needs_write(a.status.as_ref(), &status, &ctx.settings) {
        written = Some(write_status(api, a, &status, ctx).await?);
    }
    if let Some(event) = &event {
        ctx.record(a, event).await;
    }
    if let Some(updated) = written.filter(decision::timeout_release_pending) {
        // The timeout is recorded (Failed): now release the bead in Gas Town.
        return finish_timeout(api, &updated, bead, ctx, now).await;
    }
    if unreachable {
        // Keep retrying with backoff; the condition says why.
        return Err(Error::Unreachable(format!(
            "reading bead {}: {}",
            bead.as_str(),
            status.message.clone().unwrap_or_default()
        )));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The plan after a successful sling, from the bead as Gas Town now shows it (see
/// [`decision::plan_after_sling`]).
async fn after_sling(
    a: &Automaton,
    slung: &AutomatonStatus,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Option<decision::Plan> {
    let view = read_bead(ctx, bead).await;
    decision::plan_after_sling(a, slung, bead, &view, now, &ctx.settings)
}

pub(super) async fn run_command(ctx: &Context, command: &Command) -> Result<(), gastown::Error> {
    match command {
        Command::Sling {
            bead,
            rig,
            merge,
            agent,
        } => ctx.gastown.sling(bead, rig, *merge, agent.as_deref()).await,
        Command::Unsling { bead, holder } => unsling(ctx, bead, holder.as_deref()).await,
        Command::Close { bead, reason } => ctx.gastown.close_bead(bead, reason).await,
    }
}

/// Takes hooked or running work back from its worker, whatever real `gt unsling` refuses
/// ([`GasTown::release_bead`](crate::gastown::GasTown::release_bead)): `gt unsling --force -- <bead> <worker>` names the worker (with no
/// target real `gt` acts on the caller's own hook, which the controller does not have); when
/// that fails or leaves the bead held (a worker whose session is gone: real `gt` resolves the
/// target through its tmux session, gastown `internal/cmd/unsling.go` → `resolveTargetAgent` in
/// `internal/cmd/sling_target.go`; a started bead, which it does not look for), and through
/// gt-proxy-server, which does not allow `gt unsling`, the bead is reopened with `bd update
/// --status open --assignee ""`. An error means the bead may still be held.
pub(super) async fn unsling(ctx: &Context, bead: &BeadId, holder: Option<&str>) -> Result<(), gastown::Error> {
    let released = ctx.gastown.release_bead(bead, holder.filter(|h| !h.is_empty())).await?;
    info!(bead = %bead.as_str(), ?released, "bead released in Gas Town");
    Ok(())
}

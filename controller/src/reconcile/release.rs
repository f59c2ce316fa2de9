//! Giving work back: claim expiry, release to Kubernetes, the timeout release, deletion.

use gastown_crds::Automaton;
use jiff::Timestamp;
use kube::Api;
use kube::runtime::controller::Action;
use tracing::warn;

use crate::decision::{self, Command, GasTownView};
use crate::gastown::{self, BeadId};

use super::claim::unrecorded_bead;
use super::sync::{read_bead, run_command, unsling};
use super::write::{release_claim, remove_finalizer, write_status};
use super::{Context, Error, key};

/// Gives the claim back once it is older than the claim timeout: `Released` is recorded first,
/// then [`finish_release`] closes a bead the controller created (found by its external ref if it
/// was never recorded) and hands the claim back, or keeps it while a worker may hold the bead.
pub(super) async fn claim_expiry_check(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    if decision::claim_expired(a, now, &ctx.settings) {
        let plan = decision::undispatched_claim_expired(a, now, &ctx.settings);
        return release_recorded_first(api, a, &plan, ctx, now).await;
    }
    Ok(Action::requeue(ctx.settings.sync_interval))
}

/// Carries out a plan that gives the claim back: `Released` is recorded first; [`finish_release`]
/// then closes the bead we created and gives the claim back. The other order can lose the claim:
/// a crash after the close makes the closed bead read as finished work.
pub(super) async fn release_recorded_first(
    api: &Api<Automaton>,
    a: &Automaton,
    plan: &decision::Plan,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let current = write_status(api, a, &plan.status, ctx).await?;
    if let Some(event) = &plan.event {
        ctx.record(a, event).await;
    }
    finish_release(api, &current, ctx, now).await
}

/// Deletion with our finalizer: release the work in Gas Town (see [`decision::plan_deletion`]),
/// then remove the finalizer. While Gas Town cannot be read this is retried, up to the release
/// timeout; then the object is let go with a warning event.
pub(super) async fn delete(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let (a, bead, view) = deletion_view(a, ctx, now).await;
    let a = &a;
    let plan = decision::plan_deletion(a, bead.as_ref(), view.as_ref(), now, &ctx.settings);
    if let Some(GasTownView::Unreachable { message, .. }) = &view {
        if !decision::release_bound_reached(a, now, &ctx.settings) {
            return Err(Error::Unreachable(format!(
                "cannot release the bead before deletion: {message}"
            )));
        }
        let note = format!(
            "Gas Town unreachable for {}s after deletion; letting the Automaton go without releasing its bead: {message}",
            ctx.settings.release_timeout.as_secs()
        );
        ctx.publish(a, true, "ReleaseAbandoned", &note).await;
    }
    run_release(ctx, a, &plan.commands, plan.give_up, "the bead").await?;
    if !plan.commands.is_empty() {
        ctx.publish(a, false, "Released", "work released in Gas Town").await;
    }
    remove_finalizer(api, a, ctx).await?;
    Ok(Action::await_change())
}

/// The deleted object's bead and what Gas Town says of it. Without a recorded bead, Gas Town is
/// asked only if one may exist: a claim whose status says none was created goes without waiting
/// for Gas Town. A bead found by its external ref is recorded in the returned copy of `a`.
async fn deletion_view(
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> (Automaton, Option<BeadId>, Option<GasTownView>) {
    let mut a = a.clone();
    let mut bead = decision::bead_state(&a).recorded().cloned();
    let mut view = match &bead {
        Some(b) => Some(read_bead(ctx, b).await),
        None => None,
    };
    if bead.is_none() && decision::bead_may_exist_unrecorded(&a) {
        match unrecorded_bead(&a, ctx).await {
            Ok(Some(found)) => {
                if let Ok(id) = found.bead_id() {
                    let g = a
                        .status
                        .get_or_insert_with(Default::default)
                        .gastown
                        .get_or_insert_with(Default::default);
                    g.bead_id = Some(id.as_str().to_string());
                    g.bead_created = Some(true);
                    bead = Some(id);
                    view = Some(GasTownView::Bead(found));
                }
            }
            Ok(None) => {
                // A bd create that may still be running would leave its bead behind.
                if let decision::CreateGate::Wait { until, .. } = decision::create_gate(&a, now, &ctx.settings) {
                    view = Some(GasTownView::Unreachable {
                        reason: "create_in_flight".to_string(),
                        message: format!("a bd create may still be running in Gas Town until {until}"),
                    });
                }
            }
            Err(e) => {
                view = Some(GasTownView::Unreachable {
                    reason: e.metric_label().to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
    (a, bead, view)
}

/// Runs the release `commands` in order. An unsling that fails (but not for unreachability)
/// when the commands also close the bead is passed over: closing a bead of ours (with a reason)
/// takes it from the worker as well. `give_up`: the deletion bound is reached, so any other
/// failure is logged and passed over too. `what` names the bead in the logs.
async fn run_release(
    ctx: &Context,
    a: &Automaton,
    commands: &[Command],
    give_up: bool,
    what: &str,
) -> Result<(), Error> {
    let closes = commands.iter().any(|c| matches!(c, Command::Close { .. }));
    for command in commands {
        ctx.ensure_leader()?;
        let Err(e) = run_command(ctx, command).await else {
            continue;
        };
        if matches!(command, Command::Unsling { .. }) && closes && !e.is_unreachable() {
            warn!(object = %key(a), error = %e, "could not unsling {what}; closing it instead");
            continue;
        }
        if !give_up {
            return Err(Error::GasTown(e));
        }
        warn!(object = %key(a), error = %e, "release failed; deletion bound reached, letting go");
    }
    Ok(())
}

/// The status says Released: make sure no worker holds the bead and close the bead we created,
/// then give the claim back.
///
/// - A bead a worker holds (hooked or in progress) is unslung first (see [`unsling`]); the
///   claim is never given back while that fails, so Kubernetes never runs work Gas Town still
///   runs. The `Released` condition says why the claim is kept.
/// - A bead the controller created is closed with a reason, so no open bead is left behind for
///   work Kubernetes then runs. A bead created but never recorded (see
///   [`decision::bead_may_exist_unrecorded`]) is found by its external ref; while a `bd create`
///   may still be running ([`decision::create_gate`]) the claim is kept.
/// - While Gas Town cannot be read, the claim is kept and this is retried with backoff, up to
///   the release timeout; then it is given back (the last read showed no worker on the bead).
pub(super) async fn finish_release(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let state = decision::bead_state(a);
    let recorded = state.recorded();
    // A bead found by its external ref was created by the controller.
    let created = recorded.is_none() || state.created();
    let read = async {
        match recorded {
            Some(id) => Ok(ctx.gastown.show_bead(id).await?),
            None if decision::bead_may_exist_unrecorded(a) => {
                let found = unrecorded_bead(a, ctx).await?;
                if found.is_none()
                    && let decision::CreateGate::Wait { until, .. } = decision::create_gate(a, now, &ctx.settings)
                {
                    return Err(Error::Unreachable(format!(
                        "a bd create may still be running in Gas Town until {until}; its bead must be closed before the claim is given back"
                    )));
                }
                Ok(found)
            }
            None => Ok(None),
        }
    };
    let bead = match read.await {
        Ok(bead) => bead,
        Err(e) => {
            if matches!(e, Error::NotLeader) || !decision::release_gave_up(a, now, &ctx.settings) {
                return Err(e);
            }
            warn!(object = %key(a), error = %e, "could not read the bead; release timeout reached, giving the claim back anyway");
            None
        }
    };
    if let Some(b) = bead.filter(|b| !b.status.is_gone() && b.status != gastown::BeadStatus::Closed) {
        let id = b.bead_id()?;
        if b.status.is_dispatched() {
            ctx.ensure_leader()?;
            if let Err(e) = unsling(ctx, &id, b.assignee.as_deref()).await {
                let st = decision::worker_holds_bead(a, &b, &e, now, &ctx.settings);
                if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
                    write_status(api, a, &st, ctx).await?;
                }
                return Err(Error::GasTown(e));
            }
        }
        if created {
            ctx.ensure_leader()?;
            if let Err(e) = ctx.gastown.close_bead(&id, decision::RELEASE_CLOSE_REASON).await {
                if !decision::release_gave_up(a, now, &ctx.settings) {
                    return Err(Error::GasTown(e));
                }
                warn!(object = %key(a), error = %e, "could not close the bead; release timeout reached, giving the claim back anyway");
            }
        }
    }
    release_claim(api, a, ctx).await?;
    Ok(Action::await_change())
}

/// `spec.timeoutSeconds` ran out and `Failed` is recorded: release the bead in Gas Town (unsling
/// it, close it if the controller created it, see [`decision::plan_timeout_release`]), then
/// record that. Retried with backoff while Gas Town fails; nothing here slings.
pub(super) async fn finish_timeout(
    api: &Api<Automaton>,
    a: &Automaton,
    bead: &BeadId,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let commands = match ctx.gastown.show_bead(bead).await? {
        Some(b) => decision::plan_timeout_release(a, bead, &b),
        None => Vec::new(),
    };
    run_release(ctx, a, &commands, false, "the timed-out bead").await?;
    if !commands.is_empty() {
        ctx.publish(a, false, "Released", "timed-out work released in Gas Town")
            .await;
    }
    write_status(api, a, &decision::timeout_released(a, now, &ctx.settings), ctx).await?;
    Ok(Action::await_change())
}

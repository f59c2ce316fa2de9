//! The claim and its bead: an invalid spec, finding or creating the bead, recording it.

use std::time::Duration;

use gastown_crds::Automaton;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::decision::{self, GasTownView, Stage};
use crate::gastown::{self, BeadId, ExternalRef};

use super::release::claim_expiry_check;
use super::sync::{read_bead, sync_with};
use super::write::{add_finalizer, write_status};
use super::{Context, Error, key};

/// Adds our finalizer, then goes on with the object the API server returned instead of waiting
/// for the watch to bring it back.
pub(super) async fn add_finalizer_and_go_on(
    api: &Api<Automaton>,
    a: &Automaton,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let first = decision::creates_first(a);
    let updated = add_finalizer(api, a, ctx).await?;
    Ok(match decision::stage(&updated, &ctx.settings.claimer) {
        Stage::ObtainBead => obtain_bead(api, &updated, first, ctx, now).await?,
        Stage::Invalid(message) => invalid_spec(api, &updated, &message, first, ctx, now).await?,
        // Anything else: the update's watch event triggers the next step.
        _ => Action::requeue(ctx.settings.sync_interval),
    })
}

/// The spec cannot be acted upon: say why, and give the claim back once it is too old. `first`:
/// this reconcile has just added our finalizer, so the status can say that no bead exists and a
/// release need not ask Gas Town (see [`decision::creates_first`]).
pub(super) async fn invalid_spec(
    api: &Api<Automaton>,
    a: &Automaton,
    message: &str,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut st = decision::invalid(a, message, now, &ctx.settings);
    if first {
        st = decision::no_bead_created(st);
    }
    if decision::status_needs_write(a.status.as_ref(), &st, &ctx.settings) {
        let updated = write_status(api, a, &st, ctx).await?;
        ctx.publish(a, true, "InvalidSpec", message).await;
        claim_expiry_check(api, &updated, ctx, now).await
    } else {
        claim_expiry_check(api, a, ctx, now).await
    }
}

/// Finds or creates the bead for a claim, records it, and goes on to dispatch it. `first`: this
/// reconcile has just added our finalizer, so no earlier attempt can have created a bead (see
/// [`decision::creates_first`]).
pub(super) async fn obtain_bead(
    api: &Api<Automaton>,
    a: &Automaton,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut current = a.clone();
    let source = match find_bead(api, &mut current, first, ctx, now).await {
        Ok(source) => source,
        // A failed lookup says nothing about whether a bead exists: never "none created".
        Err(Error::GasTown(e)) => return gastown_failed(api, current, e, CreateOutcome::Unknown, ctx, now).await,
        Err(e) => return Err(e),
    };
    let (bead, created, known) = match source {
        BeadSource::Known { id, created } => (id, created, None),
        BeadSource::Wait { until } => return create_wait(&current, until, ctx, now),
        BeadSource::Expired => {
            // Checked before anything is created: a claim already too old when first seen (the
            // controller was down) gets no bead, and none can exist.
            let st = decision::no_bead_created(decision::base_status(&current, &ctx.settings));
            if decision::status_needs_write(current.status.as_ref(), &st, &ctx.settings) {
                current = write_status(api, &current, &st, ctx).await?;
            }
            return claim_expiry_check(api, &current, ctx, now).await;
        }
        BeadSource::Create(external) => {
            ctx.ensure_leader()?;
            let title = &current.spec.task.title;
            let description = current.spec.task.description.as_deref().unwrap_or_default();
            match ctx.gastown.create_bead(title, description, &external).await {
                Ok(id) => {
                    let bead = gastown::Bead::just_created(&id, title, &external);
                    (id, true, Some(bead))
                }
                Err(e) => {
                    let outcome = create_outcome(&e);
                    return gastown_failed(api, current, e, outcome, ctx, now).await;
                }
            }
        }
    };
    // Recorded before anything is slung, so a crash or another replica never creates twice.
    let st = decision::bead_recorded(&current, &bead, created, now, &ctx.settings);
    let updated = write_status(api, &current, &st, ctx).await?;
    info!(object = %key(a), bead = %bead.as_str(), created, "bead recorded");
    let view = match known {
        Some(b) => GasTownView::Bead(b),
        // Not created here: read it before deciding whether to sling.
        None => read_bead(ctx, &bead).await,
    };
    sync_with(api, &updated, &bead, view, ctx, now).await
}

/// What a failed `bd create` call left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateOutcome {
    /// Certainly no bead: the create never ran, or `bd create` itself answered with a failure.
    NothingCreated,
    /// A bead may exist, or may still be created by a command that runs on: it timed out, was
    /// killed, lost its connection, or the failure is a lookup inside the client's create retry
    /// (which runs only after an attempt whose outcome was unknown).
    Unknown,
}

/// Classifies a failed `bd create` call (see [`CreateOutcome`]): only an error that is certain
/// (`gastown::Error::is_definite_failure`) and about the create itself (not a lookup inside it)
/// means no bead.
pub(super) fn create_outcome(e: &gastown::Error) -> CreateOutcome {
    let from_create = e.command().is_none_or(|c| c.verb() == "create");
    if from_create && e.is_definite_failure() {
        CreateOutcome::NothingCreated
    } else {
        CreateOutcome::Unknown
    }
}

/// A `bd create` may still be running in Gas Town and its bead was not found: wait (looking it
/// up again) instead of creating another, and let the claim go only once it has certainly ended.
pub(super) fn create_wait(
    current: &Automaton,
    until: Timestamp,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let left = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
    info!(object = %key(current), wait_s = left.as_secs(), "a bd create may still be running; looking its bead up, not creating another");
    Ok(Action::requeue(
        left.min(ctx.settings.sync_interval).max(Duration::from_secs(1)),
    ))
}

/// Gas Town failed while finding or creating the bead (Dolt down, binary missing, proxy
/// unreachable): report it on the condition, back off, and give the claim back once it is too
/// old. `outcome`: whether a bead may exist unrecorded (see [`decision::no_bead_created`] and
/// [`decision::create_outcome_unknown`]).
pub(super) async fn gastown_failed(
    api: &Api<Automaton>,
    mut current: Automaton,
    e: gastown::Error,
    outcome: CreateOutcome,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut st = decision::unreachable(&current, e.metric_label(), &e.to_string(), now, &ctx.settings);
    st = match outcome {
        CreateOutcome::NothingCreated => decision::no_bead_created(st),
        CreateOutcome::Unknown if e.command().is_some_and(|c| c.verb() == "create") => {
            warn!(object = %key(&current), error = %e, "bd create ended with an unknown outcome; its bead is looked up, not created again, until it has certainly ended");
            decision::create_outcome_unknown(&current, st, now)
        }
        // A lookup failed: whatever was recorded about earlier creates stands.
        CreateOutcome::Unknown => st,
    };
    if decision::status_needs_write(current.status.as_ref(), &st, &ctx.settings) {
        current = write_status(api, &current, &st, ctx).await?;
    }
    if decision::claim_expired(&current, now, &ctx.settings) {
        return claim_expiry_check(api, &current, ctx, now).await;
    }
    Err(Error::GasTown(e))
}

/// Where the bead of a claim comes from.
pub(super) enum BeadSource {
    /// `spec.task.beadId`, or one an earlier attempt created.
    Known {
        /// The bead.
        id: BeadId,
        /// The controller created it (an earlier attempt did); not one from the spec.
        created: bool,
    },
    /// None exists yet: `bd create` one with this external ref.
    Create(ExternalRef),
    /// None found, but a `bd create` may still be running: look again, do not create, until then.
    Wait {
        /// When the earlier create has certainly ended.
        until: Timestamp,
    },
    /// None exists and the claim is already too old: create none, give the claim back.
    Expired,
}

/// Finds the bead for the claim in `current`, or says to create one.
///
/// Every `bd create` follows a write, in the same reconcile, that was conditional on the object
/// read (see [`write_status`]), so a reconcile on a stale cached copy gets a conflict before it
/// can create a second bead. For the `first` attempt that write was adding the finalizer. A
/// later attempt looks up by its external ref a bead an earlier attempt may have created without
/// recording it (see [`decision::bead_may_exist_unrecorded`]); if none is found it creates only
/// when no earlier create can still be running ([`decision::create_gate`]), and marks the status
/// "creating a bead" first (`current` becomes the object as written).
pub(super) async fn find_bead(
    api: &Api<Automaton>,
    current: &mut Automaton,
    first: bool,
    ctx: &Context,
    now: Timestamp,
) -> Result<BeadSource, Error> {
    if let Some(id) = current.spec.task.bead_id.as_deref() {
        return Ok(BeadSource::Known {
            id: BeadId::parse(id)?,
            created: false,
        });
    }
    let external = ExternalRef::for_automaton(
        current.namespace().as_deref().unwrap_or_default(),
        &current.name_any(),
        current.uid().as_deref().unwrap_or_default(),
    )?;
    if first {
        if decision::claim_expired(current, now, &ctx.settings) {
            return Ok(BeadSource::Expired);
        }
        return Ok(BeadSource::Create(external));
    }
    if decision::bead_may_exist_unrecorded(current)
        && let Some(existing) = ctx.gastown.find_bead_by_external_ref(&external).await?
    {
        return Ok(BeadSource::Known {
            id: existing.bead_id()?,
            created: true,
        });
    }
    match decision::create_gate(current, now, &ctx.settings) {
        decision::CreateGate::Wait { until, mark } => {
            if mark {
                let st = decision::create_may_be_running(
                    current,
                    decision::base_status(current, &ctx.settings),
                    now,
                    &ctx.settings,
                );
                *current = write_status(api, current, &st, ctx).await?;
            }
            if decision::claim_expired(current, now, &ctx.settings) {
                // Not given back yet: the bead may still appear, and must then be closed.
                info!(object = %key(current), "claim expired while a bd create may still be running; waiting for it before releasing");
            }
            Ok(BeadSource::Wait { until })
        }
        decision::CreateGate::Create => {
            if decision::claim_expired(current, now, &ctx.settings) {
                return Ok(BeadSource::Expired);
            }
            *current = write_status(api, current, &decision::creating_bead(current, now, &ctx.settings), ctx).await?;
            Ok(BeadSource::Create(external))
        }
    }
}

/// A bead created for `a` whose ID never reached the status (a crash or a failed write between
/// `bd create` and the status write): found by its external ref so it is not left behind.
pub(super) async fn unrecorded_bead(
    a: &Automaton,
    ctx: &Context,
) -> Result<Option<crate::gastown::Bead>, gastown::Error> {
    if a.spec.task.bead_id.is_some() {
        return Ok(None);
    }
    let external = ExternalRef::for_automaton(
        a.namespace().as_deref().unwrap_or_default(),
        &a.name_any(),
        a.uid().as_deref().unwrap_or_default(),
    )?;
    ctx.gastown.find_bead_by_external_ref(&external).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gastown::GasTown;

    /// A town whose `bd create` hangs past the client's timeout and whose `bd list` fails.
    fn town_with(bd_script: &str) -> (gastown::testing::TempDir, GasTown) {
        let dir = gastown::testing::TempDir::new("reconcile-create-outcome").unwrap();
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor")).unwrap();
        std::fs::write(root.join("mayor/town.json"), "{}").unwrap();
        let gt = dir.write_executable("bin/gt", "#!/bin/sh\nexit 0\n").unwrap();
        let bd = dir.write_executable("bin/bd", bd_script).unwrap();
        let mut config = gastown::GasTownConfig::new(gastown::Transport::Exec {
            town_root: root,
            gt_path: gt,
            bd_path: bd,
            actor: None,
        });
        config.command_timeout = Duration::from_millis(300);
        config.backoff = gastown::Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            multiplier: 2,
        };
        (dir, GasTown::new(config).unwrap())
    }

    fn reference() -> ExternalRef {
        ExternalRef::for_automaton("team-a", "fix-login", "0f9c-1").unwrap()
    }

    /// Item 3: `bd create` timed out (it may have made the bead), then the client's lookup of
    /// that bead failed. The call's error is the lookup's; it must not count as "no bead created"
    /// (`beadCreated: false`), which would let the next attempt create without looking.
    #[tokio::test]
    async fn a_failed_lookup_inside_the_create_retry_is_not_a_failed_create() {
        let (_dir, town) = town_with(
            "#!/bin/sh\ncase \"$1\" in\n  create) sleep 5 ;;\n  list) echo 'Error: database is locked' >&2; exit 1 ;;\nesac\nexit 0\n",
        );
        let e = town
            .create_bead("Fix login", "", &reference())
            .await
            .expect_err("the create timed out and the lookup failed");
        assert_eq!(create_outcome(&e), CreateOutcome::Unknown, "{e}");
    }

    #[tokio::test]
    async fn a_create_that_timed_out_has_an_unknown_outcome() {
        let (_dir, town) =
            town_with("#!/bin/sh\ncase \"$1\" in\n  create) sleep 5 ;;\n  list) echo '[]' ;;\nesac\nexit 0\n");
        let e = town.create_bead("Fix login", "", &reference()).await.unwrap_err();
        assert_eq!(create_outcome(&e), CreateOutcome::Unknown, "{e}");
    }

    /// `bd create` itself answered with a failure: certainly no bead.
    #[tokio::test]
    async fn a_create_that_exited_non_zero_made_nothing() {
        let (_dir, town) = town_with(
            "#!/bin/sh\ncase \"$1\" in\n  create) echo 'Error: invalid title' >&2; exit 1 ;;\n  list) echo '[]' ;;\nesac\nexit 0\n",
        );
        let e = town.create_bead("Fix login", "", &reference()).await.unwrap_err();
        assert_eq!(create_outcome(&e), CreateOutcome::NothingCreated, "{e}");
    }
}

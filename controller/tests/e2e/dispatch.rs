//! The way through: a claim becomes one bead, slung once, followed to its end.

use gastown_crds::contract::{CLAIMED_BY_LABEL, RELEASE_FINALIZER};
use gastown_crds::{Automaton, ConditionStatus, Phase};
use gastown_tests::fake_gastown::{AutoProgress, Config};
use gastown_tests::fixtures::local_automaton;
use gastown_tests::status::has_release_finalizer;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource as _, ResourceExt};
use serde_json::json;

use super::*;

#[tokio::test]
async fn claim_is_dispatched_once_and_followed_to_success() {
    let env = Env::new("flow").await;
    let c = env.controller("c", &[]);
    wait_ready(&c);
    env.create_claimed("fix-login", json!({"mergeStrategy": "mr", "agent": {"name": "claude"}}))
        .await;
    let a = env.wait_phase("fix-login", Phase::Dispatched, T).await;
    assert!(a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    let bead = bead_of(&a);
    let g = a.status.as_ref().unwrap().gastown.as_ref().unwrap();
    assert_eq!(g.bead_created, Some(true));
    assert!(g.dispatched_at.is_some());
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["title"], "Task fix-login");
    let uid = a.uid().unwrap();
    assert_eq!(
        stored["external_ref"],
        json!(format!("automaton:{}/fix-login/{uid}", env.ns.name()))
    );
    // The sling carried the spec's merge strategy and agent, options before operands.
    let slings = slings_of(&env.town, &bead);
    assert_eq!(slings.len(), 1, "exactly one gt sling: {slings:?}");
    // The first attempt knows no bead can exist yet: it creates without looking one up.
    let lookups = calls_of(&env.town, "bd", "list");
    assert!(lookups.is_empty(), "{lookups:?}");
    let argv = slings[0].argv.join(" ");
    assert!(
        argv.contains("--merge=mr") && argv.contains("--agent claude") && argv.ends_with(&format!("-- {bead} gastown")),
        "{argv}"
    );
    env.town.start_work(&bead).unwrap();
    let a = env.wait_phase("fix-login", Phase::Running, T).await;
    let assignee = a.status.clone().unwrap().gastown.unwrap().assignee.unwrap();
    assert!(assignee.starts_with("gastown/polecats/"), "{assignee}");
    assert_eq!(condition_status(&a, "Running"), Some(ConditionStatus::True));
    env.town.close(&bead, "merged to main").unwrap();
    let a = env.wait_phase("fix-login", Phase::Succeeded, T).await;
    assert_eq!(condition_status(&a, "Completed"), Some(ConditionStatus::True));
    assert_eq!(a.status.as_ref().unwrap().observed_generation, a.metadata.generation);
    assert_eq!(env.town.dispatch_count(&bead), 1);
    env.api().delete("fix-login", &DeleteParams::default()).await.unwrap();
    env.wait_gone("fix-login", T).await;
    assert_eq!(env.town.beads().unwrap().len(), 1, "no extra beads");
}

#[tokio::test]
async fn closed_with_a_failure_reason_is_failed() {
    let env = Env::new("failed").await;
    let _c = env.controller("c", &[]);
    let bead = env.dispatched("doomed").await;
    env.town.close(&bead, "failed: tests do not pass").unwrap();
    let a = env.wait_phase("doomed", Phase::Failed, T).await;
    assert_eq!(condition_status(&a, "Completed"), Some(ConditionStatus::False));
}

#[tokio::test]
async fn existing_bead_is_dispatched_not_created() {
    let env = Env::new("existing").await;
    let bead = env.town.create_bead("made by hand").unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("reuse", json!({"task": {"title": "reuse it", "beadId": bead}}))
        .await;
    let a = env.wait_phase("reuse", Phase::Dispatched, T).await;
    assert_eq!(bead_of(&a), bead);
    assert_eq!(
        a.status.as_ref().unwrap().gastown.as_ref().unwrap().bead_created,
        Some(false)
    );
    assert_eq!(env.town.beads().unwrap().len(), 1);
    // Deleting does not close a bead the controller did not create, but gives the work back.
    env.api().delete("reuse", &DeleteParams::default()).await.unwrap();
    env.wait_gone("reuse", T).await;
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "open");
}

/// Item 9: with `mergeStrategy: local` the polecat's `gt done` closes the bead as in every other
/// mode (gastown `internal/cmd/done.go`), so the claim ends Succeeded, also with a timeout set.
#[tokio::test]
async fn local_merge_work_completes_when_gt_done_closes_the_bead() {
    let env = Env::new("local-merge").await;
    env.town
        .set_config(&Config {
            auto_progress: Some(AutoProgress {
                start_after_ms: 200,
                close_after_ms: Some(1000),
                close_reason: None,
                close_rigs: None,
            }),
            ..Config::default()
        })
        .unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("local", json!({"mergeStrategy": "local", "timeoutSeconds": 60}))
        .await;
    let a = env.wait_phase("local", Phase::Succeeded, T).await;
    let bead = bead_of(&a);
    assert_eq!(env.town.bead(&bead).unwrap().unwrap()["close_reason"], "Closed");
    let slings = slings_of(&env.town, &bead);
    assert!(slings[0].argv.iter().any(|a| a == "--merge=local"), "{slings:?}");
}

#[tokio::test]
async fn invalid_spec_is_reported_and_released_without_asking_gastown() {
    // Gas Town is down, and no bead can exist: the release must not wait for it.
    let (env, _c) = Env::gastown_down("invalid", &["--claim-timeout", "3s"]).await;
    // No rig: the policy would have filled it in; the controller says what is missing.
    let obj = local_automaton(
        "norig",
        &json!({"metadata": {"labels": {CLAIMED_BY_LABEL: "gastown-local"}}, "spec": {"task": {"title": "x"}}}),
    )
    .unwrap();
    env.api().create(&PostParams::default(), &obj).await.unwrap();
    let a = env
        .wait_for("norig", "InvalidSpec", T, |a| {
            condition_status(a, "Claimed") == Some(ConditionStatus::False)
        })
        .await;
    assert!(a.status.unwrap().message.unwrap().contains("spec.rig"));
    let a = env
        .wait_for("norig", "release", T, |a| {
            a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
        })
        .await;
    assert!(!has_release_finalizer(&a));
    assert!(env.town.calls().unwrap().is_empty(), "nothing reaches Gas Town");
}

/// Status is written with server-side apply carrying the resourceVersion the controller read:
/// the API server must refuse it when the object has moved on (a stale cache), or a stale
/// reconcile could record a second bead over the first. This checks that assumption on the
/// real server.
#[tokio::test]
async fn status_apply_with_a_stale_resource_version_conflicts() {
    let env = Env::new("ssa-rv").await;
    let created = env.create_claimed("stale", json!({})).await;
    let stale_rv = created.resource_version().unwrap();
    let params = PatchParams::apply(gastown_crds::contract::FIELD_MANAGER).force();
    let apply = |rv: &str, message: &str| {
        json!({"apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&()),
               "metadata": {"resourceVersion": rv},
               "status": {"phase": "Claimed", "message": message}})
    };
    let moved = env
        .api()
        .patch_status("stale", &params, &Patch::Apply(&apply(&stale_rv, "first")))
        .await
        .unwrap();
    assert_ne!(moved.resource_version().unwrap(), stale_rv);
    let err = env
        .api()
        .patch_status("stale", &params, &Patch::Apply(&apply(&stale_rv, "second")))
        .await
        .unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err:?}");
    let now = env.api().get("stale").await.unwrap();
    assert_eq!(now.status.unwrap().message.as_deref(), Some("first"));
}

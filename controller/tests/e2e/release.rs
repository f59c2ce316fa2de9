//! Deleting claimed work releases it in Gas Town, also when Gas Town refuses part of it.

use gastown_crds::Phase;
use gastown_tests::fake_gastown::Faults;
use kube::api::DeleteParams;
use serde_json::json;

use super::*;

#[tokio::test]
async fn deletion_releases_the_work_in_gastown() {
    let env = Env::new("delete").await;
    let _c = env.controller("c", &[]);
    let bead = env.running("stop-me").await;
    env.delete_and_check_closed("stop-me", &bead).await;
    assert_eq!(calls_of(&env.town, "gt", "unsling").len(), 1);
}

/// `bd create` failed outright (and the lookup after it found nothing), so no bead exists:
/// deleting the claim while Gas Town is down does not wait for it (it would otherwise wait for
/// the 600 s release timeout).
#[tokio::test]
async fn deleting_a_claim_gastown_never_took_does_not_wait_for_gastown() {
    let env = Env::new("delete-down").await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd create"])).unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("never", json!({})).await;
    env.wait_for("never", "beadCreated: false", T, |a| {
        a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .and_then(|g| g.bead_created)
            == Some(false)
    })
    .await;
    env.town.set_faults(&Faults::down()).unwrap();
    env.api().delete("never", &DeleteParams::default()).await.unwrap();
    env.wait_gone("never", T).await;
    assert!(env.town.beads().unwrap().is_empty());
}

/// Item 4b: `gt unsling` refuses (as real `gt` does for a worker whose session is gone): the
/// release goes on with `bd` and the deletion completes instead of waiting for the release
/// timeout.
#[tokio::test]
async fn deletion_reopens_with_bd_when_gt_unsling_is_refused() {
    let env = Env::new("unsling-refused").await;
    let _c = env.controller("c", &[]);
    let bead = env.running("stop-me").await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["gt unsling"])).unwrap();
    env.delete_and_check_closed("stop-me", &bead).await;
    let calls = env.town.calls().unwrap();
    assert!(calls.iter().any(|c| c.tool == "gt" && c.verb() == Some("unsling")));
    assert!(
        calls.iter().any(|c| c.tool == "bd" && c.verb() == Some("update")),
        "reopened with bd: {calls:?}"
    );
}

/// Item 4b: the worker's tmux session is gone, so real `gt unsling <bead> <worker>` cannot
/// resolve the worker: the bead is reopened with `bd` and (ours) closed; it is never left hooked
/// to a dead worker, and the deletion does not wait for the release timeout.
#[tokio::test]
async fn deletion_of_work_whose_worker_session_is_gone_still_releases_the_bead() {
    let env = Env::new("session-gone").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("orphaned", json!({})).await;
    let a = env.wait_phase("orphaned", Phase::Dispatched, T).await;
    let bead = bead_of(&a);
    let worker = a.status.unwrap().gastown.unwrap().assignee.unwrap();
    env.town.end_session(&worker).unwrap();
    env.delete_and_check_closed("orphaned", &bead).await;
    let calls = calls_of(&env.town, "gt", "unsling");
    let unsling = calls.first().expect("gt unsling tried first");
    assert_ne!(
        unsling.exit_code, 0,
        "real gt refuses a worker without session: {unsling:?}"
    );
    assert!(
        unsling.argv.iter().any(|a| a == "--force") && unsling.argv.contains(&worker),
        "{unsling:?}"
    );
}

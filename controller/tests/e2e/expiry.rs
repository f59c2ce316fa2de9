//! Claim expiry: a claim Gas Town never took goes back to Kubernetes, one whose work Gas Town
//! may hold stays until Gas Town says it does not.

use gastown_crds::contract::{CLAIMED_AT_ANNOTATION, RELEASE_FINALIZER};
use gastown_crds::{ConditionStatus, ExecutionMode, Phase};
use gastown_tests::fake_gastown::Faults;
use gastown_tests::status::{condition, has_release_finalizer};
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::json;

use super::*;

/// `bd create` fails outright every time (and the lookup that follows it finds nothing), so the
/// status says no bead exists and the release does not wait for Gas Town (it would otherwise be
/// retried for the 600 s release timeout).
#[tokio::test]
async fn claim_expires_when_gastown_never_takes_it() {
    let env = Env::new("expiry").await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd create"])).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "3s"]);
    env.create_claimed("orphan", json!({})).await;
    let a = env.wait_given_back("orphan", "release").await;
    assert_eq!(condition_status(&a, "Released"), Some(ConditionStatus::True));
    assert_eq!(a.spec.task.title, "Task orphan", "nothing of the work is lost");
}

/// Item 4c: a claim already past `--claim-timeout` when the controller first sees it gets no
/// bead at all (not one created and closed at once).
#[tokio::test]
async fn a_claim_already_expired_when_first_seen_gets_no_bead() {
    let env = Env::new("expired-first").await;
    let _c = env.controller("c", &["--claim-timeout", "60s"]);
    let an_hour_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    env.create_claimed_at("late", an_hour_ago, &json!({})).await.unwrap();
    env.wait_given_back("late", "release").await;
    assert!(env.town.beads().unwrap().is_empty(), "no bead created");
    assert!(env.town.calls().unwrap().is_empty(), "nothing reaches Gas Town");
}

/// Item 7: the sling happened in Gas Town but the controller never saw it, then Gas Town became
/// unreachable and the claim expired. The claim must not go back to Kubernetes (which would run
/// the work a second time) before Gas Town says the bead is not hooked.
#[tokio::test]
async fn an_expired_claim_is_kept_while_gastown_cannot_say_whether_its_bead_is_hooked() {
    let env = Env::new("expiry-unreachable").await;
    let bead = env.town.create_bead("made by hand").unwrap();
    env.town.set_faults(&Faults::fail(1.0).verbs(["sling"])).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "8s"]);
    env.create_claimed("adopt", json!({"task": {"title": "adopt it", "beadId": bead}}))
        .await;
    env.wait_for("adopt", "SlingFailed", T, |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "SlingFailed"))
    })
    .await;
    // Gas Town goes down for the controller, and the bead is hooked all the same.
    env.town.set_faults(&Faults::down()).unwrap();
    by_hand(&env.town, "gt", &["sling", "--", &bead, "gastown"]);
    tokio::time::sleep(Duration::from_secs(14)).await;
    let a = env.api().get("adopt").await.unwrap();
    assert_eq!(a.claimed_by(), Some("gastown-local"), "claim kept: {:?}", a.status);
    assert_ne!(a.phase(), Some(Phase::Released));
    assert_eq!(a.spec.execution_mode, ExecutionMode::Local);
    assert_eq!(condition_status(&a, "GasTownReachable"), Some(ConditionStatus::False));
    env.town.clear_faults();
    let a = env
        .wait_phase("adopt", Phase::Dispatched, Duration::from_secs(60))
        .await;
    assert_eq!(a.claimed_by(), Some("gastown-local"));
}

/// Item 7: an earlier controller created the bead and slung it, then died before recording
/// either (the object has our finalizer, no bead in its status); Gas Town was unreachable while
/// the claim expired. The worker's tmux session is gone, so `gt unsling` is refused (as real
/// `gt` refuses, see `deletion_of_work_whose_worker_session_is_gone_still_releases_the_bead`),
/// and `bd update` fails too: the claim is kept, saying why, and the bead stays hooked and is
/// never slung again. Once `bd update` works the release completes and the claim goes back.
#[tokio::test]
async fn an_expired_claim_is_kept_while_its_unrecorded_hooked_bead_cannot_be_taken_back() {
    let env = Env::new("expiry-held").await;
    let (bead, worker) = an_unrecorded_bead_hooked_by_a_dead_worker(&env, "held").await;
    // Gas Town unreachable: the lookup fails, the claim is past its timeout.
    env.town.set_faults(&Faults::down()).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "60s"]);
    env.wait_for("held", "Released recorded", T, |a| a.phase() == Some(Phase::Released))
        .await;
    // Gas Town answers again, but `bd update` fails.
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd update"])).unwrap();
    the_claim_is_kept_while_the_bead_cannot_be_taken_back(&env, "held", &bead, &worker).await;
    // `bd update` works again: the bead is reopened, closed (the controller created it) and
    // the claim given back.
    env.town.clear_faults();
    the_claim_is_given_back_once_the_bead_is_reopened_and_closed(&env, "held", &bead).await;
}

/// `name`, claimed two minutes ago, with our finalizer and a bead with its external ref that is
/// hooked to a worker whose session is gone: what a controller leaves that died after slinging
/// and before recording anything. Returns the bead and the worker.
async fn an_unrecorded_bead_hooked_by_a_dead_worker(env: &Env, name: &str) -> (String, String) {
    // Past `--claim-timeout` (60 s) but well within `--release-timeout` (the default 10 min),
    // so nothing here is given back because the release gave up.
    let two_minutes_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(120))
        .unwrap();
    let mut obj = env.create_claimed_at(name, two_minutes_ago, &json!({})).await.unwrap();
    obj.metadata.finalizers = Some(vec![RELEASE_FINALIZER.to_string()]);
    let obj = env.api().replace(name, &PostParams::default(), &obj).await.unwrap();
    let external = format!("automaton:{}/{name}/{}", env.ns.name(), obj.uid().unwrap());
    let bead = env
        .town
        .create_bead_with_external_ref(&format!("Task {name}"), &external)
        .unwrap();
    by_hand(&env.town, "gt", &["sling", "--", &bead, "gastown"]);
    let hooked = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(hooked["status"], "hooked", "{hooked}");
    let worker = hooked["assignee"].as_str().unwrap().to_string();
    env.town.end_session(&worker).unwrap();
    (bead, worker)
}

/// Both ways of taking the bead back fail: the claim stays, says why, and the bead stays hooked
/// to its worker, never slung by the controller.
async fn the_claim_is_kept_while_the_bead_cannot_be_taken_back(env: &Env, name: &str, bead: &str, worker: &str) {
    let released_false = |a: &Automaton| {
        condition(a, "Released").is_some_and(|c| c.status == ConditionStatus::False && c.reason == "WorkerHoldsBead")
    };
    let a = env
        .wait_for(
            name,
            "Released=False (WorkerHoldsBead), or the claim given back",
            T,
            |a| a.claimed_by().is_none() || released_false(a),
        )
        .await;
    assert_eq!(
        a.claimed_by(),
        Some("gastown-local"),
        "claim given back while a worker holds its bead: {:?}; bead: {}",
        a.status,
        env.town.bead(bead).unwrap().unwrap()
    );
    let c = condition(&a, "Released").unwrap();
    assert!(
        c.message.contains(bead) && c.message.contains(worker),
        "the condition says which bead and worker: {c:?}"
    );
    // The controller tried both ways of taking the bead back, and both failed.
    let failed = |tool: &str, verb: &str| calls_of(&env.town, tool, verb).iter().any(|c| c.exit_code != 0);
    let calls = env.town.calls().unwrap();
    assert!(failed("gt", "unsling"), "gt unsling refused: {calls:?}");
    assert!(failed("bd", "update"), "bd update failed: {calls:?}");
    // Kept through several more failed attempts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let a = env.api().get(name).await.unwrap();
    assert_eq!(a.claimed_by(), Some("gastown-local"), "claim kept: {:?}", a.status);
    assert!(has_release_finalizer(&a));
    assert_eq!(a.spec.execution_mode, ExecutionMode::Local);
    // `phase: Released` is the intent, recorded first (README "Claim expiry") so that no later
    // reconcile slings the bead again; the claim itself stays with Gas Town until then.
    assert_eq!(a.phase(), Some(Phase::Released));
    assert!(a.annotations().contains_key(CLAIMED_AT_ANNOTATION));
    assert_eq!(
        condition(&a, "Released").map(|c| (c.status, c.reason.clone())),
        Some((ConditionStatus::False, "WorkerHoldsBead".to_string())),
        "{:?}",
        a.status
    );
    let stored = env.town.bead(bead).unwrap().unwrap();
    assert_eq!(stored["status"], "hooked", "{stored}");
    assert_eq!(stored["assignee"].as_str(), Some(worker), "{stored}");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
    assert_eq!(env.town.sling_count(bead), 0, "the controller never slings it");
}

/// The bead is reopened before it is closed, it was dispatched only by the earlier controller,
/// and the claim goes back to Kubernetes.
async fn the_claim_is_given_back_once_the_bead_is_reopened_and_closed(env: &Env, name: &str, bead: &str) {
    env.wait_given_back(name, "claim given back").await;
    let stored = env.town.bead(bead).unwrap().unwrap();
    assert_eq!(stored["status"], "closed", "{stored}");
    assert_eq!(
        stored["close_reason"].as_str(),
        Some(gastown_controller::decision::RELEASE_CLOSE_REASON),
        "{stored}"
    );
    let calls = env.town.calls().unwrap();
    let succeeded = |tool: &str, verb: &str| {
        calls
            .iter()
            .position(|c| c.tool == tool && c.verb() == Some(verb) && c.exit_code == 0)
    };
    let reopen = succeeded("bd", "update").expect("reopened with bd update");
    assert!(calls[reopen].argv.iter().any(|a| a == "open"), "{:?}", calls[reopen]);
    let close = succeeded("bd", "close").expect("closed");
    assert!(reopen < close, "reopened before closing: {calls:?}");
    let dispatches = env
        .town
        .all_calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.dispatched && c.is_sling_of(bead))
        .count();
    assert_eq!(dispatches, 1, "dispatched once, by the earlier controller");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
}

//! A controller sees only its own town's claims: another town's claims, in every state this
//! controller would act on (fresh, expired, being deleted with the shared finalizer), are never
//! cached, written, dispatched, released or finalized by it.

use gastown_crds::contract::{CLAIMED_BY_LABEL, RELEASE_FINALIZER};
use gastown_crds::{Automaton, Phase};
use gastown_tests::controller_env::ControllerEnv;
use gastown_tests::status::{bead_id, claim_left};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

use super::*;

const HOUR_AGO: i64 = 3600;

#[tokio::test]
async fn a_controller_never_touches_another_towns_claims() {
    let env = env("scope").await;
    let c = controller(
        &env,
        "town-a",
        &env.town,
        None,
        &["--claim-timeout", "3s", "--release-timeout", "3s"],
    );
    let theirs = [
        claim(&env, "b-fresh", "town-b", 0).await,
        claim(&env, "b-expired", "town-b", HOUR_AGO).await,
        being_deleted_with_a_bead(&env, "b-deleting", "town-b").await,
    ];
    ours_are_handled(&env).await;
    // The cache holds exactly our one remaining claim (the gauge counts the cache every 5 s).
    let deadline = std::time::Instant::now() + T;
    while active_claims(&c) != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "active claims {:?}\n{}",
            active_claims(&c),
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let events = Api::<Event>::namespaced(env.cluster.client(), env.ns.name())
        .list(&ListParams::default())
        .await
        .unwrap();
    for before in theirs {
        let name = before.name_any();
        let now = env.api().get(&name).await.unwrap();
        assert_eq!(
            now.resource_version(),
            before.resource_version(),
            "{name} was written: {now:?}"
        );
        assert_eq!(now.claimed_by(), Some("town-b"), "{name}");
        assert_eq!(calls_about(&env.town, &before), 0, "{name} reached town-a's Gas Town");
        let about_it = events
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name));
        assert_eq!(about_it.count(), 0, "town-a recorded Events about {name}");
    }
}

/// Town-a's own claims in the same states: dispatched, given back, released and finalized.
async fn ours_are_handled(env: &ControllerEnv) {
    let fresh = claim(env, "a-fresh", "town-a", 0).await;
    let expired = claim(env, "a-expired", "town-a", HOUR_AGO).await;
    let deleting = claim(env, "a-deleting", "town-a", 0).await;
    for a in [&fresh, &deleting] {
        let name = a.name_any();
        env.wait_for(&name, "Dispatched", T, |a| a.phase() == Some(Phase::Dispatched))
            .await;
        assert_eq!(dispatched_once(&env.town, a), 1, "{name}");
    }
    env.api().delete("a-deleting", &DeleteParams::default()).await.unwrap();
    let given_back = env
        .wait_for("a-expired", "given back", T, |a| a.phase() == Some(Phase::Released))
        .await;
    assert_eq!(claim_left(&given_back), Vec::<String>::new());
    assert_eq!(
        calls_about(&env.town, &expired),
        0,
        "expired before it was seen: no bead"
    );
    let deadline = std::time::Instant::now() + T;
    while env.api().get_opt("a-deleting").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "a-deleting was never finalized");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A claim of `town` made `age_secs` ago, as the policy leaves it.
async fn claim(env: &ControllerEnv, name: &str, town: &str, age_secs: i64) -> Automaton {
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - age_secs).unwrap();
    env.create_claimed_at(name, at, &json!({"metadata": {"labels": {CLAIMED_BY_LABEL: town}}}))
        .await
        .unwrap()
}

/// A claim of `town` that its controller dispatched (finalizer, bead in the status), now being
/// deleted: only `town`'s controller may release its bead and remove the finalizer.
async fn being_deleted_with_a_bead(env: &ControllerEnv, name: &str, town: &str) -> Automaton {
    let extra = json!({"metadata": {"labels": {CLAIMED_BY_LABEL: town}, "finalizers": [RELEASE_FINALIZER]}});
    env.create_claimed_at(name, jiff::Timestamp::now(), &extra)
        .await
        .unwrap();
    let status = json!({"status": {"phase": "Dispatched", "gastown": {"beadId": "gt-b1", "beadCreated": true}}});
    env.api()
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    env.api().delete(name, &DeleteParams::default()).await.unwrap();
    let a = env.api().get(name).await.unwrap();
    assert!(
        a.metadata.deletion_timestamp.is_some() && bead_id(&a).is_some(),
        "{a:?}"
    );
    a
}

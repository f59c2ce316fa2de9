//! Two towns' controllers with leader election in one namespace (the Lease namespace the
//! same, `--lease-name` left to its default): each elects on its own Lease, so both lead, and
//! each town's claim is dispatched once, in its own Gas Town only.

use gastown_crds::Phase;
use gastown_crds::contract::CLAIMED_BY_LABEL;
use gastown_tests::controller_process::leader_election_args;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

use super::*;

#[tokio::test]
async fn two_towns_in_one_namespace_each_lead_on_their_own_lease() {
    let env = env("leases").await;
    let town_b = FakeGasTown::new().unwrap();
    let args_a = leader_election_args(env.ns.name(), "5s", "a-1");
    let args_b = leader_election_args(env.ns.name(), "5s", "b-1");
    let _a = controller(&env, "town-a", &env.town, None, &args_a);
    let _b = controller(&env, "town-b", &town_b, None, &args_b);
    let now = jiff::Timestamp::now();
    for (name, town) in [("a-work", "town-a"), ("b-work", "town-b")] {
        let labels = json!({"metadata": {"labels": {CLAIMED_BY_LABEL: town}}});
        env.create_claimed_at(name, now, &labels).await.unwrap();
    }
    let a = env
        .wait_for("a-work", "Dispatched", T, |a| a.phase() == Some(Phase::Dispatched))
        .await;
    let b = env
        .wait_for("b-work", "Dispatched", T, |a| a.phase() == Some(Phase::Dispatched))
        .await;
    assert_eq!((dispatched_once(&env.town, &a), dispatched_once(&town_b, &b)), (1, 1));
    assert_eq!(
        (calls_about(&env.town, &b), calls_about(&town_b, &a)),
        (0, 0),
        "no town saw the other's work"
    );
    let leases = Api::<Lease>::namespaced(env.cluster.client(), env.ns.name());
    for (lease, holder) in [("gastown-operator-town-a", "a-1"), ("gastown-operator-town-b", "b-1")] {
        let held = leases.get(lease).await.unwrap().spec.and_then(|s| s.holder_identity);
        assert_eq!(held.as_deref(), Some(holder), "{lease}");
    }
}

//! Three towns behind one policy (issue 16 "Tests"): the compiled policy as the admission
//! webhook with `towns` settings; controllers for town-alice and town-bob (whose Gas Town is
//! down), none for town-carol. Claims routed by rig, by requester and by explicit town reach
//! exactly their town; refusals name what is missing; town-alice's controller identity cannot
//! steer town-bob's claim.

use gastown_crds::contract::{CLAIM_REQUEST_ANNOTATION, RELEASE_FINALIZER};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{controller_rules, grant};
use gastown_tests::controller_env::ControllerEnv;
use gastown_tests::fake_gastown::{Config, Faults};
use gastown_tests::fixtures::{local_automaton, policy_manifest};
use gastown_tests::status::{bead_id, claim_left, condition, has_release_finalizer};
use gastown_tests::webhook::serve_in_namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt as _};
use serde_json::{Value, json};

use super::*;

/// Every claimer's group: in all three towns' `allowedGroups`, so routing by requester is
/// ambiguous for its members and the rig or an explicit town decides.
const OPS: &str = "ops";

fn service_account(town: &str) -> String {
    format!("system:serviceaccount:{town}:gastown-operator")
}

/// The manifest's policy with three towns, each with one rig, one user and its controller.
fn towns_policy() -> Value {
    let town = |name: &str, rig: &str, user: &str| {
        json!({"name": name, "rigs": [rig], "allowedUsers": [user], "allowedGroups": [OPS],
               "controllerUsers": [service_account(name)]})
    };
    let mut policy = policy_manifest().unwrap();
    policy["spec"]["settings"] = json!({
        "towns": [town("town-alice", "payments", "alice"), town("town-bob", "web", "bob"),
                  town("town-carol", "docs", "carol")],
        "defaultRig": "misc",
    });
    policy
}

/// The users, as the API server authenticates them.
struct Users {
    alice: Api<Automaton>,
    carol: Api<Automaton>,
    dave: Api<Automaton>,
    mallory: Api<Automaton>,
    /// Town-alice's controller identity.
    alices_controller: Api<Automaton>,
}

impl Users {
    async fn new(env: &ControllerEnv) -> Users {
        let api = |c: kube::Client| Api::namespaced(c, env.ns.name());
        let cluster = &env.cluster;
        Users {
            alice: api(cluster.user_client("alice").await.unwrap()),
            carol: api(cluster.impersonated_client("carol", &[]).await.unwrap()),
            dave: api(cluster.impersonated_client("dave", &[OPS]).await.unwrap()),
            mallory: api(cluster.user_client("mallory").await.unwrap()),
            alices_controller: api(cluster
                .impersonated_client(&service_account("town-alice"), &[])
                .await
                .unwrap()),
        }
    }
}

/// A claim request: `rig` (`None`: the default rig) and an explicit town (`None`: by rules).
fn request(name: &str, rig: Option<&str>, town: Option<&str>) -> Automaton {
    let mut extra = json!({"spec": {"task": {"description": "do it"}}});
    if let Some(rig) = rig {
        extra["spec"]["rig"] = json!(rig);
    }
    if let Some(town) = town {
        extra["metadata"] = json!({"annotations": {CLAIM_REQUEST_ANNOTATION: town}});
    }
    local_automaton(name, &extra).unwrap()
}

async fn create(api: &Api<Automaton>, a: &Automaton) -> kube::Result<Automaton> {
    api.create(&PostParams::default(), a).await
}

#[tokio::test]
async fn claims_reach_their_town_and_no_other() {
    let env = env("towns").await;
    let admin = env.cluster.client();
    let editors = ["alice", "bob", "carol", "dave", "mallory"];
    let rules =
        json!([{"apiGroups": ["olympus.io"], "resources": ["automatons", "automatons/status"], "verbs": ["*"]}]);
    grant(&admin, env.ns.name(), "automaton-editor", rules, &editors)
        .await
        .unwrap();
    for town in ["town-alice", "town-bob", "town-carol"] {
        let sa = service_account(town);
        grant(&admin, env.ns.name(), town, controller_rules(), &[sa.as_str()])
            .await
            .unwrap();
    }
    let (_webhook, _mwc) = serve_in_namespace(&admin, &towns_policy(), env.ns.name(), "gastown-towns")
        .await
        .unwrap();
    let users = Users::new(&env).await;
    refusals(&users).await;
    // Each Gas Town has its own rigs; the rig no town lists (the default) exists in alice's.
    let rigs = |rigs: &[&str]| Config {
        rigs: Some(rigs.iter().map(|r| r.to_string()).collect()),
        ..Config::default()
    };
    env.town.set_config(&rigs(&["payments", "misc"])).unwrap();
    let bob_town = FakeGasTown::new().unwrap();
    bob_town.set_config(&rigs(&["web"])).unwrap();
    bob_town.set_faults(&Faults::down()).unwrap();
    let as_sa = |town: &str| {
        env.cluster
            .impersonating_kubeconfig(&service_account(town), &[])
            .unwrap()
    };
    let _alice_c = controller(
        &env,
        "town-alice",
        &env.town,
        Some(&as_sa("town-alice")),
        &["--claim-timeout", "60s"],
    );
    let _bob_c = controller(
        &env,
        "town-bob",
        &bob_town,
        Some(&as_sa("town-bob")),
        &["--claim-timeout", "10s"],
    );

    let routed = [
        (
            &users.dave,
            request("by-rig-payments", Some("payments"), None),
            "town-alice",
        ),
        (&users.alice, request("by-requester-alice", None, None), "town-alice"),
        (
            &users.dave,
            request("named-alice", None, Some("town-alice")),
            "town-alice",
        ),
        (&users.dave, request("by-rig-web", Some("web"), None), "town-bob"),
        (&users.carol, request("by-requester-carol", None, None), "town-carol"),
    ];
    let mut claims = Vec::new();
    for (api, a, town) in routed {
        let created = create(api, &a)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", a.name_any()));
        assert_eq!(created.claimed_by(), Some(town), "{} routed", a.name_any());
        claims.push(created);
    }
    let (alices, rest) = claims.split_at(3);
    let (bobs, carols) = (&rest[0], &rest[1]);
    bobs_claim_stays_claimed_and_alice_cannot_steer_it(&env, &users, bobs).await;
    alices_claims_are_dispatched_once(&env, alices, &bob_town).await;
    bobs_claim_expires(&env, bobs, &bob_town).await;
    carols_claim_is_untouched(&env, carols, &bob_town).await;
}

/// Refused before any controller runs: no town for the claim, a user no town allows, a town
/// the user is not allowed in, and a rig that lives in another town than the one asked for.
async fn refusals(users: &Users) {
    let deadline = std::time::Instant::now() + T;
    // The API server takes the webhook up asynchronously: wait for the first refusal.
    let mallory = loop {
        match create(&users.mallory, &request("mallorys", Some("payments"), None)).await {
            Err(kube::Error::Api(s)) => break s,
            Ok(_) => panic!("mallory's claim admitted"),
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(mallory.code, 403, "{}", mallory.message);
    let cases = [
        (
            &users.dave,
            request("nowhere", None, None),
            400,
            ["no Gas Town", "defaultTown"],
        ),
        (
            &users.alice,
            request("alice-to-bob", None, Some("town-bob")),
            403,
            ["town-bob", "alice"],
        ),
        (
            &users.dave,
            request("web-to-alice", Some("web"), Some("town-alice")),
            400,
            ["web", "town-bob"],
        ),
    ];
    for (api, a, code, parts) in cases {
        match create(api, &a).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, code, "{}: {}", a.name_any(), s.message);
                for part in parts {
                    assert!(
                        s.message.contains(part),
                        "{}: {part:?} not in {}",
                        a.name_any(),
                        s.message
                    );
                }
            }
            other => panic!("{}: expected a refusal, got {other:?}", a.name_any()),
        }
    }
}

/// Town-bob's controller takes its claim (finalizer) but cannot reach its Gas Town; town-alice's
/// controller identity may neither write its status nor remove its finalizer.
async fn bobs_claim_stays_claimed_and_alice_cannot_steer_it(env: &ControllerEnv, users: &Users, bobs: &Automaton) {
    let name = bobs.name_any();
    let a = env
        .wait_for(&name, "town-bob's finalizer", T, has_release_finalizer)
        .await;
    assert_eq!(a.claimed_by(), Some("town-bob"));
    assert_eq!(bead_id(&a), None, "town-bob's Gas Town is down: no bead");
    let status = json!({"status": {"phase": "Dispatched", "gastown": {"beadId": "gt-stolen", "beadCreated": true}}});
    let steer = users
        .alices_controller
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await;
    refused_naming_town_bob("status by town-alice's controller", steer);
    let unfinalize = json!({"metadata": {"finalizers": null}});
    let steer = users
        .alices_controller
        .patch(&name, &PatchParams::default(), &Patch::Merge(unfinalize))
        .await;
    refused_naming_town_bob("finalizer removal by town-alice's controller", steer);
    let still = env.api().get(&name).await.unwrap();
    assert!(still.finalizers().iter().any(|f| f == RELEASE_FINALIZER) && bead_id(&still).is_none());
}

/// Town-bob's claim expires as a single town's does: `phase: Released` at once, and the claim
/// is given back once its Gas Town can say that the `bd create` that failed made no bead.
async fn bobs_claim_expires(env: &ControllerEnv, bobs: &Automaton, bob_town: &FakeGasTown) {
    let name = bobs.name_any();
    let expired = env
        .wait_for(&name, "Released", T, |a| a.phase() == Some(Phase::Released))
        .await;
    let released = condition(&expired, "Released").map(|c| c.reason.clone());
    assert_eq!(released.as_deref(), Some("ClaimExpired"));
    bob_town.clear_faults();
    let given_back = env.wait_for(&name, "given back", T, |a| a.claimed_by().is_none()).await;
    assert_eq!(claim_left(&given_back), Vec::<String>::new(), "bob's claim given back");
    assert_eq!(dispatched_once(bob_town, bobs), 0, "no bead in town-bob");
    assert!(
        calls_about(bob_town, bobs) > 0,
        "town-bob's controller tried its own Gas Town"
    );
    assert_eq!(calls_about(&env.town, bobs), 0, "bob's claim never reached town-alice");
}

fn refused_naming_town_bob(what: &str, result: kube::Result<Automaton>) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {}", s.message);
            assert!(s.message.contains("town-bob"), "{what}: {}", s.message);
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Town-alice's claims are dispatched once each in town-alice's Gas Town and never reach
/// town-bob's; one of them runs to Succeeded.
async fn alices_claims_are_dispatched_once(env: &ControllerEnv, alices: &[Automaton], bob_town: &FakeGasTown) {
    for a in alices {
        let name = a.name_any();
        env.wait_for(&name, "Dispatched", T, |a| a.phase() == Some(Phase::Dispatched))
            .await;
        assert_eq!(dispatched_once(&env.town, a), 1, "{name}: one bead in town-alice");
        assert_eq!(calls_about(bob_town, a), 0, "{name} reached town-bob");
    }
    let first = env.api().get(&alices[0].name_any()).await.unwrap();
    let bead = bead_id(&first).unwrap();
    env.town.start_work(&bead).unwrap();
    env.town.close(&bead, "merged to main").unwrap();
    env.wait_for(&first.name_any(), "Succeeded", T, |a| {
        a.phase() == Some(Phase::Succeeded)
    })
    .await;
}

/// No controller runs for town-carol: its claim keeps the policy's marks and gets no status,
/// and no other town wrote it or sent it to its Gas Town.
async fn carols_claim_is_untouched(env: &ControllerEnv, carols: &Automaton, bob_town: &FakeGasTown) {
    let now = env.api().get(&carols.name_any()).await.unwrap();
    assert_eq!(
        now.resource_version(),
        carols.resource_version(),
        "carol's claim was written: {now:?}"
    );
    assert_eq!(now.claimed_by(), Some("town-carol"));
    assert!(now.status.is_none() && now.finalizers().is_empty(), "{now:?}");
    assert_eq!((calls_about(&env.town, carols), calls_about(bob_town, carols)), (0, 0));
    assert_eq!(town_column(env, &carols.name_any()).await, "town-carol");
}

/// The Town column of `kubectl get atm <name>`, as the API server renders the Table.
async fn town_column(env: &ControllerEnv, name: &str) -> Value {
    let path = format!(
        "/apis/olympus.io/v1alpha1/namespaces/{}/automatons/{name}",
        env.ns.name()
    );
    let request = hyper::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = serde_json::from_str(&env.cluster.client().request_text(request).await.unwrap()).unwrap();
    let columns = table["columnDefinitions"].as_array().unwrap();
    let town = columns.iter().position(|c| c["name"] == "Town");
    let town = town.unwrap_or_else(|| panic!("no Town column: {columns:?}"));
    table["rows"][0]["cells"][town].clone()
}

//! Who may steer claimed work (issue 14 items 11 to 14), end to end: the compiled policy served
//! as a mutating admission webhook to the real kube-apiserver with the rules, failure policy and
//! settings of `policy/manifests/cluster-admission-policy.yaml`, the real controller binary
//! (running as its ServiceAccount with the chart's Automaton rules) against the fake Gas Town,
//! and users writing through the API server.
//!
//! The controller binary is `GASTOWN_CONTROLLER_BIN`, else `gastown-controller` next to this
//! test's `deps/` directory (`cargo test --workspace` builds it; alone, run
//! `cargo build -p gastown-controller` first).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fmt::Debug;
use std::time::{Duration, Instant};

use gastown_crds::contract::{CLAIM_REQUEST_ANNOTATION, RELEASE_FINALIZER};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{OPERATOR_USER, TestCluster, client_from_kubeconfig};
use gastown_tests::controller_env::wait_for_automaton;
use gastown_tests::fake_gastown::{FakeGasTown, Faults};
use gastown_tests::fixtures::local_automaton;
use gastown_tests::status::bead_id;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt as _};
use serde::Serialize;
use serde_json::json;
use setup::{grant_rbac, install_the_policy_webhook, objects_from_before_the_policy, start_the_controller};

mod setup;

const WAIT: Duration = Duration::from_secs(60);

/// Broken expectations, collected so that one run reports every item that fails.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// Expects the API server to refuse with `code` and a message containing every part of
    /// `contains` (the policy's message).
    fn refused(&mut self, what: &str, result: Result<Automaton, kube::Error>, code: u16, contains: &[&str]) {
        match result {
            Err(kube::Error::Api(s)) => {
                if s.code != code {
                    self.0
                        .push(format!("{what}: code {}, expected {code}: {}", s.code, s.message));
                }
                for part in contains {
                    if !s.message.contains(part) {
                        self.0.push(format!("{what}: message lacks {part:?}: {}", s.message));
                    }
                }
            }
            Err(other) => self.0.push(format!("{what}: expected an API error, got {other}")),
            Ok(a) => self.0.push(format!(
                "{what}: ADMITTED (labels {:?}, annotations {:?}, finalizers {:?}, spec {:?}, phase {:?})",
                a.metadata.labels,
                a.metadata.annotations,
                a.metadata.finalizers,
                a.spec,
                a.phase()
            )),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }
}

/// Waits up to [`WAIT`] for `name` to satisfy `pred`, showing the controller's log on timeout.
async fn wait_for(
    api: &Api<Automaton>,
    name: &str,
    what: &str,
    log: &dyn Fn() -> String,
    pred: impl Fn(&Automaton) -> bool,
) -> Automaton {
    wait_for_automaton(api, name, what, WAIT, log, pred).await
}

/// A JSON merge patch of `name` as `api`'s user.
async fn merge(api: &Api<Automaton>, name: &str, patch: impl Serialize + Debug) -> kube::Result<Automaton> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await
}

/// A JSON merge patch of `name`'s status as `api`'s user.
async fn merge_status(api: &Api<Automaton>, name: &str, patch: impl Serialize + Debug) -> kube::Result<Automaton> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Items 11 to 14 through the API server: planted status, frozen claimed work, the release
/// finalizer, a released Automaton that is not claimed again (and that the controller leaves
/// alone), and status protection for any claimer.
#[tokio::test]
async fn nobody_but_the_controller_steers_claimed_work() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let admin = cluster.client();
    let ns = cluster.namespace("steer").await.unwrap();
    let ns_name = ns.name().to_string();
    grant_rbac(&admin, &ns_name).await;
    let client = |user: &'static str| {
        let path = cluster.user_kubeconfig(user);
        let ns = ns_name.clone();
        async move { Api::<Automaton>::namespaced(client_from_kubeconfig(&path).await.unwrap(), &ns) }
    };
    let alice = client("alice").await;
    let mallory = client("mallory").await;
    let operator = client(OPERATOR_USER).await;
    let admin_api: Api<Automaton> = Api::namespaced(admin.clone(), &ns_name);

    let (theirs, planted) = objects_from_before_the_policy(&admin_api).await;
    let (webhook, mwc_name) = install_the_policy_webhook(&admin, &ns_name, &alice).await;
    // The controller as its ServiceAccount. Gas Town refuses every sling, so a claim is given
    // back after --claim-timeout (the controller closes the bead it created and releases).
    let town = FakeGasTown::new().unwrap();
    town.set_faults(&Faults::fail(1.0).verbs(["sling"])).unwrap();
    let controller = start_the_controller(&cluster, &ns_name, &town);
    let log = || controller.log();
    let mut s = Steer {
        alice,
        mallory,
        operator,
        town: &town,
        log: &log,
        failures: Failures::default(),
    };
    a_released_automaton_is_not_claimed_again(&mut s).await;
    the_controllers_status_fields_are_its_own(&mut s, &planted).await;
    claimed_work_is_frozen(&mut s).await;
    another_towns_status_is_not_the_users(&mut s, &theirs).await;
    let failures = s.failures;

    assert!(webhook.requests() > 0);
    let _ = Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .delete(&mwc_name, &DeleteParams::default())
        .await;
    assert!(
        failures.0.is_empty(),
        "{} broken expectations:\n{}\ncontroller log:\n{}",
        failures.0.len(),
        failures.0.join("\n"),
        log()
    );
}

/// The users and the running pieces the steps share; `failures` collects what every step finds.
struct Steer<'a> {
    alice: Api<Automaton>,
    mallory: Api<Automaton>,
    operator: Api<Automaton>,
    town: &'a FakeGasTown,
    log: &'a dyn Fn() -> String,
    failures: Failures,
}

/// Item 13: a released Automaton is not claimed again, and the controller leaves it alone.
async fn a_released_automaton_is_not_claimed_again(s: &mut Steer<'_>) {
    let (alice, town, log) = (&s.alice, s.town, s.log);
    let failures = &mut s.failures;
    alice
        .create(
            &PostParams::default(),
            &local_automaton("give-back", &json!({})).unwrap(),
        )
        .await
        .unwrap();
    let released = wait_for(alice, "give-back", "released by the controller", &log, |a| {
        a.phase() == Some(Phase::Released) && a.claimed_by().is_none() && a.finalizers().is_empty()
    })
    .await;
    let bead = bead_id(&released).expect("the released claim recorded its bead");
    assert_eq!(
        town.bead(&bead).unwrap().unwrap()["status"],
        "closed",
        "the bead the controller created and could not sling is closed on release"
    );
    let beads_before = town.beads().unwrap().len();
    for (how, patch) in [
        (
            "re-claim by the annotation",
            json!({"metadata": {"annotations": {CLAIM_REQUEST_ANNOTATION: "local"}}}),
        ),
        (
            "re-claim by spec.executionMode local",
            json!({"spec": {"executionMode": "local"}}),
        ),
    ] {
        failures.refused(
            how,
            merge(alice, "give-back", &patch).await,
            409,
            &[
                "was released by Gas Town (status.phase Released)",
                "Create a new Automaton to claim the work again",
            ],
        );
    }
    // Nothing changed, and the controller leaves the released Automaton alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = alice.get("give-back").await.unwrap();
    failures.check(
        after.phase() == Some(Phase::Released) && after.claimed_by().is_none(),
        format!(
            "give-back is no longer released and unclaimed: phase {:?}, labels {:?}",
            after.phase(),
            after.metadata.labels
        ),
    );
    failures.check(
        after.resource_version() == released.resource_version(),
        "the refused re-claims changed the released Automaton",
    );
    failures.check(
        town.beads().unwrap().len() == beads_before,
        "a bead was created after a re-claim of a released Automaton",
    );
    // It stays usable in Kubernetes mode.
    merge(alice, "give-back", json!({"metadata": {"labels": {"team": "web"}}}))
        .await
        .unwrap();
}

/// Item 11: the controller's status fields are the controller's, on any Automaton.
async fn the_controllers_status_fields_are_its_own(s: &mut Steer<'_>, planted: &Automaton) {
    let (alice, mallory) = (&s.alice, &s.mallory);
    let failures = &mut s.failures;
    alice
        .create(
            &PostParams::default(),
            &local_automaton("plain", &json!({"spec": {"executionMode": "kubernetes"}})).unwrap(),
        )
        .await
        .unwrap();
    failures.refused(
        "planting a bead",
        merge_status(
            mallory,
            "plain",
            json!({"status": {"phase": "Pending", "gastown": {"beadId": "gt-team8", "beadCreated": true}}}),
        )
        .await,
        403,
        &[
            "status.gastown",
            "may be written only by the gastown controller",
            "\"mallory\"",
        ],
    );
    failures.refused(
        "changing a recorded bead",
        merge_status(
            mallory,
            "give-back",
            json!({"status": {"gastown": {"beadId": "gt-team8"}}}),
        )
        .await,
        403,
        &["status.gastown"],
    );
    failures.refused(
        "planting a phase",
        merge_status(mallory, "plain", json!({"status": {"phase": "Dispatched"}})).await,
        403,
        &["status.phase Dispatched"],
    );
    // The Kubernetes executor's fields stay writable (the controller's are kept).
    let written = merge_status(
        mallory,
        "planted",
        json!({"status": {"phase": "Pending", "message": "waiting for a node"}}),
    )
    .await
    .unwrap();
    assert_eq!(written.status.unwrap().message.as_deref(), Some("waiting for a node"));
    // An Automaton whose status carries a bead is not claimed.
    failures.refused(
        "claiming an Automaton whose status carries a bead",
        merge(
            alice,
            "planted",
            json!({"metadata": {"annotations": {CLAIM_REQUEST_ANNOTATION: "local"}}}),
        )
        .await,
        409,
        &["cannot be claimed", "status.gastown"],
    );
    let unchanged = alice.get("planted").await.unwrap();
    failures.check(unchanged.claimed_by().is_none(), "planted was claimed");
    failures.check(
        unchanged.spec.execution_mode == planted.spec.execution_mode,
        "planted changed its execution mode",
    );
}

/// Item 12: claimed work is frozen; only the controller touches its finalizer.
async fn claimed_work_is_frozen(s: &mut Steer<'_>) {
    let (alice, town, log) = (&s.alice, s.town, s.log);
    let failures = &mut s.failures;
    town.clear_faults();
    alice
        .create(&PostParams::default(), &local_automaton("again", &json!({})).unwrap())
        .await
        .unwrap();
    let again = wait_for(alice, "again", "Dispatched", &log, |a| {
        a.phase() == Some(Phase::Dispatched)
    })
    .await;
    assert!(again.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    for (what, patch) in [
        ("spec.timeoutSeconds", json!({"spec": {"timeoutSeconds": 999_999}})),
        (
            "spec.agent",
            json!({"spec": {"agent": {"name": "claude", "model": "opus"}}}),
        ),
        ("spec.mergeStrategy", json!({"spec": {"mergeStrategy": "direct"}})),
        ("spec.forge", json!({"spec": {"forge": "other-forge"}})),
    ] {
        failures.refused(
            &format!("changing {what} of claimed work"),
            merge(alice, "again", &patch).await,
            403,
            &[what, "the spec of claimed work is frozen"],
        );
    }
    failures.refused(
        "removing the finalizer of claimed work",
        merge(alice, "again", json!({"metadata": {"finalizers": []}})).await,
        403,
        &["metadata.finalizers[gastown.io/release]"],
    );
    // Adding it to work nobody claims is refused too (nobody would ever remove it).
    failures.refused(
        "adding the finalizer to unclaimed work",
        merge(alice, "plain", json!({"metadata": {"finalizers": [RELEASE_FINALIZER]}})).await,
        403,
        &["finalizer gastown.io/release is added and removed only by the gastown controller"],
    );
    // Deleting claimed work stays allowed: the controller releases it and removes its finalizer.
    let bead = bead_id(&again).unwrap();
    alice.delete("again", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while alice.get_opt("again").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "again not released; controller log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    failures.check(
        town.bead(&bead).unwrap().unwrap()["status"] != "hooked",
        "the deleted work is still hooked in Gas Town",
    );
}

/// Item 14: the status of another town's claim is not the users' either.
async fn another_towns_status_is_not_the_users(s: &mut Steer<'_>, theirs: &Automaton) {
    let (alice, operator) = (&s.alice, &s.operator);
    let failures = &mut s.failures;
    let mut spoof = alice.get("theirs").await.unwrap();
    spoof.status.get_or_insert_with(Default::default).phase = Some(Phase::Succeeded);
    failures.refused(
        "status of another town's claim",
        alice.replace_status("theirs", &PostParams::default(), &spoof).await,
        403,
        &[
            "claimed by Gas Town \"other-town\"",
            "reported only by the gastown controller",
        ],
    );
    failures.check(
        alice.get("theirs").await.unwrap().status == theirs.status,
        "the status of another town's claim was written by alice",
    );
    // The controller identity may.
    merge_status(operator, "theirs", json!({"status": {"message": "seen"}}))
        .await
        .unwrap();
}

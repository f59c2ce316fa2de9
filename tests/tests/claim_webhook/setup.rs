//! Setting the scene: RBAC as the chart grants it, objects from before the policy, the policy
//! served as a webhook, and the controller binary as its ServiceAccount.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gastown_crds::Automaton;
use gastown_crds::contract::{CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_tests::cluster::{OPERATOR_USER, TestCluster, controller_rules, grant};
use gastown_tests::controller_process::{ControllerProcess, base_args};
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::fixtures::local_automaton;
use gastown_tests::webhook::{PolicyWebhook, serve_in_namespace};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::WAIT;

pub(crate) fn controller_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("GASTOWN_CONTROLLER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/gastown-controller
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("gastown-controller"))
        .unwrap();
    assert!(
        bin.is_file(),
        "{} not found: build it (`cargo build -p gastown-controller`) or set GASTOWN_CONTROLLER_BIN",
        bin.display()
    );
    bin
}

/// The ClusterAdmissionPolicy of `policy/manifests/`, with alice allowed to claim.
pub(crate) fn policy_manifest() -> Value {
    let mut policy = gastown_tests::fixtures::policy_manifest().unwrap();
    policy["spec"]["settings"]["allowedUsers"] = json!(["alice"]);
    policy
}

/// RBAC: users may do anything with Automatons in the namespace (so only the policy stands in
/// their way); the controller has the chart's Automaton rules.
pub(crate) async fn grant_rbac(admin: &Client, ns_name: &str) {
    let rules =
        json!([{"apiGroups": ["olympus.io"], "resources": ["automatons", "automatons/status"], "verbs": ["*"]}]);
    grant(admin, ns_name, "automaton-editor", rules, &["alice", "bob", "mallory"])
        .await
        .unwrap();
    grant(admin, ns_name, "gastown-operator", controller_rules(), &[OPERATOR_USER])
        .await
        .unwrap();
}

/// Objects from before the policy was installed: work claimed by another town (its marks were
/// set by that town's controller), and an unclaimed Automaton whose status carries a bead.
pub(crate) async fn objects_from_before_the_policy(admin_api: &Api<Automaton>) -> (Automaton, Automaton) {
    let theirs = admin_api
        .create(
            &PostParams::default(),
            &local_automaton(
                "theirs",
                &json!({"metadata": {"labels": {CLAIMED_BY_LABEL: "other-town"}}, "spec": {"rig": "gastown"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let planted = admin_api
        .create(
            &PostParams::default(),
            &local_automaton("planted", &json!({"spec": {"executionMode": "kubernetes"}})).unwrap(),
        )
        .await
        .unwrap();
    admin_api
        .patch_status(
            "planted",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Pending", "gastown": {"beadId": "gt-team7", "beadCreated": true}}}),
            ),
        )
        .await
        .unwrap();
    (theirs, planted)
}

/// The compiled policy as a webhook built from the manifest, scoped to the namespace; returns
/// it with the name of its MutatingWebhookConfiguration once the API server uses it.
pub(crate) async fn install_the_policy_webhook(
    admin: &Client,
    ns_name: &str,
    alice: &Api<Automaton>,
) -> (PolicyWebhook, String) {
    let (webhook, mwc_name) = serve_in_namespace(admin, &policy_manifest(), ns_name, "gastown-steer")
        .await
        .unwrap();
    // The API server picks the new configuration up asynchronously: wait until a forged claim
    // is refused.
    let deadline = Instant::now() + WAIT;
    loop {
        let forged = json!({"metadata": {"labels": {CLAIMED_BY_LABEL: DEFAULT_CLAIMER}}, "spec": {"executionMode": "kubernetes"}});
        let probe = local_automaton("probe", &forged).unwrap();
        match alice.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(s)) if s.code == 403 => break,
            Ok(_) => {
                alice.delete("probe", &DeleteParams::default()).await.unwrap();
            }
            Err(e) => panic!("probe: {e}"),
        }
        assert!(Instant::now() < deadline, "the webhook never took effect");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (webhook, mwc_name)
}

/// The controller binary as its ServiceAccount, watching `ns_name`, against `town`.
pub(crate) fn start_the_controller(cluster: &TestCluster, ns_name: &str, town: &FakeGasTown) -> ControllerProcess {
    let mut args = base_args(ns_name);
    args.extend(["--claim-timeout", "3s", "--release-timeout", "3s"].map(String::from));
    args.extend(town.exec_args());
    let log_path = town.state_dir().join("controller.log");
    ControllerProcess::spawn(
        &controller_binary(),
        &cluster.user_kubeconfig(OPERATOR_USER),
        &args,
        &log_path,
    )
    .unwrap()
}

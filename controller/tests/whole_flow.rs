//! The whole flow on a real API server, like a user would see it: the chart rendered by real
//! Helm; its RBAC applied; the compiled policy served as a mutating webhook built from the
//! chart's ClusterAdmissionPolicy; the controller running as the chart's ServiceAccount against
//! the fake Gas Town.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, TestNamespace, client_from_kubeconfig};
use gastown_tests::controller_env::wait_for_automaton;
use gastown_tests::controller_process::{ControllerProcess, base_args};
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::fixtures;
use gastown_tests::status::bead_id;
use gastown_tests::webhook::{PolicyWebhook, serve_in_namespace};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const RELEASE: &str = "gastown-operator";
const RELEASE_NS: &str = "gastown-system";

#[tokio::test]
async fn user_claims_policy_mutates_controller_dispatches_and_releases() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let admin = cluster.client();
    let ns = cluster.namespace("flow").await.unwrap();
    let work = tempdir();

    // 1. The chart, rendered by real Helm with the policy enabled.
    let docs = the_chart_rendered_with_the_policy(&work);
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ClusterAdmissionPolicy")
        .expect("ClusterAdmissionPolicy rendered")
        .clone();
    the_controller_identity_comes_from_the_release(&policy);
    the_deployment_runs_this_binary_with_its_probes(&docs);
    // 2. The chart's RBAC, for real; the controller will run with exactly these permissions.
    let _rbac_cleanup = the_chart_rbac_applied(&cluster, &docs, &ns).await;
    // 3. The compiled policy as a mutating webhook for this test's namespace.
    let (webhook, mwc_name) = the_policy_served_as_a_webhook(&admin, &policy, &ns).await;
    // 4. The controller as the chart's ServiceAccount, exec transport to the fake Gas Town.
    let town = FakeGasTown::new().unwrap();
    let controller = the_controller_as_its_service_account(&cluster, &ns, &town);
    // 5. Through the API server, like users.
    let user = async |name: &str| -> Api<Automaton> {
        let client = client_from_kubeconfig(&cluster.user_kubeconfig(name)).await.unwrap();
        Api::namespaced(client, ns.name())
    };
    let (alice, bob, mallory) = (user("alice").await, user("bob").await, user("mallory").await);
    kubernetes_work_passes_untouched(&alice).await;
    alices_claim_is_dispatched_and_followed_to_the_end(&alice, &town).await;
    claims_by_others_and_forged_claims_are_refused(&alice, &bob, &mallory).await;
    claimed_work_is_steered_only_by_the_controller(&alice).await;
    deleting_running_work_releases_it(&alice, &town, &controller).await;
    assert!(webhook.requests() > 0);
    the_controller_never_needed_more_than_the_chart_rbac(&controller);

    let _ = Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .delete(&mwc_name, &DeleteParams::default())
        .await;
}

fn the_chart_rendered_with_the_policy(work: &Path) -> Vec<Value> {
    let values = r#"
gastown:
  proxy: {url: "https://gt-proxy.example:9876", existingSecret: gt-proxy-client}
policy:
  enabled: true
  failurePolicy: Fail
  settings:
    allowedUsers: [alice]
    allowedGroups: [gastown-claimers]
    defaultRig: gastown
"#;
    fixtures::render_chart(values, work, RELEASE, RELEASE_NS, &["--kube-version", "v1.20.2"]).unwrap()
}

fn the_controller_identity_comes_from_the_release(policy: &Value) {
    let settings = &policy["spec"]["settings"];
    assert!(
        settings["controllerUsers"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccount:gastown-system:gastown-operator")),
        "controller identity derived from the release's ServiceAccount: {settings}"
    );
}

/// The Deployment's arguments are flags this binary accepts, and its probes are the
/// controller's endpoints.
fn the_deployment_runs_this_binary_with_its_probes(docs: &[Value]) {
    use clap::Parser;
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment rendered");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["gastown-controller".to_string()];
    for part in ["command", "args"] {
        for a in container[part].as_array().into_iter().flatten() {
            let a = a.as_str().unwrap().to_string();
            if a != "gastown-controller" && !a.ends_with("/gastown-controller") {
                argv.push(a);
            }
        }
    }
    let parsed =
        gastown_controller::config::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("chart args {argv:?}: {e}"));
    assert_eq!(parsed.run.transport, gastown_controller::config::TransportKind::Proxy);
    let probe_paths: Vec<&str> = ["livenessProbe", "readinessProbe"]
        .iter()
        .map(|p| container[p]["httpGet"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(probe_paths, ["/livez", "/readyz"]);
}

/// Applies the chart's RBAC, and lets the users edit Automatons in the test namespace (the
/// platform's own RBAC, not the chart's). The chart's part is removed again when the returned
/// guard drops (also on failure): other tests on this cluster expect the controller identity to
/// have no rights.
async fn the_chart_rbac_applied(cluster: &TestCluster, docs: &[Value], ns: &TestNamespace) -> Cleanup {
    let admin = cluster.client();
    let _ = Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": RELEASE_NS}})).unwrap(),
        )
        .await;
    let rbac: Vec<Value> = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
            )
        })
        .cloned()
        .collect();
    let cleanup = Cleanup {
        kubeconfig: cluster.kubeconfig(),
        docs: rbac.clone(),
    };
    for doc in &rbac {
        apply(&admin, doc).await;
    }
    apply(
        &admin,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "automaton-editor", "namespace": ns.name()},
        "rules": [{"apiGroups": ["olympus.io"], "resources": ["automatons", "automatons/status"], "verbs": ["*"]}]}),
    )
    .await;
    let subjects: Vec<Value> = ["alice", "bob", "mallory"]
        .iter()
        .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
        .collect();
    apply(
        &admin,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "automaton-editors", "namespace": ns.name()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "automaton-editor"},
        "subjects": subjects}),
    )
    .await;
    cleanup
}

/// The compiled policy as a mutating webhook built from the chart's ClusterAdmissionPolicy,
/// limited to this test's namespace so parallel tests are not affected. Returns the webhook and
/// the name of its MutatingWebhookConfiguration.
async fn the_policy_served_as_a_webhook(admin: &Client, policy: &Value, ns: &TestNamespace) -> (PolicyWebhook, String) {
    serve_in_namespace(admin, policy, ns.name(), "gastown-e2e")
        .await
        .unwrap()
}

fn the_controller_as_its_service_account(
    cluster: &TestCluster,
    ns: &TestNamespace,
    town: &FakeGasTown,
) -> ControllerProcess {
    let mut args = base_args(ns.name());
    args.extend(town.exec_args());
    ControllerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
        &cluster.user_kubeconfig("gastown-operator"),
        &args,
        &town.state_dir().join("controller.log"),
    )
    .unwrap()
}

async fn kubernetes_work_passes_untouched(alice: &Api<Automaton>) {
    let plain = alice
        .create(
            &PostParams::default(),
            &automaton("in-pods", json!({"spec": {"executionMode": "kubernetes"}})),
        )
        .await
        .unwrap();
    assert_eq!(plain.claimed_by(), None);
}

/// An allowed user's local Automaton is claimed by the policy, dispatched by the controller (as
/// its ServiceAccount) to Gas Town, and followed to the end.
async fn alices_claim_is_dispatched_and_followed_to_the_end(alice: &Api<Automaton>, town: &FakeGasTown) {
    let created = alice
        .create(&PostParams::default(), &automaton("fix-login", json!({})))
        .await
        .unwrap();
    assert_eq!(created.claimed_by(), Some("gastown-local"));
    let annotations = created.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations.get(CLAIM_REQUESTED_BY_ANNOTATION).map(String::as_str),
        Some("alice")
    );
    assert!(
        annotations
            .get(CLAIMED_AT_ANNOTATION)
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
    );
    assert_eq!(created.spec.rig.as_deref(), Some("gastown"), "defaultRig filled in");
    let a = wait_phase(alice, "fix-login", Phase::Dispatched).await;
    let bead = bead_id(&a).unwrap();
    assert_eq!(town.dispatch_count(&bead), 1);
    town.start_work(&bead).unwrap();
    wait_phase(alice, "fix-login", Phase::Running).await;
    town.close(&bead, "merged").unwrap();
    wait_phase(alice, "fix-login", Phase::Succeeded).await;
}

async fn claims_by_others_and_forged_claims_are_refused(
    alice: &Api<Automaton>,
    bob: &Api<Automaton>,
    mallory: &Api<Automaton>,
) {
    // A claim by annotation from bob, who is in group developers only: refused with the
    // policy's message.
    let by_annotation = automaton(
        "by-annotation",
        json!({"metadata": {"annotations": {"gastown.io/claim": "local"}}, "spec": {"executionMode": "kubernetes"}}),
    );
    let (code, message) = api_error(bob.create(&PostParams::default(), &by_annotation).await.unwrap_err());
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("may not claim"), "{message}");

    // An unauthorized user's claim is refused by the API server with the policy's message.
    let (code, message) = api_error(
        mallory
            .create(&PostParams::default(), &automaton("sneaky", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(
        message.contains("mallory") && message.contains("allowedUsers"),
        "{message}"
    );

    // A forged claim label is refused.
    let forged = automaton(
        "forged",
        json!({"metadata": {"labels": {CLAIMED_BY_LABEL: "gastown-local"}}, "spec": {"executionMode": "kubernetes"}}),
    );
    let (code, message) = api_error(alice.create(&PostParams::default(), &forged).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(message.contains("set only by the gastown claim policy"), "{message}");
}

/// The status of claimed work is written only by the controller, and users cannot change the
/// claimed work itself.
async fn claimed_work_is_steered_only_by_the_controller(alice: &Api<Automaton>) {
    let current = alice.get("fix-login").await.unwrap();
    let mut spoof = current.clone();
    spoof.status.get_or_insert_with(Default::default).message = Some("spoofed".into());
    let (code, message) = api_error(
        alice
            .replace_status("fix-login", &PostParams::default(), &spoof)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403, "{message}");

    let (code, message) = api_error(
        alice
            .patch(
                "fix-login",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rig": "otherrig"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(message.contains("spec.rig"), "{message}");
}

async fn deleting_running_work_releases_it(alice: &Api<Automaton>, town: &FakeGasTown, controller: &ControllerProcess) {
    alice
        .create(&PostParams::default(), &automaton("stop-me", json!({})))
        .await
        .unwrap();
    let a = wait_phase(alice, "stop-me", Phase::Dispatched).await;
    let bead = bead_id(&a).unwrap();
    alice.delete("stop-me", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.get_opt("stop-me").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "stop-me not released; controller log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(town.bead(&bead).unwrap().unwrap()["status"], "closed");
}

fn the_controller_never_needed_more_than_the_chart_rbac(controller: &ControllerProcess) {
    let log = controller.log();
    assert!(
        !log.contains("forbidden"),
        "the controller hit a permission error:\n{log}"
    );
    assert!(
        !log.contains("BEGIN") && !log.contains("token"),
        "no credentials in logs"
    );
}

async fn wait_phase(api: &Api<Automaton>, name: &str, phase: Phase) -> Automaton {
    let timeout = Duration::from_secs(45);
    wait_for_automaton(api, name, phase.as_str(), timeout, &String::new, |a| {
        a.phase() == Some(phase)
    })
    .await
}

fn automaton(name: &str, extra: Value) -> Automaton {
    fixtures::local_automaton(name, &extra).unwrap()
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// The API for the kind of `doc` (found by discovery), in its namespace if it has one.
async fn dynamic_api(client: &Client, doc: &Value) -> kube::Result<Api<DynamicObject>> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(if caps.scope == kube::discovery::Scope::Cluster {
        Api::all_with(client.clone(), &resource)
    } else {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or(RELEASE_NS);
        Api::namespaced_with(client.clone(), ns, &resource)
    })
}

async fn apply(client: &Client, doc: &Value) {
    let kind = doc["kind"].as_str().unwrap();
    let name = doc["metadata"]["name"].as_str().unwrap();
    let api = dynamic_api(client, doc).await.unwrap();
    api.patch(name, &PatchParams::apply("gastown-tests").force(), &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("applying {kind}/{name}: {e}"));
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gastown-flow-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deletes the given objects when dropped (from a thread with its own runtime, so it also
/// works while the test's runtime is unwinding).
struct Cleanup {
    kubeconfig: PathBuf,
    docs: Vec<Value>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let docs = std::mem::take(&mut self.docs);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let Ok(client) = client_from_kubeconfig(&kubeconfig).await else {
                    return;
                };
                for doc in docs.iter().rev() {
                    let Some(name) = doc["metadata"]["name"].as_str() else {
                        continue;
                    };
                    if let Ok(api) = dynamic_api(&client, doc).await {
                        let _ = api.delete(name, &DeleteParams::default()).await;
                    }
                }
            });
        })
        .join();
    }
}

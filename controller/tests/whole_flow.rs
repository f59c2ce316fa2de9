//! The whole flow on a real API server, like a user would see it: the chart rendered by real
//! Helm; its RBAC applied; the compiled policy served as a mutating webhook built from the
//! chart's ClusterAdmissionPolicy; the controller running as the chart's ServiceAccount against
//! the fake Gas Town.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, client_from_kubeconfig};
use gastown_tests::controller_process::ControllerProcess;
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::fixtures;
use gastown_tests::policy_host::{PolicyModule, default_module_path};
use gastown_tests::webhook::{ClusterCapabilities, PolicyWebhook, register};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const RELEASE: &str = "gastown-operator";
const RELEASE_NS: &str = "gastown-system";

/// Renders the chart with real Helm and returns its documents.
fn render_chart(values: &str, out: &Path) -> Vec<Value> {
    fixtures::render_chart(values, out, RELEASE, RELEASE_NS, &["--kube-version", "v1.20.2"]).unwrap()
}

async fn apply(client: &Client, doc: &Value) {
    let kind = doc["kind"].as_str().unwrap();
    let name = doc["metadata"]["name"].as_str().unwrap();
    let api_version = doc["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let api: Api<kube::api::DynamicObject> = if caps.scope == kube::discovery::Scope::Cluster {
        Api::all_with(client.clone(), &resource)
    } else {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or(RELEASE_NS);
        Api::namespaced_with(client.clone(), ns, &resource)
    };
    api.patch(name, &PatchParams::apply("gastown-tests").force(), &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("applying {kind}/{name}: {e}"));
}

async fn wait_for(api: &Api<Automaton>, name: &str, what: &str, pred: impl Fn(&Automaton) -> bool) -> Automaton {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let a = api.get_opt(name).await.unwrap();
        if let Some(a) = a.as_ref().filter(|a| pred(a)) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}: {:?}",
            a.map(|a| a.status)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

#[tokio::test]
async fn user_claims_policy_mutates_controller_dispatches_and_releases() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let admin = cluster.client();
    let ns = cluster.namespace("flow").await.unwrap();
    let work = tempdir();

    // 1. The chart, rendered by real Helm with the policy enabled.
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
    let docs = render_chart(values, &work);
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ClusterAdmissionPolicy")
        .expect("ClusterAdmissionPolicy rendered")
        .clone();
    let settings = policy["spec"]["settings"].clone();
    assert!(
        settings["controllerUsers"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccount:gastown-system:gastown-operator")),
        "controller identity derived from the release's ServiceAccount: {settings}"
    );

    // The Deployment's arguments are flags this binary accepts.
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
    use clap::Parser;
    let parsed =
        gastown_controller::config::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("chart args {argv:?}: {e}"));
    assert_eq!(parsed.run.transport, gastown_controller::config::TransportKind::Proxy);
    let probe_paths: Vec<&str> = ["livenessProbe", "readinessProbe"]
        .iter()
        .map(|p| container[p]["httpGet"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(probe_paths, ["/livez", "/readyz"]);

    // 2. The chart's RBAC, for real; the controller will run with exactly these permissions.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let _ = namespaces
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
    // Removed again at the end (also on failure): other tests on this cluster expect the
    // controller identity to have no rights.
    let _rbac_cleanup = Cleanup {
        kubeconfig: cluster.kubeconfig(),
        docs: rbac.clone(),
    };
    for doc in &rbac {
        apply(&admin, doc).await;
    }
    // Users may edit Automatons in the test namespace (the platform's own RBAC, not the chart's).
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

    // 3. The compiled policy as a mutating webhook built from the chart's ClusterAdmissionPolicy,
    //    limited to this test's namespace so parallel tests are not affected.
    let module = PolicyModule::load(&default_module_path()).unwrap();
    let webhook = PolicyWebhook::start(module, settings, Arc::new(ClusterCapabilities::new(admin.clone())), 0)
        .await
        .unwrap();
    let mut scoped = policy.clone();
    scoped["spec"]["namespaceSelector"] = json!({"matchLabels": {"gastown-e2e": ns.name()}});
    let mwc_name = format!("gastown-claim-{}", ns.name());
    register(&admin, &webhook.webhook_configuration(&mwc_name, &scoped))
        .await
        .unwrap();
    namespaces
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"gastown-e2e": ns.name()}}})),
        )
        .await
        .unwrap();

    // 4. The controller as the chart's ServiceAccount, exec transport to the fake Gas Town.
    let town = FakeGasTown::new().unwrap();
    let sa_kubeconfig = cluster.user_kubeconfig("gastown-operator");
    let args: Vec<String> = [
        "--namespaces",
        ns.name(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--sync-interval",
        "1s",
        "--log-format",
        "json",
        "--town-root",
        &town.town_root().display().to_string(),
        "--gt-path",
        &town.gt_path().display().to_string(),
        "--bd-path",
        &town.bd_path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = town.state_dir().join("controller.log");
    let controller = ControllerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
        &sa_kubeconfig,
        &args,
        &log,
    )
    .unwrap();

    // 5. Through the API server, like users.
    let alice: Api<Automaton> = Api::namespaced(
        client_from_kubeconfig(&cluster.user_kubeconfig("alice")).await.unwrap(),
        ns.name(),
    );
    let mallory: Api<Automaton> = Api::namespaced(
        client_from_kubeconfig(&cluster.user_kubeconfig("mallory"))
            .await
            .unwrap(),
        ns.name(),
    );
    let bob: Api<Automaton> = Api::namespaced(
        client_from_kubeconfig(&cluster.user_kubeconfig("bob")).await.unwrap(),
        ns.name(),
    );

    // Kubernetes-mode work passes untouched.
    let plain = alice
        .create(
            &PostParams::default(),
            &automaton("in-pods", json!({"spec": {"executionMode": "kubernetes"}})),
        )
        .await
        .unwrap();
    assert_eq!(plain.claimed_by(), None);

    // An allowed user's local Automaton is claimed by the policy...
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

    // ... dispatched by the controller (as its ServiceAccount) to Gas Town, and followed to the end.
    let a = wait_for(&alice, "fix-login", "Dispatched", |a| {
        a.phase() == Some(Phase::Dispatched)
    })
    .await;
    let bead = a
        .status
        .as_ref()
        .unwrap()
        .gastown
        .as_ref()
        .unwrap()
        .bead_id
        .clone()
        .unwrap();
    assert_eq!(town.dispatch_count(&bead), 1);
    town.start_work(&bead).unwrap();
    wait_for(&alice, "fix-login", "Running", |a| a.phase() == Some(Phase::Running)).await;
    town.close(&bead, "merged").unwrap();
    wait_for(&alice, "fix-login", "Succeeded", |a| {
        a.phase() == Some(Phase::Succeeded)
    })
    .await;

    // A claim by annotation from a member of an allowed group.
    let by_group = bob
        .create(&PostParams::default(), &automaton("by-annotation", json!({"metadata": {"annotations": {"gastown.io/claim": "local"}}, "spec": {"executionMode": "kubernetes"}})))
        .await;
    // bob is in group developers only: refused with the policy's message.
    let (code, message) = api_error(by_group.unwrap_err());
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

    // Status of claimed work is written only by the controller.
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

    // Claimed work cannot be changed by users.
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

    // Deleting running work releases it in Gas Town.
    alice
        .create(&PostParams::default(), &automaton("stop-me", json!({})))
        .await
        .unwrap();
    let a = wait_for(&alice, "stop-me", "Dispatched", |a| {
        a.phase() == Some(Phase::Dispatched)
    })
    .await;
    let bead2 = a.status.unwrap().gastown.unwrap().bead_id.unwrap();
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
    assert_eq!(town.bead(&bead2).unwrap().unwrap()["status"], "closed");
    assert!(webhook.requests() > 0);

    // The controller never needed more than the chart's RBAC.
    let log = controller.log();
    assert!(
        !log.contains("forbidden"),
        "the controller hit a permission error:\n{log}"
    );
    assert!(
        !log.contains("BEGIN") && !log.contains("token"),
        "no credentials in logs"
    );

    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let _ = Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .delete(&mwc_name, &DeleteParams::default())
        .await;
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
                    let (Some(kind), Some(name), Some(api_version)) = (
                        doc["kind"].as_str(),
                        doc["metadata"]["name"].as_str(),
                        doc["apiVersion"].as_str(),
                    ) else {
                        continue;
                    };
                    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
                    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
                    let Ok((resource, caps)) = kube::discovery::pinned_kind(&client, &gvk).await else {
                        continue;
                    };
                    let api: Api<kube::api::DynamicObject> = if caps.scope == kube::discovery::Scope::Cluster {
                        Api::all_with(client.clone(), &resource)
                    } else {
                        let ns = doc["metadata"]["namespace"].as_str().unwrap_or(RELEASE_NS);
                        Api::namespaced_with(client.clone(), ns, &resource)
                    };
                    let _ = api.delete(name, &DeleteParams::default()).await;
                }
            });
        })
        .join();
    }
}

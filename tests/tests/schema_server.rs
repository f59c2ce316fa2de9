//! The generated CRD's schema as the real API server enforces it: the examples are accepted,
//! invalid Automatons are refused with 422 naming the field, defaults are applied.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use gastown_crds::Automaton;
use gastown_tests::cluster::{TestCluster, TestNamespace};
use kube::Api;
use kube::Resource as _;
use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// The cluster with the CRD installed, a fresh namespace, and Automatons in it as untyped
/// objects (so the schema, not serde, judges them).
async fn setup(prefix: &str) -> (TestCluster, TestNamespace, Api<DynamicObject>) {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace(prefix).await.unwrap();
    let api = Api::namespaced_with(cluster.client(), ns.name(), &ApiResource::erase::<Automaton>(&()));
    (cluster, ns, api)
}

fn doc(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&()),
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

#[tokio::test]
async fn examples_are_accepted_and_defaults_applied() {
    let (_cluster, _ns, api) = setup("schema-ok").await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let obj: DynamicObject = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            created.data["spec"]["executionMode"].is_string(),
            "executionMode defaulted"
        );
        seen += 1;
    }
    assert_eq!(seen, 3);
    let minimal = api
        .create(&PostParams::default(), &doc("minimal", json!({"task": {"title": "t"}})))
        .await
        .unwrap();
    assert_eq!(minimal.data["spec"]["executionMode"], "kubernetes");
}

#[tokio::test]
async fn invalid_automatons_are_refused_by_the_schema() {
    let (_cluster, _ns, api) = setup("schema-bad").await;
    let cases = [
        ("no-task", json!({"rig": "gastown"}), "spec.task"),
        ("empty-title", json!({"task": {"title": ""}}), "spec.task.title"),
        (
            "long-title",
            json!({"task": {"title": "x".repeat(201)}}),
            "spec.task.title",
        ),
        ("newline-title", json!({"task": {"title": "a\nb"}}), "spec.task.title"),
        (
            "bad-mode",
            json!({"task": {"title": "t"}, "executionMode": "remote"}),
            "spec.executionMode",
        ),
        (
            "bad-merge",
            json!({"task": {"title": "t"}, "mergeStrategy": "squash"}),
            "spec.mergeStrategy",
        ),
        (
            "short-timeout",
            json!({"task": {"title": "t"}, "timeoutSeconds": 30}),
            "spec.timeoutSeconds",
        ),
        ("dash-rig", json!({"task": {"title": "t"}, "rig": "my-rig"}), "spec.rig"),
        ("hq-rig", json!({"task": {"title": "t"}, "rig": "hq"}), "spec.rig"),
        (
            "bad-bead",
            json!({"task": {"title": "t", "beadId": "-rf"}}),
            "spec.task.beadId",
        ),
        (
            "bad-forge",
            json!({"task": {"title": "t"}, "forge": "Web_Forge"}),
            "spec.forge",
        ),
        (
            "bad-agent",
            json!({"task": {"title": "t"}, "agent": {"name": "--force"}}),
            "spec.agent.name",
        ),
    ];
    for (name, spec, field) in cases {
        match api.create(&PostParams::default(), &doc(name, spec)).await {
            Ok(_) => panic!("{name}: accepted"),
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name}: {}", s.message);
                assert!(s.message.contains(field), "{name}: {} does not name {field}", s.message);
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

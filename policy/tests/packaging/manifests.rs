//! The ClusterAdmissionPolicy in `manifests/` and the deployment instructions.

use std::collections::BTreeSet;

use gastown_crds::contract::DEFAULT_CONTROLLER_USER;
use serde_json::json;

use crate::settings::{accepted_settings_fields, validate_settings};
use crate::{VERSION, annotation, keys, manifest, metadata, policy_dir, read, str_at, strings};

#[test]
fn manifest_matches_metadata() {
    let meta = metadata();
    let cap = manifest();
    let file = "manifests/cluster-admission-policy.yaml";
    assert_eq!(str_at(&cap, "/apiVersion", file), "policies.kubewarden.io/v1");
    assert_eq!(str_at(&cap, "/kind", file), "ClusterAdmissionPolicy");
    let spec = &cap["spec"];
    assert_eq!(
        spec["rules"], meta["rules"],
        "{file}: spec.rules must equal metadata.yml rules"
    );
    assert_eq!(
        spec["contextAwareResources"], meta["contextAwareResources"],
        "{file}: spec.contextAwareResources must equal metadata.yml contextAwareResources"
    );
    assert_eq!(spec["mutating"], json!(true), "{file}: spec.mutating");
    let module = str_at(&cap, "/spec/module", file);
    assert!(
        module.ends_with(&format!(":v{VERSION}")),
        "{file}: module {module} must be tagged v{VERSION}"
    );
    assert_eq!(
        module,
        format!(
            "registry://{}:v{VERSION}",
            annotation(&meta, "io.kubewarden.policy.ociUrl")
        ),
        "{file}: spec.module"
    );
    assert_eq!(spec["mode"], json!("protect"));
    assert_eq!(spec["failurePolicy"], json!("Fail"));
    assert_eq!(spec["backgroundAudit"], meta["backgroundAudit"]);
    let timeout = spec["timeoutSeconds"].as_u64().expect("spec.timeoutSeconds");
    assert!((2..=30).contains(&timeout), "timeoutSeconds {timeout} must be 2-30");
}

#[test]
fn manifest_settings_are_accepted_by_the_policy() {
    let settings = manifest()["spec"]["settings"].clone();
    let fields: BTreeSet<String> = accepted_settings_fields().into_iter().collect();
    let unknown: Vec<String> = keys(&settings).difference(&fields).cloned().collect();
    assert!(
        unknown.is_empty(),
        "manifest settings the policy does not know: {unknown:?}"
    );
    let answer = validate_settings(&settings);
    assert_eq!(
        answer["valid"],
        json!(true),
        "the manifest's settings are refused: {answer}"
    );
    assert!(
        strings(&settings["controllerUsers"]).contains(&DEFAULT_CONTROLLER_USER),
        "the manifest must let the chart's controller ServiceAccount release claims"
    );
}

#[test]
fn deployment_docs_name_what_the_context_aware_policy_needs() {
    let scaffold = "kwctl scaffold manifest --allow-context-aware -t ClusterAdmissionPolicy";
    let manifest_text = read(&policy_dir().join("manifests/cluster-admission-policy.yaml"));
    let readme = read(&policy_dir().join("README.md"));
    for (file, text) in [
        ("manifests/cluster-admission-policy.yaml", &manifest_text),
        ("README.md", &readme),
    ] {
        let flat: String = text
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ")
            .replace("\\ ", "");
        assert!(flat.contains(scaffold), "{file} must say `{scaffold}`");
        assert!(
            !flat.contains("kwctl scaffold manifest -t"),
            "{file}: `kwctl scaffold manifest` without --allow-context-aware drops contextAwareResources"
        );
        assert!(
            flat.contains("policyServerRbac"),
            "{file} must name the chart's PolicyServer RBAC"
        );
    }
    for needle in [
        "hostCapabilities",
        "kubernetes/list_resources_by_namespace",
        "namespacedPoliciesCapabilities",
        "AdmissionPolicy",
        "`list` and `watch`",
    ] {
        assert!(readme.contains(needle), "README.md must explain {needle}");
    }
}

//! The host capabilities `metadata.yml` declares, the policy's source calls and the compiled
//! module contains.

use std::collections::BTreeSet;

use gastown_crds::Automaton;
use kube::Resource;
use serde_json::json;

use crate::{metadata, policy_dir, read};

/// Every host capability policy-server knows, as `<namespace>/<operation>` (kubewarden-controller
/// crates/policy-evaluator/src/host_capabilities.rs, CAPABILITY_TREE): what metadata.yml
/// `hostCapabilities` may name, and what `kwctl annotate` looks for in a module.
const KNOWN_HOST_CAPABILITIES: &[&str] = &[
    "crypto/v1/is_certificate_trusted",
    "kubernetes/can_i",
    "kubernetes/get_resource",
    "kubernetes/list_resources_all",
    "kubernetes/list_resources_by_namespace",
    "net/v1/dns_lookup_host",
    "oci/v1/manifest_digest",
    "oci/v1/oci_manifest",
    "oci/v1/oci_manifest_config",
    "oci/v1/verify",
    "oci/v2/verify",
];

/// The host capabilities a module calls, found the way `kwctl annotate` finds them
/// (kubewarden-controller crates/kwctl/src/wasm_scanner.rs): a capability counts when both its
/// namespace and its operation string occur in the module, the operation not only as the start
/// of a longer operation (`v1/oci_manifest` inside `v1/oci_manifest_config`). kwctl scans the
/// data segments; this scans the whole module, which contains them.
fn host_capabilities_in_module(module: &[u8]) -> BTreeSet<String> {
    let find_all = |needle: &[u8]| -> Vec<usize> {
        module
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle)
            .map(|(at, _)| at)
            .collect()
    };
    let operations: Vec<(&str, &str)> = KNOWN_HOST_CAPABILITIES
        .iter()
        .map(|path| path.split_once('/').expect("namespace/operation"))
        .collect();
    operations
        .iter()
        .filter(|(namespace, operation)| {
            let longer: Vec<&str> = operations
                .iter()
                .map(|(_, other)| *other)
                .filter(|other| other != operation && other.starts_with(operation))
                .collect();
            !find_all(namespace.as_bytes()).is_empty()
                && find_all(operation.as_bytes())
                    .into_iter()
                    .any(|at| !longer.iter().any(|l| module[at..].starts_with(l.as_bytes())))
        })
        .map(|(namespace, operation)| format!("{namespace}/{operation}"))
        .collect()
}

/// The `wapc_guest::host_call("kubewarden", "<namespace>", "<operation>", ...)` calls in the
/// policy's source, as `<namespace>/<operation>`.
fn host_calls_in_source() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![policy_dir().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let source: String = read(&path).split_whitespace().collect();
            let calls = source.matches("host_call(").count();
            let literal: Vec<&str> = source.split("host_call(\"kubewarden\",\"").skip(1).collect();
            assert_eq!(
                literal.len(),
                calls,
                "{}: a host_call whose binding, namespace and operation are not string literals \
                 cannot be checked against metadata.yml",
                path.display()
            );
            for call in literal {
                // `kubernetes","list_resources_by_namespace",&msg)...`
                let parts: Vec<&str> = call.splitn(4, '"').collect();
                assert!(
                    parts.len() == 4 && parts[1] == ",",
                    "{}: cannot read host_call({call:.60}",
                    path.display()
                );
                found.insert(format!("{}/{}", parts[0], parts[2]));
            }
        }
    }
    found
}

fn declared_host_capabilities() -> BTreeSet<String> {
    let meta = metadata();
    let list = meta["hostCapabilities"]
        .as_array()
        .expect("metadata.yml: hostCapabilities must be a list");
    let declared: BTreeSet<String> = list
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("metadata.yml: hostCapabilities entry {v} is not a string"))
                .to_string()
        })
        .collect();
    assert_eq!(
        declared.len(),
        list.len(),
        "metadata.yml: hostCapabilities has duplicates"
    );
    declared
}

#[test]
fn metadata_declares_the_host_capabilities_the_policy_calls() {
    let declared = declared_host_capabilities();
    for capability in &declared {
        assert!(
            KNOWN_HOST_CAPABILITIES.contains(&capability.as_str()),
            "metadata.yml: hostCapabilities {capability:?} is not a host capability policy-server knows"
        );
    }
    let called = host_calls_in_source();
    assert_eq!(
        called,
        BTreeSet::from(["kubernetes/list_resources_by_namespace".to_string()]),
        "the host calls in policy/src (update this test and metadata.yml together)"
    );
    // kwctl annotate warns both ways: used but not declared, declared but not used.
    assert_eq!(
        declared, called,
        "metadata.yml hostCapabilities must be exactly the host calls the policy makes"
    );
    // The resource the call lists is the one contextAwareResources grants.
    assert_eq!(
        metadata()["contextAwareResources"],
        json!([{"apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&())}])
    );
}

#[test]
fn metadata_host_capabilities_match_the_compiled_module() {
    // The module `make annotate` embeds metadata.yml into; `make policy` builds it.
    let path = policy_dir().join("policy.wasm");
    let module = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make policy` first", path.display()));
    assert!(module.starts_with(b"\0asm"), "{} is not a wasm module", path.display());
    assert_eq!(
        host_capabilities_in_module(&module),
        declared_host_capabilities(),
        "what `kwctl annotate` would find in {} against metadata.yml hostCapabilities",
        path.display()
    );
}

#[test]
fn host_capability_scan_works_like_kwctl() {
    let module = |strings: &[&str]| strings.join("\u{0}").into_bytes();
    assert!(host_capabilities_in_module(&module(&["hello", "world"])).is_empty());
    assert_eq!(
        host_capabilities_in_module(&module(&["kubewarden", "kubernetes", "list_resources_by_namespace"])),
        BTreeSet::from(["kubernetes/list_resources_by_namespace".to_string()])
    );
    // The operation without its namespace string is not a call.
    assert!(host_capabilities_in_module(&module(&["list_resources_by_namespace"])).is_empty());
    // v1/oci_manifest only inside v1/oci_manifest_config is not v1/oci_manifest.
    assert_eq!(
        host_capabilities_in_module(&module(&["oci", "v1/oci_manifest_config"])),
        BTreeSet::from(["oci/v1/oci_manifest_config".to_string()])
    );
    assert_eq!(
        host_capabilities_in_module(&module(&["oci", "v1/oci_manifest_config", "v1/oci_manifest"])).len(),
        2
    );
}

//! Packaging checks: `metadata.yml`, `README.md`, `questions-ui.yml`, the ClusterAdmissionPolicy
//! in `manifests/` and the Artifact Hub files under `../artifacthub/` agree with each other, with
//! the crate version and with what the policy code accepts. kwctl is not available here, so
//! these files are written by hand; this test is what keeps them honest.
//!
//! One test binary with a module per packaged file: the policy's metadata, its settings as
//! the files describe them, the README, the manifest, the Artifact Hub files and the host
//! capabilities the module calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod artifacthub;
mod host_capabilities;
mod manifests;
mod metadata;
mod readme;
mod settings;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The policy's name (`io.kubewarden.policy.title`, Artifact Hub package name).
const TITLE: &str = "gastown-claim";
/// Where the annotated module is pushed, without the tag.
const OCI_URL: &str = "ghcr.io/gastown-operator/policies/gastown-claim";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    policy_dir()
        .parent()
        .expect("the policy crate lives inside the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml(what: &str, text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

fn yaml_file(path: &Path) -> Value {
    parse_yaml(&path.display().to_string(), &read(path))
}

fn metadata() -> Value {
    yaml_file(&policy_dir().join("metadata.yml"))
}

fn manifest() -> Value {
    yaml_file(&policy_dir().join("manifests/cluster-admission-policy.yaml"))
}

fn questions() -> Value {
    yaml_file(&policy_dir().join("questions-ui.yml"))
}

/// A metadata.yml annotation; kwctl requires every annotation to be a string.
fn annotation(meta: &Value, key: &str) -> String {
    meta["annotations"][key]
        .as_str()
        .unwrap_or_else(|| panic!("metadata.yml: annotation {key} is missing or not a string"))
        .to_string()
}

fn str_at<'v>(value: &'v Value, pointer: &str, file: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: {pointer} is missing or not a string"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn fixture_cases() -> Vec<(String, Value)> {
    let dir = policy_dir().join("test_data/cases");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let case = serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap_or_default().to_string_lossy().to_string(), case)
        })
        .collect()
}

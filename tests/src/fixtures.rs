//! Fixtures shared by the end-to-end tests: Automatons as users write them, and the chart as
//! real Helm renders it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use gastown_crds::Automaton;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, DEFAULT_CLAIMER, RELEASE_FINALIZER,
};
use kube::{Resource, ResourceExt as _};
use serde::Deserialize;
use serde_json::{Value, json};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A local Automaton named `name` with the title `Task <name>`; `extra` is merged over it (see
/// [`merge`]).
pub fn local_automaton(name: &str, extra: &Value) -> anyhow::Result<Automaton> {
    automaton_from(name, &[extra])
}

/// An Automaton as the claim policy leaves it: [`local_automaton`] with rig `gastown`, claimed
/// by `gastown-local` at `claimed_at` on alice's request; `extra` is merged over it.
pub fn claimed_automaton(name: &str, claimed_at: jiff::Timestamp, extra: &Value) -> anyhow::Result<Automaton> {
    let claim = json!({
        "metadata": {
            "labels": {CLAIMED_BY_LABEL: DEFAULT_CLAIMER},
            "annotations": {CLAIMED_AT_ANNOTATION: claimed_at.to_string(), CLAIM_REQUESTED_BY_ANNOTATION: "alice"},
        },
        "spec": {"rig": "gastown"},
    });
    automaton_from(name, &[&claim, extra])
}

/// The local Automaton `name` with `patches` merged over it in order.
fn automaton_from(name: &str, patches: &[&Value]) -> anyhow::Result<Automaton> {
    let mut doc = json!({
        "apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&()),
        "metadata": {"name": name},
        "spec": {"task": {"title": format!("Task {name}")}, "executionMode": "local"},
    });
    for patch in patches {
        merge(&mut doc, patch);
    }
    serde_json::from_value(doc).context("an Automaton from the fixture")
}

/// The ClusterAdmissionPolicy of `policy/manifests/cluster-admission-policy.yaml`.
pub fn policy_manifest() -> anyhow::Result<Value> {
    let path = repo().join("policy/manifests/cluster-admission-policy.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// replaces.
pub use json_patch::merge;

/// Renders `charts/gastown-operator` with real Helm (`tests/chart/render.py`, values YAML on
/// stdin, CRDs left out) into `out` and returns its documents. `extra_args` go to render.py
/// (e.g. `--kube-version v1.20.2`).
pub fn render_chart(
    values: &str,
    out: &Path,
    release: &str,
    namespace: &str,
    extra_args: &[&str],
) -> anyhow::Result<Vec<Value>> {
    let mut child = Command::new("python3")
        .arg(repo().join("tests/chart/render.py"))
        .args(["--values", "-", "--out"])
        .arg(out)
        .args(["--release-name", release, "--namespace", namespace, "--no-crds"])
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("python3 with helm-python-sdk (run scripts/setup.sh)")?;
    child
        .stdin
        .take()
        .context("render.py's stdin")?
        .write_all(values.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out.join("manifests.yaml"))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde_yaml::from_value(serde_yaml::Value::deserialize(doc)?)?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

// ---------------------------------------------------------------------------------------------
// Automatons before and after a claim: JSON as admission requests carry them (the policy's
// tests), typed as the API serves them (the cluster tests).
// ---------------------------------------------------------------------------------------------

/// When the fixtures' claims were made (`gastown.io/claimed-at`).
pub const CLAIM_TIME: &str = "2026-11-28T10:00:01Z";

/// A plain, unclaimed Automaton as admission requests carry it, like the policy's fixtures:
/// namespace `team-a`, from the Forge `web-forge`, no execution mode, no rig.
pub fn admission_automaton(name: &str) -> Value {
    let api_version = Automaton::api_version(&());
    json!({
        "apiVersion": api_version,
        "kind": Automaton::kind(&()),
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": "6f1c2a9e-1b7d-4c55-9d1e-0a4b2c3d4e5f",
            "creationTimestamp": "2026-11-28T10:00:00Z",
            "generation": 1,
            "labels": {"app": "web"},
            "annotations": {"team.example.com/owner": "web-team"},
            "ownerReferences": [{
                "apiVersion": api_version,
                "kind": "Forge",
                "name": "web-forge",
                "uid": "0b8f5e2c-0000-4000-8000-000000000001"
            }],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}}
            }]
        },
        "spec": {
            "task": {"title": "Fix the login bug", "description": "Users cannot log in with SSO."},
            "forge": "web-forge",
            "agent": {"name": "claude", "model": "opus"},
            "futureField": {"kept": true}
        }
    })
}

/// `object` (JSON) as the policy leaves it after a claim by `requested_by` for `claimer` on `rig`.
pub fn claimed_json(mut object: Value, claimer: &str, requested_by: &str, rig: &str) -> Value {
    object["metadata"]["labels"][CLAIMED_BY_LABEL] = json!(claimer);
    object["metadata"]["annotations"][CLAIMED_AT_ANNOTATION] = json!(CLAIM_TIME);
    object["metadata"]["annotations"][CLAIM_REQUESTED_BY_ANNOTATION] = json!(requested_by);
    object["spec"]["executionMode"] = json!("local");
    object["spec"]["rig"] = json!(rig);
    object
}

/// `object` (JSON) with the claim request annotation set to `local`.
pub fn claim_requested(mut object: Value) -> Value {
    object["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!(CLAIM_REQUEST_VALUE);
    object
}

/// An Automaton (JSON) claimed by `claimer` for alice on rig `gastown`, with the claim
/// annotation and the controller's finalizer, running in Gas Town.
pub fn running_claim(claimer: &str) -> Value {
    let mut o = claimed_json(
        claim_requested(admission_automaton("fix-login")),
        claimer,
        "alice",
        "gastown",
    );
    o["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]);
    o["status"] = json!({"phase": "Running"});
    o
}

/// A local Automaton named `name` whose task is titled `title`.
pub fn titled_automaton(name: &str, title: &str) -> anyhow::Result<Automaton> {
    local_automaton(name, &json!({"spec": {"task": {"title": title}}}))
}

/// `automaton` with the claim label of `claimer`, the mark controllers select on.
pub fn with_claim_label(mut automaton: Automaton, claimer: &str) -> Automaton {
    automaton
        .labels_mut()
        .insert(CLAIMED_BY_LABEL.to_string(), claimer.to_string());
    automaton
}

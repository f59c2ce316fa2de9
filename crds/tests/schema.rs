//! The Automaton API: CRD drift, schema patterns agreeing with the Rust validators, examples,
//! and the claim helpers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use gastown_crds::validate::*;
use gastown_crds::{Automaton, ExecutionMode, Phase};
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = gastown_crds::crd_yaml().unwrap();
    let on_disk = std::fs::read_to_string(root().join("automaton.yaml")).unwrap();
    assert!(
        generated == on_disk,
        "crds/automaton.yaml is stale: run `make crds` and commit the result"
    );
    let chart_copy = std::fs::read_to_string(root().join("../charts/gastown-operator/crds/automaton.yaml")).unwrap();
    assert!(
        chart_copy == on_disk,
        "charts/gastown-operator/crds/automaton.yaml differs: run `make crds`"
    );
}

fn schema() -> Value {
    let crd = serde_json::to_value(Automaton::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crd_shape() {
    let crd = serde_json::to_value(Automaton::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "automatons.olympus.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["atm"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Mode", "Town", "Phase", "Bead", "Age"]);
    let s = schema();
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], json!(["task"]));
    assert_eq!(spec["properties"]["executionMode"]["default"], "kubernetes");
    assert_eq!(
        spec["properties"]["executionMode"]["enum"],
        json!(["kubernetes", "local"])
    );
    assert_eq!(
        spec["properties"]["mergeStrategy"]["enum"],
        json!(["direct", "mr", "local"])
    );
    assert_eq!(spec["properties"]["timeoutSeconds"]["minimum"], json!(60.0));
    let title = &spec["properties"]["task"]["properties"]["title"];
    assert_eq!(
        (title["minLength"].as_u64(), title["maxLength"].as_u64()),
        (Some(1), Some(200))
    );
    let status = &s["properties"]["status"]["properties"];
    // Spelled out on purpose: this pins the wire names; `Phase::ALL` must list them all, in order.
    assert_eq!(
        status["phase"]["enum"],
        json!(Phase::ALL.map(Phase::as_str)),
        "Phase::ALL"
    );
    assert_eq!(
        status["phase"]["enum"],
        json!([
            "Pending",
            "Claimed",
            "Dispatched",
            "Running",
            "Succeeded",
            "Failed",
            "Released"
        ])
    );
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(status["conditions"]["x-kubernetes-list-map-keys"], json!(["type"]));
    let cond_required = status["conditions"]["items"]["required"].as_array().unwrap();
    for field in ["type", "status", "reason", "lastTransitionTime", "message"] {
        assert!(
            cond_required.contains(&json!(field)),
            "condition.{field} must be required"
        );
    }
    // kube-apiserver 1.20 reads empty-string defaults as null and refuses the CRD.
    assert!(
        !crd_yaml_has_empty_default(&s),
        "the schema has an empty-string default"
    );
}

fn crd_yaml_has_empty_default(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.get("default") == Some(&json!("")) || m.values().any(crd_yaml_has_empty_default),
        Value::Array(a) => a.iter().any(crd_yaml_has_empty_default),
        _ => false,
    }
}

fn pattern_at(path: &[&str]) -> regex::Regex {
    let mut v = schema();
    for p in path {
        v = v[p].clone();
    }
    let pattern = v["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("no pattern at {path:?}"));
    regex::Regex::new(pattern).unwrap()
}

/// Strings that probe every rule: good names, injection attempts, look-alikes, limits.
fn probes() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "a",
        "h",
        "hq",
        "HQ",
        "Hq",
        "hqx",
        "hx",
        "gastown",
        "web_rig",
        "Rig9",
        "9rig",
        "my-rig",
        "my.rig",
        "a/b",
        "a b",
        "-rf",
        "--force",
        "rig;rm",
        "$(id)",
        "`id`",
        "a\nb",
        "..",
        "../x",
        "w\u{0435}brig",
        "go-7xq",
        "gt-a3f8",
        "gt-a3f8.1",
        "gt-a3f8.1.2",
        "hq-cv-x1",
        "go-",
        "-7xq",
        "go-7xq.",
        "go-7xq.x",
        "go_7xq",
        "g-1",
        "toolongprefixabcdefghi-x1",
        "abcdefghijklmnopqrst-x1",
        "go-7xq.12345",
        "web-forge",
        "Web",
        "a-",
        "claude",
        "claude-3.5_x",
        ".hidden",
        "x\u{0}y",
        "tab\there",
        "ok title",
        "naïve",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("r".repeat(64));
    v.push("r".repeat(65));
    v.push("a".repeat(63));
    v.push("a".repeat(64));
    v.push(format!("go-{}", "x".repeat(32)));
    v.push(format!("go-{}", "x".repeat(33)));
    v.push(format!("gt-abc{}", ".1".repeat(8)));
    v.push(format!("gt-abc{}", ".1".repeat(9)));
    v
}

#[test]
fn schema_patterns_accept_exactly_what_the_validators_accept() {
    type Validator = Box<dyn Fn(&str) -> bool>;
    let checks: Vec<(&str, regex::Regex, Validator)> = vec![
        (
            "rig",
            pattern_at(&["properties", "spec", "properties", "rig"]),
            Box::new(|s| validate_rig_name(s).is_ok()),
        ),
        (
            "beadId",
            pattern_at(&["properties", "spec", "properties", "task", "properties", "beadId"]),
            Box::new(|s| validate_bead_id(s).is_ok()),
        ),
        (
            "forge",
            pattern_at(&["properties", "spec", "properties", "forge"]),
            Box::new(|s| validate_dns_label("Forge", s).is_ok()),
        ),
        (
            "agent.name",
            pattern_at(&["properties", "spec", "properties", "agent", "properties", "name"]),
            Box::new(|s| validate_agent_name(s).is_ok()),
        ),
    ];
    for (name, re, validator) in &checks {
        for probe in probes() {
            assert_eq!(
                re.is_match(&probe),
                validator(&probe),
                "{name}: schema and validator disagree on {probe:?}"
            );
        }
    }
    let title = pattern_at(&["properties", "spec", "properties", "task", "properties", "title"]);
    for probe in probes() {
        let schema_ok = title.is_match(&probe) && (1..=200).contains(&probe.chars().count());
        assert_eq!(
            schema_ok,
            validate_title(&probe).is_ok(),
            "title: disagree on {probe:?}"
        );
    }
}

#[test]
fn validators_refuse_injection_and_explain_the_rule() {
    for bad in ["my-rig", "hq", "a b", "-x", "$(id)", "w\u{0435}b", ""] {
        let e = validate_rig_name(bad).unwrap_err();
        assert!(e.to_string().contains("rig name"), "{e}");
    }
    for bad in ["-rf", "go", "go-", "go-7x;q", "go-7xq\n", "../go-7xq", "gо-7xq"] {
        let e = validate_bead_id(bad).unwrap_err();
        assert!(e.to_string().contains("<prefix>-<hash>"), "{e}");
    }
    for good in ["go-7xq", "gt-a3f8", "gt-a3f8.1", "hq-cv-x1"] {
        validate_bead_id(good).unwrap();
    }
    let long = "x".repeat(1000);
    let e = validate_rig_name(&long).unwrap_err();
    assert!(e.value.chars().count() <= 65, "long values are truncated in messages");
}

fn example(name: &str) -> Automaton {
    let text = std::fs::read_to_string(root().join("examples").join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn examples_deserialize() {
    let k = example("kubernetes-mode.yaml");
    assert_eq!(k.spec.execution_mode, ExecutionMode::Kubernetes);
    assert!(!k.claim_requested());
    let l = example("local.yaml");
    assert_eq!(l.spec.execution_mode, ExecutionMode::Local);
    assert_eq!(l.spec.rig.as_deref(), Some("gastown"));
    let c = example("claim-request.yaml");
    assert!(c.claim_requested());
    assert_eq!(
        c.spec.execution_mode,
        ExecutionMode::Kubernetes,
        "mode defaults to kubernetes"
    );
    assert_eq!(c.spec.task.bead_id.as_deref(), Some("gt-a3f8"));
    for a in [&k, &l, &c] {
        validate_title(&a.spec.task.title).unwrap();
        if let Some(r) = &a.spec.rig {
            validate_rig_name(r).unwrap();
        }
    }
}

#[test]
fn invalid_documents_fail_to_deserialize() {
    let base = json!({"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton", "metadata": {"name": "x"},
                      "spec": {"task": {"title": "t"}}});
    assert!(serde_json::from_value::<Automaton>(base.clone()).is_ok());
    let mut no_task = base.clone();
    no_task["spec"] = json!({});
    assert!(serde_json::from_value::<Automaton>(no_task).is_err());
    let mut bad_mode = base.clone();
    bad_mode["spec"]["executionMode"] = json!("remote");
    assert!(serde_json::from_value::<Automaton>(bad_mode).is_err());
    let mut bad_merge = base.clone();
    bad_merge["spec"]["mergeStrategy"] = json!("squash");
    assert!(serde_json::from_value::<Automaton>(bad_merge).is_err());
    let mut bad_phase = base;
    bad_phase["status"] = json!({"phase": "Exploded"});
    assert!(serde_json::from_value::<Automaton>(bad_phase).is_err());
}

#[test]
fn claim_helpers() {
    let mut a = example("claim-request.yaml");
    assert!(a.claim_requested());
    assert_eq!(a.claimed_by(), None);
    a.metadata.labels = Some([("gastown.io/claimed-by".to_string(), "gastown-local".to_string())].into());
    assert!(a.is_claimed_by("gastown-local"));
    assert!(!a.is_claimed_by("other"));
    assert!(!a.is_terminal());
    for (phase, terminal) in [
        (Phase::Pending, false),
        (Phase::Claimed, false),
        (Phase::Dispatched, false),
        (Phase::Running, false),
        (Phase::Succeeded, true),
        (Phase::Failed, true),
        (Phase::Released, true),
    ] {
        assert_eq!(phase.is_terminal(), terminal, "{phase:?}");
        assert_eq!(Phase::parse(phase.as_str()), Some(phase));
    }
    assert_eq!(Phase::parse("running"), None);
}

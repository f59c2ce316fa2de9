//! The compiled policy (`policy/policy.wasm`) in the waPC/wasmtime engine, driven exactly as
//! policy-server drives it, over every behaviour fixture in `policy/test_data/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gastown_crds::contract::{CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL};
use gastown_tests::policy_host::{HostCapabilities, NoCapabilities, PolicyModule, ScriptedList, default_module_path};
use serde_json::{Value, json};

fn fixtures(dir: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/test_data")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (
                name,
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

fn capabilities(case: &Value) -> Arc<dyn HostCapabilities> {
    match case.get("ledger") {
        None => Arc::new(NoCapabilities),
        Some(l) => match (l.get("error").and_then(Value::as_str), l.get("byClaimer")) {
            (Some(e), _) => Arc::new(ScriptedList::answering(Err(e.to_string()))),
            (None, Some(by)) => Arc::new(ListByClaimer(by.clone())),
            (None, None) => Arc::new(ScriptedList::answering(Ok(l.clone()))),
        },
    }
}

/// A fixture's `ledger.byClaimer`: answers the list of one town's claims (the label selector
/// `gastown.io/claimed-by=<town>` of the guest's request) as the API server would, with that
/// town's items only.
struct ListByClaimer(Value);

impl HostCapabilities for ListByClaimer {
    fn kubernetes(&self, operation: &str, request: &Value) -> Result<Value, String> {
        if operation != "list_resources_by_namespace" {
            return Err(format!("unexpected host capability kubernetes/{operation}"));
        }
        let selector = request["label_selector"].as_str().unwrap_or_default();
        let town = selector
            .strip_prefix(&format!("{CLAIMED_BY_LABEL}="))
            .ok_or_else(|| format!("the list does not select one town's claims: {request}"))?;
        Ok(self.0.get(town).cloned().unwrap_or_else(|| json!({"items": []})))
    }
}

/// Replaces the `<now>` placeholder with the timestamp the module wrote, after checking it is
/// RFC 3339 and close to the current time.
fn with_claimed_at(expected: &Value, actual: &Value) -> Value {
    let stamp = actual["metadata"]["annotations"][CLAIMED_AT_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let parsed: jiff::Timestamp = stamp
        .parse()
        .unwrap_or_else(|e| panic!("claimed-at {stamp:?} is not RFC 3339: {e}"));
    let age = jiff::Timestamp::now().duration_since(parsed);
    assert!(age.as_secs().abs() < 300, "claimed-at {stamp} is not the current time");
    fn walk(v: &Value, now: &str) -> Value {
        match v {
            Value::String(s) if s == "<now>" => Value::String(now.to_string()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v, now))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, now)).collect()),
            other => other.clone(),
        }
    }
    walk(expected, &stamp)
}

#[test]
fn every_behaviour_case_through_the_compiled_module() {
    let bytes = std::fs::read(default_module_path()).expect("policy/policy.wasm missing: run `make policy`");
    let module = PolicyModule::from_bytes(&bytes).unwrap();
    let mut failures = Vec::new();
    let cases = fixtures("cases");
    for (name, case) in &cases {
        let instance = module.instance(capabilities(case)).unwrap();
        assert_eq!(instance.protocol_version().unwrap(), json!("v1"), "{name}");
        let settings_answer = instance.validate_settings(&case["settings"]).unwrap();
        assert_eq!(
            settings_answer["valid"],
            json!(true),
            "{name}: fixture settings invalid: {settings_answer}"
        );
        let request = &case["request"];
        let admission = instance.validate(&case["settings"], request).unwrap();
        let expect = &case["expect"];
        if json!(admission.allowed) != expect["accepted"] {
            failures.push(format!(
                "{name}: allowed={} but expected {}: {}",
                admission.allowed, expect["accepted"], admission.response
            ));
            continue;
        }
        if !admission.allowed {
            if admission.code.map(u64::from) != expect["code"].as_u64() {
                failures.push(format!(
                    "{name}: code {:?}, expected {}",
                    admission.code, expect["code"]
                ));
            }
            let message = admission.message.clone().unwrap_or_default();
            for part in expect["messageContains"].as_array().unwrap() {
                if !message.contains(part.as_str().unwrap()) {
                    failures.push(format!("{name}: message {message:?} lacks {part}"));
                }
            }
            continue;
        }
        let original = request.get("object").cloned().unwrap_or(Value::Null);
        let expected_object = &expect["mutatedObject"];
        if expected_object.is_null() {
            if admission.patch.is_some() {
                failures.push(format!("{name}: expected no patch, got {:?}", admission.patch));
            }
            continue;
        }
        let Some(patch) = &admission.patch else {
            failures.push(format!("{name}: expected a patch, got none"));
            continue;
        };
        // The patch touches only what the policy owns.
        for op in &patch.0 {
            let path = op.path().to_string();
            let owned = [
                "/metadata/labels",
                "/metadata/annotations",
                "/spec/executionMode",
                "/spec/rig",
            ];
            if !owned.iter().any(|p| path.starts_with(p)) {
                failures.push(format!("{name}: patch touches {path}"));
            }
        }
        let patched = admission.patched(&original).unwrap();
        let expected = with_claimed_at(expected_object, &patched);
        if patched != expected {
            failures.push(format!(
                "{name}: patched object differs\n got {patched}\nwant {expected}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn settings_validation_through_the_compiled_module() {
    let module = PolicyModule::load(&default_module_path()).unwrap();
    let instance = module.instance(Arc::new(NoCapabilities)).unwrap();
    for (name, case) in fixtures("settings") {
        let answer = instance.validate_settings(&case["settings"]).unwrap();
        assert_eq!(answer["valid"], case["valid"], "{name}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        for part in case["messageContains"].as_array().unwrap() {
            assert!(
                message.contains(part.as_str().unwrap()),
                "{name}: {message:?} lacks {part}"
            );
        }
    }
}

#[test]
fn malformed_payloads_never_trap() {
    let module = PolicyModule::load(&default_module_path()).unwrap();
    let instance = module.instance(Arc::new(NoCapabilities)).unwrap();
    for payload in [
        &b""[..],
        b"{",
        b"[1,2]",
        b"{\"request\":{\"operation\":7}}",
        &[0xff; 64],
    ] {
        let raw = instance.call("validate", payload).unwrap();
        let answer: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(answer["accepted"], json!(false), "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The instance is still usable after bad input.
    assert_eq!(instance.protocol_version().unwrap(), json!("v1"));
}

#[test]
fn the_list_request_names_the_claimer_label_and_namespace() {
    struct Recorder(std::sync::Mutex<Vec<Value>>);
    impl HostCapabilities for Recorder {
        fn kubernetes(&self, operation: &str, request: &Value) -> Result<Value, String> {
            assert_eq!(operation, "list_resources_by_namespace");
            self.0.lock().unwrap().push(request.clone());
            Ok(json!({"items": []}))
        }
    }
    let recorder = Arc::new(Recorder(std::sync::Mutex::new(Vec::new())));
    let module = PolicyModule::load(&default_module_path()).unwrap();
    let (_, case) = fixtures("cases")
        .into_iter()
        .find(|(n, _)| n == "limit-not-reached.json")
        .unwrap();
    let admission = module
        .instance(recorder.clone())
        .unwrap()
        .validate(&case["settings"], &case["request"])
        .unwrap();
    assert!(admission.allowed && admission.patch.is_some());
    let calls = recorder.0.lock().unwrap();
    assert_eq!(calls.len(), 1);
    // The wire names the policy asks for, pinned here on purpose rather than read from the contract.
    assert_eq!(calls[0]["namespace"], json!("team-a"));
    assert_eq!(calls[0]["kind"], json!("Automaton"));
    assert_eq!(calls[0]["api_version"], json!("olympus.io/v1alpha1"));
    assert_eq!(calls[0]["label_selector"], json!("gastown.io/claimed-by=gastown-local"));
}

/// Settings the policy refuses never reach a served webhook, as policy-server refuses to boot
/// with them; valid settings (a two-town list) are served.
#[tokio::test]
async fn a_webhook_is_not_served_with_settings_the_policy_refuses() {
    use gastown_tests::webhook::PolicyWebhook;
    let load = || PolicyModule::load(&default_module_path()).unwrap();
    let town = |name: &str| json!({"name": name, "controllerUsers": [format!("system:serviceaccount:{name}:op")]});
    let refused = PolicyWebhook::start(load(), json!({"towns": [town("local")]}), Arc::new(NoCapabilities), 0).await;
    let message = refused.err().expect("invalid settings were served").to_string();
    assert!(message.contains("local"), "{message}");
    let served = PolicyWebhook::start(
        load(),
        json!({"towns": [town("town-a"), town("town-b")]}),
        Arc::new(NoCapabilities),
        0,
    )
    .await
    .expect("valid towns settings are served");
    assert!(served.url().starts_with("https://127.0.0.1:"), "{}", served.url());
}

//! Every behaviour case under `test_data/cases/` through the native build of the policy's
//! entry point (the same cases run through the compiled module in `tests/tests/policy_wasm.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use gastown_policy::decision::ClaimLedger;
use gastown_policy::ledger::count_active;
use serde_json::{Value, json};

const NOW: &str = "2026-11-28T17:00:00Z";

/// The fixture's `ledger`: a list answer, `{"error": ...}`, or `{"byClaimer": {town: list}}`
/// (the answer to the list of that town's claims; a town not named has none).
struct FixtureLedger(Option<Value>);

impl ClaimLedger for FixtureLedger {
    fn active_claims(&self, _namespace: &str, claimer: &str) -> Result<u64, String> {
        match &self.0 {
            None => Err("no ledger in the fixture: the decision must not need one".to_string()),
            Some(v) => match (v.get("error").and_then(Value::as_str), v.get("byClaimer")) {
                (Some(e), _) => Err(e.to_string()),
                (None, Some(by)) => {
                    count_active(by.get(claimer).unwrap_or(&json!({"items": []})).to_string().as_bytes())
                }
                (None, None) => count_active(v.to_string().as_bytes()),
            },
        }
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn with_now(v: &Value, now: &str) -> Value {
    match v {
        Value::String(s) if s == "<now>" => Value::String(now.to_string()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), with_now(v, now))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| with_now(v, now)).collect()),
        other => other.clone(),
    }
}

/// Records a failure for each expected part the answer's message lacks.
fn check_message(name: &str, resp: &Value, parts: &Value, failures: &mut Vec<String>) {
    let message = resp["message"].as_str().unwrap_or("");
    for part in parts.as_array().unwrap() {
        if !message.contains(part.as_str().unwrap()) {
            failures.push(format!("{name}: message {message:?} lacks {part}"));
        }
    }
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn behaviour_cases() {
    let mut failures = Vec::new();
    for path in files("cases") {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let payload = json!({"settings": case["settings"], "request": case["request"]});
        let ledger = FixtureLedger(case.get("ledger").cloned());
        let out = gastown_policy::validate_payload(payload.to_string().as_bytes(), NOW, &ledger);
        let resp: Value = serde_json::from_slice(&out).unwrap();
        let expect = &case["expect"];
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if resp["accepted"] != expect["accepted"] {
            failures.push(format!(
                "{name}: accepted {} expected {}: {resp}",
                resp["accepted"], expect["accepted"]
            ));
            continue;
        }
        if expect["accepted"] == json!(false) {
            if resp["code"] != expect["code"] {
                failures.push(format!("{name}: code {} expected {}", resp["code"], expect["code"]));
            }
            check_message(&name, &resp, &expect["messageContains"], &mut failures);
        } else {
            let expected = with_now(&expect["mutatedObject"], NOW);
            let got = resp.get("mutated_object").cloned().unwrap_or(Value::Null);
            if got != expected {
                failures.push(format!("{name}: mutated object differs:\n got {got}\nwant {expected}"));
            }
        }
    }
    assert_no_failures(&failures);
}

#[test]
fn settings_cases() {
    let mut failures = Vec::new();
    for path in files("settings") {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let out = gastown_policy::validate_settings_payload(case["settings"].to_string().as_bytes());
        let resp: Value = serde_json::from_slice(&out).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if resp["valid"] != case["valid"] {
            failures.push(format!("{name}: {resp}"));
            continue;
        }
        check_message(&name, &resp, &case["messageContains"], &mut failures);
    }
    assert_no_failures(&failures);
}

#[test]
fn payloads_that_are_not_admission_requests_are_rejected_cleanly() {
    let ledger = FixtureLedger(None);
    for payload in [
        &b""[..],
        b"not json",
        b"[]",
        b"null",
        b"{\"request\": 5}",
        b"{\"settings\": {\"nope\": 1}, \"request\": {}}",
        b"{\"request\": {\"operation\": \"CREATE\"}}",
        &[0xff, 0xfe, 0x00],
    ] {
        let out = gastown_policy::validate_payload(payload, NOW, &ledger);
        let resp: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(resp["accepted"], json!(false), "{resp}");
        assert!(resp["message"].as_str().is_some_and(|m| !m.is_empty()), "{resp}");
    }
}

#[test]
fn deeply_nested_json_does_not_overflow() {
    let mut payload = String::from("{\"request\":");
    payload.push_str(&"[".repeat(100_000));
    let out = gastown_policy::validate_payload(payload.as_bytes(), NOW, &FixtureLedger(None));
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["accepted"], json!(false));
}

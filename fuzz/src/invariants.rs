//! The invariants every `validate` and `validate_settings` answer must keep, whatever the input.

use gastown_crds::Automaton;
use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_crds::validate::validate_rig_name;
use gastown_policy::decision::ClaimLedger;
use kube::Resource;
use serde_json::{Map, Value, json};

use crate::NOW;

/// A claim ledger whose answer the fuzzer chooses.
#[derive(Debug, Clone)]
pub struct FuzzLedger(pub Result<u64, String>);

impl ClaimLedger for FuzzLedger {
    fn active_claims(&self, _namespace: &str, _claimer: &str) -> Result<u64, String> {
        self.0.clone()
    }
}

/// `0x00..=0x7f`: that many active claims; `0xff`: `u64::MAX`; `0xfe`: an error with an empty
/// message; other bytes `>= 0x80`: an error.
pub fn ledger_from_byte(byte: u8) -> FuzzLedger {
    FuzzLedger(match byte {
        0xff => Ok(u64::MAX),
        0xfe => Err(String::new()),
        0x80..=0xfd => Err("fuzz: the API server is not reachable".to_string()),
        n => Ok(u64::from(n)),
    })
}

/// Splits a `validate` fuzz input into the ledger and the payload.
pub fn split_input(data: &[u8]) -> (FuzzLedger, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (ledger_from_byte(b), rest),
        None => (ledger_from_byte(0), data),
    }
}

/// Runs the `validate` entry point on one fuzz input and checks every invariant.
pub fn run_validate(data: &[u8]) -> Result<(), String> {
    let (ledger, payload) = split_input(data);
    let answer = gastown_policy::validate_payload(payload, NOW, &ledger);
    check_validate_answer(payload, &answer)
}

/// The invariants of a `validate` answer: valid JSON with a boolean `accepted`; a rejection
/// carries a non-empty message and a code and no object; a mutation is made only for CREATE or
/// UPDATE of the main resource and changes nothing but the claim fields.
pub fn check_validate_answer(payload: &[u8], answer: &[u8]) -> Result<(), String> {
    let answer: Value = serde_json::from_slice(answer).map_err(|e| format!("answer is not JSON: {e}"))?;
    let accepted = answer
        .get("accepted")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("answer lacks a boolean `accepted`: {answer}"))?;
    let mutated = answer.get("mutated_object").filter(|m| !m.is_null());
    if !accepted {
        let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
        if message.trim().is_empty() {
            return Err(format!("rejection without a message: {answer}"));
        }
        if !answer.get("code").is_some_and(Value::is_u64) {
            return Err(format!("rejection without a code: {answer}"));
        }
        if mutated.is_some() {
            return Err(format!("rejection with a mutated object: {answer}"));
        }
        return Ok(());
    }
    let Some(mutated) = mutated else {
        return Ok(());
    };
    let payload: Value =
        serde_json::from_slice(payload).map_err(|e| format!("mutation of a payload that is not JSON ({e})"))?;
    let request = &payload["request"];
    let operation = request.get("operation").and_then(Value::as_str);
    if !matches!(operation, Some("CREATE" | "UPDATE")) {
        return Err(format!("mutation of a {operation:?} request"));
    }
    if !matches!(request.get("subResource"), None | Some(Value::Null))
        && request.get("subResource").and_then(Value::as_str) != Some("")
    {
        return Err(format!("mutation of subresource {}", request["subResource"]));
    }
    let claimer = expected_claimer(&payload["settings"], mutated)?;
    let username = request["userInfo"]
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let original = request.get("object").unwrap_or(&Value::Null);
    check_mutation(original, mutated, claimer, username, Some(NOW))
}

/// The claimed-by value a claim under `settings` must write: the claimer of single-town
/// settings, or (with a `towns` list) whichever listed town the claim went to.
fn expected_claimer<'a>(settings: &'a Value, mutated: &'a Value) -> Result<&'a str, String> {
    let towns: Vec<&str> = settings
        .get("towns")
        .and_then(Value::as_array)
        .map(|towns| {
            towns
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if towns.is_empty() {
        return Ok(settings
            .get("claimer")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_CLAIMER));
    }
    let label = mutated
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(CLAIMED_BY_LABEL))
        .and_then(Value::as_str);
    label
        .filter(|l| towns.contains(l))
        .ok_or_else(|| format!("claimed-by {label:?} is none of the towns {towns:?}"))
}

/// Checks a mutated object against the original: the claim fields hold what the policy must
/// write, and nothing else differs (containers the policy had to create excepted).
/// `now`: the expected claimed-at, or `None` to require only an RFC 3339 timestamp.
pub fn check_mutation(
    original: &Value,
    mutated: &Value,
    claimer: &str,
    username: &str,
    now: Option<&str>,
) -> Result<(), String> {
    if !original.is_object() || !mutated.is_object() {
        return Err(format!("mutation of a non-object: {original} -> {mutated}"));
    }
    let got = |p: &str| mutated.pointer(p).and_then(Value::as_str);
    let mark = |map: &str, key: &str| {
        let meta = mutated.get("metadata")?;
        meta.get(map)?.get(key)?.as_str()
    };
    if mark("labels", CLAIMED_BY_LABEL) != Some(claimer) {
        return Err(format!("claimed-by is not {claimer:?}: {mutated}"));
    }
    if mark("annotations", CLAIM_REQUESTED_BY_ANNOTATION) != Some(username) {
        return Err(format!("claim-requested-by is not {username:?}"));
    }
    let at = mark("annotations", CLAIMED_AT_ANNOTATION).unwrap_or_default();
    match now {
        Some(now) if at != now => return Err(format!("claimed-at {at:?} is not {now:?}")),
        None if at.parse::<jiff::Timestamp>().is_err() => {
            return Err(format!("claimed-at {at:?} is not RFC 3339"));
        }
        _ => {}
    }
    if got("/spec/executionMode") != Some("local") {
        return Err("spec.executionMode is not \"local\"".to_string());
    }
    let rig = got("/spec/rig").unwrap_or_default();
    if let Err(e) = validate_rig_name(rig) {
        return Err(format!("mutation writes an invalid rig: {e}"));
    }
    let (o, m) = (strip_claim_fields(original), strip_claim_fields(mutated));
    let m = restore_created_containers(&o, m);
    if o != m {
        return Err(format!(
            "mutation changes more than the claim fields:\n original {}\n mutated  {}",
            shorten(&o.to_string()),
            shorten(&m.to_string())
        ));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.len() <= 2000 {
        return s.to_string();
    }
    let mut end = 2000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// The object without the five fields the policy owns.
pub fn strip_claim_fields(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(CLAIMED_BY_LABEL);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(CLAIMED_AT_ANNOTATION);
            ann.remove(CLAIM_REQUESTED_BY_ANNOTATION);
        }
    }
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("executionMode");
        spec.remove("rig");
    }
    v
}

/// Where the mutation has an empty container the original lacked (absent or `null`), puts back
/// what the original had: the policy creates `metadata`, `labels`, `annotations` and `spec`
/// when it must.
fn restore_created_containers(original: &Value, mut mutated: Value) -> Value {
    fn fix(orig: Option<&Map<String, Value>>, m: &mut Map<String, Value>, key: &str) {
        let created = m.get(key).and_then(Value::as_object).is_some_and(Map::is_empty)
            && matches!(orig.and_then(|o| o.get(key)), None | Some(Value::Null));
        if created {
            match orig.and_then(|o| o.get(key)) {
                None => {
                    m.remove(key);
                }
                Some(_) => {
                    m.insert(key.to_string(), Value::Null);
                }
            }
        }
    }
    let orig_meta = original.get("metadata").and_then(Value::as_object);
    if let Some(meta) = mutated.get_mut("metadata").and_then(Value::as_object_mut) {
        fix(orig_meta, meta, "labels");
        fix(orig_meta, meta, "annotations");
    }
    if let Some(m) = mutated.as_object_mut() {
        fix(original.as_object(), m, "metadata");
        fix(original.as_object(), m, "spec");
    }
    mutated
}

/// A request every valid configuration answers without a configuration error.
pub fn probe_request() -> Value {
    let (group, version) = (Automaton::group(&()), Automaton::version(&()));
    json!({
        "uid": "fuzz",
        "kind": {"group": group, "version": version, "kind": Automaton::kind(&())},
        "resource": {"group": group, "version": version, "resource": Automaton::plural(&())},
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["gastown-claimers", "system:authenticated"]},
        "object": {
            "apiVersion": Automaton::api_version(&()),
            "kind": Automaton::kind(&()),
            "metadata": {"name": "fix-login", "namespace": "team-a"},
            "spec": {"task": {"title": "Fix it"}, "forge": "web-forge", "executionMode": "local"}
        },
        "oldObject": null
    })
}

/// Runs `validate_settings` on one fuzz input and checks its invariants; when the input is
/// JSON, also checks that `validate` agrees: valid settings never produce a configuration error,
/// invalid ones always do.
pub fn run_settings(data: &[u8]) -> Result<(), String> {
    let answer = gastown_policy::validate_settings_payload(data);
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| format!("settings answer is not JSON: {e}"))?;
    let valid = answer
        .get("valid")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("settings answer lacks a boolean `valid`: {answer}"))?;
    let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
    if !valid && message.trim().is_empty() {
        return Err(format!("invalid settings without a message: {answer}"));
    }
    let Ok(settings) = serde_json::from_slice::<Value>(data) else {
        if valid {
            return Err("input that is not JSON was declared valid".to_string());
        }
        return Ok(());
    };
    // Settings are named fields: anything but an object (or null, the defaults) is refused, or
    // an array would be read positionally (the bug of fuzz/regressions/regression-settings-array.json).
    if valid && !(settings.is_object() || settings.is_null()) {
        return Err(format!(
            "settings that are not a JSON object were declared valid: {settings}"
        ));
    }
    let payload = json!({"settings": settings, "request": probe_request()}).to_string();
    for ledger in [0u8, 0xff, 0x80] {
        let raw = gastown_policy::validate_payload(payload.as_bytes(), NOW, &ledger_from_byte(ledger));
        check_validate_answer(payload.as_bytes(), &raw)?;
        let v: Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        let misconfigured = v.get("code").and_then(Value::as_u64) == Some(500);
        if valid && misconfigured {
            return Err(format!(
                "settings declared valid but `validate` calls them misconfigured: {v}"
            ));
        }
        if !valid && !misconfigured {
            return Err(format!(
                "settings declared invalid ({message}) but `validate` used them: {v}"
            ));
        }
    }
    Ok(())
}

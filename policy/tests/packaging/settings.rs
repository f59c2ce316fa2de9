//! The settings the policy accepts, read from the policy itself, and `questions-ui.yml`.

use std::collections::BTreeSet;

use gastown_crds::contract::{DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER};
use serde_json::{Value, json};

use crate::{keys, questions, str_at};

pub(crate) fn validate_settings(settings: &Value) -> Value {
    let out = gastown_policy::validate_settings_payload(settings.to_string().as_bytes());
    serde_json::from_slice(&out).expect("validate_settings answers JSON")
}

/// The settings fields the policy accepts, read from the policy itself: settings reject unknown
/// fields, and the rejection lists the accepted ones ("expected one of `a`, `b`, ...").
pub(crate) fn accepted_settings_fields() -> Vec<String> {
    let answer = validate_settings(&json!({"__not_a_setting__": 1}));
    assert_eq!(
        answer["valid"],
        json!(false),
        "unknown settings fields must be rejected: {answer}"
    );
    let message = answer["message"].as_str().unwrap_or_default();
    let (_, expected) = message
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("cannot read the accepted settings fields from {message:?}"));
    let fields: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
    assert!(!fields.is_empty(), "no settings fields in {message:?}");
    fields
}

/// A valid value for every settings field; a new field needs an entry here (and in the README,
/// questions-ui.yml and, where useful, the manifest).
fn sample_settings() -> Value {
    json!({
        "claimer": DEFAULT_CLAIMER,
        "allowedUsers": ["alice"],
        "allowedGroups": ["gastown-claimers"],
        "controllerUsers": [DEFAULT_CONTROLLER_USER],
        "forgeRigs": {"web-forge": "webrig"},
        "defaultRig": "gastown",
        "maxActiveClaimsPerNamespace": 5,
        // The single-town shape: an empty towns list, the default town the claimer.
        "towns": [],
        "defaultTown": DEFAULT_CLAIMER
    })
}

#[test]
fn settings_fields_are_the_ones_the_policy_accepts() {
    let fields = accepted_settings_fields();
    let sample = sample_settings();
    assert_eq!(
        fields.iter().cloned().collect::<BTreeSet<_>>(),
        keys(&sample),
        "sample_settings() must set every field the policy accepts (and only those)"
    );
    let answer = validate_settings(&sample);
    assert_eq!(answer["valid"], json!(true), "all settings set: {answer}");
    // And each name really is a field: the same value under a misspelt name is refused.
    for field in &fields {
        let mut misspelt = sample.clone();
        let object = misspelt.as_object_mut().expect("object");
        let value = object.remove(field).expect("field in the sample");
        object.insert(format!("{field}X"), value);
        let answer = validate_settings(&misspelt);
        assert_eq!(answer["valid"], json!(false), "{field}X must be refused: {answer}");
    }
}

#[test]
fn questions_ui_asks_for_every_setting() {
    let questions = questions();
    let list = questions["questions"]
        .as_array()
        .expect("questions-ui.yml: questions list");
    let variables: BTreeSet<String> = list
        .iter()
        .map(|q| str_at(q, "/variable", "questions-ui.yml").to_string())
        .collect();
    assert_eq!(
        variables.len(),
        list.len(),
        "questions-ui.yml: a variable is asked twice"
    );
    let fields: BTreeSet<String> = accepted_settings_fields().into_iter().collect();
    assert_eq!(
        variables, fields,
        "questions-ui.yml variables must be exactly the policy's settings"
    );
    let defaults: serde_json::Map<String, Value> = list
        .iter()
        .map(|q| {
            (
                str_at(q, "/variable", "questions-ui.yml").to_string(),
                q["default"].clone(),
            )
        })
        .collect();
    let answer = validate_settings(&Value::Object(defaults));
    assert_eq!(
        answer["valid"],
        json!(true),
        "questions-ui.yml defaults must be valid settings: {answer}"
    );
}

//! Baseline Kubewarden policy for the benchmarks: parses the ValidationRequest with the SDK,
//! sets one label on the object (a `serde_json::Value`) and answers with `mutate_request`.
//! It makes no decision at all, so it is the floor of what any SDK mutator costs.

use kubewarden_policy_sdk::request::ValidationRequest;
use kubewarden_policy_sdk::settings::Validatable;
use kubewarden_policy_sdk::{accept_request, mutate_request, protocol_version_guest, validate_settings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wapc_guest::{CallResult, register_function};

/// Label the baseline sets.
const LABEL: &str = "bench.gastown.io/baseline";

/// No settings (unknown fields, such as gastown-claim's, are ignored).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct Settings {}

impl Validatable for Settings {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// waPC entry point.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn wapc_init() {
    register_function("validate", validate);
    register_function("validate_settings", validate_settings::<Settings>);
    register_function("protocol_version", protocol_version_guest);
}

fn validate(payload: &[u8]) -> CallResult {
    let request = ValidationRequest::<Settings>::new(payload)?;
    let mut object = request.request.object;
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return accept_request();
    };
    let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(LABEL.to_string(), Value::String("true".to_string()));
    }
    mutate_request(object)
}

//! gastown-claim: a Kubewarden mutating policy that lets a local Gas Town claim Automatons.
//!
//! The waPC entry points (`validate`, `validate_settings`, `protocol_version`) are thin: they
//! parse the payload, call the pure [`decision::decide`] and serialize the answer. Bad input of
//! any kind becomes a rejection with a message, never a trap.

pub mod decision;
pub mod ledger;
pub mod settings;

use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde_json::Value;

use crate::decision::{ClaimLedger, Decision, Request, code};
use crate::settings::Settings;

/// Largest `validate` payload accepted (the API server caps requests at 3 MiB; a request
/// carries the object twice plus metadata).
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// Answers a `validate` call: `{"settings": {...}, "request": <AdmissionRequest>}` in, a
/// Kubewarden ValidationResponse out. `now` is the claim timestamp (RFC 3339).
pub fn validate_payload(payload: &[u8], now: &str, ledger: &dyn ClaimLedger) -> Vec<u8> {
    response_bytes(&answer(payload, now, ledger))
}

fn answer(payload: &[u8], now: &str, ledger: &dyn ClaimLedger) -> ValidationResponse {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return rejection(
            code::BAD_REQUEST,
            format!("request too large ({} bytes)", payload.len()),
        );
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return rejection(code::BAD_REQUEST, format!("malformed validation request: {e}")),
    };
    let Some(top) = value.as_object() else {
        return rejection(
            code::BAD_REQUEST,
            "malformed validation request: expected a JSON object",
        );
    };
    let settings = match Settings::from_json(top.get("settings").unwrap_or(&Value::Null)) {
        Ok(s) => s,
        Err(e) => return rejection(500, format!("gastown-claim policy misconfigured: {e}")),
    };
    if let Err(e) = settings.validate() {
        return rejection(500, format!("gastown-claim policy misconfigured: {e}"));
    }
    let request = match Request::parse(top.get("request").unwrap_or(&Value::Null)) {
        Ok(r) => r,
        Err(e) => return rejection(code::BAD_REQUEST, format!("malformed admission request: {e}")),
    };
    match decision::decide(&settings, &request, now, ledger) {
        Decision::Accept => ValidationResponse {
            accepted: true,
            message: None,
            code: None,
            mutated_object: None,
            audit_annotations: None,
            warnings: None,
        },
        Decision::Mutate(object) => ValidationResponse {
            accepted: true,
            message: None,
            code: None,
            mutated_object: Some(object),
            audit_annotations: None,
            warnings: None,
        },
        Decision::Reject { code, message } => rejection(code, message),
    }
}

fn rejection(code: u16, message: impl Into<String>) -> ValidationResponse {
    ValidationResponse {
        accepted: false,
        message: Some(message.into()),
        code: Some(code),
        mutated_object: None,
        audit_annotations: None,
        warnings: None,
    }
}

fn response_bytes(response: &ValidationResponse) -> Vec<u8> {
    // Serializing these types cannot fail (string keys only); keep a fallback anyway.
    serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"accepted":false,"message":"gastown-claim: internal error serializing the response","code":500}"#.to_vec()
    })
}

/// Answers a `validate_settings` call: `{"valid": bool, "message"?}`; unknown fields and bad
/// values are reported by name.
pub fn validate_settings_payload(payload: &[u8]) -> Vec<u8> {
    let result = serde_json::from_slice::<Value>(payload)
        .map_err(|e| format!("settings are not valid JSON: {e}"))
        .and_then(|v| Settings::from_json(&v))
        .and_then(|s| s.validate());
    let response = SettingsValidationResponse {
        valid: result.is_ok(),
        message: result.err(),
    };
    serde_json::to_vec(&response)
        .unwrap_or_else(|_| br#"{"valid":false,"message":"internal error serializing the response"}"#.to_vec())
}

/// The current time as RFC 3339 with second precision (UTC), e.g. `2026-11-28T17:00:00Z`.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use kubewarden_policy_sdk::protocol_version_guest;
    use wapc_guest::{CallResult, register_function};

    /// waPC entry point called by the host once per instance.
    // The waPC ABI needs this unmangled export; Rust counts `no_mangle` as unsafe code. No
    // unsafe operation happens here.
    #[allow(unsafe_code)]
    #[unsafe(no_mangle)]
    pub extern "C" fn wapc_init() {
        register_function("validate", validate);
        register_function("validate_settings", validate_settings);
        register_function("protocol_version", protocol_version_guest);
    }

    fn validate(payload: &[u8]) -> CallResult {
        Ok(crate::validate_payload(
            payload,
            &crate::now_rfc3339(),
            &crate::ledger::HostLedger,
        ))
    }

    fn validate_settings(payload: &[u8]) -> CallResult {
        Ok(crate::validate_settings_payload(payload))
    }
}

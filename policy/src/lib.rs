//! gastown-claim: a Kubewarden mutating policy that lets a local Gas Town claim Automatons.
//!
//! The waPC entry points (`validate`, `validate_settings`, `protocol_version`) are thin: they
//! parse the payload, call the pure [`decision::decide`] and serialize the answer. Bad input of
//! any kind becomes a rejection with a message, never a trap.

mod clock;
pub mod decision;
pub mod ledger;
mod payload;
pub mod settings;

pub use clock::{now_rfc3339, rfc3339_utc};

use std::cell::RefCell;
use std::rc::Rc;

use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::decision::{ClaimLedger, Decision, Request, code, reject as rejection};
use crate::payload::Object;
use crate::settings::Settings;

/// Largest `validate` payload accepted (the API server caps requests at 3 MiB; a request
/// carries the object twice plus metadata).
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// Answers a `validate` call: `{"settings": {...}, "request": <AdmissionRequest>}` in, a
/// Kubewarden ValidationResponse out. `now` is the claim timestamp (RFC 3339).
pub fn validate_payload(payload: &[u8], now: &str, ledger: &dyn ClaimLedger) -> Vec<u8> {
    validate_payload_at(payload, &|| now.to_string(), ledger)
}

/// [`validate_payload`] with the claim timestamp taken from `now`, which is called only when
/// the request is claimed.
pub fn validate_payload_at(payload: &[u8], now: &dyn Fn() -> String, ledger: &dyn ClaimLedger) -> Vec<u8> {
    let decision = answer(payload, now, ledger);
    // A mutated object is about as large as the payload's `object`; reserve once.
    let capacity = match decision {
        Decision::Mutate(_) => payload.len(),
        _ => 256,
    };
    let mut out = Vec::with_capacity(capacity);
    let response = match &decision {
        Decision::Accept => Response::accept(None),
        Decision::Mutate(object) => Response::accept(Some(object)),
        Decision::Reject { code, message } => Response::reject(*code, message),
    };
    // Writing to a Vec cannot fail, nor can serializing a Value (string keys only); keep a
    // fallback anyway.
    if serde_json::to_writer(&mut out, &response).is_err() {
        return br#"{"accepted":false,"message":"gastown-claim: internal error serializing the response","code":500}"#
            .to_vec();
    }
    out
}

fn answer(payload: &[u8], now: &dyn Fn() -> String, ledger: &dyn ClaimLedger) -> Decision {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return rejection(
            code::BAD_REQUEST,
            format!("request too large ({} bytes)", payload.len()),
        );
    }
    let top = match payload::parse(payload) {
        Ok(Object::Fields(top)) => top,
        Ok(_) => {
            return rejection(
                code::BAD_REQUEST,
                "malformed validation request: expected a JSON object",
            );
        }
        Err(e) => return malformed(payload, &e),
    };
    let settings = match settings_for(top.settings.map_or("null", RawValue::get)) {
        Ok(s) => s,
        Err(e) => return malformed(payload, &e),
    };
    let settings = match &*settings {
        Ok(s) => s,
        Err(e) => return rejection(500, format!("gastown-claim policy misconfigured: {e}")),
    };
    let request = match Request::from_fields(top.request) {
        Ok(r) => r,
        Err(e) => return rejection(code::BAD_REQUEST, format!("malformed admission request: {e}")),
    };
    decision::decide(settings, request, now, ledger)
}

/// The rejection of a payload that is not valid JSON, with the error a whole-payload `Value`
/// parse reports (the first fault in the payload), whichever part of the parse found one.
fn malformed(payload: &[u8], error: &serde_json::Error) -> Decision {
    let error = serde_json::from_slice::<Value>(payload).map_or_else(|e| e.to_string(), |_| error.to_string());
    rejection(code::BAD_REQUEST, format!("malformed validation request: {error}"))
}

/// Parsed and validated settings, or why they are invalid.
type CheckedSettings = Rc<Result<Settings, String>>;

thread_local! {
    /// The last settings text seen and what it gave. An instance of the policy normally always
    /// gets the same settings, so they are parsed and validated once, not on every request.
    static LAST_SETTINGS: RefCell<Option<(String, CheckedSettings)>> = const { RefCell::new(None) };
}

/// The settings from their JSON text (`null` for the defaults); an error only when the text is
/// not valid JSON.
fn settings_for(text: &str) -> Result<CheckedSettings, serde_json::Error> {
    let cached = LAST_SETTINGS.with_borrow(|last| {
        last.as_ref()
            .filter(|(seen, _)| seen == text)
            .map(|(_, checked)| Rc::clone(checked))
    });
    if let Some(checked) = cached {
        return Ok(checked);
    }
    let value: Value = serde_json::from_str(text)?;
    let checked = Rc::new(Settings::from_json(&value).and_then(|s| s.validate().map(|()| s)));
    LAST_SETTINGS.with_borrow_mut(|last| *last = Some((text.to_string(), Rc::clone(&checked))));
    Ok(checked)
}

/// Kubewarden's ValidationResponse, field for field as the SDK writes it (every field present,
/// `null` when unset), borrowing the object instead of owning it. Kept instead of the SDK's
/// `ValidationResponse` because it measured faster and smaller (`make bench`, bench/README.md).
#[derive(Serialize)]
struct Response<'a> {
    accepted: bool,
    message: Option<&'a str>,
    code: Option<u16>,
    mutated_object: Option<&'a Value>,
    /// Never set by this policy.
    audit_annotations: Option<()>,
    /// Never set by this policy.
    warnings: Option<()>,
}

impl<'a> Response<'a> {
    fn accept(mutated_object: Option<&'a Value>) -> Response<'a> {
        Response {
            accepted: true,
            message: None,
            code: None,
            mutated_object,
            audit_annotations: None,
            warnings: None,
        }
    }

    fn reject(code: u16, message: &'a str) -> Response<'a> {
        Response {
            accepted: false,
            message: Some(message),
            code: Some(code),
            mutated_object: None,
            audit_annotations: None,
            warnings: None,
        }
    }
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
        Ok(crate::validate_payload_at(
            payload,
            &crate::now_rfc3339,
            &crate::ledger::HostLedger,
        ))
    }

    fn validate_settings(payload: &[u8]) -> CallResult {
        Ok(crate::validate_settings_payload(payload))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use serde_json::{Value, json};

    use crate::decision::ClaimLedger;

    struct NoLedger;

    impl ClaimLedger for NoLedger {
        fn active_claims(&self, _: &str, _: &str) -> Result<u64, String> {
            Err("no ledger".to_string())
        }
    }

    fn answer(payload: &str) -> Value {
        serde_json::from_slice(&super::validate_payload(
            payload.as_bytes(),
            "2026-11-28T17:00:00Z",
            &NoLedger,
        ))
        .unwrap()
    }

    /// Settings that pass the syntax check but not a `Value` parse are malformed with the error
    /// of a whole-payload `Value` parse, also when the request is malformed too.
    #[test]
    fn malformed_settings_give_the_whole_payload_error() {
        for payload in [
            r#"{"settings":{"claimer":"\ud800"},"request":{}}"#,
            r#"{"settings":{"maxActiveClaimsPerNamespace":1e999},"request":{}}"#,
            r#"{"settings":{"claimer":"\ud800"},"request":{"uid":"\udc00"}}"#,
            r#"{"request":{"uid":"\udc00"},"settings":{"claimer":"\ud800"}}"#,
            r#"{"settings":{"a":1},"request":{"object":{"x":1e999}}}"#,
            // A repeated key: the value that the later one replaces is checked all the same.
            r#"{"settings":{"claimer":"\ud800"},"settings":null,"request":{"operation":"DELETE"}}"#,
            r#"{"settings":[1e999],"settings":{},"request":{}}"#,
        ] {
            let want = serde_json::from_slice::<Value>(payload.as_bytes()).unwrap_err();
            let got = answer(payload);
            assert_eq!(got["code"], json!(400), "{payload}");
            assert_eq!(
                got["message"],
                json!(format!("malformed validation request: {want}")),
                "{payload}"
            );
        }
    }

    /// The settings cache answers for the settings of each request, whatever came before.
    #[test]
    fn settings_are_those_of_each_request() {
        let request = r#"{"operation":"DELETE","userInfo":{}}"#;
        let good = format!(r#"{{"settings":{{"claimer":"a"}},"request":{request}}}"#);
        let bad = format!(r#"{{"settings":{{"claimer":"A"}},"request":{request}}}"#);
        let unknown = format!(r#"{{"settings":{{"claimr":"a"}},"request":{request}}}"#);
        let none = format!(r#"{{"request":{request}}}"#);
        for _ in 0..2 {
            for (payload, ok) in [
                (&good, true),
                (&good, true),
                (&bad, false),
                (&none, true),
                (&unknown, false),
            ] {
                let got = answer(payload);
                assert_eq!(got["accepted"], json!(ok), "{payload}: {got}");
                if !ok {
                    assert_eq!(got["code"], json!(500), "{payload}: {got}");
                }
            }
        }
    }
}

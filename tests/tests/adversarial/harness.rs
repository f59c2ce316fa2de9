//! The compiled policy as the adversarial tests drive it, and the requests they send.

use std::sync::{Arc, OnceLock};

use gastown_tests::admission_gen::{SettingsModel, admission_request, patch_op_violation};
use gastown_tests::policy_host::{Admission, PolicyInstance, PolicyModule, ScriptedList, default_module_path};
use serde_json::{Value, json};

pub(crate) fn module() -> &'static PolicyModule {
    static MODULE: OnceLock<PolicyModule> = OnceLock::new();
    MODULE.get_or_init(|| PolicyModule::load(&default_module_path()).unwrap())
}

/// The compiled policy with one set of settings; collects every broken expectation so a test
/// reports all of them at once.
pub(crate) struct Policy {
    instance: PolicyInstance,
    settings: Value,
    failures: Vec<String>,
}

impl Policy {
    pub(crate) fn new(settings: Value) -> Policy {
        let instance = module().instance(Arc::new(ScriptedList::new())).unwrap();
        let answer = instance.validate_settings(&settings).unwrap();
        assert_eq!(answer["valid"], json!(true), "test settings invalid: {answer}");
        Policy {
            instance,
            settings,
            failures: Vec::new(),
        }
    }

    pub(crate) fn standard() -> Policy {
        Policy::new(SettingsModel::standard().to_json())
    }

    pub(crate) fn ask(&mut self, request: &Value) -> Option<Admission> {
        match self.instance.validate(&self.settings, request) {
            Ok(a) => Some(a),
            Err(e) => {
                self.failures
                    .push(format!("the policy failed (trap or bad answer): {e:#}"));
                // A trapped instance is not reused.
                self.instance = module().instance(Arc::new(ScriptedList::new())).unwrap();
                None
            }
        }
    }

    /// Expects a refusal with `code` whose message contains every part of `contains`.
    pub(crate) fn refuses(&mut self, what: &str, request: &Value, code: u16, contains: &[&str]) {
        let Some(a) = self.ask(request) else { return };
        if a.allowed {
            self.failures
                .push(format!("{what}: ACCEPTED (patch {:?})", a.patch.map(|p| p.to_string())));
            return;
        }
        let message = a.message.unwrap_or_default();
        if a.code != Some(code) {
            self.failures
                .push(format!("{what}: code {:?}, expected {code}: {message}", a.code));
        }
        for part in contains {
            if !message.contains(part) {
                self.failures.push(format!("{what}: message lacks {part:?}: {message}"));
            }
        }
    }

    /// Expects acceptance without any change.
    pub(crate) fn accepts_unchanged(&mut self, what: &str, request: &Value) {
        let Some(a) = self.ask(request) else { return };
        if !a.allowed {
            self.failures.push(format!("{what}: refused: {:?}", a.message));
        } else if let Some(p) = a.patch {
            self.failures.push(format!("{what}: unexpectedly mutated: {p}"));
        }
    }

    /// Expects a claim whose patch touches only the claim fields; returns the patched object.
    pub(crate) fn claims(&mut self, what: &str, request: &Value) -> Option<Value> {
        let a = self.ask(request)?;
        let original = request.get("object").cloned().unwrap_or(Value::Null);
        match (&a.allowed, &a.patch) {
            (true, Some(patch)) => {
                for op in &patch.0 {
                    if let Some(v) = patch_op_violation(&original, op) {
                        self.failures.push(format!("{what}: {v}"));
                    }
                }
                Some(a.patched(&original).unwrap())
            }
            _ => {
                self.failures
                    .push(format!("{what}: no claim: allowed={} {:?}", a.allowed, a.message));
                None
            }
        }
    }

    pub(crate) fn finish(self, test: &str) {
        assert!(
            self.failures.is_empty(),
            "{test}: {} broken expectations:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// A CREATE of `object` by `user` in `groups`.
pub(crate) fn create(user: &str, groups: &[&str], object: Value) -> Value {
    admission_request("CREATE", "", user, groups, object, Value::Null)
}

/// An UPDATE of `old` to `object` by `user` in `groups`.
pub(crate) fn update(user: &str, groups: &[&str], object: Value, old: Value) -> Value {
    admission_request("UPDATE", "", user, groups, object, old)
}

/// `o` asking for a claim by `spec.executionMode: local`.
pub(crate) fn local(mut o: Value) -> Value {
    o["spec"]["executionMode"] = json!("local");
    o
}

/// The policy's message parts for forged marks, claimed work and controller-only status fields.
pub(crate) const FORGED: &str = "set only by the gastown claim policy";
pub(crate) const CLAIMED: &str = "is claimed by Gas Town";

/// Sets (`Some`) or removes (`None`) a label or annotation.
pub(crate) fn set_meta(o: &mut Value, map: &str, key: &str, value: Option<&str>) {
    match value {
        Some(v) => o["metadata"][map][key] = json!(v),
        None => {
            if let Some(m) = o["metadata"][map].as_object_mut() {
                m.remove(key);
            }
        }
    }
}

pub(crate) const CONTROLLER_ONLY: &str = "may be written only by the gastown controller";

//! Runs the compiled policy (`policy/policy.wasm`) exactly as Kubewarden's policy-server does:
//! waPC on wasmtime with WASI, `protocol_version` / `validate_settings` / `validate` calls, the
//! Kubernetes host capabilities answered by a [`HostCapabilities`] implementation, and the
//! JSONPatch computed by the host with `json_patch::diff(original, mutated)`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use wapc::WapcHost;
use wasmtime_provider::{WasmtimeEngineProviderBuilder, WasmtimeEngineProviderPre};

/// The compiled module `make policy` writes.
pub fn default_module_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/policy.wasm")
}

/// Answers the policy's host calls (`kubewarden/kubernetes/<operation>`).
pub trait HostCapabilities: Send + Sync {
    /// `operation` is e.g. `list_resources_by_namespace`; `request` is the guest's JSON.
    fn kubernetes(&self, operation: &str, request: &Value) -> Result<Value, String>;
}

/// Host capabilities that refuse every call (for policies that must not need them).
pub struct NoCapabilities;

impl HostCapabilities for NoCapabilities {
    fn kubernetes(&self, operation: &str, _request: &Value) -> Result<Value, String> {
        Err(format!(
            "host capability kubernetes/{operation} is not available in this test"
        ))
    }
}

/// Answers `list_resources_by_namespace` with a list or an error that can be changed between
/// calls, so one instance serves many cases; refuses every other host call.
pub struct ScriptedList(Mutex<Result<Value, String>>);

impl ScriptedList {
    /// Answers an empty list until [`Self::set`] is called.
    pub fn new() -> ScriptedList {
        ScriptedList::answering(Ok(json!({"items": []})))
    }

    /// Answers `answer` until [`Self::set`] is called.
    pub fn answering(answer: Result<Value, String>) -> ScriptedList {
        ScriptedList(Mutex::new(answer))
    }

    /// The answer for the next calls.
    pub fn set(&self, answer: Result<Value, String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = answer;
    }
}

impl Default for ScriptedList {
    fn default() -> Self {
        ScriptedList::new()
    }
}

impl HostCapabilities for ScriptedList {
    fn kubernetes(&self, operation: &str, _request: &Value) -> Result<Value, String> {
        match operation {
            "list_resources_by_namespace" => self.0.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            other => Err(format!("unexpected host capability kubernetes/{other}")),
        }
    }
}

/// A policy module compiled once; instances are cheap to make from it.
pub struct PolicyModule {
    pre: WasmtimeEngineProviderPre,
}

impl PolicyModule {
    /// Compiles the module at `path`.
    pub fn load(path: &Path) -> Result<PolicyModule> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading {} (run `make policy` first)", path.display()))?;
        Self::from_bytes(&bytes)
    }

    /// Compiles a module from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PolicyModule> {
        let pre = WasmtimeEngineProviderBuilder::new()
            .module_bytes(bytes)
            .wasi_params(wapc::WasiParams::default())
            .build_pre()
            .map_err(|e| anyhow!("compiling the policy module: {e}"))?;
        Ok(PolicyModule { pre })
    }

    /// A fresh instance (what policy-server does for every request since 1.10) whose host
    /// calls are answered by `capabilities`.
    pub fn instance(&self, capabilities: Arc<dyn HostCapabilities>) -> Result<PolicyInstance> {
        let engine = self
            .pre
            .rehydrate(None)
            .map_err(|e| anyhow!("instantiating the policy: {e}"))?;
        let caps = capabilities;
        let host = WapcHost::new(
            Box::new(engine),
            Some(Box::new(move |_id, binding, namespace, operation, payload| {
                host_call(caps.as_ref(), binding, namespace, operation, payload)
            })),
        )
        .map_err(|e| anyhow!("initialising the waPC guest: {e}"))?;
        Ok(PolicyInstance { host })
    }
}

type HostResult = std::result::Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;

fn host_call(
    caps: &dyn HostCapabilities,
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> HostResult {
    match (binding, namespace) {
        ("kubewarden", "kubernetes") => {
            let request: Value = serde_json::from_slice(payload)?;
            let answer = caps
                .kubernetes(operation, &request)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(serde_json::to_vec(&answer)?)
        }
        // SDK logging (`kubewarden/tracing/log`): accepted and dropped.
        ("kubewarden", "tracing") => Ok(Vec::new()),
        _ => Err(format!("unknown host call {binding}/{namespace}/{operation}").into()),
    }
}

/// One instantiated policy.
pub struct PolicyInstance {
    host: WapcHost,
}

/// A `validate` answer as policy-server turns it into an AdmissionResponse.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The raw ValidationResponse from the guest.
    pub response: Value,
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The rejection message, if any.
    pub message: Option<String>,
    /// The rejection code, if any.
    pub code: Option<u16>,
    /// The JSONPatch the host would send, when the object changed.
    pub patch: Option<json_patch::Patch>,
}

impl Admission {
    /// The object after applying the patch to `original` (the original when there is none).
    pub fn patched(&self, original: &Value) -> Result<Value> {
        let mut doc = original.clone();
        if let Some(patch) = &self.patch {
            json_patch::patch(&mut doc, patch).context("applying the policy's JSONPatch")?;
        }
        Ok(doc)
    }
}

impl PolicyInstance {
    /// Calls a waPC function and returns its raw answer.
    pub fn call(&self, function: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.host
            .call(function, payload)
            .map_err(|e| anyhow!("waPC call {function} failed: {e}"))
    }

    /// `protocol_version`.
    pub fn protocol_version(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&self.call("protocol_version", b"")?)?)
    }

    /// `validate_settings` with `settings`; returns `{"valid": bool, "message"?}`.
    pub fn validate_settings(&self, settings: &Value) -> Result<Value> {
        Ok(serde_json::from_slice(
            &self.call("validate_settings", settings.to_string().as_bytes())?,
        )?)
    }

    /// `validate` with `settings` and an AdmissionRequest, turned into an admission answer the
    /// way policy-server does it (mutated object → JSONPatch; a mutation of a DELETE refused).
    pub fn validate(&self, settings: &Value, request: &Value) -> Result<Admission> {
        let payload = json!({"settings": settings, "request": request});
        let raw = self.call("validate", payload.to_string().as_bytes())?;
        let response: Value = serde_json::from_slice(&raw).context("the policy answered with invalid JSON")?;
        let allowed = response
            .get("accepted")
            .and_then(Value::as_bool)
            .ok_or_else(|| anyhow!("the policy answer lacks `accepted`: {response}"))?;
        let message = response.get("message").and_then(Value::as_str).map(str::to_string);
        let code = response
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok());
        let mut patch = None;
        if let Some(mutated) = response.get("mutated_object").filter(|m| !m.is_null()) {
            if !allowed {
                bail!("the policy rejected the request and returned a mutated object");
            }
            if request.get("operation").and_then(Value::as_str) == Some("DELETE") {
                bail!("the policy mutated a DELETE request (the host refuses this)");
            }
            let original = request.get("object").cloned().unwrap_or(Value::Null);
            let diff = json_patch::diff(&original, mutated);
            if !diff.0.is_empty() {
                patch = Some(diff);
            }
        }
        Ok(Admission {
            response,
            allowed,
            message,
            code,
            patch,
        })
    }
}

//! Serves the compiled policy to a real API server as a mutating admission webhook, the way
//! Kubewarden's policy-server does: HTTPS AdmissionReview (v1) in, a fresh waPC instance per
//! request, `validate` with the policy's settings, the JSONPatch (base64) out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use gastown_controller::gastown::testing::TestPki;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::policy_host::{HostCapabilities, PolicyModule};

/// Answers `kubernetes/list_resources_by_namespace` from the real API server.
pub struct ClusterCapabilities {
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl ClusterCapabilities {
    /// Uses `client` on the current runtime.
    pub fn new(client: Client) -> ClusterCapabilities {
        ClusterCapabilities {
            client,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl HostCapabilities for ClusterCapabilities {
    fn kubernetes(&self, operation: &str, request: &Value) -> Result<Value, String> {
        if operation != "list_resources_by_namespace" {
            return Err(format!("kubernetes/{operation} is not served by this test host"));
        }
        let field = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
        let api_version = field("api_version").ok_or("api_version missing")?;
        let kind = field("kind").ok_or("kind missing")?;
        let namespace = field("namespace").ok_or("namespace missing")?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
        let resource = ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.clone(),
            kind: kind.clone(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &namespace, &resource);
        let mut params = ListParams::default();
        if let Some(l) = field("label_selector") {
            params = params.labels(&l);
        }
        if let Some(f) = field("field_selector") {
            params = params.fields(&f);
        }
        // The waPC host call is synchronous; it runs on a blocking thread, so block on the
        // runtime that owns the client.
        let list = self.runtime.block_on(api.list(&params)).map_err(|e| e.to_string())?;
        serde_json::to_value(&list).map_err(|e| e.to_string())
    }
}

/// A running webhook.
pub struct PolicyWebhook {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    module: PolicyModule,
    settings: Value,
    capabilities: Arc<dyn HostCapabilities>,
    requests: Arc<AtomicUsize>,
}

impl PolicyWebhook {
    /// Starts serving `module` with `settings` on 127.0.0.1 (a free port, or `port`).
    pub async fn start(
        module: PolicyModule,
        settings: Value,
        capabilities: Arc<dyn HostCapabilities>,
        port: u16,
    ) -> Result<PolicyWebhook> {
        refuse_invalid_settings(&module, &settings, &capabilities)?;
        let pki = TestPki::new("gastown-test-webhook-ca").map_err(|e| anyhow!("{e}"))?;
        let server = pki.server_cert().map_err(|e| anyhow!("{e}"))?;
        let certs = rustls_certs(&server.cert_pem)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
            .map_err(|e| anyhow!("server key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            module,
            settings,
            capabilities,
            requests: Arc::clone(&requests),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, std::convert::Infallible>(handle(req, shared).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(PolicyWebhook {
            addr,
            ca_pem: pki.ca_pem().to_string(),
            requests,
            task,
        })
    }

    /// The URL the API server calls.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/validate", self.addr.port())
    }

    /// Admission requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// A MutatingWebhookConfiguration for this server, with the rules, failure policy,
    /// timeout and selectors of a Kubewarden `ClusterAdmissionPolicy`.
    pub fn webhook_configuration(&self, name: &str, policy: &Value) -> Value {
        let spec = &policy["spec"];
        let rules: Vec<Value> = spec["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut r| {
                r["scope"] = json!("*");
                r
            })
            .collect();
        let mut webhook = json!({
            "name": format!("{name}.gastown-operator.test"),
            "clientConfig": {
                "url": self.url(),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
            },
            "rules": rules,
            "failurePolicy": spec.get("failurePolicy").cloned().unwrap_or(json!("Fail")),
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": spec.get("timeoutSeconds").cloned().unwrap_or(json!(10)),
            "admissionReviewVersions": ["v1"],
            "reinvocationPolicy": "Never",
        });
        for selector in ["namespaceSelector", "objectSelector"] {
            if let Some(s) = spec.get(selector).filter(|s| !s.is_null()) {
                webhook[selector] = s.clone();
            }
        }
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [webhook],
        })
    }
}

fn rustls_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("server certificate: {e}"))
}

async fn handle(req: Request<hyper::body::Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let request = review.get("request").cloned().unwrap_or(Value::Null);
    let uid = request.get("uid").cloned().unwrap_or(json!(""));
    let shared2 = Arc::clone(&shared);
    let evaluated = tokio::task::spawn_blocking(move || -> Result<Value> {
        let instance = shared2.module.instance(Arc::clone(&shared2.capabilities))?;
        let admission = instance.validate(&shared2.settings, &request)?;
        let mut response = json!({"uid": uid, "allowed": admission.allowed});
        if !admission.allowed {
            response["status"] = json!({
                "message": admission.message.unwrap_or_default(),
                "code": admission.code.unwrap_or(400),
            });
        } else if let Some(patch) = admission.patch {
            let bytes = serde_json::to_vec(&patch)?;
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Ok(response)
    })
    .await;
    let response = match evaluated {
        Ok(Ok(r)) => r,
        // Like policy-server: an evaluation error is a rejection with the error's text.
        Ok(Err(e)) => {
            json!({"uid": review["request"]["uid"], "allowed": false, "status": {"message": format!("policy evaluation failed: {e:#}"), "code": 500}})
        }
        Err(e) => {
            json!({"uid": review["request"]["uid"], "allowed": false, "status": {"message": format!("policy evaluation panicked: {e}"), "code": 500}})
        }
    };
    reply(
        StatusCode::OK,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Like policy-server at boot, which calls `validate_settings` for every policy and fails to
/// start on invalid settings unless `--continue-on-errors` (kubewarden/policy-server
/// `src/evaluation/evaluation_environment.rs`, `bootstrap_policy`): a webhook is never served
/// with settings the policy refuses.
fn refuse_invalid_settings(
    module: &PolicyModule,
    settings: &Value,
    capabilities: &Arc<dyn HostCapabilities>,
) -> Result<()> {
    let answer = module.instance(Arc::clone(capabilities))?.validate_settings(settings)?;
    if answer["valid"].as_bool() == Some(true) {
        return Ok(());
    }
    bail!(
        "the policy refuses its settings: {}",
        answer["message"].as_str().unwrap_or("(no message)")
    )
}

/// Registers (server-side apply) a MutatingWebhookConfiguration.
pub async fn register(client: &Client, configuration: &Value) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let name = configuration["metadata"]["name"]
        .as_str()
        .context("configuration without name")?
        .to_string();
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let params = kube::api::PatchParams::apply("gastown-tests").force();
    api.patch(&name, &params, &kube::api::Patch::Apply(configuration))
        .await?;
    Ok(())
}

/// Serves the compiled policy (`policy/policy.wasm`) with the settings of `policy` (a
/// ClusterAdmissionPolicy) as a webhook for the namespace `ns` only: its configuration selects
/// namespaces labelled `label: ns`, and `ns` gets that label. Returns the webhook and the name
/// of its MutatingWebhookConfiguration. The API server takes a configuration up
/// asynchronously: wait for an effect of the policy before relying on it.
pub async fn serve_in_namespace(
    admin: &Client,
    policy: &Value,
    ns: &str,
    label: &str,
) -> Result<(PolicyWebhook, String)> {
    use k8s_openapi::api::core::v1::Namespace;
    let module = PolicyModule::load(&crate::policy_host::default_module_path())?;
    let settings = policy["spec"]["settings"].clone();
    let webhook = PolicyWebhook::start(module, settings, Arc::new(ClusterCapabilities::new(admin.clone())), 0).await?;
    let mut scoped = policy.clone();
    scoped["spec"]["namespaceSelector"] = json!({"matchLabels": {label: ns}});
    let name = format!("gastown-claim-{ns}");
    register(admin, &webhook.webhook_configuration(&name, &scoped)).await?;
    Api::<Namespace>::all(admin.clone())
        .patch(
            ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {label: ns}}})),
        )
        .await
        .with_context(|| format!("labelling namespace {ns}"))?;
    Ok((webhook, name))
}

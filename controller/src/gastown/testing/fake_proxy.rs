//! The fake gt-proxy-server: mutual TLS 1.3, `POST /v1/exec`, an allow-list, and a record of
//! every request.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::{BoxError, ExecHandler};

/// Which commands and subcommands the fake server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    /// Command → allowed subcommands (`None`: all).
    commands: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl AllowList {
    /// The contract's default: `gt sling|mail|hook|convoy|status|nudge` and
    /// `bd create|update|show|list|close`.
    pub fn contract_default() -> Self {
        AllowList {
            commands: BTreeMap::new(),
        }
        .allow("gt", &["sling", "mail", "hook", "convoy", "status", "nudge"])
        .allow("bd", &["create", "update", "show", "list", "close"])
    }

    /// Adds subcommands of `command` (an empty list allows all of them).
    pub fn allow(mut self, command: &str, subcommands: &[&str]) -> Self {
        let entry = self
            .commands
            .entry(command.to_owned())
            .or_insert_with(|| Some(BTreeSet::new()));
        if subcommands.is_empty() {
            *entry = None;
        } else if let Some(set) = entry {
            set.extend(subcommands.iter().map(|s| (*s).to_owned()));
        }
        self
    }

    fn check(&self, argv: &[String]) -> Result<(), String> {
        let Some(command) = argv.first() else {
            return Err("argv is empty".to_owned());
        };
        match self.commands.get(command) {
            None => Err(format!("command not allowed: {command:?}")),
            Some(None) => Ok(()),
            Some(Some(subs)) => match argv.get(1) {
                None => Err("subcommand required".to_owned()),
                Some(sub) if subs.contains(sub) => Ok(()),
                Some(sub) => Err(format!("subcommand not allowed: {command:?} {sub:?}")),
            },
        }
    }
}

/// One request the fake server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedExec {
    /// The argv sent.
    pub argv: Vec<String>,
    /// The HTTP status answered (200, or 403 when refused by the allow-list).
    pub status: u16,
}

struct State {
    handler: Arc<dyn ExecHandler>,
    allow: Option<AllowList>,
    requests: Mutex<Vec<RecordedExec>>,
    handshake_failures: AtomicUsize,
}

impl State {
    fn record(&self, argv: &[String], status: StatusCode) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RecordedExec {
                argv: argv.to_vec(),
                status: status.as_u16(),
            });
    }
}

/// A running fake gt-proxy-server; stops when dropped.
pub struct FakeProxyHandle {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeProxyHandle {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RecordedExec> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// TLS handshakes that failed (e.g. a client without a certificate from the CA).
    pub fn handshake_failures(&self) -> usize {
        self.state.handshake_failures.load(Ordering::SeqCst)
    }

    /// Stops the server and its connections.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for FakeProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake gt-proxy-server.
pub struct FakeProxyServer;

impl FakeProxyServer {
    /// Listens on `127.0.0.1:<free port>` with the contract's default allow-list.
    pub async fn start(
        ca_pem: &str,
        server_cert_pem: &str,
        server_key_pem: &str,
        handler: Arc<dyn ExecHandler>,
    ) -> Result<(SocketAddr, FakeProxyHandle), BoxError> {
        Self::start_with_allow_list(
            ca_pem,
            server_cert_pem,
            server_key_pem,
            handler,
            Some(AllowList::contract_default()),
        )
        .await
    }

    /// Like [`Self::start`]; `allow: None` accepts every command.
    pub async fn start_with_allow_list(
        ca_pem: &str,
        server_cert_pem: &str,
        server_key_pem: &str,
        handler: Arc<dyn ExecHandler>,
        allow: Option<AllowList>,
    ) -> Result<(SocketAddr, FakeProxyHandle), BoxError> {
        let config = server_tls_config(ca_pem, server_cert_pem, server_key_pem)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            handler,
            allow,
            requests: Mutex::new(Vec::new()),
            handshake_failures: AtomicUsize::new(0),
        });
        let server_state = state.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts the connections too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((tcp, _)) = accepted {
                            connections.spawn(serve_connection(acceptor.clone(), server_state.clone(), tcp));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok((addr, FakeProxyHandle { addr, state, task }))
    }
}

/// TLS 1.3 only (like gt-proxy-server), client certificates required and verified.
pub(super) fn server_tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve_connection(acceptor: TlsAcceptor, state: Arc<State>, tcp: TcpStream) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            state.handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let service = service_fn(move |request| handle_request(state.clone(), request));
    let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

#[derive(Deserialize)]
struct ExecRequestBody {
    argv: Vec<String>,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle_request(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/v1/exec" {
        return Ok(text(StatusCode::NOT_FOUND, "404 page not found"));
    }
    if request.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let body = match Limited::new(request.into_body(), 1 << 20).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("bad request: {e}"))),
    };
    let exec: ExecRequestBody = match serde_json::from_slice(&body) {
        Ok(exec) => exec,
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("bad request: {e}"))),
    };
    if exec.argv.is_empty() {
        return Ok(text(StatusCode::BAD_REQUEST, "argv is empty"));
    }
    if let Some(allow) = &state.allow
        && let Err(message) = allow.check(&exec.argv)
    {
        state.record(&exec.argv, StatusCode::FORBIDDEN);
        return Ok(text(StatusCode::FORBIDDEN, message));
    }
    state.record(&exec.argv, StatusCode::OK);
    let reply = state.handler.handle(exec.argv).await;
    let body = match serde_json::to_vec(&reply) {
        Ok(body) => body,
        Err(e) => return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_the_contract() {
        let allow = AllowList::contract_default();
        let argv = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(allow.check(&argv(&["gt", "sling", "--", "go-1", "rig"])).is_ok());
        assert!(allow.check(&argv(&["bd", "list", "--json"])).is_ok());
        assert!(allow.check(&argv(&["gt", "unsling"])).is_err());
        assert!(allow.check(&argv(&["gt", "polecat", "status"])).is_err());
        assert!(allow.check(&argv(&["gt", "rig"])).is_err());
        assert!(allow.check(&argv(&["sh", "-c", "id"])).is_err());
        assert!(allow.check(&argv(&["gt"])).is_err());
        assert!(allow.check(&[]).is_err());
        let open = AllowList::contract_default().allow("gt", &[]);
        assert!(open.check(&argv(&["gt", "unsling"])).is_ok());
    }
}

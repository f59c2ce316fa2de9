//! Test helpers (feature `test-support`): a fake gt-proxy-server speaking mutual TLS, a
//! throw-away PKI, temporary directories and stand-in executables.
//!
//! The fake server behaves like gt-proxy-server as the contract describes it: TLS 1.3 with a
//! required client certificate signed by the given CA, `POST /v1/exec` with `{"argv": [...]}`,
//! 400 for a malformed body, 403 for commands outside its allow-list (by default the
//! contract's: `gt sling|mail|hook|convoy|status|nudge`, `bd create|update|show|list|close`),
//! otherwise HTTP 200 with `{"stdout","stderr","exitCode"}` from an [`ExecHandler`]. It never
//! runs a shell; [`TownExecHandler`] execs stand-in `gt`/`bd` binaries in a town directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gastown_controller::gastown::testing::BoxError> {
//! use std::sync::Arc;
//! use gastown_controller::gastown::testing::{FakeProxyServer, TestPki, TownExecHandler};
//! let pki = TestPki::new("test CA")?;
//! let server = pki.server_cert()?;
//! let handler = TownExecHandler::new("/tmp/town", "/tmp/bin/gt", "/tmp/bin/bd");
//! let (addr, handle) =
//!     FakeProxyServer::start(pki.ca_pem(), &server.cert_pem, &server.key_pem, Arc::new(handler)).await?;
//! // Point a `Transport::Proxy` at `handle.url()` with `pki.client_cert("gt-ops-controller")?`.
//! # let _ = (addr, handle); Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::exec::{ProcessError, base_env, run_program};

/// Errors of the test helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct CertKeyPem {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: String,
}

/// A throw-away certificate authority issuing X.509 v3 server and client certificates.
pub struct TestPki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// A new self-signed CA with common name `name`.
    pub fn new(name: &str) -> Result<Self, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestPki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn server_cert(&self) -> Result<CertKeyPem, BoxError> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, "gt-proxy-server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with common name `common_name` (gt-proxy-server expects
    /// `gt-<rig>-<name>`).
    pub fn client_cert(&self, common_name: &str) -> Result<CertKeyPem, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertKeyPem, BoxError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, uniquely named directory.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        Ok(path)
    }

    /// Writes an executable file (mode 0755), e.g. a `#!/bin/sh` stand-in for `gt` or `bd`.
    #[cfg(unix)]
    pub fn write_executable(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, contents)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The body of a 200 answer of `/v1/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReply {
    /// Standard output of the command.
    pub stdout: String,
    /// Standard error of the command.
    pub stderr: String,
    /// Exit code (`-1` when killed, as Go reports it).
    #[serde(rename = "exitCode")]
    pub exit_code: i32,
}

impl ExecReply {
    /// Exit 0 with `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        ExecReply {
            stdout: stdout.into(),
            stderr: String::new(),
            exit_code: 0,
        }
    }

    /// Exit `code` with `stderr`.
    pub fn fail(exit_code: i32, stderr: impl Into<String>) -> Self {
        ExecReply {
            stdout: String::new(),
            stderr: stderr.into(),
            exit_code,
        }
    }
}

/// Answers an allowed `/v1/exec` request.
pub trait ExecHandler: Send + Sync + 'static {
    /// Runs (or pretends to run) `argv`.
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply>;
}

impl<F, Fut> ExecHandler for F
where
    F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ExecReply> + Send + 'static,
{
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        self(argv).boxed()
    }
}

/// Prints the argv, one element per line, and exits 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl ExecHandler for EchoHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let mut stdout = argv.join("\n");
        stdout.push('\n');
        futures::future::ready(ExecReply::ok(stdout)).boxed()
    }
}

/// Answers from a table keyed by the exact argv; anything else exits 1.
#[derive(Debug, Clone, Default)]
pub struct TableHandler {
    entries: Vec<(Vec<String>, ExecReply)>,
}

impl TableHandler {
    /// An empty table.
    pub fn new() -> Self {
        TableHandler::default()
    }

    /// Answers `argv` with `reply`.
    pub fn with(mut self, argv: &[&str], reply: ExecReply) -> Self {
        self.entries
            .push((argv.iter().map(|s| (*s).to_owned()).collect(), reply));
        self
    }
}

impl ExecHandler for TableHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let reply = self
            .entries
            .iter()
            .find(|(key, _)| *key == argv)
            .map(|(_, reply)| reply.clone())
            .unwrap_or_else(|| ExecReply::fail(1, format!("fake proxy: no table entry for {argv:?}\n")));
        futures::future::ready(reply).boxed()
    }
}

/// Execs the stand-in binaries like gt-proxy-server does: `argv[0]` `gt`/`bd` mapped to the
/// configured paths, working directory the town root (the fake tools find the town there),
/// environment `PATH`, `HOME` and `GT_PROXY_IDENTITY`.
#[derive(Debug, Clone)]
pub struct TownExecHandler {
    /// The town directory.
    pub town_root: PathBuf,
    /// The stand-in `gt`.
    pub gt_path: PathBuf,
    /// The stand-in `bd`.
    pub bd_path: PathBuf,
    /// `GT_PROXY_IDENTITY` passed to the commands (`<rig>/<name>` from the client CN).
    pub identity: Option<String>,
    /// Kill commands after this long (gt-proxy-server: 60 s).
    pub timeout: Duration,
}

impl TownExecHandler {
    /// Runs `gt_path`/`bd_path` in `town_root`, identity `operator/controller`, 60 s timeout.
    pub fn new(town_root: impl Into<PathBuf>, gt_path: impl Into<PathBuf>, bd_path: impl Into<PathBuf>) -> Self {
        TownExecHandler {
            town_root: town_root.into(),
            gt_path: gt_path.into(),
            bd_path: bd_path.into(),
            identity: Some("operator/controller".to_owned()),
            timeout: Duration::from_secs(60),
        }
    }
}

impl ExecHandler for TownExecHandler {
    fn handle(&self, argv: Vec<String>) -> BoxFuture<'static, ExecReply> {
        let program = match argv.first().map(String::as_str) {
            Some("gt") => self.gt_path.clone(),
            Some("bd") => self.bd_path.clone(),
            other => {
                let reply = ExecReply::fail(127, format!("fake proxy: no binary for {other:?}\n"));
                return futures::future::ready(reply).boxed();
            }
        };
        let mut env = base_env();
        if let Some(identity) = &self.identity {
            env.push(("GT_PROXY_IDENTITY".into(), identity.into()));
        }
        let town_root = self.town_root.clone();
        let timeout = self.timeout;
        async move {
            let args = argv.get(1..).unwrap_or_default();
            match run_program(&program, args, &town_root, &env, timeout, 64 * 1024 * 1024).await {
                Ok(out) => ExecReply {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code.unwrap_or(-1),
                },
                Err(ProcessError::Timeout) => ExecReply::fail(-1, "signal: killed\n"),
                Err(ProcessError::NotFound) => ExecReply::fail(
                    1,
                    format!("fork/exec {}: no such file or directory\n", program.display()),
                ),
                Err(ProcessError::Spawn(e) | ProcessError::Io(e)) => ExecReply::fail(1, format!("{e}\n")),
            }
        }
        .boxed()
    }
}

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
fn server_tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, BoxError> {
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

    #[test]
    fn pki_issues_pem() {
        let pki = TestPki::new("ca").unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let server = pki.server_cert().unwrap();
        assert!(server.key_pem.contains("PRIVATE KEY"));
        assert!(server_tls_config(pki.ca_pem(), &server.cert_pem, &server.key_pem).is_ok());
    }
}

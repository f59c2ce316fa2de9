//! Remote transport: gt-proxy-server over HTTPS with mutual TLS.
//!
//! `POST {url}/v1/exec` with `{"argv": [...]}`; a command that ran is answered with HTTP 200
//! and `{"stdout", "stderr", "exitCode"}` (success is `exitCode == 0`); the server refuses
//! with 400 (bad request), 403 (not on its allow-list), 429 (rate limit) or 503 (busy).
//! Only `https://` URLs are accepted, the server certificate is verified against the
//! configured CA (there is no insecure mode) and we present our client certificate. Key and
//! certificate contents never appear in errors or logs.

use std::error::Error as StdError;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::argv::CommandLine;
use super::error::{Error, excerpt};
use super::exec::{Output, STDERR_CAP};

/// Body of `POST /v1/exec`.
#[derive(Serialize)]
struct ExecRequest<'a> {
    argv: &'a [String],
}

/// Body of a 200 answer.
#[derive(Deserialize)]
struct ExecResponse {
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(rename = "exitCode")]
    exit_code: i32,
}

/// A gt-proxy-server client.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTransport {
    endpoint: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_output: usize,
}

impl ProxyTransport {
    /// Checks the URL and loads the PEM files now, so that a bad configuration fails at
    /// start-up with a clear message.
    pub(crate) fn new(
        url: &str,
        client_cert: &Path,
        client_key: &Path,
        ca: &Path,
        max_output: usize,
    ) -> Result<Self, Error> {
        let endpoint = exec_endpoint(url)?;
        let tls = client_tls_config(client_cert, client_key, ca)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ProxyTransport {
            endpoint,
            client,
            max_output,
        })
    }

    pub(crate) async fn run(&self, command: &CommandLine, timeout: Duration) -> Result<Output, Error> {
        let argv = command.argv();
        let body = serde_json::to_vec(&ExecRequest { argv: &argv })
            .map_err(|e| self.transport(command, format!("encoding the request: {e}")))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.transport(command, format!("building the request: {e}")))?;
        // JSON escaping can double the size of stdout; stderr is capped separately.
        let limit = self.max_output.saturating_mul(2).saturating_add(2 * STDERR_CAP + 4096);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.classify(command, &e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Error::parse(command, format!("gt-proxy-server reply is larger than {limit} bytes"))
                } else {
                    self.classify(command, e.as_ref())
                }
            })?;
            Ok::<_, Error>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                command: Box::new(command.clone()),
                after: timeout,
            })??;
        if status != StatusCode::OK {
            return Err(Error::HttpStatus {
                command: Box::new(command.clone()),
                status: status.as_u16(),
                body: excerpt(String::from_utf8_lossy(&body).trim(), 500),
            });
        }
        let reply: ExecResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::parse(command, format!("gt-proxy-server reply is not the /v1/exec JSON: {e}")))?;
        let (stdout, stdout_truncated) = cut(reply.stdout, self.max_output);
        let (stderr, _) = cut(reply.stderr, STDERR_CAP);
        Ok(Output {
            exit_code: Some(reply.exit_code),
            stdout,
            stderr,
            stdout_truncated,
        })
    }

    fn transport(&self, command: &CommandLine, message: String) -> Error {
        Error::Transport {
            command: Box::new(command.clone()),
            message: format!("POST {}: {message}", self.endpoint),
        }
    }

    /// TLS failures (untrusted server, refused client certificate) are configuration problems
    /// and not retried; everything else on the wire is a transient transport error. What
    /// matters for a `bd create` is whether gt-proxy-server can have run the command:
    /// - no connection could be made (hyper's connect phase, TLS handshake included): the
    ///   request was never sent ([`Error::Connect`], or [`Error::Tls`]);
    /// - the server refused our certificate: with TLS 1.3 the client finishes its side of the
    ///   handshake and sends the request before the server's alert arrives, but the server
    ///   never read it ([`Error::Tls`]);
    /// - anything else after connecting: the request may have been read and the command run
    ///   ([`Error::Transport`], outcome unknown).
    fn classify(&self, command: &CommandLine, err: &(dyn StdError + 'static)) -> Error {
        let message = format!("POST {}: {}", self.endpoint, error_chain(err));
        let command = Box::new(command.clone());
        let connecting = is_connect_error(err);
        match find_rustls_error(err) {
            Some(tls) if connecting || is_handshake_refusal(tls) => Error::Tls { command, message },
            _ if connecting => Error::Connect { command, message },
            _ => Error::Transport { command, message },
        }
    }
}

/// Whether hyper failed while connecting (TCP connect or TLS handshake): the request was not
/// sent.
fn is_connect_error(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(client) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            return client.is_connect();
        }
        current = next_in_chain(e);
    }
    false
}

/// A TLS error by which a peer refuses the session during the handshake (a certificate it does
/// not accept, an alert): no request was read on that session.
fn is_handshake_refusal(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::AlertReceived(_)
            | rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::PeerIncompatible(_)
    )
}

/// Keeps at most `max` bytes (on a character boundary).
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// The next error in a chain. `io::Error::source()` skips the error it wraps, which is where
/// rustls puts its `rustls::Error`, so look inside.
fn next_in_chain<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        return Some(inner);
    }
    err.source()
}

fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        current = next_in_chain(e);
    }
    None
}

/// "outer: inner: root", skipping messages that only repeat the previous one.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        current = next_in_chain(e);
    }
    parts.join(": ")
}

/// `{url}/v1/exec`; refuses anything but `https://` and URLs with credentials, queries or
/// fragments.
pub(crate) fn exec_endpoint(url: &str) -> Result<Uri, Error> {
    let url = url.trim();
    if url.contains('@') {
        // Do not echo the URL: it may carry a password.
        return Err(Error::config(
            "the gt-proxy-server URL must not contain credentials (user@host); the proxy authenticates by client certificate",
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::config(format!("gt-proxy-server URL {url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => {
            return Err(Error::config(format!(
                "refusing plain-HTTP gt-proxy-server URL {url:?}: gt-proxy-server speaks mutual TLS, use https://"
            )));
        }
        _ => {
            return Err(Error::config(format!(
                "gt-proxy-server URL {url:?} must start with https://"
            )));
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| Error::config(format!("gt-proxy-server URL {url:?} has no host")))?;
    if uri.query().is_some() || url.contains('#') {
        return Err(Error::config(format!(
            "gt-proxy-server URL {url:?} must not have a query or fragment: give the base URL, e.g. https://gastown.example:9876"
        )));
    }
    let base = uri.path().trim_end_matches('/');
    format!("https://{authority}{base}/v1/exec")
        .parse()
        .map_err(|e| Error::config(format!("gt-proxy-server URL {url:?} is not usable: {e}")))
}

/// A rustls client configuration: trust only `ca`, present `cert` + `key`.
pub(crate) fn client_tls_config(cert: &Path, key: &Path, ca: &Path) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in read_certs(ca, "CA")? {
        roots
            .add(der)
            .map_err(|e| Error::config(format!("CA file {}: unusable certificate: {e}", ca.display())))?;
    }
    let chain = read_certs(cert, "client certificate")?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::config(format!(
            "client key file {}: {}",
            key.display(),
            describe_pem_error(&e, "private key")
        ))
    })?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private_key)
        .map_err(|e| {
            Error::config(format!(
                "client certificate {} and key {} are not a usable pair: {e}",
                cert.display(),
                key.display()
            ))
        })
}

/// All certificates of a PEM file; at least one.
pub(crate) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |e: pem::Error| {
        Error::config(format!(
            "{what} file {}: {}",
            path.display(),
            describe_pem_error(&e, "certificate")
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "{what} file {}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// A PEM error in words that never quote the file's contents.
fn describe_pem_error(err: &pem::Error, item: &str) -> String {
    match err {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        pem::Error::NoItemsFound => format!("no PEM {item} found"),
        _ => format!("not a valid PEM {item}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        let ok = |u: &str| exec_endpoint(u).unwrap().to_string();
        assert_eq!(
            ok("https://gastown.example:9876"),
            "https://gastown.example:9876/v1/exec"
        );
        assert_eq!(
            ok("https://gastown.example:9876/"),
            "https://gastown.example:9876/v1/exec"
        );
        assert_eq!(
            ok(" https://10.0.0.1:9876/proxy/ "),
            "https://10.0.0.1:9876/proxy/v1/exec"
        );
        for bad in [
            "http://gastown.example:9876",
            "HTTP://gastown.example",
            "ftp://x",
            "gastown.example:9876",
            "https://",
            "https://h/?a=b",
            "https://h/#x",
            "",
        ] {
            let err = exec_endpoint(bad).unwrap_err();
            assert_eq!(err.metric_label(), "config", "{bad}");
        }
        let plain = exec_endpoint("http://gastown.example:9876").unwrap_err().to_string();
        assert!(plain.contains("plain-HTTP") && plain.contains("https://"), "{plain}");
        let creds = exec_endpoint("https://admin:s3cret@h:9876").unwrap_err().to_string();
        assert!(!creds.contains("s3cret"), "{creds}");
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo".to_owned(), 2), ("h".to_owned(), true));
        assert_eq!(cut("abc".to_owned(), 3), ("abc".to_owned(), false));
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, inner);
        assert!(find_rustls_error(&io).is_some());
        let chain = error_chain(&io);
        assert!(
            chain.contains("UnknownIssuer") || chain.contains("unknown issuer"),
            "{chain}"
        );
        let plain = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(find_rustls_error(&plain).is_none());
    }
}

//! The proxy transport against the fake gt-proxy-server (mutual TLS, certificates made here).

// A test crate: panicking on setup failures is the point.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gastown_controller::gastown::testing::{
    CertKeyPem, EchoHandler, ExecHandler, ExecReply, FakeProxyHandle, FakeProxyServer, StandInTown, TableHandler,
    TempDir, TestPki,
};
use gastown_controller::gastown::{BeadId, BeadStatus, Error, ExternalRef, GasTown, GasTownConfig, Transport};
use gastown_crds::MergeStrategy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn id(s: &str) -> BeadId {
    BeadId::parse(s).unwrap()
}

/// Client-side PEM files: `client.crt`, `client.key` and the trusted `ca.crt`.
struct ClientFiles(TempDir);

impl ClientFiles {
    /// `client` as our identity, trusting `trusted_ca`.
    fn new(client: &CertKeyPem, trusted_ca: &str) -> ClientFiles {
        let dir = TempDir::new("gastown-proxy-test").unwrap();
        dir.write("client.crt", &client.cert_pem).unwrap();
        dir.write("client.key", &client.key_pem).unwrap();
        dir.write("ca.crt", trusted_ca).unwrap();
        ClientFiles(dir)
    }

    fn config(&self, url: &str) -> GasTownConfig {
        let mut config = GasTownConfig::new(Transport::Proxy {
            url: url.to_owned(),
            client_cert: self.0.path().join("client.crt"),
            client_key: self.0.path().join("client.key"),
            ca: self.0.path().join("ca.crt"),
        });
        config.command_timeout = Duration::from_secs(10);
        config.retries = 0;
        config
    }

    fn client(&self, url: &str) -> GasTown {
        GasTown::new(self.config(url)).unwrap()
    }
}

/// A server and a client, both from one CA.
async fn start(handler: Arc<dyn ExecHandler>) -> (TestPki, FakeProxyHandle, ClientFiles) {
    let pki = TestPki::new("gastown test CA").unwrap();
    let server = pki.server_cert().unwrap();
    let (_, handle) = FakeProxyServer::start(pki.ca_pem(), &server.cert_pem, &server.key_pem, handler)
        .await
        .unwrap();
    let files = ClientFiles::new(&pki.client_cert("gt-operator-controller").unwrap(), pki.ca_pem());
    (pki, handle, files)
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn successful_exec_over_mutual_tls() {
    let table = TableHandler::new()
        .with(
            &["bd", "show", "--json", "--", "go-7xq"],
            ExecReply::ok(r#"[{"id":"go-7xq","status":"hooked","assignee":"gastown/polecats/Toast","extra":true}]"#),
        )
        .with(
            &["gt", "sling", "--merge=direct", "--", "go-7xq", "gastown"],
            ExecReply::ok("Slung go-7xq\n"),
        );
    let (_pki, server, files) = start(Arc::new(table)).await;
    let client = files.client(&server.url());
    assert_eq!(client.transport_kind(), "proxy");

    let bead = client.show_bead(&id("go-7xq")).await.unwrap().unwrap();
    assert_eq!(bead.status, BeadStatus::Hooked);
    assert_eq!(bead.assignee.as_deref(), Some("gastown/polecats/Toast"));
    client
        .sling(&id("go-7xq"), "gastown", Some(MergeStrategy::Direct), None)
        .await
        .unwrap();

    let seen: Vec<Vec<String>> = server.requests().into_iter().map(|r| r.argv).collect();
    assert_eq!(
        seen,
        vec![
            argv(&["bd", "show", "--json", "--", "go-7xq"]),
            argv(&["gt", "sling", "--merge=direct", "--", "go-7xq", "gastown"]),
        ]
    );
}

#[tokio::test]
async fn non_zero_exit_code_is_an_exit_error() {
    let table = TableHandler::new()
        .with(
            &["bd", "close", "-r", "done", "--", "go-7xq"],
            ExecReply::fail(1, "Error: database is locked\n"),
        )
        .with(
            &["bd", "show", "--json", "--", "go-gone"],
            ExecReply {
                stdout: "{\"error\": \"no issues found matching the provided IDs\"}\n".into(),
                stderr: "Error fetching go-gone: no issue found matching \"go-gone\"\n".into(),
                exit_code: 1,
            },
        );
    let (_pki, server, files) = start(Arc::new(table)).await;
    let client = files.client(&server.url());
    let err = client.close_bead(&id("go-7xq"), "done").await.unwrap_err();
    match &err {
        Error::Exit { code, stderr, .. } => {
            assert_eq!(*code, Some(1));
            assert_eq!(stderr, "Error: database is locked");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_unreachable());
    assert_eq!(client.show_bead(&id("go-gone")).await.unwrap(), None);
}

#[tokio::test]
async fn plain_http_is_refused_at_construction() {
    let (_pki, server, files) = start(Arc::new(EchoHandler)).await;
    let http = server.url().replace("https://", "http://");
    let err = GasTown::new(files.config(&http)).unwrap_err();
    assert_eq!(err.metric_label(), "config");
    assert!(err.to_string().contains("https://"), "{err}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused() {
    let (pki, _server, _) = start(Arc::new(EchoHandler)).await;
    // The server presents a certificate from a CA we do not trust.
    let rogue = TestPki::new("rogue CA").unwrap();
    let rogue_cert = rogue.server_cert().unwrap();
    let (_, rogue_server) = FakeProxyServer::start(
        pki.ca_pem(),
        &rogue_cert.cert_pem,
        &rogue_cert.key_pem,
        Arc::new(EchoHandler),
    )
    .await
    .unwrap();
    let files = ClientFiles::new(&pki.client_cert("gt-operator-controller").unwrap(), pki.ca_pem());
    let mut config = files.config(&rogue_server.url());
    config.retries = 2;
    let client = GasTown::new(config).unwrap();
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert_eq!(err.metric_label(), "tls");
    assert!(err.is_unreachable());
    assert!(!err.is_retryable());
    assert!(err.is_definite_failure());
    assert!(rogue_server.requests().is_empty());
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_by_the_server() {
    let (pki, server, _) = start(Arc::new(EchoHandler)).await;
    let rogue = TestPki::new("rogue CA").unwrap();
    let files = ClientFiles::new(&rogue.client_cert("gt-operator-controller").unwrap(), pki.ca_pem());
    let client = files.client(&server.url());
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert!(err.is_definite_failure(), "refused in the handshake: nothing ran");
    assert!(server.requests().is_empty());
    assert!(server.handshake_failures() >= 1);
}

#[tokio::test]
async fn server_refuses_a_client_without_certificate() {
    let (pki, server, _) = start(Arc::new(EchoHandler)).await;

    // Our client cannot even be configured without a certificate...
    let dir = TempDir::new("gastown-proxy-nocert").unwrap();
    let ca = dir.write("ca.crt", pki.ca_pem()).unwrap();
    let empty = dir.write("empty.crt", "").unwrap();
    let client = pki.client_cert("gt-operator-controller").unwrap();
    let key = dir.write("client.key", &client.key_pem).unwrap();
    let config = |cert: PathBuf, key: PathBuf| {
        GasTownConfig::new(Transport::Proxy {
            url: server.url(),
            client_cert: cert,
            client_key: key,
            ca: ca.clone(),
        })
    };
    let missing = GasTown::new(config(dir.path().join("absent.crt"), key.clone())).unwrap_err();
    assert_eq!(missing.metric_label(), "config");
    assert!(missing.to_string().contains("absent.crt"), "{missing}");
    let err = GasTown::new(config(empty.clone(), key.clone())).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    // ... nor with a key that does not belong to the certificate; key material is never shown.
    let other = pki.client_cert("gt-operator-other").unwrap();
    let other_cert = dir.write("other.crt", &other.cert_pem).unwrap();
    let mismatch = GasTown::new(config(other_cert, key.clone())).unwrap_err();
    assert_eq!(mismatch.metric_label(), "config");
    let key_body: String = client.key_pem.lines().nth(1).unwrap().to_owned();
    assert!(!mismatch.to_string().contains(&key_body));
    let bad_key = dir
        .write(
            "bad.key",
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
    let garbled = GasTown::new(config(empty, bad_key)).unwrap_err();
    assert_eq!(garbled.metric_label(), "config");

    // ... and the server refuses a TLS client that presents none.
    let mut roots = rustls::RootCertStore::empty();
    for cert in gastown_controller_certs(pki.ca_pem()) {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let addr = server.url().trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let response = async {
        let mut stream = connector.connect(name, tcp).await?;
        stream
            .write_all(b"POST /v1/exec HTTP/1.1\r\nHost: localhost\r\nContent-Length: 27\r\n\r\n{\"argv\":[\"gt\",\"status\"]}  ")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    }
    .await;
    if let Ok(answer) = &response {
        assert!(
            !answer.starts_with(b"HTTP/"),
            "the server answered a client without certificate"
        );
    }
    assert!(server.requests().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.handshake_failures() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.handshake_failures(), 1);
}

fn gastown_controller_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn command_outside_the_allow_list_is_refused_with_403_and_not_retried() {
    let (_pki, server, files) = start(Arc::new(EchoHandler)).await;
    let mut config = files.config(&server.url());
    config.retries = 2;
    let client = GasTown::new(config).unwrap();
    let err = client
        .unsling(&id("go-7xq"), Some("gastown/polecats/Toast"), true)
        .await
        .unwrap_err();
    match &err {
        Error::HttpStatus { status, body, .. } => {
            assert_eq!(*status, 403);
            assert!(body.contains("unsling"), "{body}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.requests().len(), 1);
    // The allowed alternative goes through.
    client.reopen_bead(&id("go-7xq")).await.unwrap();
}

#[tokio::test]
async fn slow_proxy_times_out() {
    let slow = |_argv: Vec<String>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        ExecReply::ok("")
    };
    let (_pki, server, files) = start(Arc::new(slow)).await;
    let mut config = files.config(&server.url());
    config.command_timeout = Duration::from_millis(300);
    let client = GasTown::new(config).unwrap();
    let started = std::time::Instant::now();
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn town_exec_handler_runs_stand_in_binaries_in_the_town() {
    let town = StandInTown::new(
        "gastown-proxy-town",
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > gt.args\nenv > gt.env\necho Slung\n",
        "#!/bin/sh\n[ -f mayor/town.json ] || { echo 'not in a town' >&2; exit 1; }\necho '[{\"id\":\"go-7xq\",\"status\":\"open\"}]'\n",
    )
    .unwrap();

    let (_pki, server, files) = start(Arc::new(town.exec_handler())).await;
    let client = files.client(&server.url());
    let bead = client.show_bead(&id("go-7xq")).await.unwrap().unwrap();
    assert_eq!(bead.status, BeadStatus::Open);
    client
        .sling(&id("go-7xq"), "gastown", None, Some("claude"))
        .await
        .unwrap();
    assert_eq!(town.read("gt.args"), "sling\n--agent\nclaude\n--\ngo-7xq\ngastown\n");
    let env = town.read("gt.env");
    assert!(
        env.lines().any(|l| l == "GT_PROXY_IDENTITY=operator/controller"),
        "{env}"
    );
    assert!(!env.contains("BD_ACTOR") && !env.contains("GT_ROLE"));
}

/// A gt-proxy-server whose `bd create` goes on after the client gave up: the create takes
/// `create_takes`, runs on regardless of the client (as a command the proxy cannot stop in
/// time), then makes bead `go-abc`; `bd list` answers with the beads made so far.
fn slow_creating_town(create_takes: Duration) -> (Arc<dyn ExecHandler>, Arc<std::sync::Mutex<Vec<String>>>) {
    let made: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let creates = made.clone();
    let handler = move |argv: Vec<String>| {
        let made = creates.clone();
        async move {
            match argv.get(1).map(String::as_str) {
                Some("create") => {
                    let work = tokio::spawn(async move {
                        tokio::time::sleep(create_takes).await;
                        made.lock().unwrap().push("go-abc".to_owned());
                    });
                    let _ = work.await;
                    ExecReply::ok("go-abc\n")
                }
                Some("list") => {
                    let beads: Vec<String> = made
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|id| format!(r#"{{"id":"{id}","status":"open","external_ref":"automaton:ns/a/u1"}}"#))
                        .collect();
                    ExecReply::ok(format!("[{}]", beads.join(",")))
                }
                _ => ExecReply::fail(2, "unexpected\n"),
            }
        }
    };
    (Arc::new(handler), made)
}

/// A `bd create` the client gave up on still runs on gt-proxy-server: a lookup before the
/// proxy's limit finds nothing and a second create makes a second bead, so the client waits.
#[tokio::test]
async fn an_unanswered_create_is_looked_for_only_once_the_proxy_can_no_longer_run_it() {
    let (handler, made) = slow_creating_town(Duration::from_millis(1500));
    let (_pki, server, files) = start(handler).await;
    let mut config = files.config(&server.url());
    config.command_timeout = Duration::from_millis(500);
    config.remote_command_limit = Duration::from_millis(2500);
    config.retries = 2;
    let client = GasTown::new(config).unwrap();
    let reference = ExternalRef::parse("automaton:ns/a/u1").unwrap();
    let started = std::time::Instant::now();
    let created = client.create_bead("Fix login", "", &reference).await.unwrap();
    assert_eq!(created.as_str(), "go-abc");
    let creates = server.requests().iter().filter(|r| r.argv[1] == "create").count();
    assert_eq!(creates, 1, "created once: {:?}", server.requests());
    assert_eq!(made.lock().unwrap().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "looked only after the limit"
    );
}

#[tokio::test]
async fn the_proxys_kill_is_not_a_definite_failure() {
    let table = TableHandler::new()
        .with(
            &["gt", "sling", "--", "go-7xq", "gastown"],
            ExecReply::fail(-1, "signal: killed\n"),
        )
        .with(
            &["bd", "close", "-r", "done", "--", "go-7xq"],
            ExecReply::fail(1, "Error: no issue found\n"),
        );
    let (_pki, server, files) = start(Arc::new(table)).await;
    let client = files.client(&server.url());
    let killed = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(killed, Error::Exit { code: Some(-1), .. }), "{killed:?}");
    assert!(
        killed.outcome_unknown(),
        "killed at the limit: it may have done its work"
    );
    let failed = client.close_bead(&id("go-7xq"), "done").await.unwrap_err();
    assert!(failed.is_definite_failure(), "ran to its end and said no");
}

#[tokio::test]
async fn no_connection_is_a_definite_connect_error() {
    let (_pki, server, files) = start(Arc::new(EchoHandler)).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = files.client(&format!("https://{closed}"));
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_definite_failure() && err.is_retryable() && err.is_unreachable());
    drop(server);
}

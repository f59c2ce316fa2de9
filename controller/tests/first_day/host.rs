//! Gas Town on the host: a fake town behind a fake gt-proxy-server (mutual TLS, certificates
//! made with the openssl CLI), reachable from pods on the docker bridge address.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use gastown_controller::gastown::testing::{FakeProxyHandle, FakeProxyServer, RecordedExec, TownExecHandler};
use gastown_tests::fake_gastown::FakeGasTown;

use crate::run;

/// The town, its proxy, the proxy's address as pods reach it, and who connected.
pub(crate) struct Host {
    pub(crate) town: FakeGasTown,
    pub(crate) proxy: FakeProxyHandle,
    pub(crate) url: String,
    pub(crate) peers: Arc<Mutex<BTreeSet<IpAddr>>>,
}

impl Host {
    /// How many `gt sling` requests for `bead` the fake gt-proxy-server received.
    pub(crate) fn slings_through_proxy(&self, bead: &str) -> usize {
        slings_in(&self.proxy.requests(), bead)
    }
}

/// How many of `requests` are a `gt sling` of `bead`.
pub(crate) fn slings_in(requests: &[RecordedExec], bead: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.argv.first().map(String::as_str) == Some("gt") && r.argv.get(1).map(String::as_str) == Some("sling")
        })
        .filter(|r| r.argv.iter().any(|a| a == bead))
        .count()
}

/// Starts the town and its proxy, with the PKI in `work`, reachable on `host_ip`.
pub(crate) async fn gastown_behind_a_proxy(work: &Path, host_ip: IpAddr) -> Host {
    make_pki(work, host_ip);
    let read = |f: &str| std::fs::read_to_string(work.join(f)).unwrap();
    let town = FakeGasTown::new().unwrap();
    let handler = TownExecHandler::new(town.town_root(), town.gt_path(), town.bd_path());
    let (proxy_local, proxy) = FakeProxyServer::start(
        &read("ca.crt"),
        &read("server.crt"),
        &read("server.key"),
        Arc::new(handler),
    )
    .await
    .unwrap();
    let (proxy_addr, peers) = forward(SocketAddr::new(host_ip, 0), proxy_local).await;
    Host {
        town,
        proxy,
        url: format!("https://{proxy_addr}"),
        peers,
    }
}

/// Accepts TCP connections on `listen` (the docker bridge) and pipes each to `target` (the
/// fake gt-proxy-server, which listens on loopback only). TLS stays end to end; the peers'
/// addresses are recorded to show who connected.
async fn forward(listen: SocketAddr, target: SocketAddr) -> (SocketAddr, Arc<Mutex<BTreeSet<IpAddr>>>) {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("listening on {listen} (the docker bridge): {e}"));
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, peer)) = listener.accept().await {
            seen.lock().unwrap_or_else(PoisonError::into_inner).insert(peer.ip());
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, peers)
}

/// A CA, a server certificate for `ip` and the controller's client certificate, made with the
/// openssl CLI as a user would, in `dir`: ca.crt, server.{crt,key}, client.{crt,key}.
fn make_pki(dir: &Path, ip: IpAddr) {
    let d = |f: &str| dir.join(f).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_crt) = (d("ca.key"), d("ca.crt"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=first-day test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run("openssl", &ca, &[]);
    for (name, cn, ext) in [
        (
            "server",
            "gt-proxy-server",
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"),
        ),
        (
            "client",
            "gt-operator-controller",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n".to_owned(),
        ),
    ] {
        let (key, csr, crt, extfile) = (
            d(&format!("{name}.key")),
            d(&format!("{name}.csr")),
            d(&format!("{name}.crt")),
            d(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext).unwrap();
        let subj = format!("/CN={cn}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        run("openssl", &req, &[]);
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
            &[],
        );
    }
}

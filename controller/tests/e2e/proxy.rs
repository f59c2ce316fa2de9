//! The proxy transport: dispatch and release through gt-proxy-server with mutual TLS.

use std::sync::Arc;

use gastown_controller::gastown::testing::{FakeProxyServer, TestPki, TownExecHandler};
use gastown_crds::Phase;
use gastown_tests::controller_process::base_args;
use kube::api::DeleteParams;

use super::*;

#[tokio::test]
async fn dispatch_and_release_through_gt_proxy_server_with_mutual_tls() {
    let env = Env::new("proxy").await;
    let pki = TestPki::new("gt-proxy-ca").unwrap();
    let server = pki.server_cert().unwrap();
    let client = pki.client_cert("gt-operator-controller").unwrap();
    let handler = Arc::new(TownExecHandler::new(
        env.town.town_root(),
        env.town.gt_path(),
        env.town.bd_path(),
    ));
    let (_addr, proxy) = FakeProxyServer::start(pki.ca_pem(), &server.cert_pem, &server.key_pem, handler)
        .await
        .unwrap();
    let dir = env.town.state_dir();
    for (name, pem) in [
        ("ca.crt", pki.ca_pem()),
        ("tls.crt", client.cert_pem.as_str()),
        ("tls.key", client.key_pem.as_str()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let mut args = base_args(env.ns.name());
    args.extend([
        "--transport".to_string(),
        "proxy".to_string(),
        "--proxy-url".to_string(),
        proxy.url(),
    ]);
    for (flag, file) in [
        ("--proxy-cert", "tls.crt"),
        ("--proxy-key", "tls.key"),
        ("--proxy-ca", "ca.crt"),
    ] {
        args.extend([flag.to_string(), dir.join(file).display().to_string()]);
    }
    let c = env.spawn("proxy-controller", &args).unwrap();
    let bead = env.dispatched("remote").await;
    assert_eq!(env.town.dispatch_count(&bead), 1);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.argv.first().map(String::as_str) == Some("gt") && r.argv.contains(&"sling".to_string()))
    );
    env.town.start_work(&bead).unwrap();
    env.wait_phase("remote", Phase::Running, T).await;
    // Deletion through the proxy: `gt unsling` is not allowed there, so the bead is reopened, then closed.
    env.api().delete("remote", &DeleteParams::default()).await.unwrap();
    env.wait_gone("remote", T).await;
    assert_eq!(env.town.bead(&bead).unwrap().unwrap()["status"], "closed");
    let log = c.log();
    for secret in [client.key_pem.as_str(), client.cert_pem.as_str()] {
        let marker = secret.lines().nth(1).unwrap();
        assert!(
            !log.contains(marker),
            "key or certificate material in the controller log"
        );
    }
    assert!(!log.contains("PRIVATE KEY"));
}

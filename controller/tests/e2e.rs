//! The controller binary against a real kube-apiserver (tests/cluster) and the fake Gas Town
//! (exec transport): claim → bead → one sling → Dispatched → Running → Succeeded; deletion
//! releases; claim expiry releases; Gas Town outages and recovery; restarts and leader
//! election never dispatch twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gastown_crds::contract::{
    CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use gastown_crds::{Automaton, ConditionStatus, Phase};
use gastown_tests::cluster::TestCluster;
use gastown_tests::controller_process::{ControllerProcess, http_get};
use gastown_tests::fake_gastown::{FakeGasTown, Faults};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

struct Env {
    cluster: TestCluster,
    ns: gastown_tests::cluster::TestNamespace,
    town: FakeGasTown,
    logs: PathBuf,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let cluster = TestCluster::start().await.unwrap();
        cluster.install_crds().await.unwrap();
        let ns = cluster.namespace(prefix).await.unwrap();
        let town = FakeGasTown::new().unwrap();
        let logs = town.state_dir();
        Env {
            cluster,
            ns,
            town,
            logs,
        }
    }

    /// A namespace whose Gas Town is down from the start, and a controller with `extra` flags.
    async fn gastown_down(prefix: &str, extra: &[&str]) -> (Env, ControllerProcess) {
        let env = Env::new(prefix).await;
        env.town.set_faults(&Faults::down()).unwrap();
        let c = env.controller("c", extra);
        (env, c)
    }

    fn api(&self) -> Api<Automaton> {
        Api::namespaced(self.cluster.client(), self.ns.name())
    }

    fn controller(&self, name: &str, extra: &[&str]) -> ControllerProcess {
        let mut args: Vec<String> = vec![
            "--namespaces".into(),
            self.ns.name().into(),
            "--town-root".into(),
            self.town.town_root().display().to_string(),
            "--gt-path".into(),
            self.town.gt_path().display().to_string(),
            "--bd-path".into(),
            self.town.bd_path().display().to_string(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--sync-interval".into(),
            "1s".into(),
            "--command-timeout".into(),
            "5s".into(),
            "--log-format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        ControllerProcess::spawn(
            std::path::Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
            &self.cluster.kubeconfig(),
            &args,
            &self.logs.join(format!("{name}.log")),
        )
        .unwrap()
    }

    /// Creates an Automaton the way the claim policy leaves it: claimed, local, rig set.
    async fn create_claimed(&self, name: &str, extra_spec: serde_json::Value) -> Automaton {
        let mut spec = json!({"task": {"title": format!("Task {name}"), "description": "do it"}, "executionMode": "local", "rig": "gastown"});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let obj: Automaton = serde_json::from_value(json!({
            "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
            "metadata": {"name": name, "labels": {CLAIMED_BY_LABEL: "gastown-local"},
                         "annotations": {CLAIMED_AT_ANNOTATION: jiff::Timestamp::now().to_string(),
                                         CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
            "spec": spec,
        }))
        .unwrap();
        self.api().create(&PostParams::default(), &obj).await.unwrap()
    }

    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Automaton) -> bool,
    ) -> Automaton {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(a)) = self.api().get_opt(name).await {
                if pred(&a) {
                    return a;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{name}: timed out waiting for {what}; status: {}",
                        serde_json::to_string_pretty(&a.status).unwrap()
                    );
                }
            } else if Instant::now() > deadline {
                panic!("{name}: timed out waiting for {what}; object missing");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_phase(&self, name: &str, phase: Phase, timeout: Duration) -> Automaton {
        self.wait_for(name, phase.as_str(), timeout, |a| a.phase() == Some(phase))
            .await
    }

    async fn wait_unreachable(&self, name: &str) -> Automaton {
        self.wait_for(name, "GasTownReachable=False", T, |a| {
            condition(a, "GasTownReachable") == Some(ConditionStatus::False)
        })
        .await
    }

    async fn wait_gone(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.api().get_opt(name).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{name} was not deleted within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn bead_of(a: &Automaton) -> String {
    a.status
        .as_ref()
        .and_then(|s| s.gastown.as_ref())
        .and_then(|g| g.bead_id.clone())
        .expect("bead recorded")
}

fn condition(a: &Automaton, type_: &str) -> Option<ConditionStatus> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
}

const T: Duration = Duration::from_secs(30);

/// Waits until `/readyz` answers 200 (the watch has listed); `/livez` is up from the start.
fn wait_ready(c: &ControllerProcess) {
    let deadline = Instant::now() + T;
    let mut last = String::new();
    loop {
        if let Some(addr) = c.admin_addr() {
            assert_eq!(http_get(&addr, "/livez").unwrap().0, 200);
            match http_get(&addr, "/readyz") {
                Ok((200, _)) => return,
                other => last = format!("{other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within {T:?}: {last}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn claim_is_dispatched_once_and_followed_to_success() {
    let env = Env::new("flow").await;
    let c = env.controller("c", &[]);
    wait_ready(&c);
    env.create_claimed("fix-login", json!({"mergeStrategy": "mr", "agent": {"name": "claude"}}))
        .await;
    let a = env.wait_phase("fix-login", Phase::Dispatched, T).await;
    assert!(a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    let bead = bead_of(&a);
    let g = a.status.as_ref().unwrap().gastown.as_ref().unwrap();
    assert_eq!(g.bead_created, Some(true));
    assert!(g.dispatched_at.is_some());
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["title"], "Task fix-login");
    let uid = a.uid().unwrap();
    assert_eq!(
        stored["external_ref"],
        json!(format!("automaton:{}/fix-login/{uid}", env.ns.name()))
    );
    // The sling carried the spec's merge strategy and agent, options before operands.
    let slings: Vec<_> = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.is_sling_of(&bead))
        .collect();
    assert_eq!(slings.len(), 1, "exactly one gt sling: {slings:?}");
    // The first attempt knows no bead can exist yet: it creates without looking one up.
    let lookups: Vec<_> = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.tool == "bd" && c.verb() == Some("list"))
        .collect();
    assert!(lookups.is_empty(), "{lookups:?}");
    let argv = slings[0].argv.join(" ");
    assert!(
        argv.contains("--merge=mr") && argv.contains("--agent claude") && argv.ends_with(&format!("-- {bead} gastown")),
        "{argv}"
    );
    env.town.start_work(&bead).unwrap();
    let a = env.wait_phase("fix-login", Phase::Running, T).await;
    let assignee = a
        .status
        .as_ref()
        .unwrap()
        .gastown
        .as_ref()
        .unwrap()
        .assignee
        .clone()
        .unwrap();
    assert!(assignee.starts_with("gastown/polecats/"), "{assignee}");
    assert_eq!(condition(&a, "Running"), Some(ConditionStatus::True));
    env.town.close(&bead, "merged to main").unwrap();
    let a = env.wait_phase("fix-login", Phase::Succeeded, T).await;
    assert_eq!(condition(&a, "Completed"), Some(ConditionStatus::True));
    assert_eq!(a.status.as_ref().unwrap().observed_generation, a.metadata.generation);
    assert_eq!(env.town.dispatch_count(&bead), 1);
    env.api().delete("fix-login", &DeleteParams::default()).await.unwrap();
    env.wait_gone("fix-login", T).await;
    assert_eq!(env.town.beads().unwrap().len(), 1, "no extra beads");
}

#[tokio::test]
async fn closed_with_a_failure_reason_is_failed() {
    let env = Env::new("failed").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("doomed", json!({})).await;
    let bead = bead_of(&env.wait_phase("doomed", Phase::Dispatched, T).await);
    env.town.close(&bead, "failed: tests do not pass").unwrap();
    let a = env.wait_phase("doomed", Phase::Failed, T).await;
    assert_eq!(condition(&a, "Completed"), Some(ConditionStatus::False));
}

#[tokio::test]
async fn existing_bead_is_dispatched_not_created() {
    let env = Env::new("existing").await;
    let bead = env.town.create_bead("made by hand").unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("reuse", json!({"task": {"title": "reuse it", "beadId": bead}}))
        .await;
    let a = env.wait_phase("reuse", Phase::Dispatched, T).await;
    assert_eq!(bead_of(&a), bead);
    assert_eq!(
        a.status.as_ref().unwrap().gastown.as_ref().unwrap().bead_created,
        Some(false)
    );
    assert_eq!(env.town.beads().unwrap().len(), 1);
    // Deleting does not close a bead the controller did not create, but gives the work back.
    env.api().delete("reuse", &DeleteParams::default()).await.unwrap();
    env.wait_gone("reuse", T).await;
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "open");
}

#[tokio::test]
async fn deletion_releases_the_work_in_gastown() {
    let env = Env::new("delete").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("stop-me", json!({})).await;
    let bead = bead_of(&env.wait_phase("stop-me", Phase::Dispatched, T).await);
    env.town.start_work(&bead).unwrap();
    env.wait_phase("stop-me", Phase::Running, T).await;
    env.api().delete("stop-me", &DeleteParams::default()).await.unwrap();
    env.wait_gone("stop-me", T).await;
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "closed", "{stored}");
    assert!(stored["close_reason"].as_str().unwrap().contains("deleted"));
    let unslings = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.tool == "gt" && c.verb() == Some("unsling"))
        .count();
    assert_eq!(unslings, 1);
}

/// `bd create` fails outright every time (and the lookup that follows it finds nothing), so the
/// status says no bead exists and the release does not wait for Gas Town (it would otherwise be
/// retried for the 600 s release timeout).
#[tokio::test]
async fn claim_expires_when_gastown_never_takes_it() {
    let env = Env::new("expiry").await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd create"])).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "3s"]);
    env.create_claimed("orphan", json!({})).await;
    let a = env
        .wait_for("orphan", "release", T, |a| {
            a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
        })
        .await;
    assert_eq!(a.spec.execution_mode, gastown_crds::ExecutionMode::Kubernetes);
    assert!(!a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    let annotations = a.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(CLAIMED_AT_ANNOTATION));
    assert_eq!(condition(&a, "Released"), Some(ConditionStatus::True));
    assert_eq!(a.spec.task.title, "Task orphan", "nothing of the work is lost");
}

#[tokio::test]
async fn gastown_outage_is_reported_and_recovers_without_restart() {
    let (env, _c) = Env::gastown_down("outage", &[]).await;
    env.create_claimed("patient", json!({})).await;
    let a = env.wait_unreachable("patient").await;
    assert_ne!(a.phase(), Some(Phase::Dispatched));
    env.town.clear_faults();
    let a = env
        .wait_phase("patient", Phase::Dispatched, Duration::from_secs(60))
        .await;
    assert_eq!(condition(&a, "GasTownReachable"), Some(ConditionStatus::True));
    assert_eq!(env.town.beads().unwrap().len(), 1);
}

/// `bd create` failed outright (and the lookup after it found nothing), so no bead exists:
/// deleting the claim while Gas Town is down does not wait for it (it would otherwise wait for
/// the 600 s release timeout).
#[tokio::test]
async fn deleting_a_claim_gastown_never_took_does_not_wait_for_gastown() {
    let env = Env::new("delete-down").await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd create"])).unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("never", json!({})).await;
    env.wait_for("never", "beadCreated: false", T, |a| {
        a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .and_then(|g| g.bead_created)
            == Some(false)
    })
    .await;
    env.town.set_faults(&Faults::down()).unwrap();
    env.api().delete("never", &DeleteParams::default()).await.unwrap();
    env.wait_gone("never", T).await;
    assert!(env.town.beads().unwrap().is_empty());
}

/// While Gas Town is down, each failed attempt changes the status, and the watch event of that
/// write must not start the next attempt before the backoff is due (it used to: hundreds of
/// `bd create` calls a second).
#[tokio::test]
async fn gastown_down_is_retried_with_backoff_not_at_once() {
    let (env, _c) = Env::gastown_down("backoff", &[]).await;
    env.create_claimed("patient", json!({})).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Backoff 1 s, 2 s, 4 s (±25 %): at most four attempts in 6 s, each at most a `bd create`
    // and the lookup that follows it.
    let calls = env.town.calls().unwrap();
    assert!(!calls.is_empty(), "Gas Town was never asked");
    assert!(calls.len() <= 8, "{} calls in 6 s: {calls:?}", calls.len());
}

#[tokio::test]
async fn restart_in_the_middle_does_not_dispatch_twice() {
    let env = Env::new("restart").await;
    // Slow slings so the kill lands while one is in flight.
    env.town
        .set_faults(&Faults::default().delay_ms(1500).verbs(["sling"]))
        .unwrap();
    let mut c = env.controller("c1", &[]);
    for i in 0..5 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    env.wait_for("job-0", "bead recorded", T, |a| {
        a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .is_some_and(|g| g.bead_id.is_some())
    })
    .await;
    c.kill();
    let _c2 = env.controller("c2", &[]);
    for i in 0..5 {
        let a = env
            .wait_phase(&format!("job-{i}"), Phase::Dispatched, Duration::from_secs(60))
            .await;
        assert_eq!(
            env.town.dispatch_count(&bead_of(&a)),
            1,
            "job-{i} dispatched more than once"
        );
    }
    assert_eq!(env.town.beads().unwrap().len(), 5, "one bead per Automaton");
}

/// A crash between `bd create` and recording the bead leaves an object with our finalizer and
/// no bead in its status. The next attempt must find that bead by its external ref and dispatch
/// it, not create a second one.
#[tokio::test]
async fn a_bead_created_but_never_recorded_is_found_not_created_again() {
    let env = Env::new("unrecorded").await;
    let mut obj = env.create_claimed("orphan", json!({})).await;
    obj.metadata.finalizers = Some(vec![RELEASE_FINALIZER.to_string()]);
    let obj = env.api().replace("orphan", &PostParams::default(), &obj).await.unwrap();
    let external = format!("automaton:{}/orphan/{}", env.ns.name(), obj.uid().unwrap());
    // As the controller's `bd create` made it: with the labels its lookup filters on.
    let labels = format!(
        "gastown-operator,{}",
        gastown_controller::gastown::ExternalRef::parse(&external)
            .unwrap()
            .lookup_label()
    );
    let out = env
        .town
        .command("bd")
        .env("FAKE_GASTOWN_INTERNAL", "1")
        .args([
            "create",
            "--silent",
            "--external-ref",
            &external,
            "-l",
            &labels,
            "--",
            "Task orphan",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bead = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _c = env.controller("c", &[]);
    let a = env.wait_phase("orphan", Phase::Dispatched, T).await;
    assert_eq!(bead_of(&a), bead);
    let g = a.status.as_ref().unwrap().gastown.as_ref().unwrap();
    assert_eq!(g.bead_created, Some(true), "the bead is ours: released by deleting");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
    assert_eq!(env.town.dispatch_count(&bead), 1);
}

#[tokio::test]
async fn two_replicas_with_leader_election_dispatch_once() {
    let env = Env::new("leader").await;
    let lease = [
        "--leader-election",
        "--lease-namespace",
        env.ns.name(),
        "--lease-duration",
        "3s",
    ];
    let mut a = env.controller("a", &[&lease[..], &["--identity", "replica-a"]].concat());
    let _b = env.controller("b", &[&lease[..], &["--identity", "replica-b"]].concat());
    for i in 0..4 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    for i in 0..4 {
        let o = env.wait_phase(&format!("job-{i}"), Phase::Dispatched, T).await;
        assert_eq!(env.town.dispatch_count(&bead_of(&o)), 1);
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.cluster.client(), env.ns.name());
    let holder = leases
        .get("gastown-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    // Kill whichever replica leads; the other takes over and dispatches new work once.
    if holder == "replica-a" {
        a.kill();
    } else {
        drop(_b);
    }
    for i in 4..6 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    for i in 4..6 {
        let o = env
            .wait_phase(&format!("job-{i}"), Phase::Dispatched, Duration::from_secs(60))
            .await;
        assert_eq!(env.town.dispatch_count(&bead_of(&o)), 1);
    }
    let new_holder = leases
        .get("gastown-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_ne!(new_holder, holder);
    assert_eq!(env.town.beads().unwrap().len(), 6);
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let env = Env::new("sigterm").await;
    let mut c = env.controller("c", &[]);
    env.create_claimed("one", json!({})).await;
    env.wait_phase("one", Phase::Dispatched, T).await;
    let status = c.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{}", c.log());
}

#[tokio::test]
async fn invalid_spec_is_reported_and_released_without_asking_gastown() {
    // Gas Town is down, and no bead can exist: the release must not wait for it.
    let (env, _c) = Env::gastown_down("invalid", &["--claim-timeout", "3s"]).await;
    // No rig: the policy would have filled it in; the controller says what is missing.
    let obj: Automaton = serde_json::from_value(json!({
        "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
        "metadata": {"name": "norig", "labels": {CLAIMED_BY_LABEL: "gastown-local"}},
        "spec": {"task": {"title": "x"}, "executionMode": "local"},
    }))
    .unwrap();
    env.api().create(&PostParams::default(), &obj).await.unwrap();
    let a = env
        .wait_for("norig", "InvalidSpec", T, |a| {
            condition(a, "Claimed") == Some(ConditionStatus::False)
        })
        .await;
    assert!(a.status.unwrap().message.unwrap().contains("spec.rig"));
    let a = env
        .wait_for("norig", "release", T, |a| {
            a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
        })
        .await;
    assert!(!a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    assert!(env.town.calls().unwrap().is_empty(), "nothing reaches Gas Town");
}

#[tokio::test]
async fn dispatch_and_release_through_gt_proxy_server_with_mutual_tls() {
    use gastown_controller::gastown::testing::{FakeProxyServer, TestPki, TownExecHandler};
    let env = Env::new("proxy").await;
    let pki = TestPki::new("gt-proxy-ca").unwrap();
    let server = pki.server_cert().unwrap();
    let client = pki.client_cert("gt-operator-controller").unwrap();
    let handler = std::sync::Arc::new(TownExecHandler::new(
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
    let args: Vec<String> = vec![
        "--namespaces".into(),
        env.ns.name().into(),
        "--transport".into(),
        "proxy".into(),
        "--proxy-url".into(),
        proxy.url(),
        "--proxy-cert".into(),
        dir.join("tls.crt").display().to_string(),
        "--proxy-key".into(),
        dir.join("tls.key").display().to_string(),
        "--proxy-ca".into(),
        dir.join("ca.crt").display().to_string(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
        "--sync-interval".into(),
        "1s".into(),
        "--log-format".into(),
        "json".into(),
    ];
    let c = ControllerProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
        &env.cluster.kubeconfig(),
        &args,
        &dir.join("proxy-controller.log"),
    )
    .unwrap();
    env.create_claimed("remote", json!({})).await;
    let bead = bead_of(&env.wait_phase("remote", Phase::Dispatched, T).await);
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

/// Status is written with server-side apply carrying the resourceVersion the controller read:
/// the API server must refuse it when the object has moved on (a stale cache), or a stale
/// reconcile could record a second bead over the first. This checks that assumption on the
/// real server.
#[tokio::test]
async fn status_apply_with_a_stale_resource_version_conflicts() {
    use kube::api::{Patch, PatchParams};
    let env = Env::new("ssa-rv").await;
    let created = env.create_claimed("stale", json!({})).await;
    let stale_rv = created.resource_version().unwrap();
    let params = PatchParams::apply(gastown_crds::contract::FIELD_MANAGER).force();
    let apply = |rv: &str, message: &str| {
        json!({"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
               "metadata": {"resourceVersion": rv},
               "status": {"phase": "Claimed", "message": message}})
    };
    let moved = env
        .api()
        .patch_status("stale", &params, &Patch::Apply(&apply(&stale_rv, "first")))
        .await
        .unwrap();
    assert_ne!(moved.resource_version().unwrap(), stale_rv);
    let err = env
        .api()
        .patch_status("stale", &params, &Patch::Apply(&apply(&stale_rv, "second")))
        .await
        .unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err:?}");
    let now = env.api().get("stale").await.unwrap();
    assert_eq!(now.status.unwrap().message.as_deref(), Some("first"));
}

// ---------------------------------------------------------------------------------------------
// Exactly once and release (issue 14)
// ---------------------------------------------------------------------------------------------

/// Whether a `gt`/`bd` process of this town is running `verb` now. The fake's processes outlive
/// a controller killed with SIGKILL and finish their work afterwards, as a command already sent
/// to gt-proxy-server does.
fn running(town: &FakeGasTown, verb: &str) -> bool {
    let tools = [
        town.gt_path().display().to_string(),
        town.bd_path().display().to_string(),
    ];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.first().is_some_and(|p| tools.contains(p)) && args.iter().any(|a| a == verb)
    })
}

async fn wait_running(town: &FakeGasTown, verb: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !running(town, verb) {
        assert!(Instant::now() < deadline, "no {verb} process within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_not_running(town: &FakeGasTown, verb: &str) {
    let deadline = Instant::now() + T;
    while running(town, verb) {
        assert!(Instant::now() < deadline, "{verb} still running after {T:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `tool args` in the town as a person or Gas Town itself would (no faults, not counted in
/// `calls()`).
fn by_hand(town: &FakeGasTown, tool: &str, args: &[&str]) {
    let out = town
        .command(tool)
        .env("FAKE_GASTOWN_INTERNAL", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Env {
    /// Moves the recorded first dispatch two minutes back, so that a `spec.timeoutSeconds` of 60
    /// (the CRD's minimum) has run out without the test waiting for it.
    async fn age_dispatch(&self, name: &str) {
        use kube::api::{Patch, PatchParams};
        let back = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 120).unwrap();
        let patch = json!({"status": {"gastown": {"dispatchedAt": back.to_string()}}});
        self.api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Like [`Env::create_claimed`], claimed at `claimed_at`.
    async fn create_claimed_at(&self, name: &str, claimed_at: jiff::Timestamp) -> Automaton {
        let obj: Automaton = serde_json::from_value(json!({
            "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
            "metadata": {"name": name, "labels": {CLAIMED_BY_LABEL: "gastown-local"},
                         "annotations": {CLAIMED_AT_ANNOTATION: claimed_at.to_string(),
                                         CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
            "spec": {"task": {"title": format!("Task {name}")}, "executionMode": "local", "rig": "gastown"},
        }))
        .unwrap();
        self.api().create(&PostParams::default(), &obj).await.unwrap()
    }
}

/// Item 2: the controller dies while `bd create` runs; the command goes on and creates the bead
/// after the new controller has looked for it and found nothing. The new controller must wait
/// (looking up only) instead of creating a second bead.
#[tokio::test]
async fn a_bd_create_cut_short_by_a_crash_is_waited_for_not_repeated() {
    let env = Env::new("create-crash").await;
    // Every call takes 4 s; the bead is created at the end of it.
    env.town.set_faults(&Faults::default().delay_ms(4000)).unwrap();
    let mut c1 = env.controller("c1", &["--create-outcome-wait", "12s"]);
    env.create_claimed("slow", json!({})).await;
    wait_running(&env.town, "create", T).await;
    c1.kill();
    env.town.clear_faults();
    let _c2 = env.controller("c2", &["--create-outcome-wait", "12s"]);
    let a = env.wait_phase("slow", Phase::Dispatched, Duration::from_secs(60)).await;
    wait_not_running(&env.town, "create").await;
    let beads = env.town.beads().unwrap();
    assert_eq!(beads.len(), 1, "one bead for one Automaton: {beads:?}");
    assert_eq!(bead_of(&a), beads[0]["id"].as_str().unwrap());
    assert_eq!(env.town.dispatch_count(&bead_of(&a)), 1);
}

/// Item 5: `spec.timeoutSeconds` runs out and the controller dies while `gt unsling` runs (the
/// command finishes after it): the bead is open again. Had the timeout not been recorded
/// first, the next controller would sling it again.
#[tokio::test]
async fn a_timeout_is_recorded_before_the_release_so_a_crash_never_reslings() {
    let env = Env::new("timeout-crash").await;
    let mut c1 = env.controller("c1", &[]);
    env.create_claimed("slowpoke", json!({"timeoutSeconds": 60})).await;
    // Hooked, not started: real `gt unsling --force` takes hooked work back (it refuses an
    // in_progress bead, which the controller then reopens with bd).
    let bead = bead_of(&env.wait_phase("slowpoke", Phase::Dispatched, T).await);
    env.town.set_faults(&Faults::default().delay_ms(3000)).unwrap();
    env.age_dispatch("slowpoke").await;
    wait_running(&env.town, "unsling", T).await;
    c1.kill();
    env.town.clear_faults();
    wait_not_running(&env.town, "unsling").await;
    assert_eq!(env.town.bead(&bead).unwrap().unwrap()["status"], "open");
    let _c2 = env.controller("c2", &[]);
    let a = env.wait_phase("slowpoke", Phase::Failed, T).await;
    env.wait_for("slowpoke", "bead closed", T, |_| {
        env.town.bead(&bead).unwrap().unwrap()["status"] == "closed"
    })
    .await;
    let closed = env.town.bead(&bead).unwrap().unwrap();
    assert!(
        closed["close_reason"].as_str().unwrap().starts_with("timeout"),
        "{closed}"
    );
    assert_eq!(env.town.dispatch_count(&bead), 1, "never slung again");
    assert_eq!(condition(&a, "Completed"), Some(ConditionStatus::False));
}

/// Item 6: the deadline holds while the bead is blocked (and the timed-out bead the controller
/// created is closed with a reason, item 5).
#[tokio::test]
async fn timeout_fires_while_the_bead_is_blocked_and_closes_our_bead() {
    let env = Env::new("timeout-blocked").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("stuck", json!({"timeoutSeconds": 60})).await;
    let bead = bead_of(&env.wait_phase("stuck", Phase::Dispatched, T).await);
    by_hand(&env.town, "bd", &["update", "--status", "blocked", "--", &bead]);
    env.wait_for("stuck", "blocked seen", T, |a| {
        a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .and_then(|g| g.bead_status.as_deref())
            == Some("blocked")
    })
    .await;
    env.age_dispatch("stuck").await;
    let a = env.wait_phase("stuck", Phase::Failed, T).await;
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .message
            .as_ref()
            .unwrap()
            .contains("timeoutSeconds")
    );
    env.wait_for("stuck", "bead closed", T, |_| {
        env.town.bead(&bead).unwrap().unwrap()["status"] == "closed"
    })
    .await;
    let closed = env.town.bead(&bead).unwrap().unwrap();
    assert!(
        closed["close_reason"].as_str().unwrap().starts_with("timeout"),
        "{closed}"
    );
    assert_eq!(env.town.dispatch_count(&bead), 1);
}

/// Item 4c: a claim already past `--claim-timeout` when the controller first sees it gets no
/// bead at all (not one created and closed at once).
#[tokio::test]
async fn a_claim_already_expired_when_first_seen_gets_no_bead() {
    let env = Env::new("expired-first").await;
    let _c = env.controller("c", &["--claim-timeout", "60s"]);
    let an_hour_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    env.create_claimed_at("late", an_hour_ago).await;
    let a = env
        .wait_for("late", "release", T, |a| {
            a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
        })
        .await;
    assert_eq!(a.spec.execution_mode, gastown_crds::ExecutionMode::Kubernetes);
    assert!(env.town.beads().unwrap().is_empty(), "no bead created");
    assert!(env.town.calls().unwrap().is_empty(), "nothing reaches Gas Town");
}

/// Item 7: the sling happened in Gas Town but the controller never saw it, then Gas Town became
/// unreachable and the claim expired. The claim must not go back to Kubernetes (which would run
/// the work a second time) before Gas Town says the bead is not hooked.
#[tokio::test]
async fn an_expired_claim_is_kept_while_gastown_cannot_say_whether_its_bead_is_hooked() {
    let env = Env::new("expiry-unreachable").await;
    let bead = env.town.create_bead("made by hand").unwrap();
    env.town.set_faults(&Faults::fail(1.0).verbs(["sling"])).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "8s"]);
    env.create_claimed("adopt", json!({"task": {"title": "adopt it", "beadId": bead}}))
        .await;
    env.wait_for("adopt", "SlingFailed", T, |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "SlingFailed"))
    })
    .await;
    // Gas Town goes down for the controller, and the bead is hooked all the same.
    env.town.set_faults(&Faults::down()).unwrap();
    by_hand(&env.town, "gt", &["sling", "--", &bead, "gastown"]);
    tokio::time::sleep(Duration::from_secs(14)).await;
    let a = env.api().get("adopt").await.unwrap();
    assert_eq!(a.claimed_by(), Some("gastown-local"), "claim kept: {:?}", a.status);
    assert_ne!(a.phase(), Some(Phase::Released));
    assert_eq!(a.spec.execution_mode, gastown_crds::ExecutionMode::Local);
    assert_eq!(condition(&a, "GasTownReachable"), Some(ConditionStatus::False));
    env.town.clear_faults();
    let a = env
        .wait_phase("adopt", Phase::Dispatched, Duration::from_secs(60))
        .await;
    assert_eq!(a.claimed_by(), Some("gastown-local"));
}

/// Item 4b: `gt unsling` refuses (as real `gt` does for a worker whose session is gone): the
/// release goes on with `bd` and the deletion completes instead of waiting for the release
/// timeout.
#[tokio::test]
async fn deletion_reopens_with_bd_when_gt_unsling_is_refused() {
    let env = Env::new("unsling-refused").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("stop-me", json!({})).await;
    let bead = bead_of(&env.wait_phase("stop-me", Phase::Dispatched, T).await);
    env.town.start_work(&bead).unwrap();
    env.wait_phase("stop-me", Phase::Running, T).await;
    env.town.set_faults(&Faults::fail(1.0).verbs(["gt unsling"])).unwrap();
    env.api().delete("stop-me", &DeleteParams::default()).await.unwrap();
    env.wait_gone("stop-me", T).await;
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "closed", "{stored}");
    assert!(stored["close_reason"].as_str().unwrap().contains("deleted"));
    let calls = env.town.calls().unwrap();
    assert!(calls.iter().any(|c| c.tool == "gt" && c.verb() == Some("unsling")));
    assert!(
        calls.iter().any(|c| c.tool == "bd" && c.verb() == Some("update")),
        "reopened with bd: {calls:?}"
    );
}

/// Item 4b: the worker's tmux session is gone, so real `gt unsling <bead> <worker>` cannot
/// resolve the worker: the bead is reopened with `bd` and (ours) closed; it is never left hooked
/// to a dead worker, and the deletion does not wait for the release timeout.
#[tokio::test]
async fn deletion_of_work_whose_worker_session_is_gone_still_releases_the_bead() {
    let env = Env::new("session-gone").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("orphaned", json!({})).await;
    let a = env.wait_phase("orphaned", Phase::Dispatched, T).await;
    let bead = bead_of(&a);
    let worker = a.status.unwrap().gastown.unwrap().assignee.unwrap();
    env.town.end_session(&worker).unwrap();
    env.api().delete("orphaned", &DeleteParams::default()).await.unwrap();
    env.wait_gone("orphaned", T).await;
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "closed", "{stored}");
    assert!(stored["close_reason"].as_str().unwrap().contains("deleted"), "{stored}");
    let calls = env.town.calls().unwrap();
    let unsling = calls
        .iter()
        .find(|c| c.tool == "gt" && c.verb() == Some("unsling"))
        .expect("gt unsling tried first");
    assert_ne!(
        unsling.exit_code, 0,
        "real gt refuses a worker without session: {unsling:?}"
    );
    assert!(
        unsling.argv.iter().any(|a| a == "--force") && unsling.argv.contains(&worker),
        "{unsling:?}"
    );
}

/// Item 9: with `mergeStrategy: local` the polecat's `gt done` closes the bead as in every other
/// mode (gastown `internal/cmd/done.go`), so the claim ends Succeeded, also with a timeout set.
#[tokio::test]
async fn local_merge_work_completes_when_gt_done_closes_the_bead() {
    use gastown_tests::fake_gastown::{AutoProgress, Config};
    let env = Env::new("local-merge").await;
    env.town
        .set_config(&Config {
            auto_progress: Some(AutoProgress {
                start_after_ms: 200,
                close_after_ms: Some(1000),
                close_reason: None,
                close_rigs: None,
            }),
            ..Config::default()
        })
        .unwrap();
    let _c = env.controller("c", &[]);
    env.create_claimed("local", json!({"mergeStrategy": "local", "timeoutSeconds": 60}))
        .await;
    let a = env.wait_phase("local", Phase::Succeeded, T).await;
    let bead = bead_of(&a);
    assert_eq!(env.town.bead(&bead).unwrap().unwrap()["close_reason"], "Closed");
    let slings: Vec<_> = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.is_sling_of(&bead))
        .collect();
    assert!(slings[0].argv.iter().any(|a| a == "--merge=local"), "{slings:?}");
}

/// Item 7: an earlier controller created the bead and slung it, then died before recording
/// either (the object has our finalizer, no bead in its status); Gas Town was unreachable while
/// the claim expired. The worker's tmux session is gone, so `gt unsling` is refused (as real
/// `gt` refuses, see `deletion_of_work_whose_worker_session_is_gone_still_releases_the_bead`),
/// and `bd update` fails too: the claim is kept, saying why, and the bead stays hooked and is
/// never slung again. Once `bd update` works the release completes and the claim goes back.
#[tokio::test]
async fn an_expired_claim_is_kept_while_its_unrecorded_hooked_bead_cannot_be_taken_back() {
    let env = Env::new("expiry-held").await;
    // Past `--claim-timeout` (60 s) but well within `--release-timeout` (the default 10 min),
    // so nothing here is given back because the release gave up.
    let two_minutes_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(120))
        .unwrap();
    let mut obj = env.create_claimed_at("held", two_minutes_ago).await;
    obj.metadata.finalizers = Some(vec![RELEASE_FINALIZER.to_string()]);
    let obj = env.api().replace("held", &PostParams::default(), &obj).await.unwrap();
    let external = format!("automaton:{}/held/{}", env.ns.name(), obj.uid().unwrap());
    let bead = env.town.create_bead_with_external_ref("Task held", &external).unwrap();
    by_hand(&env.town, "gt", &["sling", "--", &bead, "gastown"]);
    let hooked = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(hooked["status"], "hooked", "{hooked}");
    let worker = hooked["assignee"].as_str().unwrap().to_string();
    env.town.end_session(&worker).unwrap();

    // Gas Town unreachable: the lookup fails, the claim is past its timeout.
    env.town.set_faults(&Faults::down()).unwrap();
    let _c = env.controller("c", &["--claim-timeout", "60s"]);
    env.wait_for("held", "Released recorded", T, |a| a.phase() == Some(Phase::Released))
        .await;
    // Gas Town answers again, but `bd update` fails.
    env.town.set_faults(&Faults::fail(1.0).verbs(["bd update"])).unwrap();
    let a = env
        .wait_for(
            "held",
            "Released=False (WorkerHoldsBead), or the claim given back",
            T,
            |a| {
                a.claimed_by().is_none()
                    || released_condition(a)
                        .is_some_and(|c| c.status == ConditionStatus::False && c.reason == "WorkerHoldsBead")
            },
        )
        .await;
    assert_eq!(
        a.claimed_by(),
        Some("gastown-local"),
        "claim given back while a worker holds its bead: {:?}; bead: {}",
        a.status,
        env.town.bead(&bead).unwrap().unwrap()
    );
    let c = released_condition(&a).unwrap();
    assert!(
        c.message.contains(&bead) && c.message.contains(&worker),
        "the condition says which bead and worker: {c:?}"
    );
    // The controller tried both ways of taking the bead back, and both failed.
    let calls = env.town.calls().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c.tool == "gt" && c.verb() == Some("unsling") && c.exit_code != 0),
        "gt unsling refused: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.tool == "bd" && c.verb() == Some("update") && c.exit_code != 0),
        "bd update failed: {calls:?}"
    );
    // Kept through several more failed attempts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let a = env.api().get("held").await.unwrap();
    assert_eq!(a.claimed_by(), Some("gastown-local"), "claim kept: {:?}", a.status);
    assert!(a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    assert_eq!(a.spec.execution_mode, gastown_crds::ExecutionMode::Local);
    // `phase: Released` is the intent, recorded first (README "Claim expiry") so that no later
    // reconcile slings the bead again; the claim itself (marks, finalizer, execution mode) is
    // what stays with Gas Town until the bead is taken back.
    assert_eq!(a.phase(), Some(Phase::Released));
    let annotations = a.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key(CLAIMED_AT_ANNOTATION));
    assert_eq!(
        released_condition(&a).map(|c| (c.status, c.reason.clone())),
        Some((ConditionStatus::False, "WorkerHoldsBead".to_string())),
        "{:?}",
        a.status
    );
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "hooked", "{stored}");
    assert_eq!(stored["assignee"].as_str(), Some(worker.as_str()), "{stored}");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
    assert_eq!(env.town.sling_count(&bead), 0, "the controller never slings it");

    // `bd update` works again: the bead is reopened, closed (the controller created it) and
    // the claim given back.
    env.town.clear_faults();
    let a = env
        .wait_for("held", "claim given back", T, |a| {
            a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
        })
        .await;
    assert_eq!(a.spec.execution_mode, gastown_crds::ExecutionMode::Kubernetes);
    assert!(!a.finalizers().iter().any(|f| f == RELEASE_FINALIZER));
    let annotations = a.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(CLAIMED_AT_ANNOTATION));
    let stored = env.town.bead(&bead).unwrap().unwrap();
    assert_eq!(stored["status"], "closed", "{stored}");
    assert_eq!(
        stored["close_reason"].as_str(),
        Some(gastown_controller::decision::RELEASE_CLOSE_REASON),
        "{stored}"
    );
    let calls = env.town.calls().unwrap();
    let reopen = calls
        .iter()
        .position(|c| c.tool == "bd" && c.verb() == Some("update") && c.exit_code == 0)
        .expect("reopened with bd update");
    assert!(calls[reopen].argv.iter().any(|a| a == "open"), "{:?}", calls[reopen]);
    let close = calls
        .iter()
        .position(|c| c.tool == "bd" && c.verb() == Some("close") && c.exit_code == 0)
        .expect("closed");
    assert!(reopen < close, "reopened before closing: {calls:?}");
    let dispatches = env
        .town
        .all_calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.dispatched && c.is_sling_of(&bead))
        .count();
    assert_eq!(dispatches, 1, "dispatched once, by the earlier controller");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
}

fn released_condition(a: &Automaton) -> Option<&gastown_crds::Condition> {
    a.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Released")
}

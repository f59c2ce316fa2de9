//! Leader election against a real kube-apiserver (tests/cluster) with two controller processes
//! and the fake Gas Town (exec transport):
//! - a renew that hangs (kube-apiserver frozen with SIGSTOP) ends leadership before the lease
//!   duration is over, and after SIGCONT at most one replica leads at any moment;
//! - SIGTERM on the leader releases the Lease, and the standby takes over within a retry period
//!   or two instead of after the lease duration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, TestNamespace};
use gastown_tests::controller_process::ControllerProcess;
use gastown_tests::fake_gastown::FakeGasTown;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const LEASE: &str = "gastown-operator";
const T: Duration = Duration::from_secs(60);

struct Env {
    cluster: TestCluster,
    ns: TestNamespace,
    town: FakeGasTown,
    logs: PathBuf,
}

impl Env {
    async fn new(cluster: TestCluster, prefix: &str) -> Env {
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

    fn controller(&self, identity: &str, lease_duration: &str) -> ControllerProcess {
        let args: Vec<String> = [
            "--namespaces",
            self.ns.name(),
            "--town-root",
            &self.town.town_root().display().to_string(),
            "--gt-path",
            &self.town.gt_path().display().to_string(),
            "--bd-path",
            &self.town.bd_path().display().to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "1s",
            "--command-timeout",
            "5s",
            "--log-format",
            "json",
            "--leader-election",
            "--lease-namespace",
            self.ns.name(),
            "--lease-duration",
            lease_duration,
            "--identity",
            identity,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ControllerProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
            &self.cluster.kubeconfig(),
            &args,
            &self.logs.join(format!("{identity}.log")),
        )
        .unwrap()
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.cluster.client(), self.ns.name())
    }

    fn api(&self) -> Api<Automaton> {
        Api::namespaced(self.cluster.client(), self.ns.name())
    }

    /// (holderIdentity, renewTime in Unix milliseconds) of the Lease, if it exists.
    async fn lease(&self) -> Option<(Option<String>, i64)> {
        let lease = self.leases().get_opt(LEASE).await.unwrap()?;
        let spec = lease.spec.unwrap_or_default();
        let renew = spec.renew_time.map_or(0, |t| t.0.as_millisecond());
        Some((spec.holder_identity.filter(|h| !h.is_empty()), renew))
    }

    async fn wait_holder(&self, identity: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((Some(h), _)) = self.lease().await
                && h == identity
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{identity} did not take the Lease within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates an Automaton the way the claim policy leaves it: claimed, local, rig set.
    async fn create_claimed(&self, name: &str) {
        let obj: Automaton = serde_json::from_value(json!({
            "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
            "metadata": {"name": name, "labels": {CLAIMED_BY_LABEL: "gastown-local"},
                         "annotations": {CLAIMED_AT_ANNOTATION: jiff::Timestamp::now().to_string(),
                                         CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
            "spec": {"task": {"title": format!("Task {name}"), "description": "do it"},
                     "executionMode": "local", "rig": "gastown"},
        }))
        .unwrap();
        self.api().create(&PostParams::default(), &obj).await.unwrap();
    }

    /// Waits until `name` is Dispatched; returns its bead.
    async fn wait_dispatched(&self, name: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(a)) = self.api().get_opt(name).await
                && a.phase() == Some(Phase::Dispatched)
            {
                return a
                    .status
                    .and_then(|s| s.gastown)
                    .and_then(|g| g.bead_id)
                    .expect("a Dispatched Automaton records its bead");
            }
            assert!(Instant::now() < deadline, "{name} not Dispatched within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller's admin server answers (it reports `gastown_leader` then).
    fn wait_admin(&self, c: &ControllerProcess) {
        let deadline = Instant::now() + T;
        while c.admin_addr().is_none() {
            assert!(
                Instant::now() < deadline,
                "the controller never served /metrics:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Whether a replica may act as far as the test can tell: it runs, and it does not report
/// `gastown_leader 0`. (A replica that does not report the gauge at all counts as acting.)
fn acting(c: &mut ControllerProcess) -> bool {
    c.try_wait().is_none() && c.metric("gastown_leader") != Some(0.0)
}

/// A renew that hangs must end leadership before the lease duration is over, because a standby
/// may take over then. kube-apiserver is frozen with SIGSTOP right after the leader renewed:
/// every Lease request hangs (no error comes back). The leader must stop acting before
/// `renewTime + leaseDuration`, no Gas Town call may happen after that while nobody can hold the
/// Lease, and after SIGCONT at most one replica leads at any moment and new work is dispatched
/// exactly once.
#[tokio::test]
async fn a_hung_renew_ends_leadership_before_the_lease_expires() {
    let lease_duration = Duration::from_secs(6);
    let env = Env::new(TestCluster::start_dedicated().await.unwrap(), "leader-hung").await;
    let mut a = env.controller("replica-a", "6s");
    env.wait_holder("replica-a", T).await;
    let mut b = env.controller("replica-b", "6s");
    env.wait_admin(&a);
    env.wait_admin(&b);
    for i in 0..3 {
        env.create_claimed(&format!("job-{i}")).await;
    }
    let mut beads = Vec::new();
    for i in 0..3 {
        beads.push(env.wait_dispatched(&format!("job-{i}"), T).await);
    }
    // A syncs its work with Gas Town every second from now on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(acting(&mut a), "A leads; log:\n{}", a.log());

    // Freeze the API server right after A renewed: A's last successful renew is then known.
    let (_, before) = env.lease().await.unwrap();
    let renewed = loop {
        let (holder, renew) = env.lease().await.unwrap();
        assert_eq!(holder.as_deref(), Some("replica-a"));
        if renew != before {
            break renew;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let paused = env.cluster.pause_apiserver().unwrap();
    let lease_end = renewed + i64::try_from(lease_duration.as_millis()).unwrap();
    let resume_at = lease_end + 3000;
    let mut a_stopped_at = None;
    while now_ms() < resume_at {
        if a_stopped_at.is_none() && !acting(&mut a) {
            a_stopped_at = Some(now_ms());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let resumed_at = now_ms();
    paused.resume().unwrap();

    // Nobody may act once the lease could have passed to another replica while it was frozen
    // (only A could act then: B never saw the API server answer).
    let late: Vec<_> = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.ts_ms as i64 >= lease_end && (c.ts_ms as i64) < resumed_at)
        .collect();
    assert!(
        late.is_empty(),
        "{} Gas Town calls after the lease expired (renewTime + {lease_duration:?}) while the API \
         server was frozen, e.g. {:?}; A's log:\n{}",
        late.len(),
        late.first(),
        a.log()
    );
    let calls = env.town.calls().unwrap();
    let stopped = a_stopped_at.expect("A still acted when the API server was resumed");
    // The check above can fail: A does call Gas Town without the API server (its syncs).
    let frozen_calls = calls
        .iter()
        .filter(|c| c.ts_ms as i64 > renewed && (c.ts_ms as i64) < stopped)
        .count();
    eprintln!(
        "renewTime {renewed}; A stopped acting {} ms later ({} ms before the lease expired) after \
         {frozen_calls} Gas Town calls while the API server was frozen",
        stopped - renewed,
        lease_end - stopped
    );
    assert!(
        frozen_calls > 0,
        "A made no Gas Town call while the API server was frozen"
    );
    assert!(
        stopped < lease_end,
        "A stopped acting {} ms after its lease expired; log:\n{}",
        stopped - lease_end,
        a.log()
    );

    // After SIGCONT: at most one leader at any moment, and B takes over.
    let deadline = Instant::now() + T;
    loop {
        let a_acts = acting(&mut a);
        let b_acts = acting(&mut b);
        assert!(!(a_acts && b_acts), "A and B both lead");
        if b_acts && !a_acts {
            break;
        }
        assert!(Instant::now() < deadline, "B never took over; B's log:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    env.wait_holder("replica-b", T).await;
    // A, having lost leadership, exited non-zero to restart as a candidate.
    let status = a.try_wait().expect("A exits once it lost leadership");
    assert!(!status.success(), "A exited with {status}");
    env.create_claimed("after").await;
    let bead = env.wait_dispatched("after", T).await;
    for bead in beads.iter().chain([&bead]) {
        assert_eq!(env.town.dispatch_count(bead), 1, "{bead} dispatched once");
    }
    for _ in 0..10 {
        assert!(!(acting(&mut a) && acting(&mut b)), "A and B both lead");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM on the leader: it finishes, releases the Lease (no holder) and exits 0; the standby
/// takes over at its next attempt (retry period: 2 s with the default 15 s lease), not after
/// the lease duration. A standby's SIGTERM leaves the Lease alone.
#[tokio::test]
async fn sigterm_releases_the_lease_and_the_standby_takes_over_at_once() {
    let retry = Duration::from_secs(2);
    let env = Env::new(TestCluster::start().await.unwrap(), "leader-sigterm").await;
    let mut a = env.controller("replica-a", "15s");
    env.wait_holder("replica-a", T).await;
    let mut b = env.controller("replica-b", "15s");
    env.wait_admin(&b);
    env.create_claimed("one").await;
    let first = env.wait_dispatched("one", T).await;
    assert_eq!(env.lease().await.unwrap().0.as_deref(), Some("replica-a"));
    assert!(b.try_wait().is_none(), "B runs as a standby; log:\n{}", b.log());

    let status = a.terminate(Duration::from_secs(30)).unwrap();
    let exited = Instant::now();
    assert!(status.success(), "A exited with {status}; log:\n{}", a.log());
    let (holder, _) = env.lease().await.unwrap();
    assert_ne!(
        holder.as_deref(),
        Some("replica-a"),
        "A exited still holding the Lease; log:\n{}",
        a.log()
    );
    env.wait_holder("replica-b", 2 * retry + Duration::from_secs(1)).await;
    let took = exited.elapsed();
    assert!(took < 2 * retry + Duration::from_secs(1), "B took over after {took:?}");
    env.create_claimed("two").await;
    let second = env.wait_dispatched("two", T).await;
    assert_eq!(env.town.dispatch_count(&first), 1);
    assert_eq!(env.town.dispatch_count(&second), 1);

    // B (now the leader) on SIGTERM releases too.
    let status = b.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "B exited with {status}; log:\n{}", b.log());
    assert_eq!(env.lease().await.unwrap().0, None, "B exited still holding the Lease");
}

/// The election module itself, two identities in one process against a frozen API server,
/// checked every 10 ms: the holder's leadership ends before `renewTime + leaseDuration` although
/// its renew hangs, nobody leads while it is frozen, the two never lead at the same moment after
/// it answers again, and a release hands the Lease over within a retry period or two.
#[tokio::test]
async fn elections_never_overlap_across_a_frozen_api_server() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use gastown_controller::leader::{Election, LeaseConfig};

    let env = Env::new(TestCluster::start_dedicated().await.unwrap(), "leader-module").await;
    let cfg = |identity: &str| {
        LeaseConfig::new(
            LEASE.to_string(),
            env.ns.name().to_string(),
            identity.to_string(),
            Duration::from_secs(3),
        )
    };
    let (duration, retry) = (cfg("x").duration, cfg("x").retry);
    let a = Election::spawn(env.cluster.client(), cfg("module-a"));
    env.wait_holder("module-a", T).await;
    let b = Election::spawn(env.cluster.client(), cfg("module-b"));
    let (la, lb) = (a.leadership(), b.leadership());

    // Sample both every 10 ms: (wall-clock ms, a leads, b leads).
    let samples: Arc<Mutex<Vec<(i64, bool, bool)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done) = (Arc::clone(&samples), Arc::clone(&done));
        let (la, lb) = (la.clone(), lb.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                samples.lock().unwrap().push((now_ms(), la.is_leader(), lb.is_leader()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(la.is_leader() && !lb.is_leader());

    // Freeze right after A renewed.
    let (_, before) = env.lease().await.unwrap();
    let renewed = loop {
        let (_, renew) = env.lease().await.unwrap();
        if renew != before {
            break renew;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let paused = env.cluster.pause_apiserver().unwrap();
    let lease_end = renewed + i64::try_from(duration.as_millis()).unwrap();
    tokio::time::sleep(duration + Duration::from_secs(2)).await;
    assert!(
        !la.is_leader() && !lb.is_leader(),
        "nobody may lead while the server is frozen"
    );
    let resumed_at = now_ms();
    paused.resume().unwrap();

    // Either may lead now (A renews its own Lease as soon as the server answers, unless B got
    // it first), never both (checked by the sampler).
    let deadline = Instant::now() + T;
    while !la.is_leader() && !lb.is_leader() {
        assert!(Instant::now() < deadline, "nobody leads after the server came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (leader, standby, standby_name) = if la.is_leader() {
        (a, (b, lb.clone()), "module-b")
    } else {
        (b, (a, la.clone()), "module-a")
    };
    let leader_leadership = if standby_name == "module-b" {
        la.clone()
    } else {
        lb.clone()
    };

    // The leader releases (as on SIGTERM): the other one takes over within a retry period or two.
    let released = Instant::now();
    leader.release().await;
    assert!(!leader_leadership.is_leader());
    env.wait_holder(standby_name, 2 * retry + Duration::from_secs(1)).await;
    let deadline = Instant::now() + T;
    while !standby.1.is_leader() {
        assert!(
            Instant::now() < deadline,
            "{standby_name} holds the Lease but never leads"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = released.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    standby.0.release().await;
    assert_eq!(env.lease().await.unwrap().0, None, "{standby_name} released the Lease");
    assert!(
        took < 2 * retry + Duration::from_secs(1),
        "{standby_name} took over {took:?} after the release"
    );

    let samples = samples.lock().unwrap();
    let both: Vec<_> = samples.iter().filter(|(_, a, b)| *a && *b).collect();
    assert!(both.is_empty(), "A and B led at the same moment: {both:?}");
    let a_last = samples
        .iter()
        .filter(|(t, a, _)| *a && *t > renewed && *t < resumed_at)
        .map(|(t, ..)| *t)
        .max()
        .unwrap_or(renewed);
    assert!(
        a_last < lease_end,
        "A still led {} ms after its lease expired (renewTime {renewed}) while the server was frozen",
        a_last - lease_end
    );
}

//! Leader election against a real kube-apiserver (tests/cluster) with two controller processes
//! and the fake Gas Town (exec transport):
//! - a renew that hangs (kube-apiserver frozen with SIGSTOP) ends leadership before the lease
//!   duration is over, and after SIGCONT at most one replica leads at any moment;
//! - SIGTERM on the leader releases the Lease, and the standby takes over within a retry period
//!   or two instead of after the lease duration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gastown_controller::leader::{Election, Leadership};
use gastown_crds::Phase;
use gastown_tests::cluster::{PausedApiserver, TestCluster};
use gastown_tests::controller_env::ControllerEnv;
use gastown_tests::controller_process::ControllerProcess;
use gastown_tests::status::bead_id;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

const LEASE: &str = "gastown-operator";
const T: Duration = Duration::from_secs(60);

type Env = ControllerEnv;

/// A namespace and a town (see [`ControllerEnv`]) on `cluster`.
async fn new_env(cluster: TestCluster, prefix: &str) -> Env {
    let binary = Path::new(env!("CARGO_BIN_EXE_gastown-controller"));
    ControllerEnv::new(cluster, prefix, binary).await.unwrap()
}

fn leases(env: &Env) -> Api<Lease> {
    Api::namespaced(env.cluster.client(), env.ns.name())
}

/// (holderIdentity, renewTime in Unix milliseconds) of the Lease, if it exists.
async fn lease(env: &Env) -> Option<(Option<String>, i64)> {
    let lease = leases(env).get_opt(LEASE).await.unwrap()?;
    let spec = lease.spec.unwrap_or_default();
    let renew = spec.renew_time.map_or(0, |t| t.0.as_millisecond());
    Some((spec.holder_identity.filter(|h| !h.is_empty()), renew))
}

async fn wait_holder(env: &Env, identity: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((Some(h), _)) = lease(env).await
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

/// Waits for the holder's next renewal (checking it is `holder`, when given), then freezes
/// kube-apiserver at once, so that the holder's last successful renew is known. Returns its
/// renewTime.
async fn freeze_after_a_renewal(env: &Env, holder: Option<&str>) -> (i64, PausedApiserver) {
    let (_, before) = lease(env).await.unwrap();
    let renewed = loop {
        let (current, renew) = lease(env).await.unwrap();
        if let Some(holder) = holder {
            assert_eq!(current.as_deref(), Some(holder));
        }
        if renew != before {
            break renew;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (renewed, env.cluster.pause_apiserver().unwrap())
}

/// Creates an Automaton the way the claim policy leaves it: claimed, local, rig set.
async fn create_claimed(env: &Env, name: &str) {
    let extra = json!({"spec": {"task": {"description": "do it"}}});
    env.create_claimed_at(name, jiff::Timestamp::now(), &extra)
        .await
        .unwrap();
}

/// Waits until `name` is Dispatched; returns its bead.
async fn wait_dispatched(env: &Env, name: &str, timeout: Duration) -> String {
    let a = env
        .wait_for(name, "Dispatched", timeout, |a| a.phase() == Some(Phase::Dispatched))
        .await;
    bead_id(&a).expect("a Dispatched Automaton records its bead")
}

/// Waits until the controller's admin server answers (it reports `gastown_leader` then).
fn wait_admin(c: &ControllerProcess) {
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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
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
    let env = new_env(TestCluster::start_dedicated().await.unwrap(), "leader-hung").await;
    let (mut a, mut b, beads) = a_leads_b_stands_by_with_work_dispatched(&env).await;

    let (renewed, paused) = freeze_after_a_renewal(&env, Some("replica-a")).await;
    let lease_end = renewed + millis(lease_duration);
    let a_stopped_at = when_a_stops_acting_before(&mut a, lease_end + 3000);
    let resumed_at = now_ms();
    paused.resume().unwrap();

    no_gas_town_call_after_the_lease_ended(&env, &a, lease_end, resumed_at);
    let stopped = a_stopped_at.expect("A still acted when the API server was resumed");
    a_worked_while_frozen_and_stopped_in_time(&env, &a, renewed, stopped, lease_end);
    b_takes_over_alone_and_dispatches_once(&env, &mut a, &mut b, beads).await;
}

/// A leads with B as standby, both serving `/metrics`, and three claims are dispatched.
async fn a_leads_b_stands_by_with_work_dispatched(env: &Env) -> (ControllerProcess, ControllerProcess, Vec<String>) {
    let mut a = env.replica("replica-a", "6s").unwrap();
    wait_holder(env, "replica-a", T).await;
    let b = env.replica("replica-b", "6s").unwrap();
    wait_admin(&a);
    wait_admin(&b);
    for i in 0..3 {
        create_claimed(env, &format!("job-{i}")).await;
    }
    let mut beads = Vec::new();
    for i in 0..3 {
        beads.push(wait_dispatched(env, &format!("job-{i}"), T).await);
    }
    // A syncs its work with Gas Town every second from now on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(acting(&mut a), "A leads; log:\n{}", a.log());
    (a, b, beads)
}

/// Watches A until `until` (Unix ms); returns when it was first seen not acting.
fn when_a_stops_acting_before(a: &mut ControllerProcess, until: i64) -> Option<i64> {
    let mut stopped_at = None;
    while now_ms() < until {
        if stopped_at.is_none() && !acting(a) {
            stopped_at = Some(now_ms());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stopped_at
}

/// Nobody may act once the lease could have passed to another replica while the API server was
/// frozen (only A could act then: B never saw the API server answer).
fn no_gas_town_call_after_the_lease_ended(env: &Env, a: &ControllerProcess, lease_end: i64, resumed_at: i64) {
    let late: Vec<_> = env
        .town
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.ts_ms as i64 >= lease_end && (c.ts_ms as i64) < resumed_at)
        .collect();
    assert!(
        late.is_empty(),
        "{} Gas Town calls after the lease expired (renewTime + leaseDuration) while the API \
         server was frozen, e.g. {:?}; A's log:\n{}",
        late.len(),
        late.first(),
        a.log()
    );
}

/// A went on calling Gas Town without the API server (so the check above could fail), and
/// stopped acting before its lease ran out.
fn a_worked_while_frozen_and_stopped_in_time(
    env: &Env,
    a: &ControllerProcess,
    renewed: i64,
    stopped: i64,
    lease_end: i64,
) {
    let frozen_calls = env
        .town
        .calls()
        .unwrap()
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
}

/// After SIGCONT: at most one leader at any moment, B takes over, A exits to restart as a
/// candidate, and every claim is dispatched once.
async fn b_takes_over_alone_and_dispatches_once(
    env: &Env,
    a: &mut ControllerProcess,
    b: &mut ControllerProcess,
    beads: Vec<String>,
) {
    let deadline = Instant::now() + T;
    loop {
        let a_acts = acting(a);
        let b_acts = acting(b);
        assert!(!(a_acts && b_acts), "A and B both lead");
        if b_acts && !a_acts {
            break;
        }
        assert!(Instant::now() < deadline, "B never took over; B's log:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_holder(env, "replica-b", T).await;
    // A, having lost leadership, exited non-zero to restart as a candidate.
    let status = a.try_wait().expect("A exits once it lost leadership");
    assert!(!status.success(), "A exited with {status}");
    create_claimed(env, "after").await;
    let bead = wait_dispatched(env, "after", T).await;
    for bead in beads.iter().chain([&bead]) {
        assert_eq!(env.town.dispatch_count(bead), 1, "{bead} dispatched once");
    }
    for _ in 0..10 {
        assert!(!(acting(a) && acting(b)), "A and B both lead");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM on the leader: it finishes, releases the Lease (no holder) and exits 0; the standby
/// takes over at its next attempt (retry period: 2 s with the default 15 s lease), not after
/// the lease duration. A standby's SIGTERM leaves the Lease alone.
#[tokio::test]
async fn sigterm_releases_the_lease_and_the_standby_takes_over_at_once() {
    let retry = Duration::from_secs(2);
    let env = new_env(TestCluster::start().await.unwrap(), "leader-sigterm").await;
    let mut a = env.replica("replica-a", "15s").unwrap();
    wait_holder(&env, "replica-a", T).await;
    let mut b = env.replica("replica-b", "15s").unwrap();
    wait_admin(&b);
    create_claimed(&env, "one").await;
    let first = wait_dispatched(&env, "one", T).await;
    assert_eq!(lease(&env).await.unwrap().0.as_deref(), Some("replica-a"));
    assert!(b.try_wait().is_none(), "B runs as a standby; log:\n{}", b.log());

    let status = a.terminate(Duration::from_secs(30)).unwrap();
    let exited = Instant::now();
    assert!(status.success(), "A exited with {status}; log:\n{}", a.log());
    let (holder, _) = lease(&env).await.unwrap();
    assert_ne!(
        holder.as_deref(),
        Some("replica-a"),
        "A exited still holding the Lease; log:\n{}",
        a.log()
    );
    wait_holder(&env, "replica-b", 2 * retry + Duration::from_secs(1)).await;
    let took = exited.elapsed();
    assert!(took < 2 * retry + Duration::from_secs(1), "B took over after {took:?}");
    create_claimed(&env, "two").await;
    let second = wait_dispatched(&env, "two", T).await;
    assert_eq!(env.town.dispatch_count(&first), 1);
    assert_eq!(env.town.dispatch_count(&second), 1);

    // B (now the leader) on SIGTERM releases too.
    let status = b.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "B exited with {status}; log:\n{}", b.log());
    assert_eq!(lease(&env).await.unwrap().0, None, "B exited still holding the Lease");
}

/// Who led, sampled every 10 ms: (wall-clock ms, a leads, b leads).
type Samples = Arc<Mutex<Vec<(i64, bool, bool)>>>;

/// The election module itself, two identities in one process against a frozen API server,
/// checked every 10 ms: the holder's leadership ends before `renewTime + leaseDuration` although
/// its renew hangs, nobody leads while it is frozen, the two never lead at the same moment after
/// it answers again, and a release hands the Lease over within a retry period or two.
#[tokio::test]
async fn elections_never_overlap_across_a_frozen_api_server() {
    use gastown_controller::leader::LeaseConfig;

    let env = new_env(TestCluster::start_dedicated().await.unwrap(), "leader-module").await;
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
    wait_holder(&env, "module-a", T).await;
    let b = Election::spawn(env.cluster.client(), cfg("module-b"));
    let (la, lb) = (a.leadership(), b.leadership());
    let samples = Samples::default();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(&samples, &done, la.clone(), lb.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(la.is_leader() && !lb.is_leader());

    let (renewed, paused) = freeze_after_a_renewal(&env, None).await;
    let lease_end = renewed + millis(duration);
    tokio::time::sleep(duration + Duration::from_secs(2)).await;
    assert!(
        !la.is_leader() && !lb.is_leader(),
        "nobody may lead while the server is frozen"
    );
    let resumed_at = now_ms();
    paused.resume().unwrap();

    let elections = [(a, la, "module-a"), (b, lb, "module-b")];
    release_hands_over_within_two_retries(&env, elections, retry).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    never_both_and_a_stopped_in_time(&samples, renewed, resumed_at, lease_end);
}

/// Records who leads every 10 ms until `done`.
fn spawn_sampler(
    samples: &Samples,
    done: &Arc<AtomicBool>,
    la: Leadership,
    lb: Leadership,
) -> tokio::task::JoinHandle<()> {
    let (samples, done) = (Arc::clone(samples), Arc::clone(done));
    tokio::spawn(async move {
        while !done.load(Ordering::Relaxed) {
            samples.lock().unwrap().push((now_ms(), la.is_leader(), lb.is_leader()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Either may lead once the server answers again (A renews its own Lease at once unless B got
/// it first), never both (checked by the sampler). The leader releases (as on SIGTERM): the
/// other takes over within a retry period or two, and releases the Lease in turn.
async fn release_hands_over_within_two_retries(env: &Env, [a, b]: [(Election, Leadership, &str); 2], retry: Duration) {
    let deadline = Instant::now() + T;
    while !a.1.is_leader() && !b.1.is_leader() {
        assert!(Instant::now() < deadline, "nobody leads after the server came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (leader, standby) = if a.1.is_leader() { (a, b) } else { (b, a) };
    let standby_name = standby.2;
    let released = Instant::now();
    leader.0.release().await;
    assert!(!leader.1.is_leader());
    wait_holder(env, standby_name, 2 * retry + Duration::from_secs(1)).await;
    let deadline = Instant::now() + T;
    while !standby.1.is_leader() {
        assert!(
            Instant::now() < deadline,
            "{standby_name} holds the Lease but never leads"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = released.elapsed();
    standby.0.release().await;
    assert_eq!(lease(env).await.unwrap().0, None, "{standby_name} released the Lease");
    assert!(
        took < 2 * retry + Duration::from_secs(1),
        "{standby_name} took over {took:?} after the release"
    );
}

/// A and B never led at the same moment, and A's last lead while the server was frozen came
/// before its lease ran out.
fn never_both_and_a_stopped_in_time(samples: &Samples, renewed: i64, resumed_at: i64, lease_end: i64) {
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

//! The controller binary against a real kube-apiserver (tests/cluster) and the fake Gas Town
//! (exec transport): claim → bead → one sling → Dispatched → Running → Succeeded; deletion
//! releases; claim expiry releases; Gas Town outages and recovery; restarts and leader
//! election never dispatch twice.
//!
//! One binary, a module per topic. Condition types are spelled out, not taken from
//! `gastown_crds::contract`: the tests pin the names users see.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod crashes;
mod dispatch;
mod expiry;
mod outage;
mod proxy;
mod release;
mod timeouts;

use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use gastown_crds::{Automaton, ConditionStatus, Phase};
use gastown_tests::cluster::TestCluster;
use gastown_tests::controller_env::ControllerEnv;
use gastown_tests::controller_process::{ControllerProcess, http_get};
use gastown_tests::fake_gastown::{Call, FakeGasTown, Faults};
use gastown_tests::status::{bead_id, claim_left, condition_status};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

/// How long a step of a test may take.
const T: Duration = Duration::from_secs(30);

/// A namespace and a town on the shared test cluster (see [`ControllerEnv`]).
struct Env(ControllerEnv);

impl Deref for Env {
    type Target = ControllerEnv;

    fn deref(&self) -> &ControllerEnv {
        &self.0
    }
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let cluster = TestCluster::start().await.unwrap();
        let binary = Path::new(env!("CARGO_BIN_EXE_gastown-controller"));
        Env(ControllerEnv::new(cluster, prefix, binary).await.unwrap())
    }

    /// A namespace whose Gas Town is down from the start, and a controller with `extra` flags.
    async fn gastown_down(prefix: &str, extra: &[&str]) -> (Env, ControllerProcess) {
        let env = Env::new(prefix).await;
        env.town.set_faults(&Faults::down()).unwrap();
        let c = env.controller("c", extra);
        (env, c)
    }

    /// A controller for this namespace and town ([`ControllerEnv::args`]) with `extra` flags.
    fn controller(&self, name: &str, extra: &[&str]) -> ControllerProcess {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(name, &args).unwrap()
    }

    /// Creates an Automaton the way the claim policy leaves it: claimed now, local, rig set.
    /// Each field of `extra_spec` replaces that field of the spec as a whole.
    async fn create_claimed(&self, name: &str, extra_spec: Value) -> Automaton {
        let mut spec = json!({"task": {"title": format!("Task {name}"), "description": "do it"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(e.clone());
        }
        self.create_claimed_at(name, jiff::Timestamp::now(), &json!({"spec": spec}))
            .await
            .unwrap()
    }

    /// Creates `name` claimed and waits until it is Dispatched; returns its bead.
    async fn dispatched(&self, name: &str) -> String {
        self.create_claimed(name, json!({})).await;
        bead_of(&self.wait_phase(name, Phase::Dispatched, T).await)
    }

    /// Like [`Env::dispatched`], and a worker has started the bead: the claim is Running.
    async fn running(&self, name: &str) -> String {
        let bead = self.dispatched(name).await;
        self.town.start_work(&bead).unwrap();
        self.wait_phase(name, Phase::Running, T).await;
        bead
    }

    /// Deletes `name`, waits until it is gone, and checks that its bead (ours) was closed as
    /// deleted.
    async fn delete_and_check_closed(&self, name: &str, bead: &str) {
        self.api().delete(name, &DeleteParams::default()).await.unwrap();
        self.wait_gone(name, T).await;
        let stored = self.town.bead(bead).unwrap().unwrap();
        assert_eq!(stored["status"], "closed", "{stored}");
        assert!(stored["close_reason"].as_str().unwrap().contains("deleted"), "{stored}");
    }

    async fn wait_phase(&self, name: &str, phase: Phase, timeout: Duration) -> Automaton {
        self.wait_for(name, phase.as_str(), timeout, |a| a.phase() == Some(phase))
            .await
    }

    async fn wait_unreachable(&self, name: &str) -> Automaton {
        self.wait_for(name, "GasTownReachable=False", T, |a| {
            condition_status(a, "GasTownReachable") == Some(ConditionStatus::False)
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

    /// Waits until the claim on `name` is released and checks that nothing of it is left
    /// (execution mode, claim label and annotations, finalizer).
    async fn wait_given_back(&self, name: &str, what: &str) -> Automaton {
        let a = self
            .wait_for(name, what, T, |a| {
                a.phase() == Some(Phase::Released) && a.claimed_by().is_none()
            })
            .await;
        assert_eq!(claim_left(&a), Vec::<String>::new(), "{name} given back");
        a
    }

    /// Moves the recorded first dispatch two minutes back, so that a `spec.timeoutSeconds` of 60
    /// (the CRD's minimum) has run out without the test waiting for it.
    async fn age_dispatch(&self, name: &str) {
        let back = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 120).unwrap();
        let patch = json!({"status": {"gastown": {"dispatchedAt": back.to_string()}}});
        self.api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

/// The bead a dispatched Automaton recorded.
fn bead_of(a: &Automaton) -> String {
    bead_id(a).expect("bead recorded")
}

/// The controller's calls of `tool verb`.
fn calls_of(town: &FakeGasTown, tool: &str, verb: &str) -> Vec<Call> {
    town.calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.tool == tool && c.verb() == Some(verb))
        .collect()
}

/// The controller's `gt sling` calls of `bead`.
fn slings_of(town: &FakeGasTown, bead: &str) -> Vec<Call> {
    town.calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.is_sling_of(bead))
        .collect()
}

/// Runs `tool args` in the town as a person or Gas Town itself would (no faults, not counted in
/// `calls()`).
fn by_hand(town: &FakeGasTown, tool: &str, args: &[&str]) {
    town.by_hand(tool, args).unwrap();
}

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

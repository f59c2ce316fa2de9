//! Several Gas Towns in one cluster (issue 16), on a real API server with one fake Gas Town
//! per town: each controller (`--claimer <town>`) sees, changes and dispatches only its own
//! town's claims and elects its leader on its own Lease; with the compiled policy as the
//! admission webhook and `towns` settings, claims are routed by rig, requester and explicit
//! town, and one town's controller cannot steer another town's claim.
//!
//! One binary, a module per topic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod leases;
mod routing;
mod scoping;

use std::path::Path;
use std::time::Duration;

use gastown_controller::gastown::ExternalRef;
use gastown_crds::Automaton;
use gastown_tests::cluster::TestCluster;
use gastown_tests::controller_env::ControllerEnv;
use gastown_tests::controller_process::{ControllerProcess, http_get};
use gastown_tests::fake_gastown::FakeGasTown;
use kube::ResourceExt as _;

/// How long a step of a test may take.
const T: Duration = Duration::from_secs(45);

/// A namespace on the shared test cluster and the first town's fake Gas Town.
async fn env(prefix: &str) -> ControllerEnv {
    let cluster = TestCluster::start().await.unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gastown-controller"));
    ControllerEnv::new(cluster, prefix, binary).await.unwrap()
}

/// A controller for `claimer` against `town`, watching the env's namespace, started with
/// `kubeconfig` (admin when `None`) and `extra` flags; it logs to `<town>/.fake-gastown/`.
fn controller(
    env: &ControllerEnv,
    claimer: &str,
    town: &FakeGasTown,
    kubeconfig: Option<&Path>,
    extra: &[impl AsRef<str>],
) -> ControllerProcess {
    let mut args = env.args_for(town);
    args.extend(["--claimer", claimer].map(String::from));
    args.extend(extra.iter().map(|s| s.as_ref().to_string()));
    let kubeconfig = kubeconfig.map_or_else(|| env.cluster.kubeconfig(), Path::to_path_buf);
    env.spawn_in(town, &kubeconfig, &format!("controller-{claimer}"), &args)
        .unwrap()
}

/// The `bd create --external-ref` of an object as its controller computes it.
fn external_ref(a: &Automaton) -> String {
    let ns = a.namespace().unwrap();
    let uid = a.uid().unwrap();
    ExternalRef::for_automaton(&ns, &a.name_any(), &uid)
        .unwrap()
        .as_str()
        .to_string()
}

/// How many calls `town` got about `a` ([`FakeGasTown::calls_about`]).
fn calls_about(town: &FakeGasTown, a: &Automaton) -> usize {
    town.calls_about(&external_ref(a)).unwrap().len()
}

/// How many beads `town` holds for `a`, each checked to have been dispatched exactly once.
fn dispatched_once(town: &FakeGasTown, a: &Automaton) -> usize {
    let beads = town.beads_with_external_ref(&external_ref(a)).unwrap();
    for bead in &beads {
        let id = bead["id"].as_str().unwrap();
        assert_eq!(
            town.dispatch_count(id),
            1,
            "{}: bead {id} dispatched once",
            a.name_any()
        );
    }
    beads.len()
}

/// The sum of `gastown_active_claims` over its phases: the claims in the controller's cache.
/// `None` until the controller serves `/metrics` and has set the gauge.
fn active_claims(c: &ControllerProcess) -> Option<f64> {
    let (code, body) = http_get(&c.admin_addr()?, "/metrics").ok()?;
    let samples: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("gastown_active_claims{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse().ok())
        .collect();
    (code == 200 && !samples.is_empty()).then(|| samples.iter().sum())
}

//! One controller test's world: a namespace on the test cluster, a fresh fake Gas Town, and the
//! controller binary started against both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gastown_crds::Automaton;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

use crate::cluster::{TestCluster, TestNamespace};
use crate::controller_process::{ControllerProcess, base_args, leader_election_args};
use crate::fake_gastown::FakeGasTown;
use crate::fixtures::claimed_automaton;

/// A namespace and a town for one test, and the controller binary to run against them.
pub struct ControllerEnv {
    pub cluster: TestCluster,
    pub ns: TestNamespace,
    pub town: FakeGasTown,
    binary: PathBuf,
}

impl ControllerEnv {
    /// Installs the CRDs on `cluster` and makes a namespace named after `prefix` and a fresh
    /// town; `binary` is the `gastown-controller` to start.
    pub async fn new(cluster: TestCluster, prefix: &str, binary: &Path) -> anyhow::Result<ControllerEnv> {
        cluster.install_crds().await?;
        let ns = cluster.namespace(prefix).await?;
        let town = FakeGasTown::new()?;
        Ok(ControllerEnv {
            cluster,
            ns,
            town,
            binary: binary.to_path_buf(),
        })
    }

    /// The Automatons of this test's namespace, as admin.
    pub fn api(&self) -> Api<Automaton> {
        Api::namespaced(self.cluster.client(), self.ns.name())
    }

    /// The flags of a controller for this namespace and town: [`base_args`], the exec transport
    /// to the town, and a command timeout well inside the tests' waits.
    pub fn args(&self) -> Vec<String> {
        self.args_for(&self.town)
    }

    /// [`Self::args`] with another town (a second Gas Town in the same namespace).
    pub fn args_for(&self, town: &FakeGasTown) -> Vec<String> {
        let mut args = base_args(self.ns.name());
        args.extend(town.exec_args());
        args.extend(["--command-timeout".to_string(), "5s".to_string()]);
        args
    }

    /// Starts the controller as admin with `args`; it logs to `<town>/.fake-gastown/<name>.log`.
    pub fn spawn(&self, name: &str, args: &[String]) -> anyhow::Result<ControllerProcess> {
        self.spawn_in(&self.town, &self.cluster.kubeconfig(), name, args)
    }

    /// Starts the controller with `kubeconfig` and `args`; it logs to
    /// `<town>/.fake-gastown/<name>.log`.
    pub fn spawn_in(
        &self,
        town: &FakeGasTown,
        kubeconfig: &Path,
        name: &str,
        args: &[String],
    ) -> anyhow::Result<ControllerProcess> {
        let log = town.state_dir().join(format!("{name}.log"));
        ControllerProcess::spawn(&self.binary, kubeconfig, args, &log)
    }

    /// Starts a replica with leader election (the Lease in this namespace) and [`Self::args`];
    /// it logs as `identity`.
    pub fn replica(&self, identity: &str, lease_duration: &str) -> anyhow::Result<ControllerProcess> {
        let mut args = self.args();
        args.extend(leader_election_args(self.ns.name(), lease_duration, identity));
        self.spawn(identity, &args)
    }

    /// Creates `name` as the claim policy leaves it, claimed at `claimed_at`, with `extra`
    /// merged over it ([`claimed_automaton`]).
    pub async fn create_claimed_at(
        &self,
        name: &str,
        claimed_at: jiff::Timestamp,
        extra: &Value,
    ) -> anyhow::Result<Automaton> {
        let obj = claimed_automaton(name, claimed_at, extra)?;
        self.api()
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {name}"))
    }

    /// Polls `name` every 200 ms until `pred` holds; panics after `timeout` with its status.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Automaton) -> bool,
    ) -> Automaton {
        wait_for_automaton(&self.api(), name, what, timeout, &String::new, pred).await
    }
}

/// Polls `name` every 200 ms until `pred` holds. After `timeout` it panics with what it last
/// saw of the object and `context()` (for example the controller's log).
pub async fn wait_for_automaton(
    api: &Api<Automaton>,
    name: &str,
    what: &str,
    timeout: Duration,
    context: &dyn Fn() -> String,
    pred: impl Fn(&Automaton) -> bool,
) -> Automaton {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = api.get_opt(name).await;
        if let Ok(Some(a)) = &seen
            && pred(a)
        {
            return a.clone();
        }
        if Instant::now() > deadline {
            let last = match seen {
                Ok(Some(a)) => serde_json::to_string_pretty(&(a.metadata, a.spec, a.status)).unwrap_or_default(),
                Ok(None) => "object missing".to_string(),
                Err(err) => format!("reading it failed: {err}"),
            };
            panic!("{name}: timed out waiting for {what}; last seen: {last}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

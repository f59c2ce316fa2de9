//! The node cluster (`cluster.sh up --node`): a kube-apiserver with a node where pods really
//! run, what `cluster.sh` recorded about the node, and the `kubectl` and `helm` the node tests use.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, ensure};

use super::{OwnedCluster, SharedSlot, TestCluster};

/// Directory of a running node cluster (`cluster.sh up DIR --node`) to use for node tests.
pub const NODE_CLUSTER_DIR_ENV: &str = "GASTOWN_TEST_NODE_CLUSTER_DIR";
/// Set by `scripts/test.sh` to the reason when this machine cannot run a node (it needs root):
/// the node tests then print that they did not run, and pass.
pub const SKIP_NODE_ENV: &str = "GASTOWN_TEST_SKIP_NODE";
/// Directory holding the `helm` and `kubectl` that `scripts/setup.sh` installs (set by
/// `scripts/test.sh`; the default is the one setup.sh uses).
pub const TOOLS_BIN_ENV: &str = "GASTOWN_TOOLS_BIN";

/// The node cluster shared by all node tests of this process; never dropped either.
static SHARED_NODE: SharedSlot = Mutex::new(None);

impl TestCluster {
    /// A cluster with a node where pods run (`cluster.sh up --node`): the one whose directory
    /// is in `GASTOWN_TEST_NODE_CLUSTER_DIR`, or the node cluster shared by this test process,
    /// brought up on first use (root needed; the `--watch-pid` watcher takes it down at exit).
    /// `Ok(None)` when `GASTOWN_TEST_SKIP_NODE` is set (the reason is printed): the caller
    /// returns without testing.
    pub async fn start_node() -> anyhow::Result<Option<TestCluster>> {
        if let Some(reason) = std::env::var_os(SKIP_NODE_ENV).filter(|r| !r.is_empty()) {
            let _ = writeln!(
                std::io::stderr(),
                "gastown-tests: NOT RUN: this test needs a node cluster, and {SKIP_NODE_ENV} says: {}",
                reason.to_string_lossy()
            );
            return Ok(None);
        }
        if let Some(dir) = std::env::var_os(NODE_CLUSTER_DIR_ENV).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let cluster = TestCluster::connect(dir, None).await?;
            cluster.node().with_context(|| {
                format!(
                    "{NODE_CLUSTER_DIR_ENV}={} must name a directory made by `cluster.sh up --node`",
                    cluster.dir.display()
                )
            })?;
            return Ok(Some(cluster));
        }
        let shared = tokio::task::spawn_blocking(shared_node_cluster)
            .await
            .context("the node cluster start-up task panicked")??;
        Ok(Some(TestCluster::connect(shared.dir.clone(), Some(shared)).await?))
    }

    /// What `cluster.sh up --node` recorded about the node (an error for a cluster without one).
    pub fn node(&self) -> anyhow::Result<NodeInfo> {
        let path = self.dir.join("cluster.env");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .filter(|v| !v.is_empty())
                .with_context(|| format!("{} has no {key}", path.display()))
        };
        ensure!(
            value("NODE")? == "1",
            "the cluster in {} has no node (NODE is not 1)",
            self.dir.display()
        );
        Ok(NodeInfo {
            name: value("NODE_NAME")?,
            ip: value("NODE_IP")?,
            pod_cidr: value("NODE_CIDR")?,
            test_image: value("NODE_TEST_IMAGE")?,
            pause_image: value("PAUSE_IMAGE")?,
        })
    }
}

/// The node of a cluster started with `cluster.sh up --node` (from `DIR/cluster.env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The Node's name (`gastown-node`).
    pub name: String,
    /// Its InternalIP: the docker0 bridge's address, where the API server listens too.
    pub ip: String,
    /// The docker bridge network the pods get their addresses from.
    pub pod_cidr: String,
    /// A FROM-scratch image of Debian's busybox-static (`/bin/sh`, `httpd`, `wget`, ...; its
    /// `wget -T` crashes, wrap it in `timeout`), present in docker: use
    /// `imagePullPolicy: Never`.
    pub test_image: String,
    /// The pod sandbox image kubelet uses.
    pub pause_image: String,
}

/// The `kubectl` installed by `scripts/setup.sh` (v1.33, from `GASTOWN_TOOLS_BIN` or setup.sh's
/// default directory), else the one on PATH.
pub fn kubectl() -> PathBuf {
    tool("kubectl")
}

/// The `helm` (v4) installed by `scripts/setup.sh`, found like [`kubectl`].
pub fn helm() -> PathBuf {
    tool("helm")
}

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os(TOOLS_BIN_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            // scripts/setup.sh: ${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/bin
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|cache| cache.join("gastown-operator").join("bin"))
        });
    match dir.map(|dir| dir.join(name)) {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(name),
    }
}

/// The process-wide node cluster, brought up on first use (like the shared cluster).
fn shared_node_cluster() -> anyhow::Result<Arc<OwnedCluster>> {
    super::shared(&SHARED_NODE, true)
}

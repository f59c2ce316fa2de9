//! A real kube-apiserver (v1.20, etcd, no nodes) for tests: `tests/cluster/cluster.sh` behind a
//! guard.
//!
//! [`TestCluster::start`] reuses the cluster named by `GASTOWN_TEST_CLUSTER_DIR` (for example
//! one started with `make cluster-up`), or brings up one cluster per test process and shares it
//! between all tests of that process. The shared cluster is taken down (and its directory
//! removed) by the `cluster.sh --watch-pid` watcher when the process exits, whether the tests
//! pass, panic or the process is killed. [`TestCluster::start_dedicated`] gives a test its own
//! cluster, taken down on drop; use it for tests that disturb the server (restarts).
//!
//! Every `start*` call builds a fresh [`kube::Client`] on the calling task's runtime: each
//! `#[tokio::test]` has its own runtime, and a client must not outlive the runtime it was
//! created on.
//!
//! [`TestCluster::start_node`] gives a cluster with a node where pods really run
//! (`cluster.sh up --node`): the one named by `GASTOWN_TEST_NODE_CLUSTER_DIR` (`make test` starts
//! one for the whole suite), or one per test process. Only one node cluster runs per machine.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};
use serde::Deserialize as _;

/// Directory of an already running cluster (`cluster.sh up DIR`) to use instead of starting one.
pub const CLUSTER_DIR_ENV: &str = "GASTOWN_TEST_CLUSTER_DIR";
/// Overrides how long `cluster.sh up` may take (seconds); the first run builds kube-apiserver.
pub const UP_TIMEOUT_ENV: &str = "GASTOWN_TEST_CLUSTER_UP_TIMEOUT_SECS";
/// Field manager under which the test support applies objects (server-side apply).
pub const TEST_FIELD_MANAGER: &str = "gastown-tests";
/// The user whose credentials are stored as `users/gastown-operator.*`.
pub const OPERATOR_USER: &str = "system:serviceaccount:gastown-system:gastown-operator";
/// Directory of a running node cluster (`cluster.sh up DIR --node`) to use for node tests.
pub const NODE_CLUSTER_DIR_ENV: &str = "GASTOWN_TEST_NODE_CLUSTER_DIR";
/// Set by `scripts/test.sh` to the reason when this machine cannot run a node (it needs root):
/// the node tests then print that they did not run, and pass.
pub const SKIP_NODE_ENV: &str = "GASTOWN_TEST_SKIP_NODE";
/// Directory holding the `helm` and `kubectl` that `scripts/setup.sh` installs (set by
/// `scripts/test.sh`; the default is the one setup.sh uses).
pub const TOOLS_BIN_ENV: &str = "GASTOWN_TOOLS_BIN";

/// The first `up` on a machine builds kube-apiserver from source (about 6-10 minutes).
const DEFAULT_UP_TIMEOUT: Duration = Duration::from_secs(45 * 60);
const DOWN_TIMEOUT: Duration = Duration::from_secs(60);
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
const NAMESPACE_DELETE_TIMEOUT: Duration = Duration::from_secs(10);

const CLUSTER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/cluster.sh");
const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/automaton.yaml");

/// The cluster shared by all tests of this process; never dropped (the watcher cleans up).
static SHARED: Mutex<Option<Result<Arc<OwnedCluster>, String>>> = Mutex::new(None);
/// The node cluster shared by all node tests of this process, likewise.
static SHARED_NODE: Mutex<Option<Result<Arc<OwnedCluster>, String>>> = Mutex::new(None);
static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A cluster directory this process brought up: `cluster.sh down` and removal on drop.
#[derive(Debug)]
struct OwnedCluster {
    dir: PathBuf,
}

impl OwnedCluster {
    /// Runs `cluster.sh up` in a new temporary directory (blocking).
    fn bring_up() -> anyhow::Result<OwnedCluster> {
        OwnedCluster::bring_up_with(false)
    }

    /// Runs `cluster.sh up` (with `--node` when `node`) in a new temporary directory (blocking).
    fn bring_up_with(node: bool) -> anyhow::Result<OwnedCluster> {
        let kind = if node { "node-cluster" } else { "cluster" };
        let dir = std::env::temp_dir().join(format!("gastown-test-{kind}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating cluster directory {}", dir.display()))?;
        // From here on the guard removes the directory even if `up` fails.
        let cluster = OwnedCluster { dir };
        let timeout = up_timeout()?;
        // Straight to stderr (not captured by the test harness): the first run is slow.
        let _ = writeln!(
            std::io::stderr(),
            "gastown-tests: starting a kube-apiserver{} in {} (if it is not cached yet, it is \
             built first: about 6-10 minutes{})",
            if node { " and a node" } else { "" },
            cluster.dir.display(),
            if node { ", the node binaries 2-7 more" } else { "" }
        );
        let pid = std::process::id().to_string();
        let mut up = Command::new("bash");
        up.arg(CLUSTER_SH)
            .arg("up")
            .arg(&cluster.dir)
            .args(["--watch-pid", &pid, "--remove-dir"]);
        if node {
            up.arg("--node");
        }
        let status = run_with_timeout(up, timeout, true)?;
        ensure!(
            status.success(),
            "`{CLUSTER_SH} up {}` failed ({status}); its output is above, logs are in {}/logs",
            cluster.dir.display(),
            cluster.dir.display()
        );
        Ok(cluster)
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        let mut down = Command::new("bash");
        down.arg(CLUSTER_SH).arg("down").arg(&self.dir);
        match run_with_timeout(down, DOWN_TIMEOUT, false) {
            Ok(status) if status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            // Keep the directory (logs) when stopping failed; the watcher retries at exit.
            Ok(status) => eprintln!("cluster.sh down {} failed: {status}", self.dir.display()),
            Err(err) => eprintln!("cluster.sh down {} failed: {err:#}", self.dir.display()),
        }
    }
}

/// A running kube-apiserver and an admin client for it.
pub struct TestCluster {
    dir: PathBuf,
    client: Client,
    _owned: Option<Arc<OwnedCluster>>,
}

impl TestCluster {
    /// Reuses the cluster whose directory is in `GASTOWN_TEST_CLUSTER_DIR` (it must contain
    /// `kubeconfig` and `users/`), or the cluster shared by this test process, bringing it up
    /// with `tests/cluster/cluster.sh` in a temporary directory on first use. The shared
    /// cluster goes down when the process exits (`--watch-pid`).
    pub async fn start() -> anyhow::Result<TestCluster> {
        if let Some(dir) = std::env::var_os(CLUSTER_DIR_ENV).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            ensure!(
                dir.join("kubeconfig").is_file() && dir.join("users").is_dir(),
                "{CLUSTER_DIR_ENV}={} must name a directory made by `cluster.sh up` \
                 (with kubeconfig and users/)",
                dir.display()
            );
            return TestCluster::connect(dir, None).await;
        }
        let shared = tokio::task::spawn_blocking(shared_cluster)
            .await
            .context("the cluster start-up task panicked")??;
        TestCluster::connect(shared.dir.clone(), Some(shared)).await
    }

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

    /// A cluster of its own for this test, taken down when the returned value is dropped
    /// (and by the watcher if the process dies first).
    pub async fn start_dedicated() -> anyhow::Result<TestCluster> {
        let owned = tokio::task::spawn_blocking(OwnedCluster::bring_up)
            .await
            .context("the cluster start-up task panicked")??;
        let owned = Arc::new(owned);
        TestCluster::connect(owned.dir.clone(), Some(owned)).await
    }

    async fn connect(dir: PathBuf, owned: Option<Arc<OwnedCluster>>) -> anyhow::Result<TestCluster> {
        let client = client_from_kubeconfig(&dir.join("kubeconfig")).await?;
        Ok(TestCluster {
            dir,
            client,
            _owned: owned,
        })
    }

    /// A client authenticated as `admin` (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client for one of the users of `cluster.sh` (`alice`, `bob`, `mallory`,
    /// `gastown-operator` or its full name `system:serviceaccount:gastown-system:gastown-operator`).
    pub async fn user_client(&self, user: &str) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.user_kubeconfig(user)).await
    }

    /// The cluster directory (`cluster.env`, `logs/`, `users/`, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The kubeconfig of a user (see [`TestCluster::user_client`] for the names).
    pub fn user_kubeconfig(&self, user: &str) -> PathBuf {
        let file = if user == OPERATOR_USER {
            "gastown-operator"
        } else {
            user
        };
        self.dir.join("users").join(format!("{file}.kubeconfig"))
    }

    /// Applies `crds/automaton.yaml` (server-side apply as `gastown-tests`) and waits until
    /// every CRD in it is Established. Idempotent and safe to call from parallel tests.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        let crds = load_crds()?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let params = PatchParams::apply(TEST_FIELD_MANAGER).force();
        for crd in crds {
            let name = crd
                .metadata
                .name
                .clone()
                .context("a CRD in crds/automaton.yaml has no metadata.name")?;
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .with_context(|| format!("applying CRD {name}"))?;
            tokio::time::timeout(
                CRD_ESTABLISHED_TIMEOUT,
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .with_context(|| format!("CRD {name} not Established after {CRD_ESTABLISHED_TIMEOUT:?}"))?
            .with_context(|| format!("waiting for CRD {name}"))?;
        }
        Ok(())
    }

    /// Creates a namespace with a unique name starting with `prefix`. Namespaces never finish
    /// deleting on a cluster without a node (no controller-manager), so names are never reused.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<TestNamespace> {
        let name = unique_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/created-by".to_string(),
                        TEST_FIELD_MANAGER.to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            kubeconfig: self.kubeconfig(),
        })
    }

    /// Stops kube-apiserver and starts it again on the same port with the etcd data kept.
    /// On the shared cluster this disturbs every test of the process: prefer
    /// [`TestCluster::start_dedicated`] for such tests.
    pub async fn restart_apiserver(&self) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let status = tokio::task::spawn_blocking(move || {
            let mut restart = Command::new("bash");
            restart.arg(CLUSTER_SH).arg("restart-apiserver").arg(&dir);
            run_with_timeout(restart, RESTART_TIMEOUT, true)
        })
        .await
        .context("the restart task panicked")??;
        ensure!(status.success(), "cluster.sh restart-apiserver failed ({status})");
        Ok(())
    }
}

impl TestCluster {
    /// The pid of this cluster's kube-apiserver, from `pids/kube-apiserver.pid` (written by
    /// `cluster.sh`), checked to be a `kube-apiserver` started for this directory.
    pub fn apiserver_pid(&self) -> anyhow::Result<u32> {
        let file = self.dir.join("pids").join("kube-apiserver.pid");
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let pid: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}, not a pid", file.display()))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .with_context(|| format!("kube-apiserver (pid {pid}) is not running"))?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let dir = format!("{}/", self.dir.display());
        ensure!(
            cmdline.contains("kube-apiserver") && cmdline.contains(&dir),
            "pid {pid} from {} is not the kube-apiserver of {}: {cmdline}",
            file.display(),
            self.dir.display()
        );
        Ok(pid)
    }

    /// Freezes kube-apiserver with SIGSTOP: its connections stay open and every request hangs,
    /// neither answered nor refused, as when the API server or the network to it hangs. The
    /// returned guard sends SIGCONT when resumed or dropped (also when the test panics). Use a
    /// dedicated cluster ([`TestCluster::start_dedicated`]): it stalls every client.
    pub fn pause_apiserver(&self) -> anyhow::Result<PausedApiserver> {
        let pid = self.apiserver_pid()?;
        signal(pid, "STOP")?;
        Ok(PausedApiserver { pid: Some(pid) })
    }
}

/// A kube-apiserver stopped with SIGSTOP; continued (SIGCONT) on [`PausedApiserver::resume`]
/// or drop.
#[derive(Debug)]
#[must_use = "dropping the guard resumes kube-apiserver at once"]
pub struct PausedApiserver {
    pid: Option<u32>,
}

impl PausedApiserver {
    /// Continues kube-apiserver (SIGCONT).
    pub fn resume(mut self) -> anyhow::Result<()> {
        match self.pid.take() {
            Some(pid) => signal(pid, "CONT"),
            None => Ok(()),
        }
    }
}

impl Drop for PausedApiserver {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take()
            && let Err(err) = signal(pid, "CONT")
        {
            eprintln!("could not resume kube-apiserver (pid {pid}): {err:#}");
        }
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .with_context(|| format!("running kill -{name} {pid}"))?;
    ensure!(status.success(), "kill -{name} {pid} failed ({status})");
    Ok(())
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

/// A namespace for one test; deleted (best effort, without waiting) on drop.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's client belongs to the test's runtime (which may be
        // a current-thread runtime blocked right here): delete from a thread with its own
        // runtime and client.
        let name = std::mem::take(&mut self.name);
        let kubeconfig = self.kubeconfig.clone();
        let deleter = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                let delete = async {
                    let client = client_from_kubeconfig(&kubeconfig).await?;
                    Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await?;
                    anyhow::Ok(())
                };
                let _ = tokio::time::timeout(NAMESPACE_DELETE_TIMEOUT, delete).await;
            });
        });
        let _ = deleter.join();
    }
}

/// Builds a client from a kubeconfig file (on the current runtime).
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    Client::try_from(config).with_context(|| format!("creating a client from {}", path.display()))
}

/// The process-wide cluster, brought up on first use (blocking; callers wait on the lock).
fn shared_cluster() -> anyhow::Result<Arc<OwnedCluster>> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    match &*shared {
        Some(Ok(cluster)) => return Ok(cluster.clone()),
        // Do not retry a failed start in every test: report the first failure.
        Some(Err(message)) => bail!("the test cluster failed to start earlier: {message}"),
        None => {}
    }
    match OwnedCluster::bring_up() {
        Ok(cluster) => {
            let cluster = Arc::new(cluster);
            // Statics are never dropped: the cluster lives as long as the process, and the
            // `--watch-pid` watcher takes it down (and removes its directory) at exit.
            *shared = Some(Ok(cluster.clone()));
            Ok(cluster)
        }
        Err(err) => {
            *shared = Some(Err(format!("{err:#}")));
            Err(err)
        }
    }
}

/// The process-wide node cluster, brought up on first use (like [`shared_cluster`]).
fn shared_node_cluster() -> anyhow::Result<Arc<OwnedCluster>> {
    let mut shared = SHARED_NODE.lock().unwrap_or_else(PoisonError::into_inner);
    match &*shared {
        Some(Ok(cluster)) => return Ok(cluster.clone()),
        Some(Err(message)) => bail!("the node test cluster failed to start earlier: {message}"),
        None => {}
    }
    match OwnedCluster::bring_up_with(true) {
        Ok(cluster) => {
            let cluster = Arc::new(cluster);
            *shared = Some(Ok(cluster.clone()));
            Ok(cluster)
        }
        Err(err) => {
            *shared = Some(Err(format!("{err:#}")));
            Err(err)
        }
    }
}

fn load_crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let path = Path::new(CRD_FILE);
    if !path.is_file() {
        // Same content by construction (the drift test keeps the file equal to the types).
        eprintln!(
            "{} is missing (generate it with `make crds`); using the CRD built from the Rust types",
            path.display()
        );
        return Ok(vec![<gastown_crds::Automaton as kube::CustomResourceExt>::crd()]);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut crds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).with_context(|| format!("parsing {}", path.display()))?;
        if value.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_value(value)
            .with_context(|| format!("{} holds something that is not a CRD", path.display()))?;
        crds.push(crd);
    }
    ensure!(!crds.is_empty(), "{} holds no CRD", path.display());
    Ok(crds)
}

/// Runs a command with a deadline: SIGTERM at the deadline, SIGKILL 10 s later.
fn run_with_timeout(mut command: Command, timeout: Duration, show_stderr: bool) -> anyhow::Result<ExitStatus> {
    command.stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(if show_stderr { Stdio::inherit() } else { Stdio::null() });
    let description = format!("{command:?}");
    let mut child = command.spawn().with_context(|| format!("starting {description}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {description}"))? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the script clean up (it stops its build steps and daemons on SIGTERM).
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let grace = Instant::now() + Duration::from_secs(10);
    while Instant::now() < grace {
        if child.try_wait()?.is_some() {
            bail!("{description} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("{description} timed out after {timeout:?} and was killed")
}

fn up_timeout() -> anyhow::Result<Duration> {
    match std::env::var(UP_TIMEOUT_ENV) {
        Ok(secs) => {
            let secs: u64 = secs
                .trim()
                .parse()
                .with_context(|| format!("{UP_TIMEOUT_ENV}={secs:?} is not a number of seconds"))?;
            Ok(Duration::from_secs(secs))
        }
        Err(_) => Ok(DEFAULT_UP_TIMEOUT),
    }
}

/// Unique within the machine: process id, a per-process counter and the clock.
fn unique_suffix() -> String {
    let count = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}-{count}-{:x}", std::process::id(), nanos & 0xfffff)
}

/// A DNS-1123 label: `prefix` reduced to [a-z0-9-] (at most 30 characters) plus a unique suffix.
pub fn unique_name(prefix: &str) -> String {
    let mut base: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(30)
        .collect();
    base = base.trim_matches('-').to_string();
    if base.is_empty() {
        base = "test".to_string();
    }
    format!("{base}-{}", unique_suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels() {
        for prefix in ["crud", "Status Subresource!", "", "---", &"x".repeat(80)] {
            let name = unique_name(prefix);
            assert!(is_dns_label(&name), "{name:?} is not a DNS label");
        }
        assert_ne!(unique_name("a"), unique_name("a"));
    }

    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }
}

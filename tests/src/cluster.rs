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

mod apiserver;
mod node;

pub use apiserver::PausedApiserver;
pub use node::{NODE_CLUSTER_DIR_ENV, NodeInfo, SKIP_NODE_ENV, TOOLS_BIN_ENV, helm, kubectl};

/// Directory of an already running cluster (`cluster.sh up DIR`) to use instead of starting one.
pub const CLUSTER_DIR_ENV: &str = "GASTOWN_TEST_CLUSTER_DIR";
/// Overrides how long `cluster.sh up` may take (seconds); the first run builds kube-apiserver.
pub const UP_TIMEOUT_ENV: &str = "GASTOWN_TEST_CLUSTER_UP_TIMEOUT_SECS";
/// Field manager under which the test support applies objects (server-side apply).
pub const TEST_FIELD_MANAGER: &str = "gastown-tests";
/// The user whose credentials are stored as `users/gastown-operator.*`.
pub const OPERATOR_USER: &str = "system:serviceaccount:gastown-system:gastown-operator";

/// The first `up` on a machine builds kube-apiserver from source (about 6-10 minutes).
const DEFAULT_UP_TIMEOUT: Duration = Duration::from_secs(45 * 60);
const DOWN_TIMEOUT: Duration = Duration::from_secs(60);
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
const NAMESPACE_DELETE_TIMEOUT: Duration = Duration::from_secs(10);

const CLUSTER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/cluster.sh");
const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/automaton.yaml");

/// A cluster shared by the tests of this process, or why it failed to start.
type SharedSlot = Mutex<Option<Result<Arc<OwnedCluster>, String>>>;

/// The cluster shared by all tests of this process; never dropped (the watcher cleans up).
static SHARED: SharedSlot = Mutex::new(None);
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

    /// A kubeconfig that acts as `user` in `groups` by impersonation (the admin may
    /// impersonate), for identities `cluster.sh` has no token for, e.g. a second town's
    /// ServiceAccount. Written under `users/` (atomically: parallel tests may ask for the same).
    pub fn impersonating_kubeconfig(&self, user: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        let mut kubeconfig = Kubeconfig::read_from(self.kubeconfig()).context("reading the admin kubeconfig")?;
        for named in &mut kubeconfig.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.impersonate = Some(user.to_string());
                auth.impersonate_groups = (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect());
            }
        }
        let file: String = format!("{user}-{}", groups.join("-"))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        let path = self.dir.join("users").join(format!("as-{file}.kubeconfig"));
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, serde_yaml::to_string(&kubeconfig)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// A client acting as `user` in `groups` ([`Self::impersonating_kubeconfig`]).
    pub async fn impersonated_client(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.impersonating_kubeconfig(user, groups)?).await
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

/// The controller's Automaton and Event rules as the chart grants them
/// (charts/gastown-operator/templates/rbac.yaml).
pub fn controller_rules() -> serde_json::Value {
    serde_json::json!([
        {"apiGroups": ["olympus.io"], "resources": ["automatons"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["olympus.io"], "resources": ["automatons/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["olympus.io"], "resources": ["automatons/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}
    ])
}

/// Grants `rules` in `ns` to the users `users`: a Role and a RoleBinding named `name`
/// (server-side apply).
pub async fn grant(
    admin: &Client,
    ns: &str,
    name: &str,
    rules: serde_json::Value,
    users: &[&str],
) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let subjects: Vec<serde_json::Value> = users
        .iter()
        .map(|u| serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
        .collect();
    let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns}, "rules": rules});
    let binding = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": subjects});
    let params = PatchParams::apply(TEST_FIELD_MANAGER).force();
    Api::<Role>::namespaced(admin.clone(), ns)
        .patch(name, &params, &Patch::Apply(&role))
        .await
        .with_context(|| format!("applying Role {ns}/{name}"))?;
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .patch(name, &params, &Patch::Apply(&binding))
        .await
        .with_context(|| format!("applying RoleBinding {ns}/{name}"))?;
    Ok(())
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
    shared(&SHARED, false)
}

/// The cluster in `slot`, brought up (with a node when `node`) on first use. Statics are never
/// dropped: the cluster lives as long as the process, and the `--watch-pid` watcher takes it
/// down (and removes its directory) at exit.
fn shared(slot: &SharedSlot, node: bool) -> anyhow::Result<Arc<OwnedCluster>> {
    let mut shared = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match &*shared {
        Some(Ok(cluster)) => return Ok(cluster.clone()),
        // Do not retry a failed start in every test: report the first failure.
        Some(Err(message)) => {
            let kind = if node { "node test cluster" } else { "test cluster" };
            bail!("the {kind} failed to start earlier: {message}")
        }
        None => {}
    }
    match OwnedCluster::bring_up_with(node) {
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

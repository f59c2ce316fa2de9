//! A user's first day, on a real node: the controller image built by `make image`, installed
//! with the real `helm` CLI from `charts/gastown-operator`, running as a pod that a kubelet
//! started, talking mutual TLS to a (fake) gt-proxy-server on the host, with the compiled
//! policy as the admission webhook. Then the day-two operations: two replicas with leader
//! election, an upgrade that rolls the pods, the leader pod deleted, `helm uninstall`.
//!
//! Runs on the node cluster named by `GASTOWN_TEST_NODE_CLUSTER_DIR` (`make test` starts one
//! with `cluster.sh up --node`), or brings one up for this process (root needed); only when
//! `GASTOWN_TEST_SKIP_NODE` says why this machine cannot run a node does it print that and
//! pass without testing (`TestCluster::start_node`).
//!
//! Run it alone:
//!   make cluster-node-up
//!   GASTOWN_TEST_NODE_CLUSTER_DIR=$PWD/.cluster/node \
//!     cargo test -p gastown-controller --test first_day -- --nocapture
//!
//! One binary; each step of the day is a module.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod cleanup;
mod day_two;
mod host;
mod image;
mod install;
mod lease;
mod pods;
mod uninstall;
mod work;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, client_from_kubeconfig, unique_name};
use gastown_tests::fixtures::{self, repo};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;

use crate::cleanup::Cleanup;
use crate::lease::{Handover, spawn_lease_watch};

/// The names a user types from the chart README.
const RELEASE: &str = "gastown-operator";
const RELEASE_NS: &str = "gastown-system";
const SECRET: &str = "gt-proxy-client";
const LEASE: &str = "gastown-operator-leader";
const METRICS_SERVICE: &str = "gastown-operator-metrics";
/// The controller's defaults (controller/src/config.rs: `--lease-duration` 15 s;
/// controller/src/lib.rs: candidates retry every lease/3). The Lease counts as expired once
/// more than the duration has passed in whole seconds (controller/src/leader.rs), so a holder
/// that dies without releasing it is replaced after at most duration + 1 s + one retry.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RETRY: Duration = Duration::from_secs(5);
/// Time a candidate's own Lease requests may take on this shared machine.
const REQUEST_SLACK: Duration = Duration::from_secs(2);
const IMAGE_SIZE_LIMIT: u64 = 20_000_000;
const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_first_day_on_a_real_node() {
    let Some(cluster) = TestCluster::start_node().await.unwrap() else {
        return;
    };
    let started = Instant::now();
    // The node's address is the host's side of the docker bridge, which pods reach.
    let host_ip: IpAddr = cluster.node().unwrap().ip.parse().unwrap();
    let user_ns = unique_name("first-day");
    let day = Day::new(&cluster, &user_ns, started);
    let _cleanup = Cleanup::new(&day.k, &day.user_ns, &day.webhook);

    day.step("make image");
    let image = image::built_by_make_image();
    day.step("image checked; starting the fake gt-proxy-server");
    let host = host::gastown_behind_a_proxy(&day.work, host_ip).await;
    let install_time = install::the_readme_install(&day, &host).await;
    day.step("installed; the policy webhook");
    let webhook = install::the_policy_as_webhook(&day, &host).await;
    day.step("checking the pod");
    let first = pods::the_pod_runs_as_built(&day, &image).await;
    pods::metrics_through_the_service(&day).await;

    day.step("alice's Automaton");
    let alice = alice(&cluster, &user_ns).await;
    work::alices_work_is_dispatched_once_by_the_pod(&day, &alice, &host, &first).await;
    day.step("helm upgrade to 2 replicas");
    let samples = Arc::new(Mutex::new(Vec::new()));
    let lease_watch = spawn_lease_watch(day.leases.clone(), samples.clone());
    let two = day_two::two_replicas_one_leader(&day).await;
    day.step("rolling upgrade with work in flight");
    let roll = day_two::a_rolling_upgrade_with_work_in_flight(&day, &alice, &host, &two, &samples).await;
    day.step("deleting the leader pod");
    let failover_gap = day_two::the_leader_pod_deleted(&day, &alice, &host, &roll.pods, &samples).await;
    lease_watch.abort();
    day.step("helm uninstall");
    uninstall::helm_uninstall_keeps_the_crd_and_the_automatons(&day, &alice, 1 + roll.automatons + 1).await;

    eprintln!(
        "first_day: image {} {} bytes ({:.1} MB); make image {:.0?}; helm install to Available {:.0?}; \
         upgrade handovers {:?}; failover gap {failover_gap:?}; whole test {:.0?}",
        image.name,
        image.size,
        image.size as f64 / 1e6,
        image.build_time,
        install_time,
        roll.handovers.iter().map(Handover::gap).collect::<Vec<_>>(),
        started.elapsed()
    );
    drop(webhook);
    let _ = std::fs::remove_dir_all(&day.work);
}

/// What every step uses: the cluster as the user reaches it (kubectl, helm, an admin client)
/// and the names and files the day works with.
struct Day {
    /// When the test started (for the progress lines).
    started: Instant,
    k: Kube,
    admin: Client,
    /// The team namespace where alice works.
    user_ns: String,
    /// The MutatingWebhookConfiguration of the policy.
    webhook: String,
    /// PKI, values files and rendered charts.
    work: PathBuf,
    /// The values file of the release.
    values: String,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    leases: Api<Lease>,
}

impl Day {
    fn new(cluster: &TestCluster, user_ns: &str, started: Instant) -> Day {
        let admin = cluster.client();
        let work = tempdir();
        Day {
            started,
            k: Kube {
                kubeconfig: cluster.kubeconfig(),
                helm: helm_binary(),
            },
            user_ns: user_ns.to_owned(),
            webhook: format!("gastown-claim-{user_ns}"),
            values: work.join("values.yaml").display().to_string(),
            work,
            deployments: Api::namespaced(admin.clone(), RELEASE_NS),
            pods: Api::namespaced(admin.clone(), RELEASE_NS),
            leases: Api::namespaced(admin.clone(), RELEASE_NS),
            admin,
        }
    }
}

impl Day {
    /// Progress on stderr (shown with --nocapture; the whole test takes minutes).
    fn step(&self, what: &str) {
        eprintln!("first_day: [{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }
}

/// alice's Automatons in the team namespace.
async fn alice(cluster: &TestCluster, user_ns: &str) -> Api<Automaton> {
    let client = client_from_kubeconfig(&cluster.dir().join("users/alice.kubeconfig"))
        .await
        .unwrap();
    Api::namespaced(client, user_ns)
}

/// Runs a command; panics with its output when it fails. Returns stdout.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], env: &[(&str, &Path)]) -> String {
    let program = program.as_ref().to_string_lossy().into_owned();
    let mut command = Command::new(&program);
    command.args(args).current_dir(repo()).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("starting {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The real helm CLI (v4, installed by scripts/setup.sh).
fn helm_binary() -> String {
    let helm = gastown_tests::cluster::helm().display().to_string();
    match Command::new(&helm).args(["version", "--short"]).output() {
        Ok(out) if out.status.success() => helm,
        _ => panic!("the helm CLI ({helm}) is missing: run scripts/setup.sh (it installs helm and kubectl)"),
    }
}

fn kubectl_binary() -> String {
    gastown_tests::cluster::kubectl().display().to_string()
}

#[derive(Clone)]
struct Kube {
    kubeconfig: PathBuf,
    helm: String,
}

impl Kube {
    fn kubectl(&self, args: &[&str]) -> String {
        run(kubectl_binary(), args, &[("KUBECONFIG", &self.kubeconfig)])
    }

    fn helm(&self, args: &[&str]) -> String {
        run(&self.helm, args, &[("KUBECONFIG", &self.kubeconfig)])
    }

    /// `helm install` or `helm upgrade` of the release from `charts/gastown-operator` with the
    /// values file `values` and `extra` flags, waiting up to `timeout` for it to be ready.
    fn helm_release(&self, verb: &str, values: &str, extra: &[&str], timeout: &str) -> String {
        let mut args = vec![verb, RELEASE, "charts/gastown-operator", "-n", RELEASE_NS, "-f", values];
        args.extend(extra);
        args.extend(["--wait", "--timeout", timeout]);
        self.helm(&args)
    }
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out waiting for {what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn automaton(name: &str) -> Automaton {
    let first_day = json!({"spec": {"task": {"title": format!("First-day task {name}")}, "mergeStrategy": "mr"}});
    fixtures::local_automaton(name, &first_day).unwrap()
}

async fn wait_phase(api: &Api<Automaton>, name: &str, phase: Phase) -> Automaton {
    eventually(&format!("{name} to reach {phase:?}"), || async {
        let a = api.get(name).await.map_err(|e| e.to_string())?;
        if a.phase() == Some(phase) {
            Ok(a)
        } else {
            Err(format!("{:?}", a.status))
        }
    })
    .await
}

/// The controller pods of the release that are running (not being deleted).
async fn controller_pods(pods: &Api<Pod>) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    pods.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container_id(p: &Pod) -> String {
    let id = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone())
        .expect("the controller container has an id");
    id.trim_start_matches("docker://").to_owned()
}

/// Waits until the Deployment has rolled out completely: every replica updated, ready and
/// available, no old pods left, and returns its pods.
async fn wait_rolled_out(day: &Day, replicas: i32) -> Vec<Pod> {
    eventually("the Deployment to be rolled out and Available", || async {
        let d = day.deployments.get(RELEASE).await.map_err(|e| e.to_string())?;
        let status = d.status.clone().unwrap_or_default();
        let available = status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"));
        let generation_seen = status.observed_generation == d.metadata.generation;
        let done = status.updated_replicas == Some(replicas)
            && status.ready_replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
            && status.replicas == Some(replicas);
        let current = controller_pods(&day.pods).await;
        if available && generation_seen && done && current.len() == replicas as usize && current.iter().all(pod_ready) {
            Ok(current)
        } else {
            Err(format!("{status:?}; {} pods", current.len()))
        }
    })
    .await
}

fn docker_logs(id: &str) -> String {
    let out = Command::new("docker").args(["logs", id]).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("first-day"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

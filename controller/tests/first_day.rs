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

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gastown_controller::gastown::testing::{FakeProxyServer, TownExecHandler};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, client_from_kubeconfig};
use gastown_tests::controller_process::http_get;
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::fixtures::{self, repo};
use gastown_tests::policy_host::{PolicyModule, default_module_path};
use gastown_tests::webhook::{ClusterCapabilities, PolicyWebhook, register};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

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

/// Progress on stderr (shown with --nocapture; the whole test takes minutes).
fn step(started: Instant, what: &str) {
    eprintln!("first_day: [{:>5.1}s] {what}", started.elapsed().as_secs_f64());
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
}

/// Whatever the test leaves behind is removed, also when it fails half-way.
struct Cleanup {
    kubeconfig: PathBuf,
    helm: String,
    user_ns: String,
    webhook: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program)
                .args(args)
                .env("KUBECONFIG", &self.kubeconfig)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(
            &self.helm,
            &["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "60s"],
        );
        let kubectl = kubectl_binary();
        quiet(
            &kubectl,
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.webhook,
                "--ignore-not-found",
            ],
        );
        // The release finalizer would keep the Automatons (and the namespace) forever once the
        // controller is gone: let them go, as an administrator would.
        let names = Command::new(&kubectl)
            .args(["get", "automatons", "-n", &self.user_ns, "-o", "name"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for name in names.lines() {
            quiet(
                &kubectl,
                &[
                    "patch",
                    name,
                    "-n",
                    &self.user_ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
            );
        }
        quiet(
            &kubectl,
            &[
                "delete",
                "namespace",
                &self.user_ns,
                RELEASE_NS,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
    }
}

/// Accepts TCP connections on `listen` (the docker bridge) and pipes each to `target` (the
/// fake gt-proxy-server, which listens on loopback only). TLS stays end to end; the peers'
/// addresses are recorded to show who connected.
async fn forward(listen: SocketAddr, target: SocketAddr) -> (SocketAddr, Arc<Mutex<BTreeSet<IpAddr>>>) {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("listening on {listen} (the docker bridge): {e}"));
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, peer)) = listener.accept().await {
            seen.lock().unwrap_or_else(PoisonError::into_inner).insert(peer.ip());
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, peers)
}

/// A CA, a server certificate for `ip` and the controller's client certificate, made with the
/// openssl CLI as a user would. Returns the directory with ca.crt, server.{crt,key},
/// client.{crt,key}.
fn make_pki(dir: &Path, ip: IpAddr) {
    let d = |f: &str| dir.join(f).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_crt) = (d("ca.key"), d("ca.crt"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=first-day test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run("openssl", &ca, &[]);
    for (name, cn, ext) in [
        (
            "server",
            "gt-proxy-server",
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"),
        ),
        (
            "client",
            "gt-operator-controller",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n".to_owned(),
        ),
    ] {
        let (key, csr, crt, extfile) = (
            d(&format!("{name}.key")),
            d(&format!("{name}.csr")),
            d(&format!("{name}.crt")),
            d(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext).unwrap();
        let subj = format!("/CN={cn}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        run("openssl", &req, &[]);
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
            &[],
        );
    }
}

/// The chart's ClusterAdmissionPolicy as real Helm renders it.
fn render_policy(values: &str, out: &Path) -> Value {
    fixtures::render_chart(values, out, RELEASE, RELEASE_NS, &[])
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "ClusterAdmissionPolicy")
        .expect("ClusterAdmissionPolicy rendered")
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

fn bead_of(a: &Automaton) -> Option<String> {
    a.status.as_ref()?.gastown.as_ref()?.bead_id.clone()
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
async fn wait_rolled_out(deployments: &Api<Deployment>, pods: &Api<Pod>, replicas: i32) -> Vec<Pod> {
    eventually("the Deployment to be rolled out and Available", || async {
        let d = deployments.get(RELEASE).await.map_err(|e| e.to_string())?;
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
        let current = controller_pods(pods).await;
        if available && generation_seen && done && current.len() == replicas as usize && current.iter().all(pod_ready) {
            Ok(current)
        } else {
            Err(format!("{status:?}; {} pods", current.len()))
        }
    })
    .await
}

/// What the test saw of the Lease, polled every 100 ms.
#[derive(Debug, Clone)]
struct LeaseSample {
    holder: String,
    acquired: Option<i64>,
    renewed: Option<i64>,
}

/// One change of holder: who had it, the last time the Lease was written before the change
/// (the holder's last renewal, or its release), who took it, and when.
#[derive(Debug)]
struct Handover {
    from: String,
    last_write_ms: i64,
    /// The old holder gave the Lease up (holder cleared) instead of letting it expire.
    released: bool,
    to: String,
    acquired_ms: i64,
}

impl Handover {
    /// How long nobody led: from the old holder's last write to the new holder's acquisition.
    fn gap(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.acquired_ms - self.last_write_ms).unwrap_or(0))
    }

    /// The longest this handover may take. A released Lease is taken at a candidate's next try,
    /// well inside the lease duration. One that had to expire (the holder died, or stopped
    /// without releasing it: today's controller on SIGTERM) is free once more than the duration
    /// has passed in whole seconds (controller/src/leader.rs), i.e. up to duration + 1 s after
    /// the last renewal, and a candidate looks every LEASE_RETRY after its previous request
    /// (GET + PUT on a busy API server: REQUEST_SLACK).
    fn bound(&self) -> Duration {
        if self.released {
            LEASE_DURATION
        } else {
            LEASE_DURATION + Duration::from_secs(1) + LEASE_RETRY + REQUEST_SLACK
        }
    }
}

fn micros_ms(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime) -> i64 {
    t.0.as_millisecond()
}

/// The changes of holder in a series of samples.
fn handovers(samples: &[LeaseSample]) -> Vec<Handover> {
    let mut out = Vec::new();
    let mut holder: Option<&str> = None;
    let mut released = false;
    let mut last_write = None;
    for sample in samples {
        if sample.holder.is_empty() {
            released = true;
        } else if holder.is_some_and(|h| h != sample.holder) {
            out.push(Handover {
                from: holder.unwrap_or_default().to_owned(),
                last_write_ms: last_write.unwrap_or_default(),
                released,
                to: sample.holder.clone(),
                acquired_ms: sample.acquired.unwrap_or_default(),
            });
        }
        if !sample.holder.is_empty() {
            holder = Some(&sample.holder);
            released = false;
        }
        last_write = sample.renewed.or(last_write);
    }
    out
}

fn lease_sample(lease: Lease) -> LeaseSample {
    let spec = lease.spec.unwrap_or_default();
    LeaseSample {
        holder: spec.holder_identity.unwrap_or_default(),
        acquired: spec.acquire_time.as_ref().map(micros_ms),
        renewed: spec.renew_time.as_ref().map(micros_ms),
    }
}

fn spawn_lease_watch(leases: Api<Lease>, samples: Arc<Mutex<Vec<LeaseSample>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(Some(lease)) = leases.get_opt(LEASE).await {
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(lease_sample(lease));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// How many `gt sling` requests for `bead` the fake gt-proxy-server received.
fn slings_through_proxy(requests: &[gastown_controller::gastown::testing::RecordedExec], bead: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.argv.first().map(String::as_str) == Some("gt") && r.argv.get(1).map(String::as_str) == Some("sling")
        })
        .filter(|r| r.argv.iter().any(|a| a == bead))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_first_day_on_a_real_node() {
    let Some(cluster) = TestCluster::start_node().await.unwrap() else {
        return;
    };
    let started = Instant::now();
    let cluster_dir = cluster.dir().to_path_buf();
    let kubeconfig = cluster.kubeconfig();
    let helm = helm_binary();
    let k = Kube {
        kubeconfig: kubeconfig.clone(),
        helm: helm.clone(),
    };
    let admin = cluster.client();
    // The node's address is the host's side of the docker bridge, which pods reach.
    let host_ip: IpAddr = cluster.node().unwrap().ip.parse().unwrap();

    step(started, "make image");
    // 1. The image, exactly as a user builds it: `make image`, default name = the chart's.
    let image_name = run("bash", &["scripts/image.sh", "repository"], &[]).trim().to_owned();
    let tag = run("bash", &["scripts/image.sh", "tag"], &[]).trim().to_owned();
    let image = format!("{image_name}:{tag}");
    let build_started = Instant::now();
    run("make", &["-s", "image"], &[]);
    let build_time = build_started.elapsed();
    let inspect: Value = serde_json::from_str(&run("docker", &["image", "inspect", &image], &[])).unwrap();
    let inspect = &inspect[0];
    let image_size = inspect["Size"].as_u64().unwrap();
    assert!(
        image_size <= IMAGE_SIZE_LIMIT,
        "{image} is {image_size} bytes, over {IMAGE_SIZE_LIMIT}"
    );
    assert_eq!(inspect["Config"]["User"], "65532:65532");
    assert_eq!(inspect["Config"]["Entrypoint"], json!(["/gastown-controller"]));
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], json!(tag));
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/gastown-operator/gastown-operator"
    );
    let revision = run("git", &["rev-parse", "HEAD"], &[]);
    assert!(
        labels["org.opencontainers.image.revision"]
            .as_str()
            .is_some_and(|r| r.starts_with(revision.trim())),
        "revision label {} vs HEAD {revision}",
        labels["org.opencontainers.image.revision"]
    );
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "one layer: the binary"
    );

    step(started, "image checked; starting the fake gt-proxy-server");
    // 2. Gas Town on the host: a fake town behind a fake gt-proxy-server (mutual TLS), reachable
    //    from pods on the docker bridge address.
    let work = tempdir();
    make_pki(&work, host_ip);
    let read = |f: &str| std::fs::read_to_string(work.join(f)).unwrap();
    let town = FakeGasTown::new().unwrap();
    let handler = TownExecHandler::new(town.town_root(), town.gt_path(), town.bd_path());
    let (proxy_local, proxy) = FakeProxyServer::start(
        &read("ca.crt"),
        &read("server.crt"),
        &read("server.key"),
        Arc::new(handler),
    )
    .await
    .unwrap();
    let (proxy_addr, proxy_peers) = forward(SocketAddr::new(host_ip, 0), proxy_local).await;
    let proxy_url = format!("https://{proxy_addr}");

    // 3. A team namespace where alice may create Automatons.
    let user_ns = gastown_tests::cluster::unique_name("first-day");
    let mwc = format!("gastown-claim-{user_ns}");
    let _cleanup = Cleanup {
        kubeconfig: kubeconfig.clone(),
        helm: helm.clone(),
        user_ns: user_ns.clone(),
        webhook: mwc.clone(),
    };
    k.kubectl(&["create", "namespace", &user_ns]);
    k.kubectl(&["label", "namespace", &user_ns, &format!("gastown-first-day={user_ns}")]);
    step(started, "helm install");
    // 4. The README's install: namespace, the client-certificate Secret, helm install.
    if k.kubectl(&["get", "namespace", RELEASE_NS, "--ignore-not-found", "-o", "name"])
        .trim()
        .is_empty()
    {
        k.kubectl(&["create", "namespace", RELEASE_NS]);
    }
    let from = |key: &str, file: &str| format!("--from-file={key}={}", work.join(file).display());
    k.kubectl(&[
        "-n",
        RELEASE_NS,
        "create",
        "secret",
        "generic",
        SECRET,
        &from("tls.crt", "client.crt"),
        &from("tls.key", "client.key"),
        &from("ca.crt", "ca.crt"),
    ]);
    let values = work.join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "gastown:\n  proxy: {{url: \"{proxy_url}\", existingSecret: {SECRET}}}\n  syncInterval: 2s\n\
             watchNamespaces: [{user_ns}]\n"
        ),
    )
    .unwrap();
    let values_arg = values.display().to_string();
    let install_started = Instant::now();
    k.helm(&[
        "install",
        RELEASE,
        "charts/gastown-operator",
        "-n",
        RELEASE_NS,
        "-f",
        &values_arg,
        "--wait",
        "--timeout",
        "180s",
    ]);
    let install_time = install_started.elapsed();
    // (The CRD exists now: the chart installed it from crds/ unless it was there already.)
    k.kubectl(&[
        "-n",
        &user_ns,
        "create",
        "role",
        "automaton-editor",
        "--verb=*",
        "--resource=automatons.olympus.io,automatons.olympus.io/status",
    ]);
    k.kubectl(&[
        "-n",
        &user_ns,
        "create",
        "rolebinding",
        "automaton-editors",
        "--role=automaton-editor",
        "--user=alice",
    ]);

    step(started, "installed; the policy webhook");
    // 5. The policy as the admission webhook, built from the chart's ClusterAdmissionPolicy (as
    //    Kubewarden's policy-server would serve it), for the team namespace only.
    let policy = render_policy(
        &format!(
            "gastown:\n  proxy: {{url: \"{proxy_url}\", existingSecret: {SECRET}}}\n\
             policy:\n  enabled: true\n  settings:\n    allowedUsers: [alice]\n    defaultRig: gastown\n"
        ),
        &work.join("policy"),
    );
    let module = PolicyModule::load(&default_module_path()).unwrap();
    let webhook = PolicyWebhook::start(
        module,
        policy["spec"]["settings"].clone(),
        Arc::new(ClusterCapabilities::new(admin.clone())),
        0,
    )
    .await
    .unwrap();
    let mut scoped = policy.clone();
    scoped["spec"]["namespaceSelector"] = json!({"matchLabels": {"gastown-first-day": user_ns}});
    register(&admin, &webhook.webhook_configuration(&mwc, &scoped))
        .await
        .unwrap();

    step(started, "checking the pod");
    // 6. The Deployment is Available through the kubelet's readiness probe; the pod runs as
    //    65532 with a read-only root filesystem.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), RELEASE_NS);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NS);
    let first = wait_rolled_out(&deployments, &pods, 1).await;
    let pod = &first[0];
    let spec = pod.spec.as_ref().unwrap();
    let container = &spec.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(image.as_str()),
        "the chart's default image"
    );
    assert!(container.readiness_probe.is_some());
    let cid = container_id(pod);
    let state: Value = serde_json::from_str(&run("docker", &["inspect", &cid], &[])).unwrap();
    let state = &state[0];
    assert_eq!(state["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(
        state["Image"].as_str(),
        inspect["Id"].as_str(),
        "runs the image make image built"
    );
    let pid = state["State"]["Pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field} of the controller process");
    }
    let root_mount = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .map(str::to_owned)
        .unwrap();
    let options = root_mount.split_whitespace().nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root filesystem mounted {options}"
    );

    // /metrics through the chart's Service (ClusterIP, routed by kube-proxy from the host).
    let services: Api<Service> = Api::namespaced(admin.clone(), RELEASE_NS);
    let svc = services.get(METRICS_SERVICE).await.unwrap();
    let svc_spec = svc.spec.unwrap();
    let cluster_ip = svc_spec.cluster_ip.unwrap();
    let port = svc_spec.ports.unwrap()[0].port;
    let metrics_addr = format!("{cluster_ip}:{port}");
    let metrics = eventually("/metrics through the Service", || {
        let addr = metrics_addr.clone();
        async move {
            let (code, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics"))
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
            if code == 200 && body.contains("gastown_") {
                Ok(body)
            } else {
                Err(format!("{code}: {body:.200}"))
            }
        }
    })
    .await;
    assert!(
        metrics.contains("# EOF") || metrics.contains("# TYPE"),
        "{metrics:.500}"
    );

    step(started, "alice's Automaton");
    // 7. alice's Automaton: claimed by the policy, slung once by the pod, followed to Succeeded.
    let alice: Api<Automaton> = Api::namespaced(
        client_from_kubeconfig(&cluster_dir.join("users/alice.kubeconfig"))
            .await
            .unwrap(),
        &user_ns,
    );
    let created = alice
        .create(&PostParams::default(), &automaton("fix-login"))
        .await
        .unwrap();
    assert_eq!(
        created.claimed_by(),
        Some("gastown-local"),
        "claimed by the policy webhook"
    );
    let a = wait_phase(&alice, "fix-login", Phase::Dispatched).await;
    let bead = bead_of(&a).unwrap();
    assert_eq!(town.dispatch_count(&bead), 1);
    assert_eq!(town.sling_count(&bead), 1);
    assert_eq!(slings_through_proxy(&proxy.requests(), &bead), 1);
    let pod_ips: BTreeSet<IpAddr> = first
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
        .collect();
    let peers = proxy_peers.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(
        !peers.is_empty() && peers.is_subset(&pod_ips),
        "gt-proxy-server was called from {peers:?}, the pod is {pod_ips:?}"
    );
    town.start_work(&bead).unwrap();
    wait_phase(&alice, "fix-login", Phase::Running).await;
    town.close(&bead, "merged").unwrap();
    wait_phase(&alice, "fix-login", Phase::Succeeded).await;
    let describe = k.kubectl(&["describe", "automaton", "fix-login", "-n", &user_ns]);
    assert!(
        describe.contains("Events:") && describe.contains("Dispatched") && describe.contains(&bead),
        "kubectl describe shows the Events:\n{describe}"
    );

    step(started, "helm upgrade to 2 replicas");
    // 8. Two replicas with leader election: exactly one pod holds the Lease.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NS);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let lease_watch = spawn_lease_watch(leases.clone(), samples.clone());
    k.helm(&[
        "upgrade",
        RELEASE,
        "charts/gastown-operator",
        "-n",
        RELEASE_NS,
        "-f",
        &values_arg,
        "--set",
        "replicas=2",
        "--wait",
        "--timeout",
        "180s",
    ]);
    let two = wait_rolled_out(&deployments, &pods, 2).await;
    let holder = eventually("a pod of the release to hold the Lease", || async {
        let lease = leases.get(LEASE).await.map_err(|e| e.to_string())?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        if two.iter().any(|p| p.metadata.name.as_deref() == Some(holder.as_str())) {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?}"))
        }
    })
    .await;
    let leaders: Vec<String> = two
        .iter()
        .filter(|p| docker_logs(&container_id(p)).contains("became leader"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(
        leaders,
        std::slice::from_ref(&holder),
        "exactly one pod leads, the Lease holder"
    );

    step(started, "rolling upgrade with work in flight");
    // 9. An upgrade that rolls the pods while work is in flight: handed over without a second
    //    sling of anything and without a leaderless gap beyond what the Lease allows.
    let before: Vec<String> = (1..=3).map(|i| format!("before-roll-{i}")).collect();
    for name in &before {
        alice.create(&PostParams::default(), &automaton(name)).await.unwrap();
    }
    for name in &before {
        wait_phase(&alice, name, Phase::Dispatched).await;
    }
    let upgrade = {
        let k = Kube {
            kubeconfig: kubeconfig.clone(),
            helm: helm.clone(),
        };
        let values_arg = values_arg.clone();
        tokio::task::spawn_blocking(move || {
            k.helm(&[
                "upgrade",
                RELEASE,
                "charts/gastown-operator",
                "-n",
                RELEASE_NS,
                "-f",
                &values_arg,
                "--set",
                "replicas=2",
                "--set-string",
                "podAnnotations.rollout=2",
                "--wait",
                "--timeout",
                "240s",
            ])
        })
    };
    let during: Vec<String> = (1..=3).map(|i| format!("during-roll-{i}")).collect();
    for name in &during {
        tokio::time::sleep(Duration::from_secs(5)).await;
        alice.create(&PostParams::default(), &automaton(name)).await.unwrap();
    }
    upgrade.await.unwrap();
    let rolled = wait_rolled_out(&deployments, &pods, 2).await;
    let old_names: BTreeSet<String> = two.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert!(
        rolled
            .iter()
            .all(|p| !old_names.contains(p.metadata.name.as_deref().unwrap())),
        "the upgrade replaced every pod"
    );
    let mut beads = BTreeMap::new();
    for name in before.iter().chain(&during) {
        let a = wait_phase(&alice, name, Phase::Dispatched).await;
        beads.insert(name.clone(), bead_of(&a).unwrap());
    }
    // Let the new leader run a few sync rounds before counting.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let requests = proxy.requests();
    for (name, bead) in &beads {
        assert_eq!(town.sling_count(bead), 1, "{name} ({bead}) slung once");
        assert_eq!(slings_through_proxy(&requests, bead), 1, "{name} ({bead})");
    }
    assert_eq!(
        beads.values().collect::<BTreeSet<_>>().len(),
        beads.len(),
        "one bead per Automaton"
    );
    let roll_handovers = handovers(&samples.lock().unwrap_or_else(PoisonError::into_inner));
    assert!(!roll_handovers.is_empty(), "the Lease changed hands during the roll");
    for h in &roll_handovers {
        assert!(
            h.gap() <= h.bound(),
            "leaderless for {:?} ({h:?}), bound {:?}",
            h.gap(),
            h.bound()
        );
    }
    for bead in beads.values() {
        town.close(bead, "merged").unwrap();
    }
    for name in beads.keys() {
        wait_phase(&alice, name, Phase::Succeeded).await;
    }

    step(started, "deleting the leader pod");
    // 10. The leader pod is deleted: the other one takes over and dispatches.
    let leading = lease_sample(leases.get(LEASE).await.unwrap());
    let leader = leading.holder.clone();
    assert!(
        rolled
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(leader.as_str()))
    );
    // The series starts with the leader's own sample: a leader that releases the Lease on
    // SIGTERM does so within milliseconds, before the sampler could see it holding.
    {
        let mut series = samples.lock().unwrap_or_else(PoisonError::into_inner);
        series.clear();
        series.push(leading);
    }
    k.kubectl(&["delete", "pod", &leader, "-n", RELEASE_NS, "--wait=false"]);
    let successor = eventually("another pod to take the Lease", || async {
        let holder = leases
            .get(LEASE)
            .await
            .map_err(|e| e.to_string())?
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        if !holder.is_empty() && holder != leader {
            Ok(holder)
        } else {
            Err(holder)
        }
    })
    .await;
    // The standby, or the pod the ReplicaSet started in the leader's place, whichever asked
    // first after the Lease expired.
    let candidates: Vec<String> = controller_pods(&pods)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        candidates.contains(&successor),
        "{successor} is a pod of the release ({candidates:?})"
    );
    // ... and ends with the successor's own sample, so a sampler that fell behind on a busy
    // machine cannot hide the change of holder (the times come from the Lease itself).
    let taken = lease_sample(leases.get(LEASE).await.unwrap());
    let failover = {
        let mut series = samples.lock().unwrap_or_else(PoisonError::into_inner);
        series.push(taken);
        handovers(&series)
    };
    let [handover] = failover.as_slice() else {
        panic!("one handover after the leader pod was deleted: {failover:?}");
    };
    assert_eq!(
        (handover.from.as_str(), handover.to.as_str()),
        (leader.as_str(), successor.as_str())
    );
    let failover_gap = handover.gap();
    assert!(
        failover_gap <= handover.bound(),
        "failover left no leader for {failover_gap:?}"
    );
    alice
        .create(&PostParams::default(), &automaton("after-failover"))
        .await
        .unwrap();
    let a = wait_phase(&alice, "after-failover", Phase::Dispatched).await;
    let after_bead = bead_of(&a).unwrap();
    assert_eq!(town.sling_count(&after_bead), 1);
    wait_rolled_out(&deployments, &pods, 2).await;
    lease_watch.abort();

    step(started, "helm uninstall");
    // 11. helm uninstall: what the chart rendered is gone; the CRD and the users' Automatons
    //     stay (Helm never deletes what it installed from crds/), and the Automatons keep the
    //     controller's release finalizer.
    k.helm(&["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s"]);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    for (kind, namespaced) in [
        ("deployments", true),
        ("services", true),
        ("serviceaccounts", true),
        ("roles", true),
        ("rolebindings", true),
        ("clusterroles", false),
        ("clusterrolebindings", false),
    ] {
        let mut args = vec!["get", kind, "-l", &selector, "-o", "name"];
        if namespaced {
            args.push("--all-namespaces");
        }
        assert_eq!(k.kubectl(&args).trim(), "", "{kind} left after helm uninstall");
    }
    eventually("the controller pods to go", || async {
        let left = controller_pods(&pods).await.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} pods")) }
    })
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    assert!(
        crds.get_opt("automatons.olympus.io").await.unwrap().is_some(),
        "the CRD stays"
    );
    let left = alice.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 1 + before.len() + during.len() + 1, "every Automaton stays");
    assert!(
        left.iter().all(|a| a
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "gastown.io/release"))),
        "the release finalizer stays on Automatons once the controller is gone"
    );

    eprintln!(
        "first_day: image {image} {image_size} bytes ({:.1} MB); make image {:.0?}; helm install to Available {:.0?}; \
         upgrade handovers {:?}; failover gap {failover_gap:?}; whole test {:.0?}",
        image_size as f64 / 1e6,
        build_time,
        install_time,
        roll_handovers.iter().map(Handover::gap).collect::<Vec<_>>(),
        started.elapsed()
    );
    drop(webhook);
    let _ = std::fs::remove_dir_all(&work);
}

fn docker_logs(id: &str) -> String {
    let out = Command::new("docker").args(["logs", id]).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(gastown_tests::cluster::unique_name("first-day"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn handovers_are_read_from_lease_samples() {
    let sample = |holder: &str, acquired: i64, renewed: i64| LeaseSample {
        holder: holder.to_owned(),
        acquired: Some(acquired),
        renewed: Some(renewed),
    };
    // a renews, dies; b takes the expired Lease.
    let expired = handovers(&[
        sample("a", 0, 1_000),
        sample("a", 0, 6_000),
        sample("a", 0, 6_000),
        sample("b", 22_500, 22_500),
    ]);
    let [h] = expired.as_slice() else { panic!("{expired:?}") };
    assert_eq!((h.from.as_str(), h.to.as_str(), h.released), ("a", "b", false));
    assert_eq!(h.gap(), Duration::from_millis(16_500));
    assert_eq!(
        h.bound(),
        LEASE_DURATION + Duration::from_secs(1) + LEASE_RETRY + REQUEST_SLACK
    );
    // a releases it on the way out; b takes it at its next try.
    let released = handovers(&[
        sample("a", 0, 6_000),
        sample("", 0, 7_000),
        sample("b", 9_000, 9_000),
        sample("b", 9_000, 14_000),
    ]);
    let [h] = released.as_slice() else {
        panic!("{released:?}")
    };
    assert!(h.released);
    assert_eq!(h.gap(), Duration::from_secs(2));
    assert_eq!(h.bound(), LEASE_DURATION);
    // Renewals alone are no handover.
    assert!(handovers(&[sample("a", 0, 1_000), sample("a", 0, 6_000)]).is_empty());
}

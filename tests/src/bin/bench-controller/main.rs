//! `bench-controller`: the real `gastown-controller` binary against a real kube-apiserver
//! (`TestCluster`) and the fake Gas Town (exec transport, no injected delay).
//!
//! For each burst size (default 100, 500, 2000), in a fresh namespace, fake town and
//! controller process:
//! 1. start two watchers in this process (label `gastown.io/claimed-by=gastown-local`): a bare
//!    kube-rs watcher that only notes when each object is first seen (the *floor*: what any
//!    watch-driven controller can do on this API server under this load), and a tracker that
//!    notes phases;
//! 2. create N pre-claimed Automatons (as `e2e.rs` `create_claimed`), at most `--in-flight`
//!    creates at once, noting when each create returned;
//! 3. wait until all are Dispatched; claim-to-dispatch latency = the fake's `ts_ms` of the
//!    first `gt sling` that hooked the bead − the create's return time;
//! 4. lifecycle: the fake closes every bead (auto-progress: a slung bead reads as closed), the
//!    controller marks them Succeeded, then all are deleted and the controller releases them;
//!    API writes per lifecycle come from the controller's `gastown_api_writes_total`;
//! 5. peak RSS (VmHWM), CPU seconds (utime+stime) of the controller, of the fake processes
//!    it ran (its reaped children: cutime+cstime), of kube-apiserver and etcd, and of this
//!    process (clients and watchers) over the burst.
//!
//! 6. the *pipeline floor*, in another fresh namespace and fake town with no controller: this
//!    process runs, for each claim its watch brings, only the steps the Gas Town contract
//!    requires before and at dispatch, with the controller's own Gas Town client and the same
//!    concurrency limits: the finalizer (conditional), `bd create`, the bead recorded
//!    (conditional), `gt sling`, `bd show` and Dispatched with the worker. No reconciler, cache,
//!    Events, conditions or metrics; the two watchers of step 1 run as in the burst. Its
//!    claim-to-sling latency, measured the same way, is what this machine allows any
//!    controller that keeps the contract.
//!
//! Then the cached run: N (default 5000) claimed Automatons in a terminal phase with a real
//! status (copied from the last burst) exist before a controller starts; RSS once it has
//! listed and reconciled them all.
//!
//! `make bench` runs it in release mode; `make bench-smoke` in the dev profile with a small
//! burst (it checks the code works, nothing about speed).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use gastown_controller::gastown::{ExternalRef, GasTown, GasTownConfig, Transport};
use gastown_crds::contract::{
    CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER, FIELD_MANAGER,
    RELEASE_FINALIZER,
};
use gastown_crds::{Automaton, Phase};
use gastown_tests::cluster::{TestCluster, TestNamespace};
use gastown_tests::controller_process::{admin_addr_in_log, http_get};
use gastown_tests::fake_gastown::{AutoProgress, Config as TownConfig, FakeGasTown};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "bench-controller",
    about = "Controller latency, API writes, memory and scaling"
)]
struct Args {
    /// Burst sizes (claimed Automatons created at once).
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    bursts: Vec<usize>,
    /// Automatons in the controller's cache for the memory measurement (0: skip).
    #[arg(long, default_value_t = 5000)]
    cached: usize,
    /// Creates (and deletes) in flight at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Controller `--concurrency`.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Controller `--gastown-concurrency`.
    #[arg(long, default_value_t = 8)]
    gastown_concurrency: usize,
    /// Controller `--sync-interval`.
    #[arg(long, default_value = "15s")]
    sync_interval: String,
    /// Where to write the JSON results.
    #[arg(long)]
    out: PathBuf,
    /// The gastown-controller binary (default: next to this executable).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// The fake-gastown binary (default: next to this executable).
    #[arg(long)]
    fake: Option<PathBuf>,
    /// Directory for the controllers' logs (default: a new temporary directory).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Free text recorded in the results (e.g. "other jobs running").
    #[arg(long, default_value = "")]
    note: String,
    /// Write `gastown.io/claimed-at` with nanoseconds (as `e2e.rs` does) instead of whole
    /// seconds (as the claim policy does). Reproduces a status-write loop, see bench/README.md.
    #[arg(long)]
    subsecond_claimed_at: bool,
    /// The command that produced the results, recorded in them.
    #[arg(long, default_value = "make bench")]
    command: String,
}

/// Targets from the issue.
const P99_LIMIT_MS: f64 = 1000.0;
const P99_AT: usize = 500;
const WRITES_LIMIT: f64 = 6.0;
const RSS_LIMIT_BYTES: f64 = 40.0 * 1000.0 * 1000.0;
/// Log-log slope above which growth is not called linear (1 = linear, 2 = quadratic).
const LINEAR_SLOPE_LIMIT: f64 = 1.15;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn percentiles(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return json!({"n": 0});
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({
        "n": v.len(),
        "p50": round3(quantile(&v, 0.50)),
        "p95": round3(quantile(&v, 0.95)),
        "p99": round3(quantile(&v, 0.99)),
        "max": round3(v[v.len() - 1]),
        "min": round3(v[0]),
        "mean": round3(mean),
    })
}

fn num(x: f64) -> Value {
    if x.is_finite() { json!(round3(x)) } else { Value::Null }
}

// ---------------------------------------------------------------------------------------------
// Processes: /proc sampling

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kib: u64,
    hwm_kib: u64,
    /// utime + stime, ticks.
    cpu_ticks: u64,
    /// cutime + cstime (reaped children), ticks.
    child_ticks: u64,
}

fn read_proc(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Ok(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_ticks: get(11) + get(12),
        child_ticks: get(13) + get(14),
    })
}

/// CPU seconds of everything that works during a burst.
#[derive(Clone, Copy, Debug, Default)]
struct CpuSnapshot {
    controller: u64,
    fake: u64,
    apiserver: u64,
    etcd: u64,
    bench: u64,
}

struct Pids {
    apiserver: Option<u32>,
    etcd: Option<u32>,
}

impl Pids {
    fn of(cluster: &TestCluster) -> Pids {
        let read = |name: &str| {
            std::fs::read_to_string(cluster.dir().join("pids").join(format!("{name}.pid")))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Pids {
            apiserver: read("kube-apiserver"),
            etcd: read("etcd"),
        }
    }
}

fn cpu_snapshot(controller: u32, pids: &Pids) -> CpuSnapshot {
    let ticks = |pid: Option<u32>| pid.and_then(|p| read_proc(p).ok()).map_or(0, |s| s.cpu_ticks);
    let c = read_proc(controller).unwrap_or_default();
    CpuSnapshot {
        controller: c.cpu_ticks,
        fake: c.child_ticks,
        apiserver: ticks(pids.apiserver),
        etcd: ticks(pids.etcd),
        bench: ticks(Some(std::process::id())),
    }
}

fn cpu_delta(a: &CpuSnapshot, b: &CpuSnapshot, tck: f64) -> Value {
    let d = |x: u64, y: u64| round3(y.saturating_sub(x) as f64 / tck);
    json!({
        "controller": d(a.controller, b.controller),
        "fake_gastown": d(a.fake, b.fake),
        "kube_apiserver": d(a.apiserver, b.apiserver),
        "etcd": d(a.etcd, b.etcd),
        "bench_client": d(a.bench, b.bench),
    })
}

// ---------------------------------------------------------------------------------------------
// The controller process

struct Controller {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Controller {
    async fn spawn(
        binary: &Path,
        cluster: &TestCluster,
        ns: &str,
        town: &FakeGasTown,
        args: &Args,
        log: PathBuf,
    ) -> Result<Controller> {
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(binary)
            .args(["--namespaces", ns])
            .arg("--town-root")
            .arg(town.town_root())
            .arg("--gt-path")
            .arg(town.gt_path())
            .arg("--bd-path")
            .arg(town.bd_path())
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--sync-interval", &args.sync_interval])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--gastown-concurrency", &args.gastown_concurrency.to_string()])
            // Nothing in the bench may be released or killed for being slow.
            .args([
                "--claim-timeout",
                "2h",
                "--release-timeout",
                "2h",
                "--command-timeout",
                "5m",
            ])
            .env("KUBECONFIG", cluster.kubeconfig())
            // The production default filter (main.rs), so logging costs what it costs there.
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("GT_ROLE")
            .env_remove("GT_POLECAT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut c = Controller {
            child,
            log,
            metrics: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(addr) = c.metrics_addr() {
                c.metrics = addr;
                break;
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                bail!(
                    "the controller exited ({status}); log {}:\n{}",
                    c.log.display(),
                    c.log_text()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the controller did not serve /metrics within 60 s; log:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Ready once its watch has listed everything.
        loop {
            let addr = c.metrics.clone();
            let ready = tokio::task::spawn_blocking(move || http_get(&addr, "/readyz")).await?;
            if ready.is_ok_and(|(code, _)| code == 200) {
                return Ok(c);
            }
            ensure!(
                Instant::now() < deadline,
                "the controller was not ready within 60 s; log:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics_addr(&self) -> Option<String> {
        admin_addr_in_log(&self.log_text())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn scrape(&self) -> Result<Metrics> {
        let addr = self.metrics.clone();
        let (code, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics")).await??;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(Metrics::parse(&body))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples of the Prometheus text format: (name, labels) → value.
#[derive(Default, Debug, Clone)]
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split(',').filter(|p| !p.is_empty()) {
                        if let Some((k, v)) = pair.split_once('=') {
                            labels.insert(k.to_string(), v.trim_matches('"').to_string());
                        }
                    }
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            out.push((name, labels, value));
        }
        Metrics(out)
    }

    /// Sum of `name` over series whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && filter.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `name` by the value of `label`.
    fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, l, v) in &self.0 {
            if n == name {
                *out.entry(l.get(label).cloned().unwrap_or_default()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Per `tool verb`: (count, mean seconds) of Gas Town commands.
    fn commands(&self) -> BTreeMap<String, (f64, f64)> {
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (n, l, v) in &self.0 {
            let key = format!(
                "{} {}",
                l.get("tool").map_or("", String::as_str),
                l.get("verb").map_or("", String::as_str)
            );
            if n == "gastown_command_duration_seconds_count" {
                sums.entry(key).or_default().0 += v;
            } else if n == "gastown_command_duration_seconds_sum" {
                sums.entry(key).or_default().1 += v;
            }
        }
        sums.into_iter()
            .map(|(k, (c, s))| (k, (c, if c > 0.0 { s / c } else { f64::NAN })))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Watchers

/// What the watchers saw, by Automaton name (wall-clock ms).
#[derive(Default)]
struct Seen {
    /// Floor: first event of the bare watcher.
    first_event: HashMap<String, u64>,
    dispatched: HashMap<String, u64>,
    succeeded: HashMap<String, u64>,
    deleted: HashMap<String, u64>,
    bead: HashMap<String, String>,
    /// One full Succeeded status, as the controller wrote it.
    succeeded_status: Option<Value>,
    /// The last version seen of each object (status and finalizers, flattened).
    last: HashMap<String, BTreeMap<String, String>>,
    /// What each update of an object changed (one watch event per write), counted.
    updates: BTreeMap<String, usize>,
}

/// The parts of an Automaton the controller writes, flattened to `path → value`; conditions
/// are keyed by type.
fn flatten_written(a: &Automaton) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Array(items) if prefix == "status.conditions" => {
                for c in items {
                    let t = c.get("type").and_then(Value::as_str).unwrap_or("?");
                    walk(&format!("{prefix}.{t}"), c, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "status",
        &serde_json::to_value(&a.status).unwrap_or(Value::Null),
        &mut out,
    );
    out.insert("metadata.finalizers".to_string(), format!("{:?}", a.finalizers()));
    out.insert(
        "metadata.deletionTimestamp".to_string(),
        format!("{:?}", a.metadata.deletion_timestamp.is_some()),
    );
    out
}

/// A short description of what changed between two versions of an object, e.g.
/// `Dispatched: status.gastown.lastSyncTime`.
fn describe_update(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let phase = |m: &BTreeMap<String, String>| {
        m.get("status.phase")
            .map_or("-".to_string(), |p| p.trim_matches('"').to_string())
    };
    let (from, to) = (phase(before), phase(after));
    let mut changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        // Timestamps that move with every write say nothing about why it happened.
        .filter(|k| !k.ends_with(".lastTransitionTime"))
        .map(|k| {
            k.rsplit_once('.')
                .filter(|(head, _)| head.starts_with("status.conditions."))
                .map_or_else(|| k.clone(), |(head, _)| head.to_string())
        })
        .collect();
    changed.sort();
    changed.dedup();
    let what = if changed.is_empty() {
        "no change".to_string()
    } else {
        changed.join(",")
    };
    if from == to {
        format!("{to}: {what}")
    } else {
        format!("{from} -> {to}: {what}")
    }
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn selector() -> watcher::Config {
    watcher::Config::default().labels(&format!("{CLAIMED_BY_LABEL}={DEFAULT_CLAIMER}"))
}

/// Starts a watch of the claimed Automatons that hands every event to `on_event` (errors are
/// the watcher's to retry); returns once its initial list is done.
async fn start_watch(
    api: Api<Automaton>,
    what: &'static str,
    mut on_event: impl FnMut(watcher::Event<Automaton>) + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut stream = watcher(api, selector()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(event) => on_event(event),
                Err(_) => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .with_context(|| format!("{what} not ready"))??;
    Ok(handle)
}

/// The floor: a bare watcher that only notes when it first sees each object. Returns once its
/// initial list is done.
async fn start_floor_watcher(api: Api<Automaton>, seen: Shared) -> Result<tokio::task::JoinHandle<()>> {
    start_watch(api, "floor watcher", move |event| {
        if let watcher::Event::Apply(a) = event
            && a.name_any() != SENTINEL
        {
            let t = now_ms();
            lock(&seen).first_event.entry(a.name_any()).or_insert(t);
        }
    })
    .await
}

/// Tracks phases and deletions.
async fn start_tracker(api: Api<Automaton>, seen: Shared) -> Result<tokio::task::JoinHandle<()>> {
    start_watch(api, "tracker", move |event| {
        let t = now_ms();
        match event {
            watcher::Event::Apply(a) if a.name_any() != SENTINEL => {
                let name = a.name_any();
                let mut s = lock(&seen);
                let flat = flatten_written(&a);
                if let Some(before) = s.last.insert(name.clone(), flat.clone()) {
                    *s.updates.entry(describe_update(&before, &flat)).or_default() += 1;
                }
                if let Some(bead) = a
                    .status
                    .as_ref()
                    .and_then(|s| s.gastown.as_ref())
                    .and_then(|g| g.bead_id.clone())
                {
                    s.bead.entry(name.clone()).or_insert(bead);
                }
                match a.phase() {
                    Some(Phase::Dispatched | Phase::Running) => {
                        s.dispatched.entry(name).or_insert(t);
                    }
                    Some(Phase::Succeeded | Phase::Failed) => {
                        s.dispatched.entry(name.clone()).or_insert(t);
                        s.succeeded.entry(name.clone()).or_insert(t);
                        if s.succeeded_status.is_none() {
                            s.succeeded_status = serde_json::to_value(&a.status).ok();
                        }
                    }
                    _ => {}
                }
            }
            watcher::Event::Delete(a) => {
                let mut s = lock(&seen);
                s.last.remove(&a.name_any());
                s.deleted.entry(a.name_any()).or_insert(t);
            }
            _ => {}
        }
    })
    .await
}

/// Claim-to-dispatch comes from the fake's call log: when the first `gt sling` that hooked each
/// bead was called, by bead.
fn first_slings(calls: &[gastown_tests::fake_gastown::Call]) -> HashMap<String, u64> {
    let mut first_sling: HashMap<String, u64> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.tool == "gt" && c.verb() == Some("sling") && c.dispatched)
    {
        if let Some(bead) = c.argv.iter().skip_while(|a| *a != "--").nth(1) {
            first_sling.entry(bead.clone()).or_insert(c.ts_ms);
        }
    }
    first_sling
}

/// Waits until `count(seen) >= n` or the timeout; returns whether it got there.
async fn wait_count(seen: &Shared, n: usize, timeout: Duration, what: &str, count: impl Fn(&Seen) -> usize) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let c = count(&lock(seen));
        if c >= n {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("  timed out after {timeout:?} waiting for {what}: {c}/{n}");
            return false;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("  ... {what}: {c}/{n}");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Automatons

/// An Automaton as the claim policy leaves it (like `e2e.rs` `create_claimed`). The claim
/// time has whole seconds, as the policy writes it, unless `subsecond`.
fn claimed(name: &str, subsecond: bool) -> Result<Automaton> {
    let now = jiff::Timestamp::now();
    let claimed_at = if subsecond {
        now
    } else {
        jiff::Timestamp::from_second(now.as_second())?
    };
    Ok(serde_json::from_value(json!({
        "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
        "metadata": {"name": name, "labels": {CLAIMED_BY_LABEL: DEFAULT_CLAIMER},
                     "annotations": {CLAIMED_AT_ANNOTATION: claimed_at.to_string(),
                                     CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
        "spec": {"task": {"title": format!("Task {name}"), "description": "do it"}, "executionMode": "local", "rig": "gastown"},
    }))?)
}

/// A claimed Automaton in a terminal phase, created before the controller starts: its
/// reconcile (a no-op) shows that the controller's watch has listed the namespace.
const SENTINEL: &str = "sentinel";

async fn create_sentinel(api: &Api<Automaton>) -> Result<()> {
    api.create(&PostParams::default(), &claimed(SENTINEL, false)?)
        .await
        .context("creating the sentinel")?;
    let patch = json!({"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
                       "status": {"phase": "Succeeded", "message": "bench sentinel"}});
    api.patch_status(
        SENTINEL,
        &PatchParams::apply("gastown-bench").force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("writing the sentinel's status")?;
    Ok(())
}

/// Creates the named Automatons, `in_flight` at a time; returns when each create returned.
async fn create_all(
    api: &Api<Automaton>,
    names: &[String],
    in_flight: usize,
    subsecond: bool,
) -> Result<HashMap<String, u64>> {
    let results: Vec<(String, u64)> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                let obj = claimed(&name, subsecond)?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                Ok::<_, anyhow::Error>((name, now_ms()))
            }
        })
        .buffer_unordered(in_flight.max(1))
        .try_collect()
        .await?;
    Ok(results.into_iter().collect())
}

async fn delete_all(api: &Api<Automaton>, names: &[String], in_flight: usize) -> Result<()> {
    for_each_name(names, in_flight, |name| {
        let api = api.clone();
        async move {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(anyhow::Error::from(e).context(format!("deleting {name}"))),
            }
        }
    })
    .await
}

/// Runs `op` for every name, `in_flight` at a time; the first error ends it.
async fn for_each_name<F, Fut>(names: &[String], in_flight: usize, op: F) -> Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(names.iter().cloned())
        .map(op)
        .buffer_unordered(in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Event objects in the namespace and the writes they took (create + series updates).
async fn count_events(cluster: &TestCluster, ns: &str) -> Result<(usize, u64)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(cluster.client(), ns);
    let list = api.list(&ListParams::default()).await?;
    let objects = list.items.len();
    let writes = list
        .items
        .iter()
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| u64::try_from(s.count.max(1)).unwrap_or(1))
        })
        .sum();
    Ok((objects, writes))
}

// ---------------------------------------------------------------------------------------------
// The fake's cost

/// Median wall time (ms) of running `command()` `n` times.
fn time_command(n: usize, mut command: impl FnMut() -> Command) -> Value {
    let mut ms = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        if command().stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Value::Null;
        }
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    num(quantile(&ms, 0.5))
}

/// What one call of the fake costs with the town as the burst left it.
fn fake_probe(town: &FakeGasTown, bead: Option<&str>) -> Value {
    let internal = |tool: &str| {
        let mut c = town.command(tool);
        c.env("FAKE_GASTOWN_INTERNAL", "1");
        c
    };
    let beads_dir = town.state_dir().join("beads");
    let (bead_files, bead_bytes) = std::fs::read_dir(&beads_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .fold((0u64, 0u64), |(n, bytes), m| (n + 1, bytes + m.len()))
        })
        .unwrap_or((0, 0));
    json!({
        "bead_files": bead_files,
        "bead_bytes": bead_bytes,
        "spawn_bin_true_ms": time_command(20, || Command::new("true")),
        "bd_show_ms": bead.map_or(Value::Null, |b| time_command(10, || { let mut c = internal("bd"); c.args(["show", "--json", "--", b]); c })),
        "bd_list_all_ms": time_command(5, || { let mut c = internal("bd"); c.args(["list", "--json", "--all"]); c }),
    })
}

// ---------------------------------------------------------------------------------------------
// One burst

struct Ctx<'a> {
    args: &'a Args,
    cluster: &'a TestCluster,
    pids: Pids,
    controller_bin: PathBuf,
    fake_bin: PathBuf,
    log_dir: PathBuf,
    tck: f64,
}

struct BurstOutcome {
    result: Value,
    idle_rss_kib: u64,
    succeeded_status: Option<Value>,
}

async fn run_burst(ctx: &Ctx<'_>, n: usize) -> Result<BurstOutcome> {
    eprintln!("burst of {n}:");
    let ns: TestNamespace = ctx.cluster.namespace(&format!("bench-{n}")).await?;
    let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
    let api: Api<Automaton> = Api::namespaced(ctx.cluster.client(), ns.name());
    let seen: Shared = Arc::default();
    let floor = start_floor_watcher(api.clone(), seen.clone()).await?;
    let tracker = start_tracker(api.clone(), seen.clone()).await?;
    create_sentinel(&api).await?;
    let controller = Controller::spawn(
        &ctx.controller_bin,
        ctx.cluster,
        ns.name(),
        &town,
        ctx.args,
        ctx.log_dir.join(format!("controller-burst-{n}.log")),
    )
    .await?;
    let pid = controller.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = read_proc(pid)?;
    let cpu0 = cpu_snapshot(pid, &ctx.pids);
    let names: Vec<String> = (0..n).map(|i| format!("b{n}-{i:05}")).collect();

    // The burst.
    let t0 = now_ms();
    let created = create_all(&api, &names, ctx.args.in_flight, ctx.args.subsecond_claimed_at).await?;
    let t_created = now_ms();
    eprintln!("  {n} created in {} ms", t_created - t0);
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let all_dispatched = wait_count(&seen, n, timeout, "Dispatched", |s| s.dispatched.len()).await;
    let at_dispatch = read_proc(pid)?;
    let cpu1 = cpu_snapshot(pid, &ctx.pids);
    let m1 = controller.scrape().await?;
    let calls = town.calls()?;
    let (last_dispatch_ms, beads, updates_at_dispatch) = {
        let s = lock(&seen);
        (
            s.dispatched.values().copied().max().unwrap_or(t0),
            s.bead.clone(),
            s.updates.clone(),
        )
    };
    eprintln!(
        "  {}/{n} Dispatched after {} ms",
        lock(&seen).dispatched.len(),
        last_dispatch_ms.saturating_sub(t0)
    );

    let first_sling = first_slings(&calls);
    let mut sling_latency = Vec::new();
    let mut last_sling = t0;
    for (name, bead) in &beads {
        if let (Some(sling), Some(done)) = (first_sling.get(bead), created.get(name)) {
            sling_latency.push(*sling as f64 - *done as f64);
            last_sling = last_sling.max(*sling);
        }
    }
    let (floor_latency, observed_latency) = {
        let s = lock(&seen);
        let lat = |m: &HashMap<String, u64>| -> Vec<f64> {
            created
                .iter()
                .filter_map(|(name, done)| m.get(name).map(|t| *t as f64 - *done as f64))
                .collect()
        };
        (lat(&s.first_event), lat(&s.dispatched))
    };
    let mut calls_by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for c in &calls {
        *calls_by_verb
            .entry(format!("{} {}", c.tool, c.verb().unwrap_or("?")))
            .or_default() += 1;
    }

    // Lifecycle: Gas Town closes the work, the controller reports Succeeded, then deletion.
    let mut lifecycle = json!({"completed": false});
    let mut m2 = None;
    let mut cpu2 = cpu1;
    if all_dispatched {
        let t_close = now_ms();
        town.set_config(&TownConfig {
            auto_progress: Some(AutoProgress {
                start_after_ms: 0,
                close_after_ms: Some(0),
                close_reason: Some("merged".to_string()),
                close_rigs: None,
            }),
            ..TownConfig::default()
        })?;
        let sync = gastown_controller::config::parse_duration(&ctx.args.sync_interval).map_err(anyhow::Error::msg)?;
        let timeout = sync * 4 + Duration::from_secs(60) + Duration::from_millis(200 * n as u64);
        let all_succeeded = wait_count(&seen, n, timeout, "Succeeded", |s| s.succeeded.len()).await;
        let t_succeeded = lock(&seen).succeeded.values().copied().max().unwrap_or(t_close);
        let t_delete = now_ms();
        let mut all_deleted = false;
        if all_succeeded {
            delete_all(&api, &names, ctx.args.in_flight).await?;
            let timeout = Duration::from_secs(60) + Duration::from_millis(200 * n as u64);
            all_deleted = wait_count(&seen, n, timeout, "deleted", |s| s.deleted.len()).await;
        }
        let t_deleted = lock(&seen).deleted.values().copied().max().unwrap_or(t_delete);
        eprintln!(
            "  lifecycle: Succeeded {} ms after closing, gone {} ms after deleting",
            t_succeeded.saturating_sub(t_close),
            t_deleted.saturating_sub(t_delete)
        );
        // Let the last reconciles finish their metrics.
        tokio::time::sleep(Duration::from_secs(1)).await;
        cpu2 = cpu_snapshot(pid, &ctx.pids);
        let metrics = controller.scrape().await?;
        let (event_objects, event_writes) = count_events(ctx.cluster, ns.name()).await.unwrap_or((0, 0));
        let writes = metrics.by("gastown_api_writes_total", "kind");
        let total: f64 = writes.values().sum();
        // Writes that changed the object show up as watch events (updates, and the final
        // finalizer removal as the deletion); the rest of the write requests were no-ops.
        let (changed, ours) = {
            let s = lock(&seen);
            let ours: usize = s
                .updates
                .iter()
                .filter(|(k, _)| k.ends_with(": metadata.deletionTimestamp"))
                .map(|(_, c)| c)
                .sum();
            let all: usize = s.updates.values().sum();
            (all - ours + s.deleted.len(), ours)
        };
        lifecycle = json!({
            "completed": all_succeeded && all_deleted,
            "close_to_all_succeeded_ms": t_succeeded.saturating_sub(t_close),
            "delete_to_all_gone_ms": t_deleted.saturating_sub(t_delete),
            "api_writes_total_by_kind": writes,
            "api_writes_per_lifecycle": num(total / n as f64),
            "effective_writes_per_lifecycle": num(changed as f64 / n as f64),
            "noop_write_requests_per_lifecycle": num((total - changed as f64) / n as f64),
            "bench_deletes_seen": ours,
            "event_objects": event_objects,
            "event_writes": event_writes,
            "event_writes_per_lifecycle": num(event_writes as f64 / n as f64),
            "conflicts": metrics.sum("gastown_reconcile_errors_total", &[("kind", "conflict")]),
        });
        m2 = Some(metrics);
    }
    let end = read_proc(pid)?;
    let final_metrics = m2.unwrap_or_else(|| m1.clone());
    let probe = fake_probe(&town, beads.values().next().map(String::as_str));
    let (succeeded_status, updates_total) = {
        let s = lock(&seen);
        (s.succeeded_status.clone(), s.updates.clone())
    };
    drop(controller);
    floor.abort();
    tracker.abort();

    let writes_at_dispatch = m1.by("gastown_api_writes_total", "kind");
    let commands: BTreeMap<String, Value> = final_metrics
        .commands()
        .into_iter()
        .map(|(k, (count, mean))| (k, json!({"count": count, "mean_ms": num(mean * 1000.0)})))
        .collect();
    let c2d_count = m1.sum("gastown_claim_to_dispatch_seconds_count", &[]);
    let c2d_sum = m1.sum("gastown_claim_to_dispatch_seconds_sum", &[]);
    let result = json!({
        "n": n,
        "all_dispatched": all_dispatched,
        "create_all_ms": t_created - t0,
        "time_to_all_dispatched_ms": last_dispatch_ms.saturating_sub(t0),
        "time_to_last_sling_ms": last_sling.saturating_sub(t0),
        "claim_to_dispatch_ms": percentiles(&sling_latency),
        "create_to_dispatched_status_seen_ms": percentiles(&observed_latency),
        "floor_watch_event_ms": percentiles(&floor_latency),
        "controller_histogram_mean_claim_to_dispatch_ms": num(if c2d_count > 0.0 { c2d_sum / c2d_count * 1000.0 } else { f64::NAN }),
        "api_writes_at_dispatch_by_kind": writes_at_dispatch,
        "api_writes_per_claim_at_dispatch": num(writes_at_dispatch.values().sum::<f64>() / n as f64),
        "object_updates_seen_at_dispatch": updates_at_dispatch,
        "object_updates_seen_total": updates_total,
        "lifecycle": lifecycle,
        "gastown_calls_by_verb": calls_by_verb,
        "gastown_calls_per_claim": num(calls.len() as f64 / n as f64),
        "gastown_commands": commands,
        "reconciles": final_metrics.sum("gastown_reconciles_total", &[]),
        "reconcile_errors_by_kind": final_metrics.by("gastown_reconcile_errors_total", "kind"),
        "controller": {
            "idle_rss_kib": idle.rss_kib,
            "rss_at_all_dispatched_kib": at_dispatch.rss_kib,
            "peak_rss_kib": end.hwm_kib,
            "cpu_seconds_burst": round3(cpu1.controller.saturating_sub(cpu0.controller) as f64 / ctx.tck),
            "cpu_seconds_total": round3(cpu2.controller.saturating_sub(cpu0.controller) as f64 / ctx.tck),
        },
        "cpu_seconds_burst_by_process": cpu_delta(&cpu0, &cpu1, ctx.tck),
        "cpu_seconds_lifecycle_by_process": cpu_delta(&cpu1, &cpu2, ctx.tck),
        "fake_cost_after_burst": probe,
    });
    drop(ns);
    Ok(BurstOutcome {
        result,
        idle_rss_kib: idle.rss_kib,
        succeeded_status,
    })
}

// ---------------------------------------------------------------------------------------------
// The pipeline floor

/// Field manager of the pipeline floor's status writes.
const FLOOR_MANAGER: &str = "gastown-bench-floor";

/// A status write with server-side apply, conditional on `a`'s resourceVersion (as the
/// controller's).
async fn floor_status(api: &Api<Automaton>, a: &Automaton, status: Value) -> Result<Automaton> {
    let patch = json!({"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
                       "metadata": {"resourceVersion": a.resource_version()}, "status": status});
    Ok(api
        .patch_status(
            &a.name_any(),
            &PatchParams::apply(FLOOR_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?)
}

/// The steps the contract requires from a claim to its dispatch, nothing else; returns the bead.
async fn floor_dispatch(api: &Api<Automaton>, gastown: &GasTown, a: Automaton) -> Result<String> {
    let name = a.name_any();
    let patch = json!({"metadata": {"resourceVersion": a.resource_version(), "finalizers": [RELEASE_FINALIZER]}});
    let a = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("adding the finalizer to {name}"))?;
    let external = ExternalRef::for_automaton(
        a.namespace().as_deref().unwrap_or_default(),
        &name,
        a.uid().as_deref().unwrap_or_default(),
    )?;
    let title = &a.spec.task.title;
    let description = a.spec.task.description.as_deref().unwrap_or_default();
    let bead = gastown.create_bead(title, description, &external).await?;
    let rig = a.spec.rig.clone().unwrap_or_default();
    let recorded = json!({"beadId": bead.as_str(), "beadCreated": true, "rig": rig});
    let a = floor_status(api, &a, json!({"phase": "Claimed", "gastown": recorded}))
        .await
        .with_context(|| format!("recording the bead of {name}"))?;
    gastown.sling(&bead, &rig, None, None).await?;
    let shown = gastown.show_bead(&bead).await?;
    let mut dispatched = recorded;
    dispatched["assignee"] = json!(shown.as_ref().and_then(|b| b.assignee.clone()));
    dispatched["beadStatus"] = json!(shown.as_ref().map(|b| b.status.as_str().to_string()));
    dispatched["dispatchedAt"] = json!(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())?.to_string());
    floor_status(api, &a, json!({"phase": "Dispatched", "gastown": dispatched}))
        .await
        .with_context(|| format!("recording the dispatch of {name}"))?;
    Ok(bead.as_str().to_string())
}

/// The pipeline floor for a burst of `n` (see the module docs, step 6).
async fn run_pipeline_floor(ctx: &Ctx<'_>, n: usize) -> Result<Value> {
    eprintln!("pipeline floor, burst of {n}:");
    let ns: TestNamespace = ctx.cluster.namespace(&format!("floor-{n}")).await?;
    let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
    let mut config = GasTownConfig::new(Transport::Exec {
        town_root: town.town_root().to_path_buf(),
        gt_path: town.gt_path(),
        bd_path: town.bd_path(),
        actor: Some("gastown-operator".to_string()),
    });
    config.max_concurrency = ctx.args.gastown_concurrency;
    let gastown = GasTown::new(config)?;
    let api: Api<Automaton> = Api::namespaced(ctx.cluster.client(), ns.name());
    // The same observers as in the controller's burst, so the API server serves as many watches.
    let seen: Shared = Arc::default();
    let observers = [
        start_floor_watcher(api.clone(), seen.clone()).await?,
        start_tracker(api.clone(), seen.clone()).await?,
    ];

    // The watch hands each claim, once, to at most `--concurrency` pipelines at a time.
    let (claims_tx, claims_rx) = tokio::sync::mpsc::unbounded_channel::<Automaton>();
    let mut handed = std::collections::HashSet::new();
    let watch = start_watch(api.clone(), "pipeline floor watcher", move |event| {
        if let watcher::Event::Apply(a) = event
            && handed.insert(a.name_any())
        {
            let _ = claims_tx.send(a);
        }
    })
    .await?;
    let finished: Shared = Arc::default();
    let pipelines = tokio::spawn({
        let (api, gastown, finished) = (api.clone(), gastown.clone(), finished.clone());
        let claims = futures::stream::unfold(claims_rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) });
        claims
            .take(n)
            .map(move |a| {
                let (api, gastown, finished) = (api.clone(), gastown.clone(), finished.clone());
                async move {
                    let name = a.name_any();
                    let bead = floor_dispatch(&api, &gastown, a).await?;
                    let mut s = lock(&finished);
                    s.dispatched.insert(name.clone(), now_ms());
                    s.bead.insert(name, bead);
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(usize::from(ctx.args.concurrency.max(1)))
            .try_collect::<Vec<()>>()
    });

    let me = std::process::id();
    let cpu0 = cpu_snapshot(me, &ctx.pids);
    let names: Vec<String> = (0..n).map(|i| format!("f{n}-{i:05}")).collect();
    let t0 = now_ms();
    let created = create_all(&api, &names, ctx.args.in_flight, false).await?;
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    tokio::time::timeout(timeout, pipelines)
        .await
        .context("the pipeline floor did not dispatch every claim in time")???;
    let cpu1 = cpu_snapshot(me, &ctx.pids);
    watch.abort();
    for o in observers {
        o.abort();
    }

    let calls = town.calls()?;
    let first_sling = first_slings(&calls);
    let (latency, last_dispatch) = {
        let s = lock(&finished);
        let latency: Vec<f64> = s
            .bead
            .iter()
            .filter_map(|(name, bead)| Some(*first_sling.get(bead)? as f64 - *created.get(name)? as f64))
            .collect();
        (latency, s.dispatched.values().copied().max().unwrap_or(t0))
    };
    ensure!(
        latency.len() == n,
        "pipeline floor: {} of {n} slings found in the fake's log",
        latency.len()
    );
    let d = |a: u64, b: u64| round3(b.saturating_sub(a) as f64 / ctx.tck);
    let result = json!({
        "claim_to_dispatch_ms": percentiles(&latency),
        "time_to_all_dispatched_ms": last_dispatch.saturating_sub(t0),
        "api_writes_per_claim_at_dispatch": 3,
        "gastown_calls_per_claim": num(calls.len() as f64 / n as f64),
        "cpu_seconds_by_process": {
            // This process: the pipelines, the creates and the watch.
            "bench_pipeline_and_client": d(cpu0.controller, cpu1.controller),
            "fake_gastown": d(cpu0.fake, cpu1.fake),
            "kube_apiserver": d(cpu0.apiserver, cpu1.apiserver),
            "etcd": d(cpu0.etcd, cpu1.etcd),
        },
    });
    eprintln!(
        "  claim→sling p99 {} ms, all Dispatched after {} ms",
        f(&result["claim_to_dispatch_ms"]["p99"]),
        result["time_to_all_dispatched_ms"]
    );
    // Nothing will remove the finalizers: take them off, then delete.
    for_each_name(&names, ctx.args.in_flight, |name| {
        let api = api.clone();
        async move {
            let patch = json!({"metadata": {"finalizers": null}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("removing the finalizer of {name}"))?;
            Ok(())
        }
    })
    .await?;
    delete_all(&api, &names, ctx.args.in_flight).await?;
    drop(ns);
    Ok(result)
}

/// RSS of a controller that starts with `m` terminal Automatons to list and cache.
async fn run_cached(ctx: &Ctx<'_>, m: usize, status: Option<Value>) -> Result<Value> {
    eprintln!("cache of {m}:");
    let ns = ctx.cluster.namespace(&format!("bench-cache-{m}")).await?;
    let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
    let api: Api<Automaton> = Api::namespaced(ctx.cluster.client(), ns.name());
    let names: Vec<String> = (0..m).map(|i| format!("c-{i:05}")).collect();
    let status_template = status.unwrap_or_else(|| {
        json!({"phase": "Succeeded", "message": "bench: synthetic status",
               "gastown": {"beadId": "gt-abc12", "beadCreated": true, "rig": "gastown", "beadStatus": "closed"}})
    });
    let t0 = Instant::now();
    create_all(&api, &names, ctx.args.in_flight, ctx.args.subsecond_claimed_at).await?;
    // Terminal phase, as the controller writes it (server-side apply under its field manager).
    for_each_name(&names, ctx.args.in_flight, |name| {
        let api = api.clone();
        let patch = json!({"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton", "status": status_template});
        async move {
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
                .await
                .with_context(|| format!("writing the status of {name}"))?;
            Ok(())
        }
    })
    .await?;
    eprintln!(
        "  {m} terminal Automatons prepared in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let controller = Controller::spawn(
        &ctx.controller_bin,
        ctx.cluster,
        ns.name(),
        &town,
        ctx.args,
        ctx.log_dir.join(format!("controller-cached-{m}.log")),
    )
    .await?;
    let ready_ms = started.elapsed().as_millis();
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(20 * m as u64);
    let mut reconciles = 0.0;
    while Instant::now() < deadline {
        reconciles = controller.scrape().await?.sum("gastown_reconciles_total", &[]);
        if reconciles >= m as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled_ms = started.elapsed().as_millis();
    // Settle (allocator, the 5 s gauge loop over the store), then sample.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let p = read_proc(controller.pid())?;
    let metrics = controller.scrape().await?;
    let writes: f64 = metrics.by("gastown_api_writes_total", "kind").values().sum();
    let calls = town.calls()?.len();
    drop(controller);
    // No finalizers on these objects: one delete-collection removes them.
    if let Err(e) = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
    {
        eprintln!("  could not delete the cached Automatons: {e}");
    }
    drop(ns);
    Ok(json!({
        "n": m,
        "phase": "Succeeded (terminal: listed, cached and reconciled once, no Gas Town calls)",
        "ready_ms": ready_ms,
        "all_reconciled_ms": reconciled_ms,
        "reconciles": reconciles,
        "api_writes": writes,
        "gastown_calls": calls,
        "rss_kib": p.rss_kib,
        "peak_rss_kib": p.hwm_kib,
        "rss_mb": round3(p.rss_kib as f64 * 1024.0 / 1e6),
        "rss_mib": round3(p.rss_kib as f64 / 1024.0),
    }))
}

// ---------------------------------------------------------------------------------------------

fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!(
        text.split_whitespace()
            .take(3)
            .filter_map(|p| p.parse::<f64>().ok())
            .collect::<Vec<_>>()
    )
}

fn next_to_exe(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable without a directory")?;
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} not found: build it (`cargo build --workspace --bins`, with --release for a release run) or pass its path",
        path.display()
    );
    Ok(path)
}

/// Least-squares slope of log(y) against log(x): 1 = linear, 2 = quadratic.
fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if pts.len() < 2 {
        return f64::NAN;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let started = jiff::Timestamp::now();
    let load_before = load_average();
    let controller_bin = match &args.controller {
        Some(p) => p.clone(),
        None => next_to_exe("gastown-controller")?,
    };
    let fake_bin = match &args.fake {
        Some(p) => p.clone(),
        None => next_to_exe("fake-gastown")?,
    };
    let log_dir = match &args.log_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gastown-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&log_dir)?;
    eprintln!("bench-controller ({profile}): controller logs in {}", log_dir.display());
    let cluster = TestCluster::start().await?;
    cluster.install_crds().await?;
    let ctx = Ctx {
        args: &args,
        cluster: &cluster,
        pids: Pids::of(&cluster),
        controller_bin,
        fake_bin,
        log_dir,
        tck: clock_ticks(),
    };

    let mut bursts = Vec::new();
    let mut idle_rss = None;
    let mut status = None;
    for &n in &args.bursts {
        let mut outcome = run_burst(&ctx, n).await?;
        idle_rss.get_or_insert(outcome.idle_rss_kib);
        if outcome.succeeded_status.is_some() {
            status = outcome.succeeded_status;
        }
        outcome.result["pipeline_floor"] = run_pipeline_floor(&ctx, n).await?;
        bursts.push(outcome.result);
    }
    let cached = if args.cached > 0 {
        Some(run_cached(&ctx, args.cached, status).await?)
    } else {
        None
    };

    // Scaling: the three points and their log-log slopes.
    let point =
        |b: &Value, f: &dyn Fn(&Value) -> Option<f64>| (b["n"].as_f64().unwrap_or(0.0), f(b).unwrap_or(f64::NAN));
    let time_pts: Vec<(f64, f64)> = bursts
        .iter()
        .map(|b| point(b, &|b| b["time_to_all_dispatched_ms"].as_f64()))
        .collect();
    let floor_time_pts: Vec<(f64, f64)> = bursts
        .iter()
        .map(|b| point(b, &|b| b["pipeline_floor"]["time_to_all_dispatched_ms"].as_f64()))
        .collect();
    let cpu_pts: Vec<(f64, f64)> = bursts
        .iter()
        .map(|b| point(b, &|b| b["controller"]["cpu_seconds_total"].as_f64()))
        .collect();
    let idle = idle_rss.unwrap_or(0) as f64;
    let mem_pts: Vec<(f64, f64)> = bursts
        .iter()
        .map(|b| point(b, &|b| b["controller"]["peak_rss_kib"].as_f64().map(|p| p - idle)))
        .collect();
    let scaling = json!({
        "points": bursts.iter().map(|b| json!({
            "n": b["n"],
            "time_to_all_dispatched_ms": b["time_to_all_dispatched_ms"],
            "ms_per_claim": num(b["time_to_all_dispatched_ms"].as_f64().unwrap_or(f64::NAN) / b["n"].as_f64().unwrap_or(f64::NAN)),
            "controller_cpu_seconds": b["controller"]["cpu_seconds_total"],
            "peak_rss_kib": b["controller"]["peak_rss_kib"],
            "peak_rss_above_idle_kib": num(b["controller"]["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) - idle),
        })).collect::<Vec<_>>(),
        "loglog_slope_time": num(loglog_slope(&time_pts)),
        "loglog_slope_time_pipeline_floor": num(loglog_slope(&floor_time_pts)),
        "loglog_slope_controller_cpu": num(loglog_slope(&cpu_pts)),
        "loglog_slope_peak_rss_above_idle": num(loglog_slope(&mem_pts)),
        "note": "slope of log(value) against log(n): 1 = linear, 2 = quadratic",
    });

    // Targets.
    let p99 = bursts
        .iter()
        .find(|b| b["n"].as_u64() == Some(P99_AT as u64))
        .and_then(|b| b["claim_to_dispatch_ms"]["p99"].as_f64());
    let writes = bursts
        .iter()
        .filter_map(|b| b["lifecycle"]["api_writes_per_lifecycle"].as_f64())
        .fold(f64::NAN, f64::max);
    let rss = cached.as_ref().and_then(|c| c["rss_kib"].as_f64()).map(|k| k * 1024.0);
    let slope_t = loglog_slope(&time_pts);
    let slope_m = loglog_slope(&mem_pts);
    let met = |v: Option<f64>, limit: f64| v.filter(|x| x.is_finite()).map(|x| x <= limit);
    let targets = json!([
        {"name": format!("claim-to-dispatch p99 at {P99_AT} (ms)"), "value": p99.map(num), "limit": P99_LIMIT_MS, "met": met(p99, P99_LIMIT_MS)},
        {"name": "API writes per lifecycle (controller metric, worst burst)", "value": num(writes), "limit": WRITES_LIMIT, "met": met(Some(writes), WRITES_LIMIT)},
        {"name": format!("RSS with {} cached (bytes; 40 MB = 40e6)", args.cached), "value": rss.map(num), "limit": RSS_LIMIT_BYTES, "met": met(rss, RSS_LIMIT_BYTES)},
        {"name": "time to all Dispatched grows linearly (log-log slope)", "value": num(slope_t), "limit": LINEAR_SLOPE_LIMIT, "met": met(Some(slope_t), LINEAR_SLOPE_LIMIT)},
        {"name": "peak RSS above idle grows linearly (log-log slope)", "value": num(slope_m), "limit": LINEAR_SLOPE_LIMIT, "met": met(Some(slope_m), LINEAR_SLOPE_LIMIT)},
    ]);
    let result = json!({
        "benchmark": "controller",
        "date": started.to_string(),
        "command": args.command,
        "profile": profile,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "note": args.note,
        "setup": {
            "api_server": "kube-apiserver v1.20.2 + etcd (tests/cluster/cluster.sh), no admission webhook",
            "gastown": "fake-gastown (exec transport): one process per call, a file per bead, convoy and polecat plus a small index, under an exclusive lock, no injected delay",
            "controller_flags": format!("--concurrency {} --gastown-concurrency {} --sync-interval {}", args.concurrency, args.gastown_concurrency, args.sync_interval),
            "creates_in_flight": args.in_flight,
            "claimed_at": if args.subsecond_claimed_at { "nanoseconds (--subsecond-claimed-at)" } else { "whole seconds, as the claim policy writes it" },
            "controller_log_filter": "info,kube=warn (JSON)",
        },
        "idle_rss_kib": idle_rss,
        "bursts": bursts,
        "scaling": scaling,
        "cached": cached,
        "targets": targets,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, format!("{}\n", serde_json::to_string_pretty(&result)?))
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_table(&result);
    println!("\nresults: {}", args.out.display());
    Ok(())
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "-".to_string(),
    }
}

fn print_table(r: &Value) {
    println!(
        "\n### Controller ({} profile, {} cores, {})\n",
        r["profile"].as_str().unwrap_or("?"),
        r["cores"],
        r["date"].as_str().unwrap_or("?")
    );
    println!(
        "| burst | claim→sling p50 / p95 / p99 ms | pipeline floor p50 / p99 ms | watch floor p50 / p99 ms | all Dispatched s | writes / lifecycle (+ events) | peak RSS MiB | controller CPU s | fake CPU s | apiserver+etcd CPU s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in r["bursts"].as_array().into_iter().flatten() {
        let c = &b["claim_to_dispatch_ms"];
        let fl = &b["floor_watch_event_ms"];
        let pf = &b["pipeline_floor"]["claim_to_dispatch_ms"];
        let burst_cpu = &b["cpu_seconds_burst_by_process"];
        let life_cpu = &b["cpu_seconds_lifecycle_by_process"];
        let sum = |k: &str| burst_cpu[k].as_f64().unwrap_or(0.0) + life_cpu[k].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {} / {} / {} | {} / {} | {} / {} | {} | {} (+{}) | {} | {} | {} | {} |",
            b["n"],
            f(&c["p50"]),
            f(&c["p95"]),
            f(&c["p99"]),
            f(&pf["p50"]),
            f(&pf["p99"]),
            f(&fl["p50"]),
            f(&fl["p99"]),
            f(&json!(
                b["time_to_all_dispatched_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0
            )),
            f(&b["lifecycle"]["api_writes_per_lifecycle"]),
            f(&b["lifecycle"]["event_writes_per_lifecycle"]),
            f(&json!(
                b["controller"]["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0
            )),
            f(&b["controller"]["cpu_seconds_total"]),
            f(&json!(sum("fake_gastown"))),
            f(&json!(sum("kube_apiserver") + sum("etcd"))),
        );
    }
    if let Some(c) = r["cached"].as_object() {
        println!(
            "\nRSS with {} Automatons cached: {} MiB ({} MB); idle controller: {} MiB",
            c["n"],
            f(&c["rss_mib"]),
            f(&c["rss_mb"]),
            f(&json!(r["idle_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0)),
        );
    }
    let s = &r["scaling"];
    println!(
        "scaling (log-log slope, 1 = linear): time to all Dispatched {} (pipeline floor {}), controller CPU {}, peak RSS above idle {}",
        f(&s["loglog_slope_time"]),
        f(&s["loglog_slope_time_pipeline_floor"]),
        f(&s["loglog_slope_controller_cpu"]),
        f(&s["loglog_slope_peak_rss_above_idle"])
    );
    println!("\ntargets:");
    for t in r["targets"].as_array().into_iter().flatten() {
        let state = match t["met"].as_bool() {
            Some(true) => "MET   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        println!(
            "  {state} {}: {} (limit {})",
            t["name"].as_str().unwrap_or("?"),
            t["value"],
            t["limit"]
        );
    }
    if let Some(b) = r["bursts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["n"].as_u64() == Some(P99_AT as u64))
    {
        println!(
            "  context: claim-to-dispatch p99 at {P99_AT} of the pipeline floor (the contract's steps, no controller): {} ms",
            b["pipeline_floor"]["claim_to_dispatch_ms"]["p99"]
        );
    }
}

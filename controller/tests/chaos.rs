//! Chaos: many claims against the real controller binary, a real kube-apiserver (dedicated to
//! this test, it is restarted) and the fake Gas Town, while
//!
//! - the API server is restarted once (etcd data kept),
//! - a replica is killed with SIGKILL three times at random points, and the leader once more,
//! - 20 % of `gt`/`bd` calls fail and 5 % hang past the controller's command timeout (before
//!   doing anything), and of the `bd create` and `gt sling` calls that did their work, 5 % then
//!   fail, 5 % hang past the timeout and 5 % are killed by a signal (the outcome is unknown to
//!   the controller: the bead exists, the work is hooked),
//! - the town holds more than 50 other beads of a higher priority than the controller's, so a
//!   lookup by external ref that stops at `bd list`'s default limit misses the bead,
//! - two replicas run with leader election; replicas that exit (lost leadership) or were
//!   killed are started again with the same identity, as a kubelet would.
//!
//! The same workload runs once without any fault first; both timings are printed as a table
//! (`cargo build --workspace --bins && cargo test --workspace --test chaos -- --nocapture`, or `make chaos`).
//!
//! Workload (by claim index, out of ten): seven are merged by Gas Town (auto progress) and end
//! `Succeeded`; one is rejected (the test closes its bead with a failure) and ends `Failed`;
//! one is deleted while its work is running; one targets a rig Gas Town does not have, with a
//! claim about to expire, and is released back to Kubernetes.
//!
//! Checked from the fake's call log and the API: every claim reaches its terminal phase (or, when
//! deleted on purpose, is gone); no bead is hooked twice (`dispatch_count`); one bead per
//! external ref `automaton:<ns>/<name>/<uid>` (counting beads whose `bd create` then failed); released claims are back in `kubernetes` mode
//! without claim marks or finalizer, the others keep their claim; after all Automatons are
//! deleted every bead is closed.
//!
//! Size: `GASTOWN_CHAOS_CLAIMS` (default 30; `make chaos` uses 200). Random points:
//! `GASTOWN_CHAOS_SEED` (default: from the clock; printed, to replay a failure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use gastown_crds::{Automaton, ConditionStatus, ExecutionMode, Phase};
use gastown_tests::cluster::{TestCluster, TestNamespace};
use gastown_tests::controller_process::ControllerProcess;
use gastown_tests::fake_gastown::{AutoProgress, Call, Config, FakeGasTown, Faults};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const CLAIMS_ENV: &str = "GASTOWN_CHAOS_CLAIMS";
const SEED_ENV: &str = "GASTOWN_CHAOS_SEED";
const DEFAULT_CLAIMS: usize = 30;

/// Per-call timeout of the controller; injected hangs last longer.
const COMMAND_TIMEOUT: &str = "2s";
const HANG_SECONDS: u64 = 4;
const FAIL_RATE: f64 = 0.20;
const HANG_RATE: f64 = 0.05;
/// Of the `bd create` / `gt sling` calls that did their work: then failed, hung, were killed.
const AFTER_WORK_RATE: f64 = 0.05;
const AFTER_WORK_VERBS: [&str; 2] = ["bd create", "gt sling"];
/// Other work in the town, of a higher priority (1) than the controller's beads (2): more than
/// `bd list`'s default limit of 50.
const OTHER_BEADS: usize = 60;
/// `--create-outcome-wait`: longer than any `bd create` can still run after its mark here (three
/// attempts of at most the 2 s command timeout plus backoff, or a killed replica's create that
/// still hangs for `HANG_SECONDS`), far shorter than the production default.
const CREATE_OUTCOME_WAIT: &str = "15s";
const LEASE_DURATION: &str = "4s";
/// Long enough that no healthy claim expires, even at 200 claims under chaos.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(300);
/// The claims meant to be released are created this long before their claim expires.
const EXPIRE_AFTER: Duration = Duration::from_secs(6);
/// One claim is created every this often.
const CREATE_EVERY: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(400);
/// Gas Town's merge: hooked → in_progress → closed ("merged"), applied when beads are read.
const START_AFTER_MS: u64 = 300;
const CLOSE_AFTER_MS: u64 = 1200;
/// A rig of the fake town whose work does not close by itself (the test rejects or cancels it).
const SLOW_RIG: &str = "demo";
/// Rig the fake town does not know: `gt sling` fails for good, the claim must be released.
const UNKNOWN_RIG: &str = "nowhere";
const REJECT_REASON: &str = "failed: tests do not pass";
const LEASE_NAME: &str = "gastown-operator";
const REPLICAS: [&str; 2] = ["replica-a", "replica-b"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Merged by Gas Town: `Succeeded`.
    Merge,
    /// Closed with a failure reason by the test once running: `Failed`.
    Reject,
    /// Deleted by the test once its bead is hooked or running.
    Cancel,
    /// Unknown rig and a claim about to expire: `Released`.
    Expire,
}

impl Kind {
    fn of(index: usize) -> Kind {
        match index % 10 {
            7 => Kind::Reject,
            8 => Kind::Cancel,
            9 => Kind::Expire,
            _ => Kind::Merge,
        }
    }
}

fn claim_name(index: usize) -> String {
    format!("claim-{index:04}")
}

/// splitmix64: reproducible random points from one seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    RestartApiServer,
    /// SIGKILL one of the replicas, chosen at random.
    KillRandomReplica,
    /// SIGKILL the Lease holder.
    KillLeader,
}

/// When each fault fires, as a fraction of the run's progress (see `progress`), plus
/// a random delay so kills land at arbitrary points of a reconcile.
fn chaos_schedule(rng: &mut Rng) -> Vec<(f64, Duration, Event)> {
    let mut events = vec![
        Event::RestartApiServer,
        Event::KillRandomReplica,
        Event::KillRandomReplica,
        Event::KillRandomReplica,
        Event::KillLeader,
    ];
    let mut schedule: Vec<(f64, Duration, Event)> = events
        .drain(..)
        .map(|e| (rng.range(0.05, 0.85), Duration::from_millis(rng.index(1500) as u64), e))
        .collect();
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    schedule
}

/// A controller replica: started again (same identity, like a pod restarted by the kubelet)
/// after it exits or is killed.
struct Replica {
    identity: &'static str,
    process: Option<ControllerProcess>,
    start_at: Option<Instant>,
    exits: u32,
    kills: u32,
}

struct RunOptions {
    label: &'static str,
    claims: usize,
    chaos: bool,
    seed: u64,
}

#[derive(Default)]
struct Report {
    label: &'static str,
    claims: usize,
    to_terminal: Duration,
    deletion: Duration,
    latencies: Vec<Duration>,
    calls: usize,
    injected_failures: usize,
    injected_hangs: usize,
    /// Calls that did their work, then failed, hung or were killed.
    after_work_faults: usize,
    slings: usize,
    dispatches: usize,
    kills: u32,
    exits: u32,
    api_restarts: u32,
    api_restart_time: Duration,
    releases: usize,
    violations: Vec<String>,
    logs: PathBuf,
}

/// What the test knows of one claim.
struct Claim {
    kind: Kind,
    uid: String,
    created: Instant,
    /// When it was seen terminal (or gone, for Cancel).
    finished: Option<Instant>,
    /// The object as last seen terminal, before the final deletion.
    last: Option<Automaton>,
    /// Reject: the bead was closed by the test. Cancel: the delete was accepted.
    acted: bool,
}

struct Run {
    opts: RunOptions,
    cluster: Arc<TestCluster>,
    ns: TestNamespace,
    town: FakeGasTown,
    /// The town's other work ([`OTHER_BEADS`]), not the controller's.
    other_beads: Vec<String>,
    api: Api<Automaton>,
    replicas: Vec<Replica>,
    rng: Rng,
}

/// Gives up on one API request after this long (the server may be restarting).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn within<T, E: std::fmt::Display>(what: &str, f: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

impl Run {
    async fn new(cluster: Arc<TestCluster>, opts: RunOptions) -> Run {
        let ns = cluster.namespace(&format!("chaos-{}", opts.label)).await.unwrap();
        let town = FakeGasTown::new().unwrap();
        town.set_config(&Config {
            auto_progress: Some(AutoProgress {
                start_after_ms: START_AFTER_MS,
                close_after_ms: Some(CLOSE_AFTER_MS),
                close_reason: None,
                // The rejected and cancelled work runs in the other rig, whose agents are
                // slower than the test: it closes or deletes that work itself.
                close_rigs: Some(vec!["gastown".to_string()]),
            }),
            ..Config::default()
        })
        .unwrap();
        let other_beads = town.fill_with_beads(OTHER_BEADS, 1).unwrap();
        let api = Api::namespaced(cluster.client(), ns.name());
        let replicas = REPLICAS
            .iter()
            .map(|identity| Replica {
                identity,
                process: None,
                start_at: Some(Instant::now()),
                exits: 0,
                kills: 0,
            })
            .collect();
        let rng = Rng(opts.seed ^ if opts.chaos { 0xC4A0_5000 } else { 0 });
        Run {
            opts,
            cluster,
            ns,
            town,
            other_beads,
            api,
            replicas,
            rng,
        }
    }

    fn log_path(&self, identity: &str) -> PathBuf {
        self.town.state_dir().join(format!("{identity}.log"))
    }

    fn spawn(&self, identity: &str) -> ControllerProcess {
        let town = &self.town;
        let claim_timeout = format!("{}s", CLAIM_TIMEOUT.as_secs());
        let args: Vec<String> = [
            "--namespaces",
            self.ns.name(),
            "--town-root",
            &town.town_root().display().to_string(),
            "--gt-path",
            &town.gt_path().display().to_string(),
            "--bd-path",
            &town.bd_path().display().to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "1s",
            "--command-timeout",
            COMMAND_TIMEOUT,
            "--claim-timeout",
            &claim_timeout,
            "--create-outcome-wait",
            CREATE_OUTCOME_WAIT,
            "--log-format",
            "json",
            "--leader-election",
            "--lease-namespace",
            self.ns.name(),
            "--lease-duration",
            LEASE_DURATION,
            "--identity",
            identity,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ControllerProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
            &self.cluster.kubeconfig(),
            &args,
            &self.log_path(identity),
        )
        .unwrap()
    }

    /// Restarts replicas that exited (a replica that loses its lease exits) or were killed.
    fn supervise(&mut self) {
        let now = Instant::now();
        for i in 0..self.replicas.len() {
            let exited = self.replicas[i].process.as_mut().and_then(ControllerProcess::try_wait);
            if exited.is_some() {
                let r = &mut self.replicas[i];
                r.process = None;
                r.exits += 1;
                r.start_at = Some(now + Duration::from_secs(1));
            }
            if self.replicas[i].process.is_none() && self.replicas[i].start_at.is_some_and(|t| t <= now) {
                let process = self.spawn(self.replicas[i].identity);
                let r = &mut self.replicas[i];
                r.process = Some(process);
                r.start_at = None;
            }
        }
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.cluster.client(), self.ns.name());
        within("reading the Lease", leases.get(LEASE_NAME))
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// Kills a replica; `None` when none is running (the caller retries once one has restarted).
    async fn kill(&mut self, event: Event) -> Option<String> {
        let running: Vec<usize> = (0..self.replicas.len())
            .filter(|i| self.replicas[*i].process.is_some())
            .collect();
        if running.is_empty() {
            return None;
        }
        let holder = if event == Event::KillLeader {
            self.lease_holder().await
        } else {
            None
        };
        let target = holder
            .as_deref()
            .and_then(|h| running.iter().copied().find(|i| self.replicas[*i].identity == h))
            .unwrap_or_else(|| running[self.rng.index(running.len())]);
        let restart_in = Duration::from_millis(500 + self.rng.index(2000) as u64);
        let r = &mut self.replicas[target];
        if let Some(mut p) = r.process.take() {
            p.kill();
        }
        r.kills += 1;
        r.start_at = Some(Instant::now() + restart_in);
        let leader = holder.map(|h| format!(", lease holder {h}")).unwrap_or_default();
        Some(format!(
            "SIGKILL {}{leader} ({event:?}), restarted in {restart_in:?}",
            r.identity
        ))
    }

    fn report_stuck(&self, claims: &BTreeMap<String, Claim>, seen: &HashMap<String, Automaton>) -> String {
        let mut out = String::new();
        for (name, c) in claims {
            if c.finished.is_some() {
                continue;
            }
            let status = seen
                .get(name)
                .map(|a| serde_json::to_string(&a.status).unwrap_or_default())
                .unwrap_or_else(|| "(not seen)".into());
            out.push_str(&format!("\n  {name} ({:?}, uid {}): {status}", c.kind, c.uid));
        }
        out
    }

    async fn execute(mut self) -> Report {
        let opts_claims = self.opts.claims;
        let started = Instant::now();
        let mut report = Report {
            label: self.opts.label,
            claims: opts_claims,
            logs: self.town.state_dir(),
            ..Report::default()
        };
        let mut schedule = if self.opts.chaos {
            chaos_schedule(&mut self.rng)
        } else {
            Vec::new()
        };
        if self.opts.chaos {
            let faults = Faults {
                fail_rate: FAIL_RATE,
                hang_rate: HANG_RATE,
                hang_seconds: Some(HANG_SECONDS),
                after_work_fail_rate: AFTER_WORK_RATE,
                after_work_hang_rate: AFTER_WORK_RATE,
                after_work_kill_rate: AFTER_WORK_RATE,
                ..Faults::default()
            }
            .after_work_verbs(AFTER_WORK_VERBS)
            .seed(self.opts.seed);
            self.town.set_faults(&faults).unwrap();
            println!("[{}] schedule (progress, delay, event): {schedule:?}", self.opts.label);
        }
        self.supervise();

        // Claims are created in the background, one every CREATE_EVERY, the way the claim
        // policy leaves them; creation retries through API server restarts.
        let created: Arc<Mutex<BTreeMap<String, (String, Instant)>>> = Arc::default();
        let creator = {
            let api = self.api.clone();
            let created = Arc::clone(&created);
            tokio::spawn(async move {
                for index in 0..opts_claims {
                    let name = claim_name(index);
                    let uid = create_claim(&api, index).await;
                    created.lock().unwrap().insert(name, (uid, Instant::now()));
                    tokio::time::sleep(CREATE_EVERY).await;
                }
            })
        };

        let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
        let mut seen: HashMap<String, Automaton> = HashMap::new();
        let mut restart: Option<tokio::task::JoinHandle<(Instant, Result<(), String>)>> = None;
        let mut pending_event: Option<(Instant, Event)> = None;
        let deadline = started + Duration::from_secs(90) + Duration::from_secs(2) * opts_claims as u32;
        loop {
            self.supervise();
            for (name, (uid, at)) in created.lock().unwrap().iter() {
                claims.entry(name.clone()).or_insert_with(|| {
                    let index: usize = name.trim_start_matches("claim-").parse().unwrap();
                    Claim {
                        kind: Kind::of(index),
                        uid: uid.clone(),
                        created: *at,
                        finished: None,
                        last: None,
                        acted: false,
                    }
                });
            }

            // What the API says (skipped while the server is down).
            let listed = within("listing Automatons", self.api.list(&ListParams::default())).await;
            if let Ok(list) = &listed {
                let present: HashMap<String, &Automaton> = list.items.iter().map(|a| (a.name_any(), a)).collect();
                for (name, c) in claims.iter_mut() {
                    match present.get(name) {
                        Some(a) => {
                            seen.insert(name.clone(), (*a).clone());
                            if c.finished.is_none() && c.kind != Kind::Cancel && a.is_terminal() {
                                // Released: the controller also removes the claim; wait for it.
                                if a.phase() != Some(Phase::Released) || a.claimed_by().is_none() {
                                    c.finished = Some(Instant::now());
                                    c.last = Some((*a).clone());
                                }
                            }
                        }
                        None if c.kind == Kind::Cancel && c.acted && c.finished.is_none() => {
                            c.finished = Some(Instant::now())
                        }
                        None => {}
                    }
                }
            }

            // Gas Town's side: reject and cancel once the work is with an agent.
            let beads = self.town.beads().unwrap_or_default();
            let by_ref: HashMap<&str, &Value> = beads
                .iter()
                .filter_map(|b| Some((b["external_ref"].as_str()?, b)))
                .collect();
            for (name, c) in claims.iter_mut() {
                if c.acted || !matches!(c.kind, Kind::Reject | Kind::Cancel) {
                    continue;
                }
                let Some(bead) = by_ref.get(external_ref(self.ns.name(), name, &c.uid).as_str()) else {
                    continue;
                };
                let status = bead["status"].as_str().unwrap_or_default();
                match c.kind {
                    Kind::Reject if status == "in_progress" => {
                        c.acted = self
                            .town
                            .close(bead["id"].as_str().unwrap_or_default(), REJECT_REASON)
                            .is_ok();
                    }
                    Kind::Cancel if matches!(status, "hooked" | "in_progress") => {
                        c.acted = delete(&self.api, name).await.is_ok();
                    }
                    _ => {}
                }
            }

            // Faults, at random points of the run.
            let progress = progress(&claims, &seen, opts_claims);
            if pending_event.is_none() && schedule.first().is_some_and(|(at, _, _)| progress >= *at) {
                let (_, delay, event) = schedule.remove(0);
                pending_event = Some((Instant::now() + delay, event));
            }
            if let Some((_, event)) = pending_event.filter(|(at, _)| *at <= Instant::now()) {
                pending_event = None;
                let what = match event {
                    Event::RestartApiServer => {
                        let cluster = Arc::clone(&self.cluster);
                        restart = Some(tokio::spawn(async move {
                            let t = Instant::now();
                            let result = cluster.restart_apiserver().await.map_err(|e| format!("{e:#}"));
                            (t, result)
                        }));
                        report.api_restarts += 1;
                        Some("restarting the API server".to_string())
                    }
                    kill => self.kill(kill).await,
                };
                match what {
                    Some(what) => println!(
                        "[{}] {:>6.1}s progress {:.2}: {what}",
                        self.opts.label,
                        started.elapsed().as_secs_f64(),
                        progress
                    ),
                    // Every replica is being restarted: kill one once it is back.
                    None => pending_event = Some((Instant::now() + Duration::from_millis(100), event)),
                }
            }
            if let Some(handle) = restart.take_if(|h| h.is_finished()) {
                let (t, result) = handle.await.unwrap();
                report.api_restart_time = t.elapsed();
                if let Err(e) = result {
                    panic!("restarting the API server failed: {e}");
                }
                println!(
                    "[{}] {:>6.1}s API server back after {:?}",
                    self.opts.label,
                    started.elapsed().as_secs_f64(),
                    report.api_restart_time
                );
            }

            let all_done = claims.len() == opts_claims && claims.values().all(|c| c.finished.is_some());
            if all_done && schedule.is_empty() && pending_event.is_none() && restart.is_none() {
                break;
            }
            if Instant::now() > deadline {
                let stuck = self.report_stuck(&claims, &seen);
                panic!(
                    "[{}] seed {}: not every claim finished within {:?} (events left: {schedule:?}); logs in {}; unfinished:{stuck}",
                    self.opts.label,
                    self.opts.seed,
                    deadline - started,
                    self.town.state_dir().display()
                );
            }
            tokio::time::sleep(TICK).await;
        }
        creator.await.unwrap();
        report.to_terminal = started.elapsed();
        report.latencies = claims.values().filter_map(|c| Some(c.finished? - c.created)).collect();

        // Everything is deleted (faults still on, no more kills); the controller lets go.
        let deleting = Instant::now();
        for name in claims.keys() {
            loop {
                match delete(&self.api, name).await {
                    Ok(()) => break,
                    Err(e) => {
                        assert!(deleting.elapsed() < Duration::from_secs(60), "deleting {name}: {e}");
                        tokio::time::sleep(TICK).await;
                    }
                }
            }
        }
        let deletion_deadline = Duration::from_secs(60) + Duration::from_millis(500) * opts_claims as u32;
        loop {
            self.supervise();
            if let Ok(list) = within("listing Automatons", self.api.list(&ListParams::default())).await {
                if list.items.is_empty() {
                    break;
                }
                if deleting.elapsed() > deletion_deadline {
                    let left: Vec<String> = list
                        .items
                        .iter()
                        .map(|a| format!("{} {:?} finalizers {:?}", a.name_any(), a.phase(), a.finalizers()))
                        .collect();
                    panic!(
                        "[{}] seed {}: Automatons still there {deletion_deadline:?} after deletion: {left:?}",
                        self.opts.label, self.opts.seed
                    );
                }
            }
            tokio::time::sleep(TICK).await;
        }
        report.deletion = deleting.elapsed();

        for r in &mut self.replicas {
            report.kills += r.kills;
            report.exits += r.exits;
            if let Some(mut p) = r.process.take() {
                p.kill();
            }
        }
        // Calls of the killed processes that were already running finish and log themselves.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.town.clear_faults();
        self.check(&claims, &mut report);
        report
    }

    /// The invariants, from the call log, the beads and the objects as last seen.
    fn check(&self, claims: &BTreeMap<String, Claim>, report: &mut Report) {
        let ns = self.ns.name();
        let calls: Vec<Call> = self.town.calls().unwrap();
        let beads = self.town.beads().unwrap();
        report.calls = calls.len();
        report.injected_failures = calls.iter().filter(|c| c.fault.as_deref() == Some("fail")).count();
        report.injected_hangs = calls.iter().filter(|c| c.hung).count();
        report.after_work_faults = calls
            .iter()
            .filter(|c| c.fault.as_deref().is_some_and(|f| f.starts_with("after_work")))
            .count();
        report.slings = calls
            .iter()
            .filter(|c| c.tool == "gt" && c.verb() == Some("sling"))
            .count();
        report.dispatches = calls.iter().filter(|c| c.dispatched).count();
        report.releases = claims
            .values()
            .filter(|c| c.last.as_ref().and_then(Automaton::phase) == Some(Phase::Released))
            .count();
        let v = &mut report.violations;

        // `FakeGasTown::dispatch_count` for every bead at once: slings that really hooked it.
        let mut dispatches: HashMap<&str, usize> = HashMap::new();
        for c in calls.iter().filter(|c| c.dispatched) {
            if let Some(bead) = beads
                .iter()
                .filter_map(|b| b["id"].as_str())
                .find(|id| c.is_sling_of(id))
            {
                *dispatches.entry(bead).or_default() += 1;
            }
        }
        let mut by_ref: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        let ours = |b: &&Value| !self.other_beads.iter().any(|o| b["id"].as_str() == Some(o.as_str()));
        let others_left = beads.iter().filter(|b| !ours(b)).count();
        if others_left != OTHER_BEADS {
            v.push(format!(
                "the town's other work changed: {others_left} of its {OTHER_BEADS} beads left"
            ));
        }
        for b in beads.iter().filter(|b| !ours(b) && b["status"] != "open") {
            v.push(format!("the town's other work was touched: {b}"));
        }
        for b in beads.iter().filter(ours) {
            let r = b["external_ref"].as_str().unwrap_or("(none)");
            by_ref.entry(r).or_default().push(b);
            let id = b["id"].as_str().unwrap_or_default();
            if b["status"] != "closed" {
                v.push(format!(
                    "orphaned bead: {id} ({r}) is {} after every Automaton was deleted (assignee {}, slung {} time(s))",
                    b["status"],
                    b["assignee"],
                    dispatches.get(id).copied().unwrap_or(0)
                ));
            }
        }
        for (bead, n) in &dispatches {
            if *n > 1 {
                v.push(format!(
                    "duplicate dispatch: bead {bead} was hooked by {n} `gt sling` calls"
                ));
            }
        }
        let mut known_refs = Vec::new();
        for (name, c) in claims {
            let r = external_ref(ns, name, &c.uid);
            let found = by_ref.get(r.as_str()).cloned().unwrap_or_default();
            known_refs.push(r.clone());
            if found.len() > 1 {
                let ids: Vec<&str> = found.iter().filter_map(|b| b["id"].as_str()).collect();
                v.push(format!("{name}: {} beads for one Automaton: {ids:?}", found.len()));
            }
            let bead = found.first().copied();
            let bead_id = bead.and_then(|b| b["id"].as_str()).unwrap_or_default();
            let hooked = dispatches.get(bead_id).copied().unwrap_or(0);
            let last = c.last.as_ref();
            let recorded = last.and_then(|a| a.status.as_ref()?.gastown.as_ref()?.bead_id.clone());
            if let (Some(recorded), Some(_)) = (&recorded, bead)
                && recorded != bead_id
            {
                v.push(format!(
                    "{name}: status records bead {recorded}, but the bead with its external ref is {bead_id}"
                ));
            }
            match c.kind {
                Kind::Merge | Kind::Reject => {
                    let want = if c.kind == Kind::Merge {
                        Phase::Succeeded
                    } else {
                        Phase::Failed
                    };
                    let phase = last.and_then(Automaton::phase);
                    if phase != Some(want) {
                        v.push(format!(
                            "{name}: ended {phase:?}, expected {want:?}: {}",
                            status_json(last)
                        ));
                    }
                    if let Some(a) = last
                        && (!a.is_claimed_by("gastown-local") || !a.finalizers().iter().any(|f| f == RELEASE_FINALIZER))
                    {
                        v.push(format!(
                            "{name}: claim lost: claimed-by {:?}, finalizers {:?} while {phase:?}",
                            a.claimed_by(),
                            a.finalizers()
                        ));
                    }
                    if bead.is_none() || hooked != 1 {
                        v.push(format!("{name}: bead {bead_id:?} hooked {hooked} times, expected once"));
                    }
                }
                Kind::Cancel => {
                    if bead.is_none() || hooked != 1 {
                        v.push(format!(
                            "{name}: bead {bead_id:?} hooked {hooked} times before the deletion, expected once"
                        ));
                    }
                    if let Some(b) = bead
                        && !b["close_reason"].as_str().unwrap_or_default().contains("deleted")
                    {
                        v.push(format!(
                            "{name}: deleted while running, but bead {bead_id} closed with {}",
                            b["close_reason"]
                        ));
                    }
                }
                Kind::Expire => {
                    if hooked != 0 {
                        v.push(format!(
                            "{name}: bead {bead_id} for an unknown rig was hooked {hooked} times"
                        ));
                    }
                    match last {
                        Some(a) if a.phase() == Some(Phase::Released) => {
                            let annotations = a.metadata.annotations.clone().unwrap_or_default();
                            let marks: Vec<&String> = annotations
                                .keys()
                                .filter(|k| {
                                    [
                                        CLAIMED_AT_ANNOTATION,
                                        CLAIM_REQUESTED_BY_ANNOTATION,
                                        CLAIM_REQUEST_ANNOTATION,
                                    ]
                                    .contains(&k.as_str())
                                })
                                .collect();
                            if a.spec.execution_mode != ExecutionMode::Kubernetes
                                || a.claimed_by().is_some()
                                || !marks.is_empty()
                                || a.finalizers().iter().any(|f| f == RELEASE_FINALIZER)
                            {
                                v.push(format!(
                                    "{name}: claim lost: Released but executionMode {:?}, claimed-by {:?}, marks {marks:?}, finalizers {:?}",
                                    a.spec.execution_mode,
                                    a.claimed_by(),
                                    a.finalizers()
                                ));
                            }
                            let released = a
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Released"));
                            if released.map(|c| c.status) != Some(ConditionStatus::True) {
                                v.push(format!(
                                    "{name}: Released without condition Released=True: {}",
                                    status_json(last)
                                ));
                            }
                        }
                        other => v.push(format!(
                            "{name}: ended {:?}, expected Released",
                            other.and_then(Automaton::phase)
                        )),
                    }
                }
            }
        }
        for (r, found) in &by_ref {
            if !known_refs.iter().any(|k| k == r) {
                let ids: Vec<&str> = found.iter().filter_map(|b| b["id"].as_str()).collect();
                v.push(format!(
                    "beads {ids:?} have an external ref of no Automaton of this run: {r}"
                ));
            }
        }
    }
}

/// Deletes an Automaton; already gone counts as done (an earlier answer may have been lost).
async fn delete(api: &Api<Automaton>, name: &str) -> Result<(), String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, api.delete(name, &DeleteParams::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Ok(()),
        Ok(Err(e)) => Err(format!("deleting {name}: {e}")),
        Err(_) => Err(format!("deleting {name}: timed out")),
    }
}

fn status_json(a: Option<&Automaton>) -> String {
    a.map(|a| serde_json::to_string(&a.status).unwrap_or_default())
        .unwrap_or_else(|| "(never seen)".into())
}

fn external_ref(ns: &str, name: &str, uid: &str) -> String {
    format!("automaton:{ns}/{name}/{uid}")
}

/// Progress of the run in [0, 1]: a quarter for claims with a bead, three quarters for
/// finished claims (creation and bead creation are quick; faults should land all along).
fn progress(claims: &BTreeMap<String, Claim>, seen: &HashMap<String, Automaton>, total: usize) -> f64 {
    let with_bead = claims
        .keys()
        .filter(|n| {
            seen.get(*n).is_some_and(|a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.gastown.as_ref())
                    .is_some_and(|g| g.bead_id.is_some())
            })
        })
        .count();
    let finished = claims.values().filter(|c| c.finished.is_some()).count();
    (with_bead + 3 * finished) as f64 / (4 * total.max(1)) as f64
}

/// Creates claim `index` as the claim policy leaves it (retrying through API outages) and
/// returns its uid.
async fn create_claim(api: &Api<Automaton>, index: usize) -> String {
    let name = claim_name(index);
    let kind = Kind::of(index);
    let mut spec = json!({"task": {"title": format!("Task {name}"), "description": "chaos"}, "executionMode": "local", "rig": "gastown"});
    // Whole seconds, as the claim policy writes it (`now_rfc3339`).
    let mut claimed_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    match kind {
        Kind::Merge => {}
        Kind::Reject | Kind::Cancel => spec["rig"] = json!(SLOW_RIG),
        Kind::Expire => {
            spec["rig"] = json!(UNKNOWN_RIG);
            let back = jiff::SignedDuration::try_from(CLAIM_TIMEOUT - EXPIRE_AFTER).unwrap();
            claimed_at = claimed_at.checked_sub(back).unwrap();
        }
    }
    let obj: Automaton = serde_json::from_value(json!({
        "apiVersion": "olympus.io/v1alpha1", "kind": "Automaton",
        "metadata": {"name": name, "labels": {CLAIMED_BY_LABEL: "gastown-local"},
                     "annotations": {CLAIMED_AT_ANNOTATION: claimed_at.to_string(), CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
        "spec": spec,
    }))
    .unwrap();
    let give_up = Instant::now() + Duration::from_secs(90);
    loop {
        match within("creating", api.create(&PostParams::default(), &obj)).await {
            Ok(a) => return a.uid().unwrap(),
            Err(e) => {
                // The create may have landed before the connection broke.
                if let Ok(Some(a)) = within("reading", api.get_opt(&name)).await {
                    return a.uid().unwrap();
                }
                assert!(Instant::now() < give_up, "creating {name}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn print_table(reports: &[&Report], seed: u64) {
    println!();
    println!(
        "chaos test: {} claims, seed {seed} ({SEED_ENV}={seed} to replay the random points)",
        reports[0].claims
    );
    println!(
        "{:<10} | {:>9} | {:>9} | {:>9} | {:>7} | {:>7} | {:>7} | {:>6} | {:>9} | {:>6} | {:>10} | {:>8} | {:>5} | {:>5} | {:>11}",
        "run",
        "terminal",
        "deletion",
        "total",
        "p50",
        "p95",
        "max",
        "calls",
        "fail/hang",
        "slings",
        "dispatches",
        "released",
        "kills",
        "exits",
        "API restart"
    );
    let base = reports[0].to_terminal.as_secs_f64() + reports[0].deletion.as_secs_f64();
    for r in reports {
        let total = r.to_terminal + r.deletion;
        println!(
            "{:<10} | {:>8.1}s | {:>8.1}s | {:>8.1}s | {:>6.1}s | {:>6.1}s | {:>6.1}s | {:>6} | {:>4}/{:<4} | {:>6} | {:>10} | {:>8} | {:>5} | {:>5} | {:>10.1}s",
            r.label,
            r.to_terminal.as_secs_f64(),
            r.deletion.as_secs_f64(),
            total.as_secs_f64(),
            percentile(&r.latencies, 0.5).as_secs_f64(),
            percentile(&r.latencies, 0.95).as_secs_f64(),
            percentile(&r.latencies, 1.0).as_secs_f64(),
            r.calls,
            r.injected_failures,
            r.injected_hangs,
            r.slings,
            r.dispatches,
            r.releases,
            r.kills,
            r.exits,
            r.api_restart_time.as_secs_f64(),
        );
    }
    for r in reports {
        println!(
            "[{}] calls that did their work, then failed, hung or were killed: {}",
            r.label, r.after_work_faults
        );
    }
    if let Some(chaos) = reports.get(1) {
        let total = chaos.to_terminal.as_secs_f64() + chaos.deletion.as_secs_f64();
        println!("chaos / fault-free total time: {:.2}x", total / base.max(0.001));
    }
    println!(
        "(terminal: first claim created → every claim terminal or deleted; p50/p95/max: per claim, created → terminal; exits: replicas that stopped by themselves after losing the lease)"
    );
    println!();
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_survive_api_restart_kills_leader_loss_and_faulty_gastown() {
    let claims = env_number(CLAIMS_ENV).map_or(DEFAULT_CLAIMS, |n| usize::try_from(n).unwrap().max(10));
    let seed = env_number(SEED_ENV).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("chaos: {claims} claims, seed {seed}");
    // Its own API server: this test restarts it.
    let cluster = Arc::new(TestCluster::start_dedicated().await.unwrap());
    cluster.install_crds().await.unwrap();

    let baseline = Run::new(
        Arc::clone(&cluster),
        RunOptions {
            label: "fault-free",
            claims,
            chaos: false,
            seed,
        },
    )
    .await;
    let baseline = baseline.execute().await;
    let chaos = Run::new(
        Arc::clone(&cluster),
        RunOptions {
            label: "chaos",
            claims,
            chaos: true,
            seed,
        },
    )
    .await;
    let chaos = chaos.execute().await;
    print_table(&[&baseline, &chaos], seed);

    let mut failures = Vec::new();
    for r in [&baseline, &chaos] {
        for violation in &r.violations {
            failures.push(format!("[{}] {violation}", r.label));
        }
    }
    assert_eq!(chaos.api_restarts, 1, "the API server was not restarted");
    assert!(chaos.kills >= 4, "expected four SIGKILLs, got {}", chaos.kills);
    assert!(
        chaos.injected_failures > 0 && chaos.injected_hangs > 0,
        "no fault was injected"
    );
    assert!(chaos.after_work_faults > 0, "no after-the-work fault was injected");
    assert!(
        failures.is_empty(),
        "seed {seed} ({SEED_ENV}={seed} replays the random points; FAKE_GASTOWN_KEEP=1 keeps the towns and controller logs, {} and {}):\n{}",
        baseline.logs.display(),
        chaos.logs.display(),
        failures.join("\n")
    );
}

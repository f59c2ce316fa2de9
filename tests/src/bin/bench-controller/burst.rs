//! One burst (module docs, steps 1-5): N claimed Automatons created at once against a fresh
//! controller and fake town, then their whole lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use gastown_crds::Automaton;
use gastown_crds::contract::DEFAULT_CLAIMER;
use gastown_tests::cluster::TestNamespace;
use gastown_tests::fake_gastown::{AutoProgress, Call, Config as TownConfig, FakeGasTown};
use gastown_tests::stats::{median, round3};
use kube::Api;
use serde_json::{Value, json};

use crate::Ctx;
use crate::automatons::{count_events, create_all, create_sentinel, delete_all, single_town};
use crate::controller::{Controller, Metrics};
use crate::now_ms;
use crate::procfs::{CpuSnapshot, ProcSample, cpu_delta, cpu_snapshot, read_proc};
use crate::report::{num, percentiles};
use crate::watch::{Seen, Shared, lock, start_floor_watcher, start_tracker, wait_count};

/// A fresh namespace and fake town, watched by the bench's two observers.
pub struct Stage {
    pub ns: TestNamespace,
    pub town: FakeGasTown,
    pub api: Api<Automaton>,
    pub seen: Shared,
    observers: [tokio::task::JoinHandle<()>; 2],
}

impl Stage {
    pub async fn new(ctx: &Ctx<'_>, namespace: &str) -> Result<Stage> {
        let ns: TestNamespace = ctx.cluster.namespace(namespace).await?;
        let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
        let api: Api<Automaton> = Api::namespaced(ctx.cluster.client(), ns.name());
        let seen: Shared = Shared::default();
        let observers = [
            start_floor_watcher(api.clone(), seen.clone()).await?,
            start_tracker(api.clone(), seen.clone()).await?,
        ];
        Ok(Stage {
            ns,
            town,
            api,
            seen,
            observers,
        })
    }

    pub fn stop_observers(&self) {
        for o in &self.observers {
            o.abort();
        }
    }
}

/// What a burst gives the rest of the run.
pub struct BurstOutcome {
    pub result: Value,
    pub idle_rss_kib: u64,
    pub succeeded_status: Option<Value>,
}

/// The controller's state when the burst's claims were all Dispatched (or the wait ended).
struct Dispatch {
    t0: u64,
    create_all_ms: u64,
    all_dispatched: bool,
    proc: ProcSample,
    cpu: CpuSnapshot,
    metrics: Metrics,
    calls: Vec<Call>,
    last_dispatch_ms: u64,
    beads: HashMap<String, String>,
    updates: BTreeMap<String, usize>,
    latency: Latencies,
}

/// Latencies (ms) from each create's return, measured as the claims were all Dispatched.
struct Latencies {
    /// To the first `gt sling` that hooked the claim's bead (the fake's log).
    sling: Vec<f64>,
    last_sling: u64,
    /// To the bare watcher's first event (the floor).
    floor: Vec<f64>,
    /// To the tracker seeing Dispatched.
    observed: Vec<f64>,
}

/// The lifecycle after dispatch: the JSON report, and the metrics and CPU at its end.
struct Lifecycle {
    report: Value,
    metrics: Option<Metrics>,
    cpu: CpuSnapshot,
}

pub async fn run_burst(ctx: &Ctx<'_>, n: usize) -> Result<BurstOutcome> {
    eprintln!("burst of {n}:");
    let stage = Stage::new(ctx, &format!("bench-{n}")).await?;
    create_sentinel(&stage.api).await?;
    let log = format!("controller-burst-{n}.log");
    let controller = Controller::spawn(ctx, stage.ns.name(), &stage.town, DEFAULT_CLAIMER, &log).await?;
    let pid = controller.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = read_proc(pid)?;
    let cpu0 = cpu_snapshot(pid, &ctx.pids);
    let names: Vec<String> = (0..n).map(|i| format!("b{n}-{i:05}")).collect();
    let dispatch = dispatch(ctx, &stage, &controller, &names).await?;
    let lifecycle = if dispatch.all_dispatched {
        lifecycle(ctx, &stage, &controller, &names).await?
    } else {
        Lifecycle {
            report: json!({"completed": false}),
            metrics: None,
            cpu: dispatch.cpu,
        }
    };
    let end = read_proc(pid)?;
    let probe = fake_probe(&stage.town, dispatch.beads.values().next().map(String::as_str));
    let (succeeded_status, updates_total) = {
        let s = lock(&stage.seen);
        (s.succeeded_status.clone(), s.updates.clone())
    };
    drop(controller);
    stage.stop_observers();
    let procs = Procs {
        idle,
        end,
        cpu0,
        tck: ctx.tck,
    };
    let result = burst_result(n, &dispatch, &lifecycle, &procs, updates_total, probe);
    drop(stage);
    Ok(BurstOutcome {
        result,
        idle_rss_kib: idle.rss_kib,
        succeeded_status,
    })
}

/// Creates the claims and waits until the controller has Dispatched them all.
async fn dispatch(ctx: &Ctx<'_>, stage: &Stage, controller: &Controller, names: &[String]) -> Result<Dispatch> {
    let n = names.len();
    let pid = controller.pid();
    let t0 = now_ms();
    let created = create_all(
        &stage.api,
        names,
        ctx.args.in_flight,
        ctx.args.subsecond_claimed_at,
        &single_town,
    )
    .await?;
    let t_created = now_ms();
    eprintln!("  {n} created in {} ms", t_created - t0);
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let all_dispatched = wait_count(&stage.seen, n, timeout, "Dispatched", |s| s.dispatched.len()).await;
    let proc = read_proc(pid)?;
    let cpu = cpu_snapshot(pid, &ctx.pids);
    let metrics = controller.scrape().await?;
    let calls = stage.town.calls()?;
    let (last_dispatch_ms, beads, updates) = {
        let s = lock(&stage.seen);
        (
            s.dispatched.values().copied().max().unwrap_or(t0),
            s.bead.clone(),
            s.updates.clone(),
        )
    };
    eprintln!(
        "  {}/{n} Dispatched after {} ms",
        lock(&stage.seen).dispatched.len(),
        last_dispatch_ms.saturating_sub(t0)
    );
    let (sling, last_sling) = sling_latencies(&calls, &beads, &created, t0);
    let (floor, observed) = watch_latencies(&stage.seen, &created);
    Ok(Dispatch {
        t0,
        create_all_ms: t_created - t0,
        all_dispatched,
        proc,
        cpu,
        metrics,
        calls,
        last_dispatch_ms,
        beads,
        updates,
        latency: Latencies {
            sling,
            last_sling,
            floor,
            observed,
        },
    })
}

/// Gas Town closes the work, the controller reports Succeeded, then the claims are deleted
/// and the controller releases them.
async fn lifecycle(ctx: &Ctx<'_>, stage: &Stage, controller: &Controller, names: &[String]) -> Result<Lifecycle> {
    let n = names.len();
    let seen = &stage.seen;
    let t_close = now_ms();
    stage.town.set_config(&TownConfig {
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
    let all_succeeded = wait_count(seen, n, timeout, "Succeeded", |s| s.succeeded.len()).await;
    let t_succeeded = lock(seen).succeeded.values().copied().max().unwrap_or(t_close);
    let t_delete = now_ms();
    let mut all_deleted = false;
    if all_succeeded {
        delete_all(&stage.api, names, ctx.args.in_flight).await?;
        let timeout = Duration::from_secs(60) + Duration::from_millis(200 * n as u64);
        all_deleted = wait_count(seen, n, timeout, "deleted", |s| s.deleted.len()).await;
    }
    let t_deleted = lock(seen).deleted.values().copied().max().unwrap_or(t_delete);
    eprintln!(
        "  lifecycle: Succeeded {} ms after closing, gone {} ms after deleting",
        t_succeeded.saturating_sub(t_close),
        t_deleted.saturating_sub(t_delete)
    );
    // Let the last reconciles finish their metrics.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_snapshot(controller.pid(), &ctx.pids);
    let metrics = controller.scrape().await?;
    let (event_objects, event_writes) = count_events(ctx.cluster, stage.ns.name()).await.unwrap_or((0, 0));
    let writes = metrics.by("gastown_api_writes_total", "kind");
    let total: f64 = writes.values().sum();
    let (changed, ours) = effective_writes(&lock(seen));
    let report = json!({
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
    Ok(Lifecycle {
        report,
        metrics: Some(metrics),
        cpu,
    })
}

/// Writes that changed the object show up as watch events (updates, and the final finalizer
/// removal as the deletion); the rest of the write requests were no-ops. Returns (the
/// controller's effective writes, the bench's own deletes seen as updates).
fn effective_writes(s: &Seen) -> (usize, usize) {
    let ours: usize = s
        .updates
        .iter()
        .filter(|(k, _)| k.ends_with(": metadata.deletionTimestamp"))
        .map(|(_, c)| c)
        .sum();
    let all: usize = s.updates.values().sum();
    (all - ours + s.deleted.len(), ours)
}

/// Claim-to-dispatch comes from the fake's call log: when the first `gt sling` that hooked each
/// bead was called, by bead.
pub fn first_slings(calls: &[Call]) -> HashMap<String, u64> {
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

/// Claim-to-dispatch latencies (ms) from the fake's log of first slings, and the time of the
/// last sling.
pub fn sling_latencies(
    calls: &[Call],
    beads: &HashMap<String, String>,
    created: &HashMap<String, u64>,
    t0: u64,
) -> (Vec<f64>, u64) {
    let first_sling = first_slings(calls);
    let mut latency = Vec::new();
    let mut last_sling = t0;
    for (name, bead) in beads {
        if let (Some(sling), Some(done)) = (first_sling.get(bead), created.get(name)) {
            latency.push(*sling as f64 - *done as f64);
            last_sling = last_sling.max(*sling);
        }
    }
    (latency, last_sling)
}

/// Create-to-event latencies (ms) of the bare watcher (the floor) and of the Dispatched status.
fn watch_latencies(seen: &Shared, created: &HashMap<String, u64>) -> (Vec<f64>, Vec<f64>) {
    let s = lock(seen);
    let lat = |m: &HashMap<String, u64>| -> Vec<f64> {
        created
            .iter()
            .filter_map(|(name, done)| m.get(name).map(|t| *t as f64 - *done as f64))
            .collect()
    };
    (lat(&s.first_event), lat(&s.dispatched))
}

fn calls_by_verb(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        *by_verb
            .entry(format!("{} {}", c.tool, c.verb().unwrap_or("?")))
            .or_default() += 1;
    }
    by_verb
}

/// The controller's memory and CPU samples around the burst.
struct Procs {
    idle: ProcSample,
    end: ProcSample,
    cpu0: CpuSnapshot,
    tck: f64,
}

// One JSON field a line: splitting it would only scatter the report's schema.
fn burst_result(
    n: usize,
    d: &Dispatch,
    life: &Lifecycle,
    procs: &Procs,
    updates_total: BTreeMap<String, usize>,
    probe: Value,
) -> Value {
    let final_metrics = life.metrics.as_ref().unwrap_or(&d.metrics);
    let writes_at_dispatch = d.metrics.by("gastown_api_writes_total", "kind");
    let commands: BTreeMap<String, Value> = final_metrics
        .commands()
        .into_iter()
        .map(|(k, (count, mean))| (k, json!({"count": count, "mean_ms": num(mean * 1000.0)})))
        .collect();
    let c2d_count = d.metrics.sum("gastown_claim_to_dispatch_seconds_count", &[]);
    let c2d_sum = d.metrics.sum("gastown_claim_to_dispatch_seconds_sum", &[]);
    let (cpu0, tck) = (&procs.cpu0, procs.tck);
    json!({
        "n": n,
        "all_dispatched": d.all_dispatched,
        "create_all_ms": d.create_all_ms,
        "time_to_all_dispatched_ms": d.last_dispatch_ms.saturating_sub(d.t0),
        "time_to_last_sling_ms": d.latency.last_sling.saturating_sub(d.t0),
        "claim_to_dispatch_ms": percentiles(&d.latency.sling),
        "create_to_dispatched_status_seen_ms": percentiles(&d.latency.observed),
        "floor_watch_event_ms": percentiles(&d.latency.floor),
        "controller_histogram_mean_claim_to_dispatch_ms": num(if c2d_count > 0.0 { c2d_sum / c2d_count * 1000.0 } else { f64::NAN }),
        "api_writes_at_dispatch_by_kind": writes_at_dispatch,
        "api_writes_per_claim_at_dispatch": num(writes_at_dispatch.values().sum::<f64>() / n as f64),
        "object_updates_seen_at_dispatch": d.updates,
        "object_updates_seen_total": updates_total,
        "lifecycle": life.report,
        "gastown_calls_by_verb": calls_by_verb(&d.calls),
        "gastown_calls_per_claim": num(d.calls.len() as f64 / n as f64),
        "gastown_commands": commands,
        "reconciles": final_metrics.sum("gastown_reconciles_total", &[]),
        "reconcile_errors_by_kind": final_metrics.by("gastown_reconcile_errors_total", "kind"),
        "controller": {
            "idle_rss_kib": procs.idle.rss_kib,
            "rss_at_all_dispatched_kib": d.proc.rss_kib,
            "peak_rss_kib": procs.end.hwm_kib,
            "cpu_seconds_burst": round3(d.cpu.controller.saturating_sub(cpu0.controller) as f64 / tck),
            "cpu_seconds_total": round3(life.cpu.controller.saturating_sub(cpu0.controller) as f64 / tck),
        },
        "cpu_seconds_burst_by_process": cpu_delta(cpu0, &d.cpu, tck),
        "cpu_seconds_lifecycle_by_process": cpu_delta(&d.cpu, &life.cpu, tck),
        "fake_cost_after_burst": probe,
    })
}

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
    num(median(&ms))
}

/// What one call of the fake costs with the town as the burst left it.
fn fake_probe(town: &FakeGasTown, bead: Option<&str>) -> Value {
    let internal = |tool: &str, args: &[&str]| {
        let mut c = town.command(tool);
        c.env("FAKE_GASTOWN_INTERNAL", "1");
        c.args(args);
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
        "bd_show_ms": bead.map_or(Value::Null, |b| time_command(10, || internal("bd", &["show", "--json", "--", b]))),
        "bd_list_all_ms": time_command(5, || internal("bd", &["list", "--json", "--all"])),
    })
}

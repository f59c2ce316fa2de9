//! `bench-controller`: the real `gastown-controller` binary against a real kube-apiserver
//! (`TestCluster`) and the fake Gas Town (exec transport, no injected delay).
//!
//! For each burst size (default 100, 500, 2000), in a fresh namespace, fake town and
//! controller process:
//! 1. start two watchers in this process (label `gastown.io/claimed-by`, any town): a bare
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
//! With `--towns 1,K`, each burst also runs spread over K towns (`towns.rs`): K controllers,
//! K fake Gas Towns, the same N claims, dispatch only.
//!
//! Then the cached run: N (default 5000) claimed Automatons in a terminal phase with a real
//! status (copied from the last burst) exist before a controller starts; RSS once it has
//! listed and reconciled them all.
//!
//! `make bench` runs it in release mode; `make bench-smoke` in the dev profile with a small
//! burst (it checks the code works, nothing about speed).

mod automatons;
mod burst;
mod cached;
mod controller;
mod floor;
mod procfs;
mod report;
mod towns;
mod watch;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use gastown_tests::cluster::TestCluster;
use serde_json::{Value, json};

use crate::procfs::{Pids, clock_ticks};
use gastown_tests::stats::{RunInfo, profile, write_report};

#[derive(Debug, Parser)]
#[command(
    name = "bench-controller",
    about = "Controller latency, API writes, memory and scaling"
)]
pub struct Args {
    /// Burst sizes (claimed Automatons created at once).
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    pub bursts: Vec<usize>,
    /// Town counts to run each burst with, comma-separated: 1 is the single-town burst (with
    /// its lifecycle and pipeline floor); K > 1 spreads the same N claims over K towns, each
    /// with its own controller and fake Gas Town (dispatch only; see `towns.rs`).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub towns: Vec<usize>,
    /// Automatons in the controller's cache for the memory measurement (0: skip).
    #[arg(long, default_value_t = 5000)]
    pub cached: usize,
    /// Creates (and deletes) in flight at once.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Controller `--concurrency`.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Controller `--gastown-concurrency`.
    #[arg(long, default_value_t = 8)]
    pub gastown_concurrency: usize,
    /// Controller `--sync-interval`.
    #[arg(long, default_value = "15s")]
    pub sync_interval: String,
    /// Where to write the JSON results.
    #[arg(long)]
    pub out: PathBuf,
    /// The gastown-controller binary (default: next to this executable).
    #[arg(long)]
    pub controller: Option<PathBuf>,
    /// The fake-gastown binary (default: next to this executable).
    #[arg(long)]
    pub fake: Option<PathBuf>,
    /// Directory for the controllers' logs (default: a new temporary directory).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Free text recorded in the results (e.g. "other jobs running").
    #[arg(long, default_value = "")]
    pub note: String,
    /// Write `gastown.io/claimed-at` with nanoseconds (as `e2e.rs` does) instead of whole
    /// seconds (as the claim policy does). Reproduces a status-write loop, see bench/README.md.
    #[arg(long)]
    pub subsecond_claimed_at: bool,
    /// The command that produced the results, recorded in them.
    #[arg(long, default_value = "make bench")]
    pub command: String,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What every part of a run needs.
pub struct Ctx<'a> {
    pub args: &'a Args,
    pub cluster: &'a TestCluster,
    pub pids: Pids,
    pub controller_bin: PathBuf,
    pub fake_bin: PathBuf,
    pub log_dir: PathBuf,
    pub tck: f64,
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

/// `given`, else `name` next to this executable.
fn binary(given: Option<&Path>, name: &str) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => next_to_exe(name),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let run = RunInfo::start();
    let controller_bin = binary(args.controller.as_deref(), "gastown-controller")?;
    let fake_bin = binary(args.fake.as_deref(), "fake-gastown")?;
    let log_dir = match &args.log_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gastown-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&log_dir)?;
    eprintln!(
        "bench-controller ({}): controller logs in {}",
        profile(),
        log_dir.display()
    );
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
    let runs = run_all(&ctx).await?;
    let idle = runs.idle_rss.unwrap_or(0) as f64;
    let scaling = report::scaling(&runs.bursts, idle);
    let targets = report::targets(&args, &runs.bursts, runs.cached.as_ref(), idle);
    let fields = json!({
        "setup": setup(&args),
        "idle_rss_kib": runs.idle_rss,
        "bursts": runs.bursts,
        "scaling": scaling,
        "cached": runs.cached,
        "towns": runs.towns,
        "targets": targets,
    });
    let result = run.report("controller", &args.command, &args.note, fields);
    write_report(&args.out, &result)?;
    report::print_table(&result);
    println!("\nresults: {}", args.out.display());
    Ok(())
}

/// The measurements of a run.
struct Runs {
    bursts: Vec<Value>,
    idle_rss: Option<u64>,
    cached: Option<Value>,
    /// The multi-town bursts (`--towns` above 1).
    towns: Vec<Value>,
}

/// Every burst with its pipeline floor, then the cached run (with the status of the last
/// burst that reached Succeeded).
async fn run_all(ctx: &Ctx<'_>) -> Result<Runs> {
    let mut bursts = Vec::new();
    let mut idle_rss = None;
    let mut status = None;
    let mut towns = Vec::new();
    for &n in &ctx.args.bursts {
        for &k in ctx.args.towns.iter().filter(|&&k| k > 1) {
            towns.push(towns::run_towns(ctx, n, k).await?);
        }
        if !ctx.args.towns.contains(&1) {
            continue;
        }
        let mut outcome = burst::run_burst(ctx, n).await?;
        idle_rss.get_or_insert(outcome.idle_rss_kib);
        if outcome.succeeded_status.is_some() {
            status = outcome.succeeded_status;
        }
        outcome.result["pipeline_floor"] = floor::run_pipeline_floor(ctx, n).await?;
        bursts.push(outcome.result);
    }
    let cached = if ctx.args.cached > 0 {
        Some(cached::run_cached(ctx, ctx.args.cached, status).await?)
    } else {
        None
    };
    Ok(Runs {
        bursts,
        idle_rss,
        cached,
        towns,
    })
}

/// How the run was set up, recorded in the results.
fn setup(args: &Args) -> Value {
    json!({
        "api_server": "kube-apiserver v1.20.2 + etcd (tests/cluster/cluster.sh), no admission webhook",
        "gastown": "fake-gastown (exec transport): one process per call, a file per bead, convoy and polecat plus a small index, under an exclusive lock, no injected delay",
        "controller_flags": format!("--concurrency {} --gastown-concurrency {} --sync-interval {}", args.concurrency, args.gastown_concurrency, args.sync_interval),
        "creates_in_flight": args.in_flight,
        "claimed_at": if args.subsecond_claimed_at { "nanoseconds (--subsecond-claimed-at)" } else { "whole seconds, as the claim policy writes it" },
        "controller_log_filter": "info,kube=warn (JSON)",
    })
}

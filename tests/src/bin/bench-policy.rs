//! `bench-policy`: latency and size of the compiled gastown-claim policy, run in the waPC /
//! wasmtime engine the way Kubewarden's policy-server runs it, against a baseline module (a
//! trivial SDK mutator, `bench/baseline-policy/`) measured in the same run.
//!
//! Scenarios (request fixtures from `policy/test_data/cases/`):
//! * `claim-create`     CREATE with `gastown.io/claim: local`: the claim mutation
//! * `kubernetes-mode`  CREATE in kubernetes mode: pass-through (accepted, not mutated)
//! * `rejection`        CREATE by a user who may not claim: rejected (403)
//! * `status-update`    status UPDATE by the controller: accepted
//! * `fresh-instance`   `claim-create` on a new instance per request (pre-compiled module)
//!
//! Each scenario sends the *same* payload to both modules. Rounds are interleaved (ours, then
//! the baseline, order alternating per round); a round's value is the mean time per call, and
//! the reported number is the median over rounds. Ratios are taken per round (ours / baseline
//! of that round) and their median is reported.
//!
//! Two levels are timed for the warm path:
//! * `validate`  what policy-server does per request: JSON payload built and serialised, the
//!   waPC call, the answer parsed, the JSONPatch diffed (`PolicyInstance::validate`);
//! * `guest`     only the waPC call with pre-serialised bytes (`PolicyInstance::call`).
//!
//! `make bench` runs it in release mode; `make bench-smoke` in the dev profile with few calls
//! (it checks the code works, nothing about speed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use gastown_tests::policy_host::{NoCapabilities, PolicyInstance, PolicyModule, default_module_path};
use gastown_tests::stats::{RunInfo, cell, median, print_targets, profile, quantile, round3, sorted, write_report};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "bench-policy",
    about = "Policy latency and size against a baseline SDK mutator"
)]
struct Args {
    /// The gastown-claim module (default: policy/policy.wasm).
    #[arg(long)]
    module: Option<PathBuf>,
    /// The baseline module (bench/baseline-policy built for wasm32-wasip1).
    #[arg(long)]
    baseline: PathBuf,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 201)]
    rounds: usize,
    /// Warm calls per module, scenario, level and round.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Fresh-instance calls per module and round.
    #[arg(long, default_value_t = 30)]
    fresh_calls: usize,
    /// Warm-up calls per instance before the first round.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Times each module is compiled to measure compile time.
    #[arg(long, default_value_t = 3)]
    compiles: usize,
    /// Where to write the JSON results.
    #[arg(long)]
    out: PathBuf,
    /// Free text recorded in the results (e.g. "other jobs running").
    #[arg(long, default_value = "")]
    note: String,
    /// The command that produced the results, recorded in them.
    #[arg(long, default_value = "make bench")]
    command: String,
}

/// Size target for the module.
const SIZE_LIMIT_BYTES: u64 = 400 * 1000;
/// Latency targets as ratios to the baseline.
const WARM_RATIO_LIMIT: f64 = 1.3;
const FRESH_RATIO_LIMIT: f64 = 1.3;

struct Scenario {
    name: &'static str,
    fixture: &'static str,
    what: &'static str,
    expect_allowed: bool,
    expect_patch: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "claim-create",
        fixture: "create-claim-annotation.json",
        what: "claim mutation on CREATE",
        expect_allowed: true,
        expect_patch: true,
    },
    Scenario {
        name: "claim-3-towns",
        fixture: "towns-route-by-default.json",
        what: "claim routed among three towns (rig, requester, then the default)",
        expect_allowed: true,
        expect_patch: true,
    },
    Scenario {
        name: "kubernetes-mode",
        fixture: "create-kubernetes-mode.json",
        what: "kubernetes-mode pass-through",
        expect_allowed: true,
        expect_patch: false,
    },
    Scenario {
        name: "rejection",
        fixture: "create-unauthorized-user.json",
        what: "rejection (user may not claim)",
        expect_allowed: false,
        expect_patch: false,
    },
    Scenario {
        name: "status-update",
        fixture: "status-update-by-controller.json",
        what: "status update by the controller",
        expect_allowed: true,
        expect_patch: false,
    },
];

struct Loaded {
    scenario: &'static Scenario,
    settings: Value,
    request: Value,
    payload: Vec<u8>,
}

fn load_fixture(s: &'static Scenario) -> Result<Loaded> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/test_data/cases")
        .join(s.fixture);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let case: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(case.get("ledger").is_none(), "{}: needs host capabilities", s.fixture);
    let settings = case["settings"].clone();
    let request = case["request"].clone();
    let payload = json!({"settings": settings, "request": request})
        .to_string()
        .into_bytes();
    Ok(Loaded {
        scenario: s,
        settings,
        request,
        payload,
    })
}

/// Mean nanoseconds per call of `f` over `n` calls.
fn mean_ns(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_nanos() as f64 / n.max(1) as f64)
}

fn summary(values: &[f64]) -> Value {
    let v = sorted(values);
    json!({
        "median": round3(quantile(&v, 0.5)),
        "p25": round3(quantile(&v, 0.25)),
        "p75": round3(quantile(&v, 0.75)),
        "min": round3(v.first().copied().unwrap_or(f64::NAN)),
        "max": round3(v.last().copied().unwrap_or(f64::NAN)),
        "rounds": v.len(),
    })
}

/// Per-round samples (µs per call) of one module on one scenario at one level.
#[derive(Default)]
struct Samples {
    ours: Vec<f64>,
    baseline: Vec<f64>,
}

impl Samples {
    fn push(&mut self, ours: bool, v: f64) {
        if ours {
            self.ours.push(v);
        } else {
            self.baseline.push(v);
        }
    }

    fn ratios(&self) -> Vec<f64> {
        self.ours.iter().zip(&self.baseline).map(|(o, b)| o / b).collect()
    }

    fn to_json(&self) -> Value {
        json!({
            "ours_us": summary(&self.ours),
            "baseline_us": summary(&self.baseline),
            "ratio": summary(&self.ratios()),
        })
    }
}

fn check_answer(which: &str, s: &Scenario, inst: &PolicyInstance, l: &Loaded, baseline: bool) -> Result<()> {
    let answer = inst.validate(&l.settings, &l.request)?;
    if baseline {
        ensure!(
            answer.allowed && answer.patch.is_some(),
            "{which}/{}: the baseline did not mutate: {}",
            s.name,
            answer.response
        );
        return Ok(());
    }
    ensure!(
        answer.allowed == s.expect_allowed && answer.patch.is_some() == s.expect_patch,
        "{which}/{}: unexpected answer (allowed {}, patch {}): {}",
        s.name,
        answer.allowed,
        answer.patch.is_some(),
        answer.response
    );
    Ok(())
}

/// `path` relative to the workspace root when it is inside it (results do not record the
/// machine's directories), else as given.
fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|r| r.canonicalize().ok());
    match (path.canonicalize(), root) {
        (Ok(p), Some(root)) => p.strip_prefix(&root).unwrap_or(&p).display().to_string(),
        _ => path.display().to_string(),
    }
}

fn module_info(path: &Path, compiles: usize) -> Result<(Vec<u8>, Value, PolicyModule)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Compile a few times: policy-server compiles (or loads from its cache) once per policy.
    let mut compile_ms = Vec::new();
    let mut module = None;
    for _ in 0..compiles.max(1) {
        let start = Instant::now();
        module = Some(PolicyModule::from_bytes(&bytes)?);
        compile_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let Some(module) = module else { bail!("no module") };
    let info = json!({
        "path": shown(path),
        "bytes": bytes.len(),
        "kib": round3(bytes.len() as f64 / 1024.0),
        "compile_ms_median": round3(median(&compile_ms)),
    });
    Ok((bytes, info, module))
}

/// The two modules, compiled, and one warm instance of each (policy-server's long-lived mode).
struct Modules {
    ours: PolicyModule,
    base: PolicyModule,
    ours_info: Value,
    base_info: Value,
    ours_warm: PolicyInstance,
    base_warm: PolicyInstance,
    caps: Arc<NoCapabilities>,
}

impl Modules {
    fn load(args: &Args) -> Result<Modules> {
        let module_path = args.module.clone().unwrap_or_else(default_module_path);
        let (_, ours_info, ours) = module_info(&module_path, args.compiles)?;
        let (_, base_info, base) = module_info(&args.baseline, args.compiles)?;
        let caps: Arc<NoCapabilities> = Arc::new(NoCapabilities);
        let ours_warm = ours.instance(caps.clone())?;
        let base_warm = base.instance(caps.clone())?;
        Ok(Modules {
            ours,
            base,
            ours_info,
            base_info,
            ours_warm,
            base_warm,
            caps,
        })
    }

    /// Checks both modules' answers to every scenario, then warms both instances up.
    fn check_and_warm_up(&self, loaded: &[Loaded], warmup: usize) -> Result<()> {
        for l in loaded {
            check_answer("ours", l.scenario, &self.ours_warm, l, false)?;
            check_answer("baseline", l.scenario, &self.base_warm, l, true)?;
            for _ in 0..warmup {
                self.ours_warm.validate(&l.settings, &l.request)?;
                self.base_warm.validate(&l.settings, &l.request)?;
            }
        }
        Ok(())
    }
}

/// Every sample of a run.
struct Measured {
    warm_validate: Vec<Samples>,
    warm_guest: Vec<Samples>,
    fresh: Samples,
    fresh_instantiate: Samples,
}

/// Interleaved rounds: each module in turn (the order alternating per round) on every
/// scenario warm, then on the claim with a fresh instance per call.
fn measure(args: &Args, m: &Modules, loaded: &[Loaded]) -> Result<Measured> {
    let mut r = Measured {
        warm_validate: loaded.iter().map(|_| Samples::default()).collect(),
        warm_guest: loaded.iter().map(|_| Samples::default()).collect(),
        fresh: Samples::default(),
        fresh_instantiate: Samples::default(),
    };
    let claim = &loaded[0];
    for round in 0..args.rounds {
        let ours_first = round % 2 == 0;
        for (i, l) in loaded.iter().enumerate() {
            for ours_turn in [ours_first, !ours_first] {
                let inst = if ours_turn { &m.ours_warm } else { &m.base_warm };
                let v = mean_ns(args.calls, || inst.validate(&l.settings, &l.request).map(drop))? / 1000.0;
                let g = mean_ns(args.calls, || inst.call("validate", &l.payload).map(drop))? / 1000.0;
                r.warm_validate[i].push(ours_turn, v);
                r.warm_guest[i].push(ours_turn, g);
            }
        }
        for ours_turn in [ours_first, !ours_first] {
            let module = if ours_turn { &m.ours } else { &m.base };
            let f = mean_ns(args.fresh_calls, || {
                module
                    .instance(m.caps.clone())?
                    .validate(&claim.settings, &claim.request)
                    .map(drop)
            })? / 1000.0;
            let n = mean_ns(args.fresh_calls, || module.instance(m.caps.clone()).map(drop))? / 1000.0;
            r.fresh.push(ours_turn, f);
            r.fresh_instantiate.push(ours_turn, n);
        }
        if round % 10 == 9 {
            eprint!(".");
        }
    }
    eprintln!();
    Ok(r)
}

/// The scenarios' results: every warm one, then the fresh-instance one.
fn scenarios(loaded: &[Loaded], r: &Measured) -> Vec<Value> {
    let mut scenarios = Vec::new();
    for (i, l) in loaded.iter().enumerate() {
        scenarios.push(json!({
            "name": l.scenario.name,
            "what": l.scenario.what,
            "fixture": format!("policy/test_data/cases/{}", l.scenario.fixture),
            "mode": "warm",
            "payload_bytes": l.payload.len(),
            "validate": r.warm_validate[i].to_json(),
            "guest": r.warm_guest[i].to_json(),
        }));
    }
    let claim = &loaded[0];
    scenarios.push(json!({
        "name": "fresh-instance",
        "what": "claim mutation on CREATE, new instance per request (pre-compiled module)",
        "fixture": format!("policy/test_data/cases/{}", claim.scenario.fixture),
        "mode": "fresh",
        "payload_bytes": claim.payload.len(),
        "validate": r.fresh.to_json(),
        "instantiate_only": r.fresh_instantiate.to_json(),
    }));
    scenarios
}

fn targets(ours_bytes: u64, r: &Measured) -> Value {
    let claim_ratio = median(&r.warm_validate[0].ratios());
    let fresh_ratio = median(&r.fresh.ratios());
    json!([
        {"name": "claim mutation warm validate / baseline", "value": round3(claim_ratio), "limit": WARM_RATIO_LIMIT, "met": claim_ratio <= WARM_RATIO_LIMIT},
        {"name": "module size (bytes)", "value": ours_bytes, "limit": SIZE_LIMIT_BYTES, "met": ours_bytes <= SIZE_LIMIT_BYTES},
        {"name": "fresh-instance validate / baseline", "value": round3(fresh_ratio), "limit": FRESH_RATIO_LIMIT, "met": fresh_ratio <= FRESH_RATIO_LIMIT},
    ])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let run = RunInfo::start();
    let modules = Modules::load(&args)?;
    let loaded: Vec<Loaded> = SCENARIOS.iter().map(load_fixture).collect::<Result<_>>()?;
    modules.check_and_warm_up(&loaded, args.warmup)?;
    eprintln!(
        "bench-policy ({}): {} rounds × {} warm calls, {} fresh-instance calls per module",
        profile(),
        args.rounds,
        args.calls,
        args.fresh_calls
    );
    let measured = measure(&args, &modules, &loaded)?;
    let (ours_info, base_info) = (&modules.ours_info, &modules.base_info);
    let ours_bytes = ours_info["bytes"].as_u64().unwrap_or(u64::MAX);
    let fields = json!({
        "engine": "waPC 2.1.0 on wasmtime-provider 2.19.0 (as policy-server), WASI, no epoch deadlines",
        "config": {"rounds": args.rounds, "warm_calls": args.calls, "fresh_calls": args.fresh_calls, "warmup": args.warmup, "compiles": args.compiles},
        "modules": {"gastown_claim": ours_info, "baseline": base_info,
                    "size_ratio": round3(ours_bytes as f64 / base_info["bytes"].as_f64().unwrap_or(f64::NAN))},
        "scenarios": scenarios(&loaded, &measured),
        "targets": targets(ours_bytes, &measured),
    });
    let result = run.report("policy", &args.command, &args.note, fields);
    write_report(&args.out, &result)?;
    print_table(&result);
    println!("\nresults: {}", args.out.display());
    Ok(())
}

fn print_table(r: &Value) {
    let m = &r["modules"];
    println!(
        "\n### Policy ({} profile, {} cores, {})\n",
        r["profile"].as_str().unwrap_or("?"),
        r["cores"],
        r["date"].as_str().unwrap_or("?")
    );
    println!("| scenario | ours µs | baseline µs | ratio | guest-only ratio |");
    println!("|---|---:|---:|---:|---:|");
    for s in r["scenarios"].as_array().into_iter().flatten() {
        let guest = if s["guest"].is_null() {
            "-".to_string()
        } else {
            format!("{}×", cell(&s["guest"]["ratio"]["median"]))
        };
        println!(
            "| {} ({}) | {} | {} | {}× | {} |",
            s["name"].as_str().unwrap_or("?"),
            s["what"].as_str().unwrap_or(""),
            cell(&s["validate"]["ours_us"]["median"]),
            cell(&s["validate"]["baseline_us"]["median"]),
            cell(&s["validate"]["ratio"]["median"]),
            guest
        );
    }
    if let Some(s) = r["scenarios"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["mode"] == "fresh"))
    {
        println!(
            "| (instantiate only, no call) | {} | {} | {}× | - |",
            cell(&s["instantiate_only"]["ours_us"]["median"]),
            cell(&s["instantiate_only"]["baseline_us"]["median"]),
            cell(&s["instantiate_only"]["ratio"]["median"]),
        );
    }
    println!(
        "\nmodule size: gastown-claim {} bytes ({} KiB), baseline {} bytes ({} KiB), {}×; compile {} ms vs {} ms",
        m["gastown_claim"]["bytes"],
        cell(&m["gastown_claim"]["kib"]),
        m["baseline"]["bytes"],
        cell(&m["baseline"]["kib"]),
        cell(&m["size_ratio"]),
        cell(&m["gastown_claim"]["compile_ms_median"]),
        cell(&m["baseline"]["compile_ms_median"]),
    );
    print_targets(r);
}

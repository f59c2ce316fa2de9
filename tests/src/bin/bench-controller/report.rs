//! The report: latency summaries, the scaling slopes, the targets, and the table printed at
//! the end of a run.

use gastown_tests::stats::{cell, print_targets, quantile, round3, sorted};
use serde_json::{Value, json};

use crate::Args;

/// Targets from the issue.
const P99_LIMIT_MS: f64 = 1000.0;
const P99_AT: usize = 500;
const WRITES_LIMIT: f64 = 6.0;
const RSS_LIMIT_BYTES: f64 = 40.0 * 1000.0 * 1000.0;
/// Log-log slope above which growth is not called linear (1 = linear, 2 = quadratic).
const LINEAR_SLOPE_LIMIT: f64 = 1.15;

/// A number for the report, rounded to three decimals; `null` when not finite.
pub fn num(x: f64) -> Value {
    if x.is_finite() { json!(round3(x)) } else { Value::Null }
}

/// Count, p50/p95/p99, min, max and mean of latencies.
pub fn percentiles(values: &[f64]) -> Value {
    let v = sorted(values);
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

/// (burst size, `f` of the burst) for every burst.
fn points(bursts: &[Value], f: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    bursts
        .iter()
        .map(|b| (b["n"].as_f64().unwrap_or(0.0), f(b).unwrap_or(f64::NAN)))
        .collect()
}

/// The log-log slopes of the scaling targets: (time to all Dispatched, peak RSS above idle).
fn slopes(bursts: &[Value], idle: f64) -> (f64, f64) {
    let time = points(bursts, |b| b["time_to_all_dispatched_ms"].as_f64());
    let mem = points(bursts, |b| b["controller"]["peak_rss_kib"].as_f64().map(|p| p - idle));
    (loglog_slope(&time), loglog_slope(&mem))
}

/// The bursts' points and the log-log slopes of time, CPU and memory against the burst size.
pub fn scaling(bursts: &[Value], idle: f64) -> Value {
    let floor_time = points(bursts, |b| b["pipeline_floor"]["time_to_all_dispatched_ms"].as_f64());
    let cpu = points(bursts, |b| b["controller"]["cpu_seconds_total"].as_f64());
    let (slope_time, slope_mem) = slopes(bursts, idle);
    json!({
        "points": bursts.iter().map(|b| json!({
            "n": b["n"],
            "time_to_all_dispatched_ms": b["time_to_all_dispatched_ms"],
            "ms_per_claim": num(b["time_to_all_dispatched_ms"].as_f64().unwrap_or(f64::NAN) / b["n"].as_f64().unwrap_or(f64::NAN)),
            "controller_cpu_seconds": b["controller"]["cpu_seconds_total"],
            "peak_rss_kib": b["controller"]["peak_rss_kib"],
            "peak_rss_above_idle_kib": num(b["controller"]["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) - idle),
        })).collect::<Vec<_>>(),
        "loglog_slope_time": num(slope_time),
        "loglog_slope_time_pipeline_floor": num(loglog_slope(&floor_time)),
        "loglog_slope_controller_cpu": num(loglog_slope(&cpu)),
        "loglog_slope_peak_rss_above_idle": num(slope_mem),
        "note": "slope of log(value) against log(n): 1 = linear, 2 = quadratic",
    })
}

/// The burst of the p99 target, if it ran.
fn p99_burst(bursts: &[Value]) -> Option<&Value> {
    bursts.iter().find(|b| b["n"].as_u64() == Some(P99_AT as u64))
}

/// The targets of the issue, met or not (`null`: not measured in this run).
pub fn targets(args: &Args, bursts: &[Value], cached: Option<&Value>, idle: f64) -> Value {
    let p99 = p99_burst(bursts).and_then(|b| b["claim_to_dispatch_ms"]["p99"].as_f64());
    let writes = bursts
        .iter()
        .filter_map(|b| b["lifecycle"]["api_writes_per_lifecycle"].as_f64())
        .fold(f64::NAN, f64::max);
    let rss = cached.and_then(|c| c["rss_kib"].as_f64()).map(|k| k * 1024.0);
    let (slope_t, slope_m) = slopes(bursts, idle);
    let met = |v: Option<f64>, limit: f64| v.filter(|x| x.is_finite()).map(|x| x <= limit);
    json!([
        {"name": format!("claim-to-dispatch p99 at {P99_AT} (ms)"), "value": p99.map(num), "limit": P99_LIMIT_MS, "met": met(p99, P99_LIMIT_MS)},
        {"name": "API writes per lifecycle (controller metric, worst burst)", "value": num(writes), "limit": WRITES_LIMIT, "met": met(Some(writes), WRITES_LIMIT)},
        {"name": format!("RSS with {} cached (bytes; 40 MB = 40e6)", args.cached), "value": rss.map(num), "limit": RSS_LIMIT_BYTES, "met": met(rss, RSS_LIMIT_BYTES)},
        {"name": "time to all Dispatched grows linearly (log-log slope)", "value": num(slope_t), "limit": LINEAR_SLOPE_LIMIT, "met": met(Some(slope_t), LINEAR_SLOPE_LIMIT)},
        {"name": "peak RSS above idle grows linearly (log-log slope)", "value": num(slope_m), "limit": LINEAR_SLOPE_LIMIT, "met": met(Some(slope_m), LINEAR_SLOPE_LIMIT)},
    ])
}

/// Prints the results as a Markdown table, then the cached run, the slopes and the targets.
pub fn print_table(r: &Value) {
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
        print_burst_row(b);
    }
    print_towns(r);
    print_cached_and_scaling(r);
    print_targets(r);
    let bursts = r["bursts"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let Some(b) = p99_burst(bursts) {
        println!(
            "  context: claim-to-dispatch p99 at {P99_AT} of the pipeline floor (the contract's steps, no controller): {} ms",
            b["pipeline_floor"]["claim_to_dispatch_ms"]["p99"]
        );
    }
}

/// A latency summary's `p50 / p95 / p99` cell.
fn p50_p95_p99(c: &Value) -> String {
    format!("{} / {} / {}", cell(&c["p50"]), cell(&c["p95"]), cell(&c["p99"]))
}

fn print_burst_row(b: &Value) {
    let c = &b["claim_to_dispatch_ms"];
    let fl = &b["floor_watch_event_ms"];
    let pf = &b["pipeline_floor"]["claim_to_dispatch_ms"];
    let burst_cpu = &b["cpu_seconds_burst_by_process"];
    let life_cpu = &b["cpu_seconds_lifecycle_by_process"];
    let sum = |k: &str| burst_cpu[k].as_f64().unwrap_or(0.0) + life_cpu[k].as_f64().unwrap_or(0.0);
    let scaled = |v: &Value, by: f64| cell(&json!(v.as_f64().unwrap_or(f64::NAN) / by));
    println!(
        "| {} | {} | {} / {} | {} / {} | {} | {} (+{}) | {} | {} | {} | {} |",
        b["n"],
        p50_p95_p99(c),
        cell(&pf["p50"]),
        cell(&pf["p99"]),
        cell(&fl["p50"]),
        cell(&fl["p99"]),
        scaled(&b["time_to_all_dispatched_ms"], 1000.0),
        cell(&b["lifecycle"]["api_writes_per_lifecycle"]),
        cell(&b["lifecycle"]["event_writes_per_lifecycle"]),
        scaled(&b["controller"]["peak_rss_kib"], 1024.0),
        cell(&b["controller"]["cpu_seconds_total"]),
        cell(&json!(sum("fake_gastown"))),
        cell(&json!(sum("kube_apiserver") + sum("etcd"))),
    );
}

fn print_cached_and_scaling(r: &Value) {
    if let Some(c) = r["cached"].as_object() {
        println!(
            "\nRSS with {} Automatons cached: {} MiB ({} MB); idle controller: {} MiB",
            c["n"],
            cell(&c["rss_mib"]),
            cell(&c["rss_mb"]),
            cell(&json!(r["idle_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0)),
        );
    }
    let s = &r["scaling"];
    println!(
        "scaling (log-log slope, 1 = linear): time to all Dispatched {} (pipeline floor {}), controller CPU {}, peak RSS above idle {}",
        cell(&s["loglog_slope_time"]),
        cell(&s["loglog_slope_time_pipeline_floor"]),
        cell(&s["loglog_slope_controller_cpu"]),
        cell(&s["loglog_slope_peak_rss_above_idle"])
    );
}

/// The multi-town bursts next to the single-town burst of the same size.
fn print_towns(r: &Value) {
    let Some(runs) = r["towns"].as_array().filter(|t| !t.is_empty()) else {
        return;
    };
    println!(
        "\n| burst | towns | claim→sling p50 / p95 / p99 ms | all Dispatched s | controllers CPU s (to dispatch) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let one = r["bursts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| (b, 1, b["controller"]["cpu_seconds_burst"].clone()));
    let many = runs.iter().map(|t| {
        (
            t,
            t["towns"].as_u64().unwrap_or(0),
            t["controllers_cpu_seconds_burst"].clone(),
        )
    });
    let mut rows: Vec<_> = one.chain(many).collect();
    rows.sort_by_key(|(b, towns, _)| (b["n"].as_u64(), *towns));
    for (b, towns, cpu) in rows {
        let c = &b["claim_to_dispatch_ms"];
        println!(
            "| {} | {towns} | {} | {} | {} |",
            b["n"],
            p50_p95_p99(c),
            cell(&json!(
                b["time_to_all_dispatched_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0
            )),
            cell(&cpu),
        );
    }
}

//! Summaries shared by the benchmarks and the chaos test: quantiles, rounding, the
//! `targets:` lines of a report, the machine facts it records, and writing it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// The `q` quantile (0..=1) of `sorted` (ascending), interpolated linearly between neighbours;
/// NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `values` sorted ascending (by `f64::total_cmp`), for [`quantile`].
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The median of unsorted `values`; NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    quantile(&sorted(values), 0.5)
}

/// The `q` quantile of unsorted durations (zero when empty).
pub fn duration_quantile(values: &[Duration], q: f64) -> Duration {
    let mut secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let x = quantile(&secs, q);
    if x.is_finite() {
        Duration::from_secs_f64(x.max(0.0))
    } else {
        Duration::ZERO
    }
}

/// `x` rounded to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A number from a report as a table cell: fewer decimals as it grows, `-` when absent.
pub fn cell(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "-".to_string(),
    }
}

/// Prints a report's `targets` array (`name`, `value`, `limit`, `met` true/false/null) as
/// `MET`/`MISSED`/`n/a` lines.
pub fn print_targets(report: &Value) {
    println!("\ntargets:");
    for t in report["targets"].as_array().into_iter().flatten() {
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
}

/// The 1, 5 and 15 minute load averages (empty where `/proc/loadavg` cannot be read).
fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let parts: Vec<f64> = text.split_whitespace().take(3).filter_map(|p| p.parse().ok()).collect();
    json!(parts)
}

/// The build profile of this benchmark: `dev` or `release`.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) { "dev" } else { "release" }
}

/// When and on what a benchmark ran: the facts every report starts with.
pub struct RunInfo {
    started: jiff::Timestamp,
    load_before: Value,
}

impl RunInfo {
    /// Notes the start time and the machine's load.
    pub fn start() -> RunInfo {
        RunInfo {
            started: jiff::Timestamp::now(),
            load_before: load_average(),
        }
    }

    /// The report: `fields` (an object) with the benchmark's name, start date, `command`,
    /// profile, cores, load average before and after, and `note`.
    pub fn report(&self, benchmark: &str, command: &str, note: &str, mut fields: Value) -> Value {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
        let facts = json!({
            "benchmark": benchmark,
            "date": self.started.to_string(),
            "command": command,
            "profile": profile(),
            "cores": cores,
            "load_average_before": self.load_before,
            "load_average_after": load_average(),
            "note": note,
        });
        if let (Some(out), Value::Object(facts)) = (fields.as_object_mut(), facts) {
            out.extend(facts);
        }
        fields
    }
}

/// Writes `report` to `path` as pretty JSON, creating its directory.
pub fn write_report(path: &Path, report: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(report)?))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn quantiles_interpolate_between_neighbours() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn medians_sort_first() {
        assert_eq!(sorted(&[3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn duration_quantiles_sort_first() {
        let v = [3, 1, 2].map(Duration::from_secs);
        assert_eq!(duration_quantile(&v, 0.5), Duration::from_secs(2));
        assert_eq!(duration_quantile(&v, 1.0), Duration::from_secs(3));
        assert_eq!(duration_quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn reports_start_with_the_facts_of_the_run() {
        let r = RunInfo::start().report("b", "make x", "n", json!({"n": 1}));
        assert_eq!(
            (&r["benchmark"], &r["command"], &r["note"], &r["n"]),
            (&json!("b"), &json!("make x"), &json!("n"), &json!(1))
        );
        assert_eq!(r["profile"], profile());
        assert!(r["date"].is_string() && r["cores"].is_u64() && r["load_average_after"].is_array());
    }

    #[test]
    fn cells_shorten_as_numbers_grow() {
        assert_eq!(cell(&json!(123.456)), "123");
        assert_eq!(cell(&json!(12.345)), "12.3");
        assert_eq!(cell(&json!(1.2345)), "1.23");
        assert_eq!(cell(&json!(null)), "-");
    }
}

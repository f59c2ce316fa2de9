//! What a run measured, and the table that compares the fault-free run with the chaos run.

use std::path::PathBuf;
use std::time::Duration;

use gastown_tests::stats::duration_quantile;

use crate::SEED_ENV;

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) label: &'static str,
    pub(crate) claims: usize,
    pub(crate) to_terminal: Duration,
    pub(crate) deletion: Duration,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) calls: usize,
    pub(crate) injected_failures: usize,
    pub(crate) injected_hangs: usize,
    /// Calls that did their work, then failed, hung or were killed.
    pub(crate) after_work_faults: usize,
    pub(crate) slings: usize,
    pub(crate) dispatches: usize,
    pub(crate) kills: u32,
    pub(crate) exits: u32,
    pub(crate) api_restarts: u32,
    pub(crate) api_restart_time: Duration,
    pub(crate) releases: usize,
    pub(crate) violations: Vec<String>,
    pub(crate) logs: PathBuf,
}

pub(crate) fn print_table(reports: &[&Report], seed: u64) {
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
    for r in reports {
        print_row(r);
    }
    for r in reports {
        println!(
            "[{}] calls that did their work, then failed, hung or were killed: {}",
            r.label, r.after_work_faults
        );
    }
    if let Some(chaos) = reports.get(1) {
        let base = reports[0].to_terminal.as_secs_f64() + reports[0].deletion.as_secs_f64();
        let total = chaos.to_terminal.as_secs_f64() + chaos.deletion.as_secs_f64();
        println!("chaos / fault-free total time: {:.2}x", total / base.max(0.001));
    }
    println!(
        "(terminal: first claim created → every claim terminal or deleted; p50/p95/max: per claim, created → terminal; exits: replicas that stopped by themselves after losing the lease)"
    );
    println!();
}

fn print_row(r: &Report) {
    let total = r.to_terminal + r.deletion;
    let q = |q| duration_quantile(&r.latencies, q).as_secs_f64();
    println!(
        "{:<10} | {:>8.1}s | {:>8.1}s | {:>8.1}s | {:>6.1}s | {:>6.1}s | {:>6.1}s | {:>6} | {:>4}/{:<4} | {:>6} | {:>10} | {:>8} | {:>5} | {:>5} | {:>10.1}s",
        r.label,
        r.to_terminal.as_secs_f64(),
        r.deletion.as_secs_f64(),
        total.as_secs_f64(),
        q(0.5),
        q(0.95),
        q(1.0),
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

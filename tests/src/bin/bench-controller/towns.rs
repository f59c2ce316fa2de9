//! Several towns (`--towns`): the same burst of N claims, spread over K towns as the claim
//! policy would route them (`gastown.io/claimed-by: town-<i>`), each town with its own fake Gas
//! Town and its own controller (`--claimer town-<i>`) on the same namespace. Compared with the
//! single-town burst of the same N, it measures what splitting the work over towns costs: every
//! controller watches the namespace with its own label selector and dispatches only its share.
//! Only dispatch is measured (no lifecycle, no pipeline floor).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use gastown_tests::fake_gastown::FakeGasTown;
use serde_json::{Value, json};

use crate::Ctx;
use crate::automatons::create_all;
use crate::burst::{Stage, sling_latencies};
use crate::controller::Controller;
use crate::now_ms;
use crate::procfs::cpu_snapshot;
use crate::report::{num, percentiles};
use crate::watch::{lock, wait_count};

/// The claimer of town `i` (0-based).
fn town_name(i: usize) -> String {
    format!("town-{}", i + 1)
}

/// The town of claim number `index` of `towns` (round robin, so every town gets N/K).
fn town_of(name: &str, towns: usize) -> usize {
    let index: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
    index % towns.max(1)
}

/// One burst of `n` claims over `towns` towns; the JSON result.
pub async fn run_towns(ctx: &Ctx<'_>, n: usize, towns: usize) -> Result<Value> {
    eprintln!("burst of {n} over {towns} towns:");
    let stage = Stage::new(ctx, &format!("bench-{n}-towns-{towns}")).await?;
    let mut gastowns = Vec::new();
    let mut controllers = Vec::new();
    for i in 0..towns {
        let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
        let log = format!("controller-burst-{n}-town-{}.log", i + 1);
        controllers.push(Controller::spawn(ctx, stage.ns.name(), &town, &town_name(i), &log).await?);
        gastowns.push(town);
    }
    let cpu0: Vec<_> = controllers.iter().map(|c| cpu_snapshot(c.pid(), &ctx.pids)).collect();
    let names: Vec<String> = (0..n).map(|i| format!("t{n}-{i:05}")).collect();
    let claimer = |name: &str| town_name(town_of(name, towns));
    let t0 = now_ms();
    let created = create_all(
        &stage.api,
        &names,
        ctx.args.in_flight,
        ctx.args.subsecond_claimed_at,
        &claimer,
    )
    .await?;
    let create_all_ms = now_ms() - t0;
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let all_dispatched = wait_count(&stage.seen, n, timeout, "Dispatched", |s| s.dispatched.len()).await;
    let cpu1: Vec<_> = controllers.iter().map(|c| cpu_snapshot(c.pid(), &ctx.pids)).collect();
    let (beads, last_dispatch) = {
        let s = lock(&stage.seen);
        (s.bead.clone(), s.dispatched.values().copied().max().unwrap_or(t0))
    };
    let mut all = Vec::new();
    let mut by_town = Vec::new();
    for (i, town) in gastowns.iter().enumerate() {
        // Bead IDs are per town: look each town's slings up with its own claims' beads only.
        let ours: HashMap<String, String> = beads
            .iter()
            .filter(|(name, _)| town_of(name, towns) == i)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (latency, _) = sling_latencies(&town.calls()?, &ours, &created, t0);
        by_town
            .push(json!({"town": town_name(i), "claims": ours.len(), "claim_to_dispatch_ms": percentiles(&latency)}));
        all.extend(latency);
    }
    let cpu = |f: fn(&crate::procfs::CpuSnapshot) -> u64| -> Value {
        let ticks: u64 = cpu0.iter().zip(&cpu1).map(|(a, b)| f(b).saturating_sub(f(a))).sum();
        num(ticks as f64 / ctx.tck)
    };
    drop(controllers);
    stage.stop_observers();
    eprintln!(
        "  {}/{n} Dispatched after {} ms",
        all.len(),
        last_dispatch.saturating_sub(t0)
    );
    Ok(json!({
        "n": n,
        "towns": towns,
        "all_dispatched": all_dispatched,
        "create_all_ms": create_all_ms,
        "time_to_all_dispatched_ms": last_dispatch.saturating_sub(t0),
        "claim_to_dispatch_ms": percentiles(&all),
        "by_town": by_town,
        "controllers_cpu_seconds_burst": cpu(|s| s.controller),
        "fake_cpu_seconds_burst": cpu(|s| s.fake),
    }))
}

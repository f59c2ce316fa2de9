//! The cached run: the memory of a controller that starts with many terminal Automatons to
//! list, cache and reconcile once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gastown_crds::Automaton;
use gastown_crds::contract::{DEFAULT_CLAIMER, FIELD_MANAGER};
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::stats::round3;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::Ctx;
use crate::automatons::{create_all, for_each_name, single_town, status_apply};
use crate::controller::Controller;
use crate::procfs::read_proc;

/// RSS of a controller that starts with `m` terminal Automatons to list and cache; `status`
/// is the status they get (one the controller wrote in a burst, else a synthetic one).
pub async fn run_cached(ctx: &Ctx<'_>, m: usize, status: Option<Value>) -> Result<Value> {
    eprintln!("cache of {m}:");
    let ns = ctx.cluster.namespace(&format!("bench-cache-{m}")).await?;
    let town = FakeGasTown::with_binary(&ctx.fake_bin)?;
    let api: Api<Automaton> = Api::namespaced(ctx.cluster.client(), ns.name());
    let names: Vec<String> = (0..m).map(|i| format!("c-{i:05}")).collect();
    let status = status.unwrap_or_else(|| {
        json!({"phase": "Succeeded", "message": "bench: synthetic status",
               "gastown": {"beadId": "gt-abc12", "beadCreated": true, "rig": "gastown", "beadStatus": "closed"}})
    });
    create_terminal(ctx, &api, &names, &status).await?;
    let started = Instant::now();
    let log = format!("controller-cached-{m}.log");
    let controller = Controller::spawn(ctx, ns.name(), &town, DEFAULT_CLAIMER, &log).await?;
    let ready_ms = started.elapsed().as_millis();
    let reconciles = wait_reconciled(&controller, m).await?;
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

/// Creates the claims and puts them in a terminal phase, as the controller writes it
/// (server-side apply under its field manager).
async fn create_terminal(ctx: &Ctx<'_>, api: &Api<Automaton>, names: &[String], status: &Value) -> Result<()> {
    let t0 = Instant::now();
    create_all(
        api,
        names,
        ctx.args.in_flight,
        ctx.args.subsecond_claimed_at,
        &single_town,
    )
    .await?;
    for_each_name(names, ctx.args.in_flight, |name| {
        let api = api.clone();
        let patch = status_apply(status.clone());
        async move {
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
                .await
                .with_context(|| format!("writing the status of {name}"))?;
            Ok(())
        }
    })
    .await?;
    eprintln!(
        "  {} terminal Automatons prepared in {:.1} s",
        names.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits (bounded) until the controller has reconciled `m` objects; returns its count.
async fn wait_reconciled(controller: &Controller, m: usize) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(20 * m as u64);
    let mut reconciles = 0.0;
    while Instant::now() < deadline {
        reconciles = controller.scrape().await?.sum("gastown_reconciles_total", &[]);
        if reconciles >= m as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(reconciles)
}

//! The pipeline floor (module docs, step 6): with no controller, this process runs for each
//! claim only the steps the Gas Town contract requires up to its dispatch, with the
//! controller's own Gas Town client and concurrency limits.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt};
use gastown_controller::gastown::{ExternalRef, GasTown, GasTownConfig, Transport};
use gastown_crds::Automaton;
use gastown_crds::contract::RELEASE_FINALIZER;
use gastown_tests::fake_gastown::FakeGasTown;
use gastown_tests::stats::{cell, round3};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Ctx;
use crate::automatons::{create_all, delete_all, for_each_name, single_town, status_apply};
use crate::burst::{Stage, first_slings};
use crate::now_ms;
use crate::procfs::cpu_snapshot;
use crate::report::{num, percentiles};
use crate::watch::{Shared, lock, start_watch};

/// Field manager of the pipeline floor's status writes.
const FLOOR_MANAGER: &str = "gastown-bench-floor";

/// A status write with server-side apply, conditional on `a`'s resourceVersion (as the
/// controller's).
async fn floor_status(api: &Api<Automaton>, a: &Automaton, status: Value) -> Result<Automaton> {
    let mut patch = status_apply(status);
    patch["metadata"] = json!({"resourceVersion": a.resource_version()});
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

/// The controller's Gas Town client on the fake town, with the controller's limit.
fn gastown_client(ctx: &Ctx<'_>, town: &FakeGasTown) -> Result<GasTown> {
    let mut config = GasTownConfig::new(Transport::Exec {
        town_root: town.town_root().to_path_buf(),
        gt_path: town.gt_path(),
        bd_path: town.bd_path(),
        actor: Some("gastown-operator".to_string()),
    });
    config.max_concurrency = ctx.args.gastown_concurrency;
    Ok(GasTown::new(config)?)
}

/// A watch that hands each claim, once, to at most `--concurrency` pipelines at a time; the
/// pipelines end after `n` claims and note when each was dispatched, and its bead, in
/// `finished`.
async fn start_pipelines(
    ctx: &Ctx<'_>,
    api: &Api<Automaton>,
    gastown: GasTown,
    n: usize,
    finished: Shared,
) -> Result<(JoinHandle<()>, JoinHandle<Result<Vec<()>>>)> {
    let (claims_tx, claims_rx) = tokio::sync::mpsc::unbounded_channel::<Automaton>();
    let mut handed = HashSet::new();
    let watch = start_watch(api.clone(), "pipeline floor watcher", move |event| {
        if let watcher::Event::Apply(a) = event
            && handed.insert(a.name_any())
        {
            let _ = claims_tx.send(a);
        }
    })
    .await?;
    let api = api.clone();
    let claims = futures::stream::unfold(claims_rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) });
    let pipelines = tokio::spawn(
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
            .try_collect::<Vec<()>>(),
    );
    Ok((watch, pipelines))
}

/// The pipeline floor for a burst of `n` (see the module docs, step 6).
pub async fn run_pipeline_floor(ctx: &Ctx<'_>, n: usize) -> Result<Value> {
    eprintln!("pipeline floor, burst of {n}:");
    // The same observers as in the controller's burst, so the API server serves as many watches.
    let stage = Stage::new(ctx, &format!("floor-{n}")).await?;
    let gastown = gastown_client(ctx, &stage.town)?;
    let finished: Shared = Shared::default();
    let (watch, pipelines) = start_pipelines(ctx, &stage.api, gastown, n, finished.clone()).await?;

    let me = std::process::id();
    let cpu0 = cpu_snapshot(me, &ctx.pids);
    let names: Vec<String> = (0..n).map(|i| format!("f{n}-{i:05}")).collect();
    let t0 = now_ms();
    let created = create_all(&stage.api, &names, ctx.args.in_flight, false, &single_town).await?;
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    tokio::time::timeout(timeout, pipelines)
        .await
        .context("the pipeline floor did not dispatch every claim in time")???;
    let cpu1 = cpu_snapshot(me, &ctx.pids);
    watch.abort();
    stage.stop_observers();

    let calls = stage.town.calls()?;
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
        cell(&result["claim_to_dispatch_ms"]["p99"]),
        result["time_to_all_dispatched_ms"]
    );
    remove_claims(ctx, &stage.api, &names).await?;
    drop(stage);
    Ok(result)
}

/// Nothing will remove the finalizers: takes them off, then deletes the claims.
async fn remove_claims(ctx: &Ctx<'_>, api: &Api<Automaton>, names: &[String]) -> Result<()> {
    for_each_name(names, ctx.args.in_flight, |name| {
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
    delete_all(api, names, ctx.args.in_flight).await
}

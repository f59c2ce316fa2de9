//! gastown-controller: sees Automatons claimed for the local Gas Town, dispatches them
//! (`bd create`, `gt sling`), reports progress in their status and releases work cleanly.

pub mod backoff;
pub mod conditions;
pub mod config;
pub mod decision;
pub mod gastown;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use gastown_crds::Automaton;
use gastown_crds::contract::CLAIMED_BY_LABEL;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{error, info};

use crate::config::{RunArgs, TransportKind};
use crate::gastown::{GasTown, GasTownConfig, Transport};
use crate::metrics::{Metrics, MetricsObserver, PhaseLabels};

/// Builds the Kubernetes client from the kubeconfig (optionally a named context) or the
/// in-cluster configuration.
pub async fn kube_client(context: Option<&str>) -> anyhow::Result<Client> {
    let config = match context {
        Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(ctx.to_string()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("loading kubeconfig context {ctx:?}"))?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// The Gas Town client configuration from the flags.
pub fn gastown_config(args: &RunArgs) -> anyhow::Result<GasTownConfig> {
    let transport = match args.transport {
        TransportKind::Exec => {
            let town_root = match &args.town_root {
                Some(p) => p.clone(),
                None => std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join("gt"))
                    .context("--town-root not set and HOME unknown")?,
            };
            Transport::Exec {
                town_root,
                gt_path: args.gt_path.clone(),
                bd_path: args.bd_path.clone(),
                actor: Some(args.bd_actor.clone()),
            }
        }
        TransportKind::Proxy => {
            let missing = |flag: &str| format!("--transport proxy needs {flag}");
            Transport::Proxy {
                url: args.proxy_url.clone().with_context(|| missing("--proxy-url"))?,
                client_cert: args.proxy_cert.clone().with_context(|| missing("--proxy-cert"))?,
                client_key: args.proxy_key.clone().with_context(|| missing("--proxy-key"))?,
                ca: args.proxy_ca.clone().with_context(|| missing("--proxy-ca"))?,
            }
        }
    };
    let mut config = GasTownConfig::new(transport);
    config.command_timeout = args.command_timeout;
    config.max_concurrency = args.gastown_concurrency.max(1);
    Ok(config)
}

fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            format!(
                "{}-{}",
                if host.is_empty() { "gastown-controller" } else { &host },
                std::process::id()
            )
        })
}

/// Objects per page of the initial list: each page is parsed whole (managedFields included)
/// before the watch stream slims its objects, so smaller pages keep the start-up peak low.
const LIST_PAGE_SIZE: u32 = 50;

/// Bead reads arriving within this window of each other share one `bd show`.
const READ_BATCH_WINDOW: Duration = Duration::from_millis(20);
/// At most this many beads per batched `bd show`.
const READ_BATCH_MAX: usize = 50;

/// Drops what reconciles never read before an object is cached: `metadata.managedFields`
/// (about half of a stored Automaton) and kubectl's last-applied copy of the object.
pub fn slim_for_cache(a: &mut Automaton) {
    a.metadata.managed_fields = None;
    if let Some(annotations) = a.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// How the controller stopped, when it did not stop cleanly: the replica must not go on as
/// leader, and the process should exit at once (non-zero) so that it restarts as a candidate.
/// Nothing is waited for: every Gas Town call and write checks leadership first, so the
/// reconciles still running can no longer act.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// The last successful Lease renew got too old, or another replica took the Lease.
    #[error("leadership lost")]
    LeadershipLost,
    /// The election task ended or panicked.
    #[error("{0}")]
    ElectionEnded(String),
}

/// Runs the controller until SIGTERM/Ctrl-C (exit 0; the leader finishes its running
/// reconciles, then releases the Lease) or until leadership is lost or the election task dies
/// (an error of type [`Stopped`]: the caller should exit at once, see `main.rs`).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    gastown_crds::validate::validate_dns_label("claimer", &args.claimer)?;
    let client = kube_client(args.context.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let gastown = GasTown::new(gastown_config(&args)?)
        .context("configuring the Gas Town client")?
        .with_observer(Arc::new(MetricsObserver(Arc::clone(&metrics))));
    let health = Arc::new(http::Health::default());
    let (addr, _http) = http::serve(args.metrics_addr, Arc::clone(&metrics), Arc::clone(&health))
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    info!(%addr, transport = gastown.transport_kind(), claimer = %args.claimer, "serving /metrics, /livez, /readyz");
    let mut terminated = on_signal();
    let identity = identity(&args);
    let mut election = args.leader_election.then(|| start_election(&args, &client, &identity));
    let leadership = election
        .as_ref()
        .map_or_else(leader::Leadership::unconditional, leader::Election::leadership);
    let _ = health.leadership.set(leadership.clone());
    if let Some(e) = election.as_mut()
        && !wait_as_standby(e, &leadership, &health, &mut terminated).await?
    {
        info!("shutting down (standby)");
        if let Some(e) = election.take() {
            e.release().await;
        }
        return Ok(());
    }
    let settings = decision_settings(&args, &gastown);
    let reporter = Reporter {
        controller: "gastown-operator".to_string(),
        instance: Some(identity),
    };
    let reader = gastown::BatchedReader::spawn(gastown.clone(), READ_BATCH_WINDOW, READ_BATCH_MAX);
    let ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        gastown,
        reader,
        settings,
        recorder: Recorder::new(client.clone(), reporter),
        metrics: Arc::clone(&metrics),
        leader: leadership.clone(),
        failures: reconcile::Failures::default(),
    });
    let controllers = start_controllers(&args, &client, ctx, stop_on(terminated));
    spawn_readiness_and_phase_gauge(
        controllers.stores,
        controllers.listed,
        controllers.watches,
        health,
        metrics,
    );
    if let Some(stopped) = run_until_stopped(controllers.runs, &leadership, election.as_mut()).await {
        error!(reason = %stopped, "exiting at once without waiting for running reconciles (they can no longer act)");
        return Err(stopped.into());
    }
    // Every reconcile has ended: stop leading, then give the Lease up so that a standby takes
    // over at once instead of after the lease duration.
    if let Some(e) = election.take() {
        e.release().await;
    }
    info!("stopped cleanly");
    Ok(())
}

/// One signal listener: the returned value turns true on SIGTERM or Ctrl-C.
fn on_signal() -> watch::Receiver<bool> {
    let (term_tx, terminated) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = term_tx.send(true);
    });
    terminated
}

/// Starts the Lease election (`--leader-election`).
fn start_election(args: &RunArgs, client: &Client, identity: &str) -> leader::Election {
    let namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_string());
    let cfg = leader::LeaseConfig::new(args.lease_name(), namespace, identity.to_string(), args.lease_duration);
    info!(
        lease = %cfg.name, namespace = %cfg.namespace, %identity, duration = ?cfg.duration,
        retry = ?cfg.retry, request_timeout = ?cfg.request_timeout(), validity = ?cfg.validity(),
        "leader election on"
    );
    leader::Election::spawn(client.clone(), cfg)
}

/// Waits, healthy and ready, as a standby until this replica leads (`Ok(true)`) or a signal
/// came (`Ok(false)`); an error when the election ended first.
async fn wait_as_standby(
    election: &mut leader::Election,
    leadership: &leader::Leadership,
    health: &http::Health,
    terminated: &mut watch::Receiver<bool>,
) -> Result<bool, Stopped> {
    health.ready.store(true, Ordering::Relaxed);
    let mut waiting = leadership.clone();
    let stopped = tokio::select! {
        _ = terminated.wait_for(|t| *t) => None,
        acquired = waiting.acquired() => {
            (!acquired).then(|| Stopped::ElectionEnded("the leader election task ended".to_string()))
        }
        why = election.ended() => Some(Stopped::ElectionEnded(why)),
    };
    if let Some(stopped) = stopped {
        return Err(stopped);
    }
    if *terminated.borrow() {
        return Ok(false);
    }
    health.ready.store(false, Ordering::Relaxed);
    Ok(true)
}

/// The decision settings from the flags; the create-outcome wait defaults to what one `bd
/// create` call of this client can take (see [`decision::create_outcome_wait`]).
fn decision_settings(args: &RunArgs, gastown: &GasTown) -> decision::Settings {
    decision::Settings {
        claimer: args.claimer.clone(),
        claim_timeout: args.claim_timeout,
        sync_interval: args.sync_interval,
        status_heartbeat: args.status_heartbeat,
        release_timeout: args.release_timeout,
        create_outcome_wait: args.create_outcome_wait.unwrap_or_else(|| {
            let attempts = gastown_config(args).map_or(3, |c| c.retries.saturating_add(1));
            decision::create_outcome_wait(args.command_timeout, attempts, gastown.command_lifetime())
        }),
    }
}

/// On a signal, stop starting reconciles and let the running ones finish: the returned value
/// turns true then.
fn stop_on(mut terminated: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if terminated.wait_for(|t| *t).await.is_ok() {
            info!("shutdown requested; finishing running reconciles");
            let _ = stop_tx.send(true);
        }
    });
    stop_rx
}

/// The running controllers, one per watched namespace (or one for all).
struct Controllers<R> {
    /// Each controller's cache.
    stores: Vec<Store<Automaton>>,
    /// Each controller's run, until it is stopped.
    runs: Vec<R>,
    /// How many watches have listed their objects (each counts once).
    listed: watch::Receiver<usize>,
    /// How many watches there are.
    watches: usize,
}

/// Starts a watch of the Automatons claimed for us (per namespace, or in all) and a controller
/// on it that runs [`reconcile::reconcile`] until `stop` turns true.
fn start_controllers(
    args: &RunArgs,
    client: &Client,
    ctx: Arc<reconcile::Context>,
    stop: watch::Receiver<bool>,
) -> Controllers<impl std::future::Future<Output = ()>> {
    let selector = format!("{CLAIMED_BY_LABEL}={}", args.claimer);
    let apis: Vec<Api<Automaton>> = if args.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        args.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let (listed_tx, listed) = watch::channel(0usize);
    let watches = apis.len();
    let mut stores = Vec::new();
    let mut runs = Vec::new();
    for api in apis {
        let (reader, writer) = reflector::store();
        let listed = listed_tx.clone();
        let mut initialised = false;
        // Cache only what reconciles read: managedFields is about half of a stored Automaton.
        let objects = watcher(
            api,
            watcher::Config::default().labels(&selector).page_size(LIST_PAGE_SIZE),
        )
        .default_backoff()
        .modify(slim_for_cache)
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) && !initialised {
                initialised = true;
                listed.send_modify(|n| *n += 1);
            }
        })
        .reflect(writer)
        .applied_objects();
        let controller = Controller::for_stream(objects, reader)
            .with_config(ControllerConfig::default().concurrency(args.concurrency.max(1)));
        stores.push(controller.store());
        let mut stop = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        runs.push(
            controller
                .graceful_shutdown_on(shutdown)
                .run(reconcile::reconcile, reconcile::error_policy, Arc::clone(&ctx))
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile result");
                    }
                }),
        );
    }
    info!(namespaces = ?args.namespaces, %selector, "controller started");
    Controllers {
        stores,
        runs,
        listed,
        watches,
    }
}

/// Ready once every watch has listed its objects; then keeps the per-phase gauge fresh.
/// (Readiness comes from the watch streams themselves: `Store::wait_until_ready` wakes only one
/// of several waiters in kube-runtime 4.2, and the controller is already one of them.)
fn spawn_readiness_and_phase_gauge(
    stores: Vec<Store<Automaton>>,
    mut listed: watch::Receiver<usize>,
    watches: usize,
    health: Arc<http::Health>,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        if listed.wait_for(|n| *n >= watches).await.is_ok() {
            info!("watches listed; ready");
            health.ready.store(true, Ordering::Relaxed);
        }
        loop {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for s in &stores {
                for a in s.state() {
                    let phase = a.phase().map_or("None", |p| p.as_str()).to_string();
                    *counts.entry(phase).or_default() += 1;
                }
            }
            metrics.active_claims.clear();
            for (phase, n) in counts {
                metrics.active_claims.get_or_create(&PhaseLabels { phase }).set(n);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
}

/// Runs the controllers until they have all stopped (`None`) or leadership is lost or the
/// election ended (why, then).
async fn run_until_stopped(
    runs: Vec<impl std::future::Future<Output = ()>>,
    leadership: &leader::Leadership,
    election: Option<&mut leader::Election>,
) -> Option<Stopped> {
    let mut lost = leadership.clone();
    let ended = async {
        match election {
            Some(e) => e.ended().await,
            None => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = futures::future::join_all(runs) => None,
        () = lost.lost() => Some(Stopped::LeadershipLost),
        why = ended => Some(Stopped::ElectionEnded(why)),
    }
}

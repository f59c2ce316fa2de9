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

    // One signal listener; `terminated` turns true on SIGTERM or Ctrl-C.
    let (term_tx, mut terminated) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = term_tx.send(true);
    });

    let identity = identity(&args);
    let mut election = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_string());
        let cfg = leader::LeaseConfig::new(
            args.lease_name.clone(),
            namespace,
            identity.clone(),
            args.lease_duration,
        );
        info!(
            lease = %cfg.name, namespace = %cfg.namespace, %identity, duration = ?cfg.duration,
            retry = ?cfg.retry, request_timeout = ?cfg.request_timeout(), validity = ?cfg.validity(),
            "leader election on"
        );
        Some(leader::Election::spawn(client.clone(), cfg))
    } else {
        None
    };
    let leadership = election
        .as_ref()
        .map_or_else(leader::Leadership::unconditional, leader::Election::leadership);
    let _ = health.leadership.set(leadership.clone());
    if let Some(e) = election.as_mut() {
        // A standby replica is healthy and ready.
        health.ready.store(true, Ordering::Relaxed);
        let mut waiting = leadership.clone();
        let stopped = tokio::select! {
            _ = terminated.wait_for(|t| *t) => None,
            acquired = waiting.acquired() => {
                (!acquired).then(|| Stopped::ElectionEnded("the leader election task ended".to_string()))
            }
            why = e.ended() => Some(Stopped::ElectionEnded(why)),
        };
        if let Some(stopped) = stopped {
            return Err(stopped.into());
        }
        if *terminated.borrow() {
            info!("shutting down (standby)");
            if let Some(e) = election.take() {
                e.release().await;
            }
            return Ok(());
        }
        health.ready.store(false, Ordering::Relaxed);
    }

    let settings = decision::Settings {
        claimer: args.claimer.clone(),
        claim_timeout: args.claim_timeout,
        sync_interval: args.sync_interval,
        status_heartbeat: args.status_heartbeat,
        release_timeout: args.release_timeout,
        create_outcome_wait: args.create_outcome_wait.unwrap_or_else(|| {
            let attempts = gastown_config(&args).map_or(3, |c| c.retries.saturating_add(1));
            decision::create_outcome_wait(args.command_timeout, attempts, gastown.command_lifetime())
        }),
    };
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

    // On a signal, stop starting reconciles and let the running ones finish.
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let mut terminated = terminated.clone();
        tokio::spawn(async move {
            if terminated.wait_for(|t| *t).await.is_ok() {
                info!("shutdown requested; finishing running reconciles");
                let _ = stop_tx.send(true);
            }
        });
    }

    let selector = format!("{CLAIMED_BY_LABEL}={}", args.claimer);
    let apis: Vec<Api<Automaton>> = if args.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        args.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut stores: Vec<Store<Automaton>> = Vec::new();
    let mut runs = Vec::new();
    // How many watches have listed their objects (each counts once).
    let (listed_tx, mut listed_rx) = watch::channel(0usize);
    let watches = apis.len();
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
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let ctx = Arc::clone(&ctx);
        runs.push(
            controller
                .graceful_shutdown_on(shutdown)
                .run(reconcile::reconcile, reconcile::error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile result");
                    }
                }),
        );
    }
    // Ready once every watch has listed its objects; then keep the per-phase gauge fresh.
    // (Readiness comes from the watch streams themselves: `Store::wait_until_ready` wakes only
    // one of several waiters in kube-runtime 4.2, and the controller is already one of them.)
    {
        let stores = stores.clone();
        let health = Arc::clone(&health);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if listed_rx.wait_for(|n| *n >= watches).await.is_ok() {
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
    info!(namespaces = ?args.namespaces, %selector, "controller started");
    let stopped = {
        let mut lost = leadership.clone();
        let ended = async {
            match election.as_mut() {
                Some(e) => e.ended().await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            _ = futures::future::join_all(runs) => None,
            () = lost.lost() => Some(Stopped::LeadershipLost),
            why = ended => Some(Stopped::ElectionEnded(why)),
        }
    };
    if let Some(stopped) = stopped {
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

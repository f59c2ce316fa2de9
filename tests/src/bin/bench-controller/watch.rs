//! The bench's own watches of the claimed Automatons: a bare one that notes when each object is
//! first seen (the floor), and a tracker of phases, beads, updates and deletions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use gastown_crds::contract::CLAIMED_BY_LABEL;
use gastown_crds::{Automaton, Phase};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::automatons::SENTINEL;
use crate::now_ms;

/// What the watchers saw, by Automaton name (wall-clock ms).
#[derive(Default)]
pub struct Seen {
    /// Floor: first event of the bare watcher.
    pub first_event: HashMap<String, u64>,
    pub dispatched: HashMap<String, u64>,
    pub succeeded: HashMap<String, u64>,
    pub deleted: HashMap<String, u64>,
    pub bead: HashMap<String, String>,
    /// One full Succeeded status, as the controller wrote it.
    pub succeeded_status: Option<Value>,
    /// The last version seen of each object (status and finalizers, flattened).
    pub last: HashMap<String, BTreeMap<String, String>>,
    /// What each update of an object changed (one watch event per write), counted.
    pub updates: BTreeMap<String, usize>,
}

/// The parts of an Automaton the controller writes, flattened to `path → value`; conditions
/// are keyed by type.
fn flatten_written(a: &Automaton) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Array(items) if prefix == "status.conditions" => {
                for c in items {
                    let t = c.get("type").and_then(Value::as_str).unwrap_or("?");
                    walk(&format!("{prefix}.{t}"), c, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "status",
        &serde_json::to_value(&a.status).unwrap_or(Value::Null),
        &mut out,
    );
    out.insert("metadata.finalizers".to_string(), format!("{:?}", a.finalizers()));
    out.insert(
        "metadata.deletionTimestamp".to_string(),
        format!("{:?}", a.metadata.deletion_timestamp.is_some()),
    );
    out
}

/// A short description of what changed between two versions of an object, e.g.
/// `Dispatched: status.gastown.lastSyncTime`.
fn describe_update(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let phase = |m: &BTreeMap<String, String>| {
        m.get("status.phase")
            .map_or("-".to_string(), |p| p.trim_matches('"').to_string())
    };
    let (from, to) = (phase(before), phase(after));
    let mut changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        // Timestamps that move with every write say nothing about why it happened.
        .filter(|k| !k.ends_with(".lastTransitionTime"))
        .map(|k| {
            k.rsplit_once('.')
                .filter(|(head, _)| head.starts_with("status.conditions."))
                .map_or_else(|| k.clone(), |(head, _)| head.to_string())
        })
        .collect();
    changed.sort();
    changed.dedup();
    let what = if changed.is_empty() {
        "no change".to_string()
    } else {
        changed.join(",")
    };
    if from == to {
        format!("{to}: {what}")
    } else {
        format!("{from} -> {to}: {what}")
    }
}

pub type Shared = Arc<Mutex<Seen>>;

pub fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every claimed Automaton, whichever town claimed it.
fn selector() -> watcher::Config {
    watcher::Config::default().labels(CLAIMED_BY_LABEL)
}

/// Starts a watch of the claimed Automatons that hands every event to `on_event` (errors are
/// the watcher's to retry); returns once its initial list is done.
pub async fn start_watch(
    api: Api<Automaton>,
    what: &'static str,
    mut on_event: impl FnMut(watcher::Event<Automaton>) + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut stream = watcher(api, selector()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(event) => on_event(event),
                Err(_) => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .with_context(|| format!("{what} not ready"))??;
    Ok(handle)
}

/// The floor: a bare watcher that only notes when it first sees each object. Returns once its
/// initial list is done.
pub async fn start_floor_watcher(api: Api<Automaton>, seen: Shared) -> Result<tokio::task::JoinHandle<()>> {
    start_watch(api, "floor watcher", move |event| {
        if let watcher::Event::Apply(a) = event
            && a.name_any() != SENTINEL
        {
            let t = now_ms();
            lock(&seen).first_event.entry(a.name_any()).or_insert(t);
        }
    })
    .await
}

/// Tracks phases and deletions.
pub async fn start_tracker(api: Api<Automaton>, seen: Shared) -> Result<tokio::task::JoinHandle<()>> {
    start_watch(api, "tracker", move |event| {
        let t = now_ms();
        match event {
            watcher::Event::Apply(a) if a.name_any() != SENTINEL => {
                let name = a.name_any();
                let mut s = lock(&seen);
                let flat = flatten_written(&a);
                if let Some(before) = s.last.insert(name.clone(), flat.clone()) {
                    *s.updates.entry(describe_update(&before, &flat)).or_default() += 1;
                }
                if let Some(bead) = a
                    .status
                    .as_ref()
                    .and_then(|s| s.gastown.as_ref())
                    .and_then(|g| g.bead_id.clone())
                {
                    s.bead.entry(name.clone()).or_insert(bead);
                }
                match a.phase() {
                    Some(Phase::Dispatched | Phase::Running) => {
                        s.dispatched.entry(name).or_insert(t);
                    }
                    Some(Phase::Succeeded | Phase::Failed) => {
                        s.dispatched.entry(name.clone()).or_insert(t);
                        s.succeeded.entry(name.clone()).or_insert(t);
                        if s.succeeded_status.is_none() {
                            s.succeeded_status = serde_json::to_value(&a.status).ok();
                        }
                    }
                    _ => {}
                }
            }
            watcher::Event::Delete(a) => {
                let mut s = lock(&seen);
                s.last.remove(&a.name_any());
                s.deleted.entry(a.name_any()).or_insert(t);
            }
            _ => {}
        }
    })
    .await
}

/// Waits until `count(seen) >= n` or the timeout; returns whether it got there.
pub async fn wait_count(
    seen: &Shared,
    n: usize,
    timeout: Duration,
    what: &str,
    count: impl Fn(&Seen) -> usize,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let c = count(&lock(seen));
        if c >= n {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("  timed out after {timeout:?} waiting for {what}: {c}/{n}");
            return false;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("  ... {what}: {c}/{n}");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

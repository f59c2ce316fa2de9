//! The Automatons of a run: claimed as the claim policy leaves them, created and deleted many
//! at a time, and the Events written about them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use gastown_crds::Automaton;
use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_tests::cluster::TestCluster;
use gastown_tests::fixtures::local_automaton;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Resource;
use serde_json::{Value, json};

use crate::now_ms;

/// An Automaton as the claim policy leaves it (like `e2e.rs` `create_claimed`), claimed by the
/// single town. The claim time has whole seconds, as the policy writes it, unless `subsecond`.
pub fn claimed(name: &str, subsecond: bool) -> Result<Automaton> {
    claimed_by(name, DEFAULT_CLAIMER, subsecond)
}

/// [`claimed`] by `claimer` (the town the policy routed it to).
pub fn claimed_by(name: &str, claimer: &str, subsecond: bool) -> Result<Automaton> {
    let now = jiff::Timestamp::now();
    let claimed_at = if subsecond {
        now
    } else {
        jiff::Timestamp::from_second(now.as_second())?
    };
    local_automaton(
        name,
        &json!({
            "metadata": {"labels": {CLAIMED_BY_LABEL: claimer},
                         "annotations": {CLAIMED_AT_ANNOTATION: claimed_at.to_string(),
                                         CLAIM_REQUESTED_BY_ANNOTATION: "alice"}},
            "spec": {"task": {"description": "do it"}, "rig": "gastown"},
        }),
    )
}

/// A server-side apply body that sets an Automaton's `status`.
pub fn status_apply(status: Value) -> Value {
    json!({"apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&()), "status": status})
}

/// A claimed Automaton in a terminal phase, created before the controller starts: its
/// reconcile (a no-op) shows that the controller's watch has listed the namespace.
pub const SENTINEL: &str = "sentinel";

pub async fn create_sentinel(api: &Api<Automaton>) -> Result<()> {
    api.create(&PostParams::default(), &claimed(SENTINEL, false)?)
        .await
        .context("creating the sentinel")?;
    let patch = status_apply(json!({"phase": "Succeeded", "message": "bench sentinel"}));
    api.patch_status(
        SENTINEL,
        &PatchParams::apply("gastown-bench").force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("writing the sentinel's status")?;
    Ok(())
}

/// The claimer of every claim of a single-town run.
pub fn single_town(_name: &str) -> String {
    DEFAULT_CLAIMER.to_string()
}

/// Creates the named Automatons, `in_flight` at a time, each claimed by `claimer(name)`;
/// returns when each create returned.
pub async fn create_all(
    api: &Api<Automaton>,
    names: &[String],
    in_flight: usize,
    subsecond: bool,
    claimer: &(dyn Fn(&str) -> String + Sync),
) -> Result<HashMap<String, u64>> {
    let results: Vec<(String, u64)> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            let by = claimer(&name);
            async move {
                let obj = claimed_by(&name, &by, subsecond)?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                Ok::<_, anyhow::Error>((name, now_ms()))
            }
        })
        .buffer_unordered(in_flight.max(1))
        .try_collect()
        .await?;
    Ok(results.into_iter().collect())
}

pub async fn delete_all(api: &Api<Automaton>, names: &[String], in_flight: usize) -> Result<()> {
    for_each_name(names, in_flight, |name| {
        let api = api.clone();
        async move {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(anyhow::Error::from(e).context(format!("deleting {name}"))),
            }
        }
    })
    .await
}

/// Runs `op` for every name, `in_flight` at a time; the first error ends it.
pub async fn for_each_name<F, Fut>(names: &[String], in_flight: usize, op: F) -> Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(names.iter().cloned())
        .map(op)
        .buffer_unordered(in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Event objects in the namespace and the writes they took (create + series updates).
pub async fn count_events(cluster: &TestCluster, ns: &str) -> Result<(usize, u64)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(cluster.client(), ns);
    let list = api.list(&ListParams::default()).await?;
    let objects = list.items.len();
    let writes = list
        .items
        .iter()
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| u64::try_from(s.count.max(1)).unwrap_or(1))
        })
        .sum();
    Ok((objects, writes))
}

//! The Kubernetes API writes: status, finalizer, claim release. Each is conditional on the
//! resourceVersion read.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, FIELD_MANAGER,
    RELEASE_FINALIZER,
};
use gastown_crds::{Automaton, AutomatonStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::{Context, Error, key};

/// Writes the whole status with server-side apply under our field manager; returns the object.
///
/// The write carries the resourceVersion of `a`, so it fails with a conflict when the object
/// has changed since it was read. A reconcile that runs on a stale cached copy (e.g. on the
/// watch event of one of our own earlier writes) can therefore never put back a status that a
/// later write replaced, such as a second bead recorded over the first.
pub async fn write_status(
    api: &Api<Automaton>,
    a: &Automaton,
    status: &AutomatonStatus,
    ctx: &Context,
) -> Result<Automaton, Error> {
    let resource_version = a.resource_version();
    ctx.ensure_leader()?;
    let mut patch = json!({
        "apiVersion": "olympus.io/v1alpha1",
        "kind": "Automaton",
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let updated = api.patch_status(&a.name_any(), &params, &Patch::Apply(&patch)).await?;
    ctx.metrics.api_write("status");
    Ok(updated)
}

pub(super) fn finalizers_without_ours(a: &Automaton) -> Vec<String> {
    a.finalizers()
        .iter()
        .filter(|f| *f != RELEASE_FINALIZER)
        .cloned()
        .collect()
}

pub(super) async fn add_finalizer(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<Automaton, Error> {
    ctx.ensure_leader()?;
    let mut finalizers = a.finalizers().to_vec();
    finalizers.push(RELEASE_FINALIZER.to_string());
    // resourceVersion makes the merge patch conditional: no lost finalizers from others.
    let patch = json!({"metadata": {"resourceVersion": a.resource_version(), "finalizers": finalizers}});
    let updated = api
        .patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.api_write("finalizer");
    Ok(updated)
}

pub(super) async fn remove_finalizer(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<(), Error> {
    ctx.ensure_leader()?;
    let patch =
        json!({"metadata": {"resourceVersion": a.resource_version(), "finalizers": finalizers_without_ours(a)}});
    match api
        .patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.metrics.api_write("finalizer");
    Ok(())
}

/// Gives the claim back to Kubernetes: removes the claim marks, the claim request and our
/// finalizer, and sets `spec.executionMode: kubernetes` (status already says Released).
pub(super) async fn release_claim(api: &Api<Automaton>, a: &Automaton, ctx: &Context) -> Result<(), Error> {
    ctx.ensure_leader()?;
    let patch = json!({
        "metadata": {
            "resourceVersion": a.resource_version(),
            "labels": {CLAIMED_BY_LABEL: null},
            "annotations": {
                CLAIMED_AT_ANNOTATION: null,
                CLAIM_REQUESTED_BY_ANNOTATION: null,
                CLAIM_REQUEST_ANNOTATION: null,
            },
            "finalizers": finalizers_without_ours(a),
        },
        "spec": {"executionMode": "kubernetes"},
    });
    api.patch(&a.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.api_write("release");
    info!(object = %key(a), "claim released to Kubernetes");
    Ok(())
}

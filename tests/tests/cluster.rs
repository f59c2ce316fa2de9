//! The Automaton API against a real kube-apiserver (see `tests/cluster/cluster.sh`): the CRD,
//! the operations the controller relies on, and RBAC.
//!
//! Every test uses its own namespace on the cluster shared by this test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use gastown_crds::contract::{CLAIMED_BY_LABEL, DEFAULT_CLAIMER, RELEASE_FINALIZER};
use gastown_crds::{Automaton, ExecutionMode, Phase};
use gastown_tests::cluster::{TEST_FIELD_MANAGER, TestCluster, TestNamespace};
use gastown_tests::fixtures::{titled_automaton, with_claim_label};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use serde_json::json;

/// Upper bound for any single wait on the server in these tests.
const WAIT: Duration = Duration::from_secs(30);

/// The cluster with the CRD installed, and a fresh namespace.
async fn setup(prefix: &str) -> anyhow::Result<(TestCluster, TestNamespace)> {
    let cluster = TestCluster::start().await?;
    cluster.install_crds().await?;
    let namespace = cluster.namespace(prefix).await?;
    Ok((cluster, namespace))
}

/// Expects `result` to be refused with an API status that `expected` accepts (`want` describes
/// it); `what` says what it would mean if the call succeeded.
fn expect_api_error<T>(
    result: Result<T, kube::Error>,
    what: &str,
    want: &str,
    expected: impl Fn(&kube::core::Status) -> bool,
) -> anyhow::Result<()> {
    let err = result.err().context(what.to_string())?;
    ensure!(api_status(&err).is_some_and(expected), "expected {want}, got {err}");
    Ok(())
}

fn api_status(err: &kube::Error) -> Option<&kube::core::Status> {
    match err {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

#[tokio::test]
async fn crd_is_established_with_status_subresource() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    cluster.install_crds().await?;
    // Applying again is a no-op.
    cluster.install_crds().await?;

    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    // The CRD's wire names, pinned here on purpose rather than read from `Automaton`.
    let crd = crds.get("automatons.olympus.io").await?;
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Established" && c.status == "True");
    ensure!(established, "CRD not Established: {:?}", crd.status);
    assert_eq!(crd.spec.names.kind, "Automaton");
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .context("no v1alpha1 version")?;
    assert!(version.served && version.storage);
    assert!(
        version.subresources.as_ref().is_some_and(|s| s.status.is_some()),
        "status subresource missing"
    );
    assert!(
        crd.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some(TEST_FIELD_MANAGER)),
        "CRD not applied by {TEST_FIELD_MANAGER}"
    );
    Ok(())
}

#[tokio::test]
async fn create_get_list_and_watch_by_claim_label() -> anyhow::Result<()> {
    let (cluster, ns) = setup("select").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    let selector = format!("{CLAIMED_BY_LABEL}={DEFAULT_CLAIMER}");

    // Watch from "now" (the list's resourceVersion) with the claim selector.
    let initial = api.list(&ListParams::default().labels(&selector)).await?;
    assert!(initial.items.is_empty());
    let resource_version = initial
        .metadata
        .resource_version
        .context("list without resourceVersion")?;
    let params = WatchParams::default().labels(&selector).timeout(20);
    let mut events = api.watch(&params, &resource_version).await?.boxed();

    let pp = PostParams::default();
    api.create(
        &pp,
        &with_claim_label(titled_automaton("mine", "claimed here")?, DEFAULT_CLAIMER),
    )
    .await?;
    api.create(
        &pp,
        &with_claim_label(titled_automaton("theirs", "claimed elsewhere")?, "other-town"),
    )
    .await?;
    api.create(&pp, &titled_automaton("unclaimed", "not claimed")?).await?;

    let fetched = api.get("mine").await?;
    assert_eq!(fetched.spec.task.title, "claimed here");
    assert!(fetched.is_claimed_by(DEFAULT_CLAIMER));
    assert_eq!(fetched.spec.execution_mode, ExecutionMode::Local);

    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    let names: Vec<String> = listed.items.iter().map(|a| a.name_any()).collect();
    assert_eq!(names, ["mine"]);
    assert_eq!(api.list(&ListParams::default()).await?.items.len(), 3);

    // The first event is the labelled object; the other two never match the selector.
    let first = tokio::time::timeout(WAIT, events.try_next())
        .await
        .context("no watch event")??
        .context("watch ended")?;
    match first {
        WatchEvent::Added(added) => assert_eq!(added.name_any(), "mine"),
        other => bail!("unexpected first watch event: {other:?}"),
    }

    // Relabelling an object into the selector shows up as an event on the same watch.
    api.patch(
        "unclaimed",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {CLAIMED_BY_LABEL: DEFAULT_CLAIMER}}})),
    )
    .await?;
    let next = tokio::time::timeout(WAIT, events.try_next())
        .await
        .context("no watch event for the relabelled object")??
        .context("watch ended")?;
    match next {
        WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
            assert_eq!(obj.name_any(), "unclaimed")
        }
        other => bail!("unexpected watch event: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn status_subresource_leaves_spec_untouched() -> anyhow::Result<()> {
    let (cluster, ns) = setup("status").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    let created = api
        .create(&PostParams::default(), &titled_automaton("work", "original title")?)
        .await?;
    let generation = created.metadata.generation;

    // A status write that also tries to change the spec: only the status changes. The empty
    // condition message guards the build fix in cluster.sh (recipe 2): an apiserver built with
    // Go >= 1.19 without it rejects every "" in a custom resource as null.
    let patch = json!({
        "spec": {"task": {"title": "changed through status"}},
        "status": {
            "phase": "Claimed",
            "observedGeneration": generation,
            "message": "claimed by the test",
            "conditions": [{
                "type": "Claimed",
                "status": "True",
                "reason": "ClaimedByTest",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    });
    let patched = api
        .patch_status("work", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_eq!(patched.spec.task.title, "original title");
    assert_eq!(patched.phase(), Some(Phase::Claimed));
    assert_eq!(
        patched.metadata.generation, generation,
        "status write bumped generation"
    );

    // And a write to the main resource cannot change the status.
    let main = api
        .patch(
            "work",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await?;
    assert_eq!(main.phase(), Some(Phase::Claimed));

    let stored = api.get("work").await?;
    assert_eq!(stored.spec.task.title, "original title");
    let status = stored.status.context("status missing")?;
    assert_eq!(status.phase, Some(Phase::Claimed));
    assert_eq!(status.observed_generation, generation);
    assert_eq!(status.conditions.len(), 1);
    assert_eq!(status.conditions[0].type_, "Claimed");
    Ok(())
}

#[tokio::test]
async fn server_side_apply_records_the_field_manager() -> anyhow::Result<()> {
    let (cluster, ns) = setup("apply").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    let manager = "gastown-tests-apply";
    let desired = json!({
        "apiVersion": Automaton::api_version(&()),
        "kind": Automaton::kind(&()),
        "metadata": {"name": "applied", "labels": {CLAIMED_BY_LABEL: DEFAULT_CLAIMER}},
        "spec": {"task": {"title": "applied title"}, "executionMode": "local"}
    });
    let applied = api
        .patch("applied", &PatchParams::apply(manager), &Patch::Apply(&desired))
        .await?;
    assert_eq!(applied.spec.task.title, "applied title");
    let entry = applied
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some(manager))
        .with_context(|| format!("no managedFields entry for {manager}: {:?}", applied.managed_fields()))?;
    assert_eq!(entry.operation.as_deref(), Some("Apply"));

    // Applying the same intent again changes nothing.
    let again = api
        .patch("applied", &PatchParams::apply(manager), &Patch::Apply(&desired))
        .await?;
    assert_eq!(again.resource_version(), applied.resource_version());

    // Another manager claiming the same field conflicts unless it forces.
    let rival = json!({
        "apiVersion": Automaton::api_version(&()),
        "kind": Automaton::kind(&()),
        "metadata": {"name": "applied"},
        "spec": {"task": {"title": "rival title"}}
    });
    expect_api_error(
        api.patch("applied", &PatchParams::apply("rival"), &Patch::Apply(&rival))
            .await,
        "a conflicting apply succeeded",
        "409 Conflict",
        |s| s.code == 409,
    )?;
    let forced = api
        .patch("applied", &PatchParams::apply("rival").force(), &Patch::Apply(&rival))
        .await?;
    assert_eq!(forced.spec.task.title, "rival title");
    Ok(())
}

#[tokio::test]
async fn finalizer_blocks_deletion_until_removed() -> anyhow::Result<()> {
    let (cluster, ns) = setup("finalizer").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    let mut object = titled_automaton("held", "held by a finalizer")?;
    object.metadata.finalizers = Some(vec![RELEASE_FINALIZER.to_string()]);
    api.create(&PostParams::default(), &object).await?;

    api.delete("held", &DeleteParams::default()).await?;
    let terminating = api.get("held").await?;
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "no deletionTimestamp after delete"
    );
    assert_eq!(terminating.finalizers(), [RELEASE_FINALIZER]);

    // Removing the finalizer lets the API server finish the deletion.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match api.get_opt("held").await? {
            None => break,
            Some(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(still) => bail!("still present after the finalizer was removed: {still:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn stale_update_is_a_conflict() -> anyhow::Result<()> {
    let (cluster, ns) = setup("conflict").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    api.create(&PostParams::default(), &titled_automaton("contended", "first")?)
        .await?;

    let stale = api.get("contended").await?;
    let mut fresh = stale.clone();
    fresh.spec.task.title = "second".to_string();
    let replaced = api.replace("contended", &PostParams::default(), &fresh).await?;
    assert_ne!(replaced.resource_version(), stale.resource_version());

    let mut late = stale;
    late.spec.task.title = "lost update".to_string();
    expect_api_error(
        api.replace("contended", &PostParams::default(), &late).await,
        "a replace with a stale resourceVersion succeeded",
        "409 Conflict",
        |s| s.code == 409 && s.is_conflict(),
    )?;
    assert_eq!(api.get("contended").await?.spec.task.title, "second");
    Ok(())
}

#[tokio::test]
async fn lease_can_be_created_and_renewed() -> anyhow::Result<()> {
    let (cluster, ns) = setup("lease").await?;
    let leases: Api<Lease> = Api::namespaced(cluster.client(), ns.name());
    // The server keeps microseconds: compare values it can represent.
    let acquired = Timestamp::from_microsecond(Timestamp::now().as_microsecond())?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("gastown-operator-leader".to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("replica-a".to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(acquired)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await?;

    // Renew: a replace carrying the resourceVersion we read (optimistic concurrency).
    let renewed_at = acquired.checked_add(Duration::from_secs(5))?;
    let mut renewal = created.clone();
    if let Some(spec) = renewal.spec.as_mut() {
        spec.renew_time = Some(MicroTime(renewed_at));
    }
    let renewed = leases
        .replace("gastown-operator-leader", &PostParams::default(), &renewal)
        .await?;
    assert_ne!(renewed.resource_version(), created.resource_version());
    let spec = leases
        .get("gastown-operator-leader")
        .await?
        .spec
        .context("lease without spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.renew_time, Some(MicroTime(renewed_at)));

    // A second candidate renewing from the stale copy loses.
    let mut takeover = created;
    if let Some(spec) = takeover.spec.as_mut() {
        spec.holder_identity = Some("replica-b".to_string());
    }
    expect_api_error(
        leases
            .replace("gastown-operator-leader", &PostParams::default(), &takeover)
            .await,
        "a stale lease renewal succeeded",
        "409 Conflict",
        |s| s.code == 409,
    )?;
    Ok(())
}

#[tokio::test]
async fn rbac_forbids_users_without_a_role() -> anyhow::Result<()> {
    let (cluster, ns) = setup("rbac").await?;
    let admin: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    admin
        .create(&PostParams::default(), &titled_automaton("guarded", "guarded")?)
        .await?;
    assert_eq!(admin.list(&ListParams::default()).await?.items.len(), 1);

    let mallory: Api<Automaton> = Api::namespaced(cluster.user_client("mallory").await?, ns.name());
    expect_api_error(
        mallory.list(&ListParams::default()).await,
        "mallory listed Automatons without any role",
        "403 Forbidden",
        |s| s.code == 403 && s.is_forbidden(),
    )?;

    // A role bound to the gastown-claimers group lets alice (a member) read, not bob.
    let role_name = grant_claimers_read(&cluster, &ns).await?;

    let alice: Api<Automaton> = Api::namespaced(cluster.user_client("alice").await?, ns.name());
    let listed = list_when_allowed(&alice).await?;
    assert_eq!(listed, ["guarded"]);
    let bob: Api<Automaton> = Api::namespaced(cluster.user_client("bob").await?, ns.name());
    expect_api_error(
        bob.list(&ListParams::default()).await,
        "bob listed Automatons without being a claimer",
        "403",
        |s| s.code == 403,
    )?;
    // The role gives read access only.
    expect_api_error(
        alice.delete("guarded", &DeleteParams::default()).await,
        "alice deleted with a read-only role",
        "403",
        |s| s.code == 403,
    )?;

    Api::<ClusterRole>::all(cluster.client())
        .delete(&role_name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// Binds a ClusterRole that reads Automatons to the group `gastown-claimers` in `ns`; returns
/// the role's name (the caller deletes it).
async fn grant_claimers_read(cluster: &TestCluster, ns: &TestNamespace) -> anyhow::Result<String> {
    let role_name = format!("{}-automaton-reader", ns.name());
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(role_name.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![Automaton::group(&()).to_string()]),
            resources: Some(vec![Automaton::plural(&()).to_string()]),
            verbs: vec!["get".to_string(), "list".to_string(), "watch".to_string()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    Api::<ClusterRole>::all(cluster.client())
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("claimers-read-automatons".to_string()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: role_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".to_string(),
            name: "gastown-claimers".to_string(),
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(cluster.client(), ns.name())
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(role_name)
}

/// Lists as a user whose RoleBinding was just created (the RBAC cache catches up quickly).
async fn list_when_allowed(api: &Api<Automaton>) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok(list.items.iter().map(|a| a.name_any()).collect()),
            Err(err) if api_status(&err).is_some_and(|s| s.code == 403) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(err) => return Err(err.into()),
        }
    }
}

#[tokio::test]
async fn operator_identity_has_no_rights_by_default() -> anyhow::Result<()> {
    // The chart grants the operator its rights; a bare cluster grants none.
    let (cluster, ns) = setup("operator").await?;
    let client: Client = cluster
        .user_client(gastown_crds::contract::DEFAULT_CONTROLLER_USER)
        .await?;
    let api: Api<Automaton> = Api::namespaced(client, ns.name());
    expect_api_error(
        api.list(&ListParams::default()).await,
        "the operator identity listed Automatons without a role",
        "403",
        |s| s.code == 403,
    )?;
    Ok(())
}

#[tokio::test]
async fn dedicated_cluster_keeps_data_across_an_apiserver_restart() -> anyhow::Result<()> {
    // Its own cluster: restarting the shared one would disturb the other tests.
    let cluster = TestCluster::start_dedicated().await?;
    let dir = cluster.dir().to_path_buf();
    cluster.install_crds().await?;
    let ns = cluster.namespace("restart").await?;
    let api: Api<Automaton> = Api::namespaced(cluster.client(), ns.name());
    api.create(&PostParams::default(), &titled_automaton("durable", "kept in etcd")?)
        .await?;

    cluster.restart_apiserver().await?;

    let client = gastown_tests::cluster::client_from_kubeconfig(&cluster.kubeconfig()).await?;
    let api: Api<Automaton> = Api::namespaced(client, ns.name());
    assert_eq!(api.get("durable").await?.spec.task.title, "kept in etcd");

    drop(ns);
    drop(cluster);
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    Ok(())
}

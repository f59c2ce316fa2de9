//! Step 7: alice's Automaton is claimed by the policy, slung once by the pod through
//! gt-proxy-server, and followed to Succeeded, with Events that `kubectl describe` shows.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::PoisonError;

use gastown_crds::{Automaton, Phase};
use gastown_tests::status::bead_id;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use crate::host::Host;
use crate::{Day, automaton, wait_phase};

pub(crate) async fn alices_work_is_dispatched_once_by_the_pod(
    day: &Day,
    alice: &Api<Automaton>,
    host: &Host,
    pods: &[Pod],
) {
    let created = alice
        .create(&PostParams::default(), &automaton("fix-login"))
        .await
        .unwrap();
    assert_eq!(
        created.claimed_by(),
        Some("gastown-local"),
        "claimed by the policy webhook"
    );
    let a = wait_phase(alice, "fix-login", Phase::Dispatched).await;
    let bead = bead_id(&a).unwrap();
    assert_eq!(host.town.dispatch_count(&bead), 1);
    assert_eq!(host.town.sling_count(&bead), 1);
    assert_eq!(host.slings_through_proxy(&bead), 1);
    let pod_ips: BTreeSet<IpAddr> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
        .collect();
    let peers = host.peers.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(
        !peers.is_empty() && peers.is_subset(&pod_ips),
        "gt-proxy-server was called from {peers:?}, the pod is {pod_ips:?}"
    );
    host.town.start_work(&bead).unwrap();
    wait_phase(alice, "fix-login", Phase::Running).await;
    host.town.close(&bead, "merged").unwrap();
    wait_phase(alice, "fix-login", Phase::Succeeded).await;
    let describe = day
        .k
        .kubectl(&["describe", "automaton", "fix-login", "-n", &day.user_ns]);
    assert!(
        describe.contains("Events:") && describe.contains("Dispatched") && describe.contains(&bead),
        "kubectl describe shows the Events:\n{describe}"
    );
}

//! Steps 8 to 10, the day-two operations: two replicas with exactly one leader, an upgrade
//! that rolls the pods while work is in flight, the leader pod deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::Duration;

use gastown_crds::{Automaton, Phase};
use gastown_tests::status::bead_id;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use crate::host::{Host, slings_in};
use crate::lease::{Handover, Samples, handovers, lease_sample};
use crate::{
    Day, LEASE, RELEASE_NS, automaton, container_id, controller_pods, docker_logs, eventually, wait_phase,
    wait_rolled_out,
};

/// `helm upgrade --set replicas=2`: exactly one pod leads, the one holding the Lease. Returns
/// the two pods.
pub(crate) async fn two_replicas_one_leader(day: &Day) -> Vec<Pod> {
    day.k
        .helm_release("upgrade", &day.values, &["--set", "replicas=2"], "180s");
    let two = wait_rolled_out(day, 2).await;
    let holder = eventually("a pod of the release to hold the Lease", || async {
        let lease = day.leases.get(LEASE).await.map_err(|e| e.to_string())?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        if two.iter().any(|p| p.metadata.name.as_deref() == Some(holder.as_str())) {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?}"))
        }
    })
    .await;
    let leaders: Vec<String> = two
        .iter()
        .filter(|p| docker_logs(&container_id(p)).contains("became leader"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(
        leaders,
        std::slice::from_ref(&holder),
        "exactly one pod leads, the Lease holder"
    );
    two
}

/// What the rolling upgrade left: the new pods, the changes of Lease holder during it, and how
/// many Automatons it created.
pub(crate) struct Roll {
    pub(crate) pods: Vec<Pod>,
    pub(crate) handovers: Vec<Handover>,
    pub(crate) automatons: usize,
}

/// An upgrade that rolls the pods while work is in flight: handed over without a second sling
/// of anything and without a leaderless gap beyond what the Lease allows.
pub(crate) async fn a_rolling_upgrade_with_work_in_flight(
    day: &Day,
    alice: &Api<Automaton>,
    host: &Host,
    two: &[Pod],
    samples: &Samples,
) -> Roll {
    let before: Vec<String> = (1..=3).map(|i| format!("before-roll-{i}")).collect();
    for name in &before {
        alice.create(&PostParams::default(), &automaton(name)).await.unwrap();
    }
    for name in &before {
        wait_phase(alice, name, Phase::Dispatched).await;
    }
    let (k, values) = (day.k.clone(), day.values.clone());
    let upgrade = tokio::task::spawn_blocking(move || {
        let rollout = ["--set", "replicas=2", "--set-string", "podAnnotations.rollout=2"];
        k.helm_release("upgrade", &values, &rollout, "240s")
    });
    let during: Vec<String> = (1..=3).map(|i| format!("during-roll-{i}")).collect();
    for name in &during {
        tokio::time::sleep(Duration::from_secs(5)).await;
        alice.create(&PostParams::default(), &automaton(name)).await.unwrap();
    }
    upgrade.await.unwrap();
    let rolled = wait_rolled_out(day, 2).await;
    let old_names: BTreeSet<String> = two.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert!(
        rolled
            .iter()
            .all(|p| !old_names.contains(p.metadata.name.as_deref().unwrap())),
        "the upgrade replaced every pod"
    );
    let names: Vec<String> = before.into_iter().chain(during).collect();
    let beads = each_dispatched_once(alice, host, &names).await;
    let roll_handovers = handovers(&samples.lock().unwrap_or_else(PoisonError::into_inner));
    assert!(!roll_handovers.is_empty(), "the Lease changed hands during the roll");
    for h in &roll_handovers {
        assert!(
            h.gap() <= h.bound(),
            "leaderless for {:?} ({h:?}), bound {:?}",
            h.gap(),
            h.bound()
        );
    }
    for bead in beads.values() {
        host.town.close(bead, "merged").unwrap();
    }
    for name in beads.keys() {
        wait_phase(alice, name, Phase::Succeeded).await;
    }
    Roll {
        pods: rolled,
        handovers: roll_handovers,
        automatons: names.len(),
    }
}

/// Every one of `names` is dispatched, each with a bead of its own slung exactly once (also
/// through the proxy), after the new leader has run a few sync rounds. Returns name → bead.
async fn each_dispatched_once(alice: &Api<Automaton>, host: &Host, names: &[String]) -> BTreeMap<String, String> {
    let mut beads = BTreeMap::new();
    for name in names {
        let a = wait_phase(alice, name, Phase::Dispatched).await;
        beads.insert(name.clone(), bead_id(&a).unwrap());
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let requests = host.proxy.requests();
    for (name, bead) in &beads {
        assert_eq!(host.town.sling_count(bead), 1, "{name} ({bead}) slung once");
        assert_eq!(slings_in(&requests, bead), 1, "{name} ({bead})");
    }
    assert_eq!(
        beads.values().collect::<BTreeSet<_>>().len(),
        beads.len(),
        "one bead per Automaton"
    );
    beads
}

/// The leader pod is deleted: another pod of the release takes over within what the Lease
/// allows and dispatches new work once. Returns the leaderless gap.
pub(crate) async fn the_leader_pod_deleted(
    day: &Day,
    alice: &Api<Automaton>,
    host: &Host,
    rolled: &[Pod],
    samples: &Samples,
) -> Duration {
    let leading = lease_sample(day.leases.get(LEASE).await.unwrap());
    let leader = leading.holder.clone();
    assert!(
        rolled
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(leader.as_str()))
    );
    // The series starts with the leader's own sample: a leader that releases the Lease on
    // SIGTERM does so within milliseconds, before the sampler could see it holding.
    {
        let mut series = samples.lock().unwrap_or_else(PoisonError::into_inner);
        series.clear();
        series.push(leading);
    }
    day.k
        .kubectl(&["delete", "pod", &leader, "-n", RELEASE_NS, "--wait=false"]);
    let successor = eventually("another pod to take the Lease", || async {
        let holder = day
            .leases
            .get(LEASE)
            .await
            .map_err(|e| e.to_string())?
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        if !holder.is_empty() && holder != leader {
            Ok(holder)
        } else {
            Err(holder)
        }
    })
    .await;
    let failover_gap = handed_over_in_time(day, samples, &leader, &successor).await;
    alice
        .create(&PostParams::default(), &automaton("after-failover"))
        .await
        .unwrap();
    let a = wait_phase(alice, "after-failover", Phase::Dispatched).await;
    let after_bead = bead_id(&a).unwrap();
    assert_eq!(host.town.sling_count(&after_bead), 1);
    wait_rolled_out(day, 2).await;
    failover_gap
}

/// The successor is a pod of the release — the standby, or the pod the ReplicaSet started in
/// the leader's place, whichever asked first after the Lease expired — and the one handover
/// from the leader to it stayed within its bound. Returns its gap.
async fn handed_over_in_time(day: &Day, samples: &Samples, leader: &str, successor: &str) -> Duration {
    let candidates: Vec<String> = controller_pods(&day.pods)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        candidates.iter().any(|c| c == successor),
        "{successor} is a pod of the release ({candidates:?})"
    );
    // The series ends with the successor's own sample, so a sampler that fell behind on a busy
    // machine cannot hide the change of holder (the times come from the Lease itself).
    let taken = lease_sample(day.leases.get(LEASE).await.unwrap());
    let failover = {
        let mut series = samples.lock().unwrap_or_else(PoisonError::into_inner);
        series.push(taken);
        handovers(&series)
    };
    let [handover] = failover.as_slice() else {
        panic!("one handover after the leader pod was deleted: {failover:?}");
    };
    assert_eq!((handover.from.as_str(), handover.to.as_str()), (leader, successor));
    let failover_gap = handover.gap();
    assert!(
        failover_gap <= handover.bound(),
        "failover left no leader for {failover_gap:?}"
    );
    failover_gap
}

//! Restarts, crashes and a second replica never dispatch the same work twice.

use gastown_crds::Phase;
use gastown_crds::contract::RELEASE_FINALIZER;
use gastown_tests::fake_gastown::Faults;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::*;

#[tokio::test]
async fn restart_in_the_middle_does_not_dispatch_twice() {
    let env = Env::new("restart").await;
    // Slow slings so the kill lands while one is in flight.
    env.town
        .set_faults(&Faults::default().delay_ms(1500).verbs(["sling"]))
        .unwrap();
    let mut c = env.controller("c1", &[]);
    for i in 0..5 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    env.wait_for("job-0", "bead recorded", T, |a| {
        gastown_tests::status::bead_id(a).is_some()
    })
    .await;
    c.kill();
    let _c2 = env.controller("c2", &[]);
    for i in 0..5 {
        let a = env
            .wait_phase(&format!("job-{i}"), Phase::Dispatched, Duration::from_secs(60))
            .await;
        assert_eq!(
            env.town.dispatch_count(&bead_of(&a)),
            1,
            "job-{i} dispatched more than once"
        );
    }
    assert_eq!(env.town.beads().unwrap().len(), 5, "one bead per Automaton");
}

/// A crash between `bd create` and recording the bead leaves an object with our finalizer and
/// no bead in its status. The next attempt must find that bead by its external ref and dispatch
/// it, not create a second one.
#[tokio::test]
async fn a_bead_created_but_never_recorded_is_found_not_created_again() {
    let env = Env::new("unrecorded").await;
    let mut obj = env.create_claimed("orphan", json!({})).await;
    obj.metadata.finalizers = Some(vec![RELEASE_FINALIZER.to_string()]);
    let obj = env.api().replace("orphan", &PostParams::default(), &obj).await.unwrap();
    let external = format!("automaton:{}/orphan/{}", env.ns.name(), obj.uid().unwrap());
    // As the controller's `bd create` made it: with the labels its lookup filters on.
    let bead = env
        .town
        .create_bead_with_external_ref("Task orphan", &external)
        .unwrap();
    let _c = env.controller("c", &[]);
    let a = env.wait_phase("orphan", Phase::Dispatched, T).await;
    assert_eq!(bead_of(&a), bead);
    let g = a.status.as_ref().unwrap().gastown.as_ref().unwrap();
    assert_eq!(g.bead_created, Some(true), "the bead is ours: released by deleting");
    assert_eq!(env.town.beads().unwrap().len(), 1, "no second bead");
    assert_eq!(env.town.dispatch_count(&bead), 1);
}

#[tokio::test]
async fn two_replicas_with_leader_election_dispatch_once() {
    let env = Env::new("leader").await;
    let mut a = env.replica("replica-a", "3s").unwrap();
    let b = env.replica("replica-b", "3s").unwrap();
    for i in 0..4 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    for i in 0..4 {
        let o = env.wait_phase(&format!("job-{i}"), Phase::Dispatched, T).await;
        assert_eq!(env.town.dispatch_count(&bead_of(&o)), 1);
    }
    let leases: Api<Lease> = Api::namespaced(env.cluster.client(), env.ns.name());
    let holder_of = async || {
        leases
            .get("gastown-operator")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap()
    };
    let holder = holder_of().await;
    // Kill whichever replica leads; the other takes over and dispatches new work once.
    if holder == "replica-a" {
        a.kill();
    } else {
        drop(b);
    }
    for i in 4..6 {
        env.create_claimed(&format!("job-{i}"), json!({})).await;
    }
    for i in 4..6 {
        let o = env
            .wait_phase(&format!("job-{i}"), Phase::Dispatched, Duration::from_secs(60))
            .await;
        assert_eq!(env.town.dispatch_count(&bead_of(&o)), 1);
    }
    assert_ne!(holder_of().await, holder);
    assert_eq!(env.town.beads().unwrap().len(), 6);
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let env = Env::new("sigterm").await;
    let mut c = env.controller("c", &[]);
    env.dispatched("one").await;
    let status = c.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{}", c.log());
}

/// Item 2: the controller dies while `bd create` runs; the command goes on and creates the bead
/// after the new controller has looked for it and found nothing. The new controller must wait
/// (looking up only) instead of creating a second bead.
#[tokio::test]
async fn a_bd_create_cut_short_by_a_crash_is_waited_for_not_repeated() {
    let env = Env::new("create-crash").await;
    // Every call takes 4 s; the bead is created at the end of it.
    env.town.set_faults(&Faults::default().delay_ms(4000)).unwrap();
    let mut c1 = env.controller("c1", &["--create-outcome-wait", "12s"]);
    env.create_claimed("slow", json!({})).await;
    wait_running(&env.town, "create", T).await;
    c1.kill();
    env.town.clear_faults();
    let _c2 = env.controller("c2", &["--create-outcome-wait", "12s"]);
    let a = env.wait_phase("slow", Phase::Dispatched, Duration::from_secs(60)).await;
    wait_not_running(&env.town, "create").await;
    let beads = env.town.beads().unwrap();
    assert_eq!(beads.len(), 1, "one bead for one Automaton: {beads:?}");
    assert_eq!(bead_of(&a), beads[0]["id"].as_str().unwrap());
    assert_eq!(env.town.dispatch_count(&bead_of(&a)), 1);
}

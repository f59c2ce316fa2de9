//! The controller's Gas Town client against this fake (issue 14, items 1 and 4b).

use super::*;
use gastown_controller::gastown::testing::{FakeProxyServer, TempDir, TestPki, TownExecHandler};
use gastown_controller::gastown::{BeadId, ExternalRef, GasTown, GasTownConfig, Release, Transport};
use std::sync::Arc;

fn client(t: &FakeGasTown) -> GasTown {
    let mut config = GasTownConfig::new(Transport::Exec {
        town_root: t.town_root().to_path_buf(),
        gt_path: t.gt_path(),
        bd_path: t.bd_path(),
        actor: Some("gastown-operator".into()),
    });
    config.command_timeout = Duration::from_secs(20);
    GasTown::new(config).unwrap()
}

fn reference() -> ExternalRef {
    ExternalRef::for_automaton("team-a", "fix-login", "0f9c-1").unwrap()
}

/// More than 50 beads of a higher priority than the controller's (2): real `bd list` shows
/// only the first 50 by priority, with or without `--all` (bd v0.42.0-v0.49.4).
#[tokio::test]
async fn the_lookup_finds_the_bead_among_more_than_50_higher_priority_beads() {
    let t = town();
    let gastown = client(&t);
    let ours = gastown.create_bead("Fix login", "", &reference()).await.unwrap();
    t.fill_with_beads(60, 1).unwrap();
    // The argv before the fix misses it.
    let old = run(&t, "bd", &["list", "--json", "--all"]);
    let listed: Vec<Value> = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(listed.len(), 50);
    assert!(listed.iter().all(|b| b["id"] != ours.as_str()));
    // The lookup finds it, closed too, and answers with it alone.
    let found = gastown.find_bead_by_external_ref(&reference()).await.unwrap().unwrap();
    assert_eq!(found.id, ours.as_str());
    assert!(
        found.labels.contains(&"gastown-operator".to_string()),
        "{:?}",
        found.labels
    );
    t.close(ours.as_str(), "merged").unwrap();
    let closed = gastown.find_bead_by_external_ref(&reference()).await.unwrap().unwrap();
    assert_eq!(closed.id, ours.as_str());
    let other = ExternalRef::for_automaton("team-a", "other", "0f9c-2").unwrap();
    assert!(gastown.find_bead_by_external_ref(&other).await.unwrap().is_none());
    let lookup = t
        .calls()
        .unwrap()
        .into_iter()
        .rfind(|c| c.verb() == Some("list"))
        .unwrap();
    assert!(lookup.argv.contains(&"--limit".to_string()), "{:?}", lookup.argv);
}

/// A `bd create` that made its bead and then failed, hung (killed at the timeout) or was
/// killed: the client finds the bead and never creates a second one.
#[tokio::test]
async fn a_create_that_fails_after_its_work_returns_the_bead_it_made() {
    for (label, faults) in [
        ("fail", Faults::fail_after_work(1.0)),
        ("hang", Faults::hang_after_work(1.0, 30)),
        ("kill", Faults::kill_after_work(1.0)),
    ] {
        let t = town();
        t.fill_with_beads(55, 0).unwrap();
        t.set_faults(&faults.after_work_verbs(["create"])).unwrap();
        let mut config = GasTownConfig::new(Transport::Exec {
            town_root: t.town_root().to_path_buf(),
            gt_path: t.gt_path(),
            bd_path: t.bd_path(),
            actor: None,
        });
        config.command_timeout = Duration::from_secs(2);
        let gastown = GasTown::new(config).unwrap();
        let id = gastown.create_bead("Fix login", "", &reference()).await.unwrap();
        assert_eq!(t.created_beads().unwrap(), [id.to_string()], "{label}");
        assert_eq!(
            t.beads_with_external_ref(reference().as_str()).unwrap().len(),
            1,
            "{label}"
        );
    }
}

/// Puts the bead `id` on `gastown/polecats/Toast`'s hook.
fn slung(t: &FakeGasTown, title: &str) -> BeadId {
    let id = create(t, title);
    ok(t, "gt", &["sling", &id, "gastown"]);
    BeadId::parse(&id).unwrap()
}

fn assert_free(t: &FakeGasTown, id: &BeadId) {
    let b = t.bead(id.as_str()).unwrap().unwrap();
    assert_eq!(b["status"], "open", "{b}");
    assert!(b["assignee"].is_null(), "{b}");
}

fn unslings(t: &FakeGasTown) -> usize {
    t.calls()
        .unwrap()
        .iter()
        .filter(|c| c.tool == "gt" && c.verb() == Some("unsling"))
        .count()
}

/// Issue 14, item 4b: the release is complete in every case real `gt unsling` leaves open.
#[tokio::test]
async fn release_takes_the_bead_back_in_every_case() {
    let t = town();
    let gastown = client(&t);
    // Hooked: gt unsling does it.
    let hooked = slung(&t, "hooked");
    let r = gastown
        .release_bead(&hooked, Some("gastown/polecats/Toast"))
        .await
        .unwrap();
    assert_eq!(r, Release::Unslung);
    assert_free(&t, &hooked);
    // Started (in_progress): gt unsling finds nothing hooked, exits 0 and changes nothing;
    // the release reopens it with bd.
    let started = slung(&t, "started");
    t.start_work(started.as_str()).unwrap();
    let holder = t.bead(started.as_str()).unwrap().unwrap()["assignee"]
        .as_str()
        .unwrap()
        .to_string();
    gastown.unsling(&started, Some(&holder), true).await.unwrap();
    assert_eq!(
        t.bead(started.as_str()).unwrap().unwrap()["status"],
        "in_progress",
        "unsling alone did nothing"
    );
    assert_eq!(
        gastown.release_bead(&started, Some(&holder)).await.unwrap(),
        Release::Reopened
    );
    assert_free(&t, &started);
    // The worker's session is gone: gt unsling cannot name it.
    let orphan = slung(&t, "orphan");
    let holder = t.bead(orphan.as_str()).unwrap().unwrap()["assignee"]
        .as_str()
        .unwrap()
        .to_string();
    t.end_session(&holder).unwrap();
    assert!(gastown.unsling(&orphan, Some(&holder), true).await.is_err());
    assert_eq!(
        gastown.release_bead(&orphan, Some(&holder)).await.unwrap(),
        Release::Reopened
    );
    assert_free(&t, &orphan);
    // No holder known: the bead's assignee is used.
    let unnamed = slung(&t, "unnamed");
    assert_eq!(gastown.release_bead(&unnamed, None).await.unwrap(), Release::Unslung);
    assert_free(&t, &unnamed);
    // Nobody holds it, or it does not exist: nothing is run but the read.
    let before = unslings(&t);
    let open = BeadId::parse(&create(&t, "open")).unwrap();
    assert_eq!(gastown.release_bead(&open, None).await.unwrap(), Release::NotHeld);
    t.close(hooked.as_str(), "merged").unwrap();
    assert_eq!(gastown.release_bead(&hooked, None).await.unwrap(), Release::NotHeld);
    assert_eq!(t.bead(hooked.as_str()).unwrap().unwrap()["status"], "closed");
    let missing = BeadId::parse("gt-zzzz").unwrap();
    assert_eq!(gastown.release_bead(&missing, None).await.unwrap(), Release::Missing);
    assert_eq!(unslings(&t), before);
}

/// Through gt-proxy-server `gt unsling` is refused (403): the release reopens with bd.
#[tokio::test]
async fn release_through_the_proxy_reopens_with_bd() {
    let t = town();
    let started = slung(&t, "started");
    t.start_work(started.as_str()).unwrap();
    let pki = TestPki::new("release CA").unwrap();
    let server = pki.server_cert().unwrap();
    let handler = TownExecHandler::new(t.town_root(), t.gt_path(), t.bd_path());
    let (_, proxy) = FakeProxyServer::start(pki.ca_pem(), &server.cert_pem, &server.key_pem, Arc::new(handler))
        .await
        .unwrap();
    let dir = TempDir::new("release-proxy").unwrap();
    let me = pki.client_cert("gt-operator-controller").unwrap();
    let gastown = GasTown::new(GasTownConfig::new(Transport::Proxy {
        url: proxy.url(),
        client_cert: dir.write("c.crt", &me.cert_pem).unwrap(),
        client_key: dir.write("c.key", &me.key_pem).unwrap(),
        ca: dir.write("ca.crt", pki.ca_pem()).unwrap(),
    }))
    .unwrap();
    let r = gastown
        .release_bead(&started, Some("gastown/polecats/Toast"))
        .await
        .unwrap();
    assert_eq!(r, Release::Reopened);
    assert_free(&t, &started);
    assert!(
        proxy.requests().iter().all(|r| r.argv[1] != "unsling"),
        "{:?}",
        proxy.requests()
    );
}

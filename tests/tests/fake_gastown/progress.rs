//! Auto progress: slung beads start and close on their own as time passes.

use super::*;

#[test]
fn auto_progress_moves_slung_beads_on_read() {
    let t = town();
    t.set_config(&Config {
        auto_progress: Some(AutoProgress {
            start_after_ms: 800,
            close_after_ms: Some(1600),
            close_reason: Some("merged".into()),
            close_rigs: None,
        }),
        ..Config::default()
    })
    .unwrap();
    let id = create(&t, "work");
    let local = create(&t, "local merge");
    let untouched = create(&t, "never slung");
    let slung = Instant::now();
    ok(&t, "gt", &["sling", &id, "gastown"]);
    ok(&t, "gt", &["sling", &local, "gastown", "--merge=local"]);
    let first = show(&t, &id);
    if slung.elapsed() < Duration::from_millis(700) {
        assert_eq!(first["status"], "hooked");
        assert!(first["started_at"].is_null());
    }
    std::thread::sleep(Duration::from_millis(900).saturating_sub(slung.elapsed()));
    let b = show(&t, &id);
    if slung.elapsed() < Duration::from_millis(1500) {
        assert_eq!(b["status"], "in_progress");
        assert!(is_rfc3339(&b["started_at"]));
        assert!(b["assignee"].as_str().unwrap().starts_with("gastown/polecats/"));
    }
    std::thread::sleep(Duration::from_millis(1700).saturating_sub(slung.elapsed()));
    let b = show(&t, &id);
    assert_eq!(b["status"], "closed");
    assert_eq!(b["close_reason"], "merged");
    assert!(is_rfc3339(&b["closed_at"]) && is_rfc3339(&b["started_at"]));
    // `--merge=local`: `gt done` closes the bead too, without a reason (bd records `Closed`).
    let l = show(&t, &local);
    assert_eq!(l["status"], "closed", "{l}");
    assert_eq!(l["close_reason"], "Closed");
    assert_eq!(show(&t, &untouched)["status"], "open");
}

#[test]
fn auto_progress_closes_only_in_the_configured_rigs() {
    let t = town();
    t.set_config(&Config {
        auto_progress: Some(AutoProgress {
            start_after_ms: 0,
            close_after_ms: Some(0),
            close_reason: None,
            close_rigs: Some(vec!["gastown".into()]),
        }),
        ..Config::default()
    })
    .unwrap();
    let here = create(&t, "closes");
    let there = create(&t, "waits");
    ok(&t, "gt", &["sling", &here, "gastown"]);
    ok(&t, "gt", &["sling", &there, "demo"]);
    assert_eq!(show(&t, &here)["status"], "closed");
    let b = show(&t, &there);
    assert_eq!(b["status"], "in_progress", "started, not closed: {b}");
}

//! Injected faults: down, failures and hangs before the work change nothing; after-work
//! failures, hangs and kills keep the change.

use super::*;

#[test]
fn down_fails_every_call_without_changing_state() {
    let t = town();
    let id = create(&t, "work");
    t.set_faults(&Faults::down()).unwrap();
    for (tool, args) in [
        ("bd", vec!["show", id.as_str(), "--json"]),
        ("gt", vec!["sling", id.as_str(), "gastown"]),
        ("bd", vec!["create", "x", "--silent"]),
    ] {
        let err = fails(&t, tool, &args);
        assert!(err.contains("cannot connect to Dolt server"), "{err}");
    }
    // Helpers bypass faults.
    assert_eq!(t.bead(&id).unwrap().unwrap()["status"], "open");
    assert_eq!(t.beads().unwrap().len(), 1);
    let calls = t.calls().unwrap();
    assert_eq!(calls.iter().filter(|c| c.fault.as_deref() == Some("down")).count(), 3);
    t.clear_faults();
    ok(&t, "gt", &["sling", &id, "gastown"]);
}

#[test]
fn injected_failures_do_not_change_state() {
    let t = town();
    let id = create(&t, "work");
    t.set_faults(&Faults::fail(1.0).verbs(["sling", "bd create"])).unwrap();
    for _ in 0..3 {
        fails(&t, "gt", &["sling", &id, "gastown"]);
    }
    fails(&t, "bd", &["create", "never", "--silent"]);
    // Other verbs are unaffected.
    assert_eq!(show(&t, &id)["status"], "open");
    assert_eq!(t.beads().unwrap().len(), 1);
    assert_eq!(t.sling_count(&id), 3);
    assert_eq!(t.dispatch_count(&id), 0);
    assert!(
        t.calls()
            .unwrap()
            .iter()
            .filter(|c| c.fault.is_some())
            .all(|c| c.exit_code == 1)
    );

    // A seeded 50% rate is reproducible and lets some calls through.
    t.set_faults(&Faults::fail(0.5).verbs(["show"]).seed(7)).unwrap();
    let results: Vec<bool> = (0..20)
        .map(|_| run(&t, "bd", &["show", &id, "--json"]).status.success())
        .collect();
    assert!(results.iter().any(|r| *r) && results.iter().any(|r| !*r), "{results:?}");
}

#[test]
fn a_hang_is_logged_first_and_killable() {
    let t = town();
    let id = create(&t, "work");
    t.set_faults(&Faults::hang(1.0, 3600).verbs(["sling"])).unwrap();
    let mut child = t
        .command("gt")
        .args(["sling", &id, "gastown"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if t.calls().unwrap().iter().any(|c| c.hung && c.verb() == Some("sling")) {
            break;
        }
        assert!(Instant::now() < deadline, "no hung call logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The hung call does not hold the lock: others proceed.
    assert_eq!(show(&t, &id)["status"], "open");
    assert!(child.try_wait().unwrap().is_none(), "still hanging");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(show(&t, &id)["status"], "open");
    let hung = t.calls().unwrap().into_iter().find(|c| c.hung).unwrap();
    assert_eq!(hung.exit_code, -1);
}

/// The single `bd create` call of others than the helper.
fn only_create(t: &FakeGasTown) -> gastown_tests::fake_gastown::Call {
    let creates: Vec<_> = t
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.verb() == Some("create"))
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    creates.into_iter().next().unwrap()
}

#[test]
fn an_after_work_failure_keeps_the_change() {
    let t = town();
    t.set_faults(&Faults::fail_after_work(1.0).verbs(["create", "sling"]))
        .unwrap();
    let o = run(
        &t,
        "bd",
        &[
            "create",
            "-p",
            "2",
            "--external-ref",
            "automaton:ns/a/u1",
            "--silent",
            "--",
            "work",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "the ID is never printed");
    assert!(stderr(&o).contains("committed"), "{}", stderr(&o));
    let beads = t.beads_with_external_ref("automaton:ns/a/u1").unwrap();
    assert_eq!(beads.len(), 1, "the bead was created anyway");
    let id = beads[0]["id"].as_str().unwrap().to_string();
    let call = only_create(&t);
    assert_eq!(call.created.as_deref(), Some(id.as_str()));
    assert_eq!(call.fault.as_deref(), Some("after_work_fail"));
    assert_eq!(call.exit_code, 1);
    assert_eq!(t.created_beads().unwrap(), [id.as_str()]);

    let o = run(&t, "gt", &["sling", &id, "gastown"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(show(&t, &id)["status"], "hooked", "slung anyway");
    assert_eq!(t.dispatch_count(&id), 1);
    // Reads and failed calls are not touched: a failing command did nothing to fail after.
    t.set_faults(&Faults::fail_after_work(1.0).verbs(["show"])).unwrap();
    assert_eq!(run(&t, "bd", &["show", "--json", "--", &id]).status.code(), Some(1));
    assert_eq!(
        run(&t, "bd", &["show", "--json", "--", "gt-zzzz"]).status.code(),
        Some(1)
    );
    assert_eq!(
        t.calls().unwrap().last().unwrap().fault,
        None,
        "an unknown ID fails on its own, with no injected fault"
    );
}

#[test]
fn after_work_rates_have_their_own_verbs() {
    let t = town();
    let id = create(&t, "work");
    // Before-work failures for sling, after-work failures for create only.
    t.set_faults(
        &Faults::fail(1.0)
            .verbs(["sling"])
            .with_fail_after_work(1.0)
            .after_work_verbs(["bd create"]),
    )
    .unwrap();
    fails(&t, "gt", &["sling", &id, "gastown"]);
    assert_eq!(
        show(&t, &id)["status"],
        "open",
        "the before-work failure changed nothing"
    );
    fails(&t, "bd", &["create", "--silent", "--", "second"]);
    assert_eq!(t.beads().unwrap().len(), 2);
    ok(&t, "bd", &["update", "--status", "in_progress", "--", &id]);
    // A seed makes the after-work roll reproducible too.
    t.set_faults(&Faults::fail_after_work(0.5).after_work_verbs(["update"]).seed(11))
        .unwrap();
    let rolls = |t: &FakeGasTown| -> Vec<bool> {
        (0..16)
            .map(|_| {
                run(t, "bd", &["update", "--status", "in_progress", "--", &id])
                    .status
                    .success()
            })
            .collect()
    };
    let first = rolls(&t);
    assert!(first.iter().any(|r| *r) && first.iter().any(|r| !*r), "{first:?}");
}

#[test]
fn an_after_work_hang_keeps_the_change_and_is_killable() {
    let t = town();
    t.set_faults(&Faults::hang_after_work(1.0, 3600).verbs(["create"]))
        .unwrap();
    let mut child = t
        .command("bd")
        .args([
            "create",
            "--external-ref",
            "automaton:ns/a/u2",
            "--silent",
            "--",
            "work",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t.calls().unwrap().iter().any(|c| c.hung) {
        assert!(Instant::now() < deadline, "no hung call logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The bead exists while the call still hangs, and the lock is free.
    assert_eq!(t.beads_with_external_ref("automaton:ns/a/u2").unwrap().len(), 1);
    assert!(child.try_wait().unwrap().is_none(), "still hanging");
    child.kill().unwrap();
    child.wait().unwrap();
    let call = only_create(&t);
    assert!(call.hung && call.created.is_some());
    assert_eq!(call.fault.as_deref(), Some("after_work_hang"));
    assert_eq!(call.exit_code, -1);
}

#[cfg(unix)]
#[test]
fn an_after_work_kill_ends_by_a_signal_after_printing() {
    use std::os::unix::process::ExitStatusExt;
    let t = town();
    t.set_faults(&Faults::kill_after_work(1.0).verbs(["create"])).unwrap();
    let o = run(&t, "bd", &["create", "--silent", "--", "work"]);
    assert_eq!(o.status.code(), None, "killed by a signal: no exit code");
    assert!(o.status.signal().is_some());
    let printed = stdout(&o).trim().to_string();
    let beads = t.beads().unwrap();
    assert_eq!(beads.len(), 1);
    assert_eq!(beads[0]["id"].as_str(), Some(printed.as_str()));
    let call = only_create(&t);
    assert_eq!(call.fault.as_deref(), Some("after_work_kill"));
    assert_eq!(call.created.as_deref(), Some(printed.as_str()));
}

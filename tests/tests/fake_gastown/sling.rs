//! `gt sling`, `gt unsling` and `gt polecat`: work goes on a worker's hook and comes back
//! off it as real `gt` does it.

use super::*;

#[test]
fn sling_hooks_the_bead_with_a_polecat_assignee() {
    let t = town();
    let id = create(&t, "work");
    let out = ok(&t, "gt", &["sling", &id, "gastown", "--merge=mr"]);
    assert!(serde_json::from_str::<Value>(&out).is_err(), "human text only");
    assert!(out.contains("hq-cv-"), "a convoy is created: {out}");
    let b = show(&t, &id);
    assert_eq!(b["status"], "hooked");
    let assignee = b["assignee"].as_str().unwrap();
    let name = assignee.strip_prefix("gastown/polecats/").expect(assignee);
    assert!(["Toast", "Nux", "Capable", "Furiosa"].contains(&name), "{name}");

    // An explicit polecat, and --no-convoy.
    let id2 = create(&t, "more work");
    let out = ok(
        &t,
        "gt",
        &["sling", &id2, "demo/Nux", "--no-convoy", "--agent", "claude"],
    );
    assert!(!out.contains("hq-cv-"), "{out}");
    assert_eq!(show(&t, &id2)["assignee"], "demo/polecats/Nux");

    // A second bead to the same rig gets another polecat.
    let id3 = create(&t, "third");
    ok(&t, "gt", &["sling", &id3, "gastown"]);
    assert_ne!(show(&t, &id3)["assignee"], assignee);

    // Dry run changes nothing.
    let id4 = create(&t, "dry");
    ok(&t, "gt", &["sling", &id4, "gastown", "--dry-run"]);
    assert_eq!(show(&t, &id4)["status"], "open");
    assert_eq!(t.dispatch_count(&id4), 0);
    assert_eq!(t.sling_count(&id4), 0);
}

#[test]
fn resling_to_the_same_rig_is_a_no_op() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let before = show(&t, &id);
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let after = show(&t, &id);
    assert_eq!(before["assignee"], after["assignee"]);
    assert_eq!(before["updated_at"], after["updated_at"]);
    assert_eq!(t.sling_count(&id), 2);
    assert_eq!(t.dispatch_count(&id), 1);
    // Also while in progress, and naming the same polecat.
    t.start_work(&id).unwrap();
    let name = after["assignee"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    ok(&t, "gt", &["sling", &id, &format!("gastown/{name}")]);
    assert_eq!(show(&t, &id)["status"], "in_progress");
    assert_eq!(t.dispatch_count(&id), 1);
}

#[test]
fn sling_to_another_target_needs_force() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let err = fails(&t, "gt", &["sling", &id, "demo"]);
    assert!(err.contains("--force"), "{err}");
    assert!(
        show(&t, &id)["assignee"]
            .as_str()
            .unwrap()
            .starts_with("gastown/polecats/")
    );
    ok(&t, "gt", &["sling", &id, "demo", "--force"]);
    let b = show(&t, &id);
    assert!(b["assignee"].as_str().unwrap().starts_with("demo/polecats/"));
    assert_eq!(b["status"], "hooked");
    assert_eq!(t.dispatch_count(&id), 2);
}

#[test]
fn sling_refuses_closed_deferred_and_tombstoned_beads_and_unknown_rigs() {
    let t = town();
    let closed = create(&t, "done");
    t.close(&closed, "merged").unwrap();
    for status in ["deferred", "tombstone"] {
        let id = create(&t, status);
        ok(&t, "bd", &["update", &id, "--status", status]);
        fails(&t, "gt", &["sling", &id, "gastown"]);
        assert_eq!(show(&t, &id)["status"], status);
    }
    fails(&t, "gt", &["sling", &closed, "gastown"]);
    assert_eq!(show(&t, &closed)["status"], "closed");

    let id = create(&t, "open");
    assert!(fails(&t, "gt", &["sling", &id, "nosuchrig"]).contains("nosuchrig"));
    fails(&t, "gt", &["sling", &id, "hq"]);
    fails(&t, "gt", &["sling", &id, "my-rig"]);
    fails(&t, "gt", &["sling", &id, "gastown", "--merge=sideways"]);
    assert_eq!(show(&t, &id)["status"], "open");

    t.set_config(&Config {
        rigs: Some(vec!["forge".into()]),
        ..Config::default()
    })
    .unwrap();
    fails(&t, "gt", &["sling", &id, "gastown"]);
    ok(&t, "gt", &["sling", &id, "forge"]);
}

#[test]
fn unsling_puts_the_bead_back_to_open() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let out = ok(&t, "gt", &["unsling", "--force", "--", &id, "gastown/polecats/Toast"]);
    assert!(out.contains("Work removed from hook"), "{out}");
    let b = show(&t, &id);
    assert_eq!(b["status"], "open");
    assert!(b["assignee"].is_null());
    // It can be slung again, anywhere.
    ok(&t, "gt", &["sling", &id, "demo"]);
    assert_eq!(show(&t, &id)["status"], "hooked");
    // `<rig>/<Name>` and the `unhook` alias name the same worker.
    ok(&t, "gt", &["unhook", "-f", &id, "demo/Toast"]);
    assert_eq!(show(&t, &id)["status"], "open");
}

/// What real `gt unsling` refuses, or silently skips (gastown `internal/cmd/unsling.go`).
#[test]
fn unsling_refuses_what_real_gt_refuses() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let unchanged = |t: &FakeGasTown| {
        let b = show(t, &id);
        assert_eq!(b["status"], "hooked", "{b}");
        assert_eq!(b["assignee"], "gastown/polecats/Toast");
    };
    // No target: the caller's own identity, which a caller without GT_ROLE does not have.
    let err = fails(&t, "gt", &["unsling", "--force", &id]);
    assert!(
        err.starts_with("Error: detecting agent identity: cannot determine agent identity (role: unknown)"),
        "{err}"
    );
    unchanged(&t);
    // Unfinished work without --force.
    let err = fails(&t, "gt", &["unsling", &id, "gastown/polecats/Toast"]);
    assert!(
        err.starts_with(&format!(
            "Error: hooked work {id} is incomplete (work)\n  Use --force to unsling anyway"
        )),
        "{err}"
    );
    unchanged(&t);
    // Another bead than the one hooked.
    let other = create(&t, "other");
    let err = fails(&t, "gt", &["unsling", "--force", &other, "gastown/Toast"]);
    assert!(
        err.contains(&format!("bead {other} is not hooked (current hook: {id})")),
        "{err}"
    );
    // A worker without a session (never spawned).
    let err = fails(&t, "gt", &["unsling", "--force", &id, "gastown/Nux"]);
    assert!(
        err.starts_with("Error: resolving target agent: getting pane for gt-nux: exit status 1"),
        "{err}"
    );
    unchanged(&t);
    // Started work (`in_progress`) is not "hooked": real gt finds nothing, changes nothing and
    // exits 0.
    t.start_work(&id).unwrap();
    let out = ok(&t, "gt", &["unsling", "--force", &id, "gastown/polecats/Toast"]);
    assert!(out.contains("No work hooked for gastown/polecats/toast"), "{out}");
    let b = show(&t, &id);
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["assignee"], "gastown/polecats/Toast");
    // Too many arguments.
    let err = fails(&t, "gt", &["unsling", &id, "gastown/Toast", "x"]);
    assert!(err.contains("accepts at most 2 arg(s), received 3"), "{err}");
}

#[test]
fn a_worker_whose_session_is_gone_cannot_be_unslung() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown"]);
    t.end_session("gastown/polecats/Toast").unwrap();
    let polecat: Value =
        serde_json::from_str(&ok(&t, "gt", &["polecat", "status", "gastown/Toast", "--json"])).unwrap();
    assert_eq!(polecat["session_running"], false);
    assert_eq!(polecat["session_id"], "gt-toast");
    let err = fails(&t, "gt", &["unsling", "--force", &id, "gastown/polecats/Toast"]);
    assert!(
        err.starts_with("Error: resolving target agent: getting pane for gt-toast: exit status 1"),
        "{err}"
    );
    assert_eq!(show(&t, &id)["status"], "hooked", "the bead stays with the dead worker");
    // What the controller falls back to: bd, which needs no session.
    ok(&t, "bd", &["update", "--status", "open", "--assignee", "", "--", &id]);
    let b = show(&t, &id);
    assert_eq!(b["status"], "open");
    assert!(b["assignee"].is_null());
    // The helper command is not part of the tools' interface.
    let err = fails(&t, "gt", &["_end-session", "gastown/Toast"]);
    assert!(err.contains("unknown command"), "{err}");
}

#[test]
fn sling_refuses_when_running_as_an_agent() {
    let t = town();
    let id = create(&t, "work");
    for (var, value) in [("GT_ROLE", "polecat"), ("GT_POLECAT", "Toast")] {
        let o = t
            .command("gt")
            .env(var, value)
            .args(["sling", &id, "gastown"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{var}");
        assert!(!stderr(&o).is_empty());
        assert_eq!(show(&t, &id)["status"], "open");
    }
    let calls = t.calls().unwrap();
    let slings: Vec<_> = calls.iter().filter(|c| c.verb() == Some("sling")).collect();
    assert_eq!(slings.len(), 2);
    assert!(slings.iter().all(|c| c.env_gt_role && c.exit_code == 1));
    assert!(calls.iter().filter(|c| c.tool == "bd").all(|c| !c.env_gt_role));
}

#[test]
fn polecat_status_reports_the_worker() {
    let t = town();
    let id = create(&t, "work");
    ok(&t, "gt", &["sling", &id, "gastown/Furiosa"]);
    let v: Value = serde_json::from_str(&ok(&t, "gt", &["polecat", "status", "gastown/Furiosa", "--json"])).unwrap();
    for f in [
        "rig",
        "name",
        "state",
        "issue",
        "clone_path",
        "branch",
        "session_running",
        "session_id",
        "attached",
        "windows",
        "created_at",
        "last_activity",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    assert_eq!(v["rig"], "gastown");
    assert_eq!(v["name"], "Furiosa");
    assert_eq!(v["state"], "working");
    assert_eq!(v["issue"], id.as_str());
    let created = v["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 19);
    assert_eq!(&created[10..11], " ");
    t.close(&id, "merged").unwrap();
    let v: Value = serde_json::from_str(&ok(&t, "gt", &["polecat", "status", "gastown/Furiosa", "--json"])).unwrap();
    assert_eq!(v["state"], "done");
    fails(&t, "gt", &["polecat", "status", "gastown/Nobody", "--json"]);
    // Stubs succeed with text.
    for args in [
        &["status"][..],
        &["hook"],
        &["mail", "inbox"],
        &["convoy", "list"],
        &["nudge", "gastown/Furiosa", "hi"],
    ] {
        ok(&t, "gt", args);
    }
}

#[test]
fn a_polecat_is_busy_until_its_bead_is_closed_and_then_reused() {
    let t = town();
    let cfg = Config {
        polecat_names: Some(vec!["Toast".into(), "Nux".into()]),
        ..Config::default()
    };
    t.set_config(&cfg).unwrap();
    let ids: Vec<String> = (0..3).map(|i| create(&t, &format!("w{i}"))).collect();
    let worker = |id: &str| show(&t, id)["assignee"].as_str().unwrap().to_string();
    for id in &ids {
        ok(&t, "gt", &["sling", id, "gastown"]);
    }
    assert_eq!(worker(&ids[0]), "gastown/polecats/Toast");
    assert_eq!(worker(&ids[1]), "gastown/polecats/Nux");
    assert_eq!(worker(&ids[2]), "gastown/polecats/Toast2", "the pool is exhausted");
    // Naming a busy polecat is refused, also for one that only the index remembers as busy.
    let extra = create(&t, "extra");
    let err = fails(&t, "gt", &["sling", &extra, "gastown/Nux"]);
    assert!(err.contains(&ids[1]), "{err}");
    // Closing frees the name for the next sling.
    t.close(&ids[0], "merged").unwrap();
    ok(&t, "gt", &["sling", &extra, "gastown"]);
    assert_eq!(worker(&extra), "gastown/polecats/Toast");
    // Unslinging frees it too.
    ok(&t, "gt", &["unsling", "--force", &ids[1], "gastown/Nux"]);
    let last = create(&t, "last");
    ok(&t, "gt", &["sling", &last, "gastown"]);
    assert_eq!(worker(&last), "gastown/polecats/Nux");
    let status: Value = serde_json::from_str(&ok(&t, "gt", &["status", "--json"])).unwrap();
    assert_eq!(status["polecats_working"], 3, "{status}");
    assert_eq!(status["beads"]["hooked"], 3, "{status}");
    assert_eq!(status["beads"]["closed"], 1, "{status}");
    assert_eq!(status["beads"]["open"], 1, "{status}");
}

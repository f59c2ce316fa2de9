//! The town: found from the working directory, options parsed like cobra, every call
//! logged, prepared by `init`, reused, migrated from the older fake; the test-support helpers.

use super::*;

#[test]
fn the_town_is_found_from_the_working_directory() {
    let t = town();
    let outside = std::env::temp_dir();
    for tool in ["gt", "bd"] {
        let path = if tool == "gt" { t.gt_path() } else { t.bd_path() };
        let o = std::process::Command::new(path)
            .current_dir(&outside)
            .args(["status"])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{tool} outside a town");
        assert!(stderr(&o).contains("not in a Gas Town workspace"), "{}", stderr(&o));
    }
    // A sub-directory of the town works (the nearest ancestor with mayor/town.json).
    let sub = t.town_root().join("gastown").join("crew");
    std::fs::create_dir_all(&sub).unwrap();
    let o = std::process::Command::new(t.bd_path())
        .current_dir(&sub)
        .args(["create", "from a subdir", "--silent"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // And `fake-gastown bd ...` works without symlinks.
    let o = std::process::Command::new(BIN)
        .current_dir(t.town_root())
        .args(["bd", "list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[test]
fn options_parse_like_cobra() {
    let t = town();
    // `--` ends the options: a title starting with `-`.
    let id = ok(&t, "bd", &["create", "-t", "bug", "--silent", "--", "-weird title"]);
    let b = show(&t, id.trim());
    assert_eq!(b["title"], "-weird title");
    assert_eq!(b["issue_type"], "bug");
    // `--flag=value`, `-pN`, interspersed flags.
    let id = ok(
        &t,
        "bd",
        &[
            "create",
            "--type=chore",
            "plain",
            "-p1",
            "--external-ref=x:y",
            "--silent",
        ],
    )
    .trim()
    .to_string();
    let b = show(&t, &id);
    assert_eq!(
        (b["issue_type"].clone(), b["priority"].clone()),
        ("chore".into(), 1.into())
    );
    assert_eq!(b["external_ref"], "x:y");
    // Without `--`, a dash word is a flag: unknown flags are usage errors.
    assert!(fails(&t, "bd", &["create", "-weird title"]).contains("unknown shorthand flag"));
    assert!(fails(&t, "bd", &["create", "x", "--bogus"]).contains("unknown flag: --bogus"));
    assert!(fails(&t, "gt", &["sling", &id, "gastown", "--bogus"]).contains("unknown flag"));
    fails(&t, "bd", &["create", "x", "--type"]);
    fails(&t, "bd", &["frobnicate"]);
    // `bd show -- <id>` and `--id`.
    assert_eq!(
        serde_json::from_str::<Value>(&ok(&t, "bd", &["show", "--json", "--", &id])).unwrap()[0]["id"],
        id.as_str()
    );
    assert_eq!(t.beads().unwrap().len(), 2);
}

#[test]
fn helpers_start_work_and_close() {
    let t = town();
    let id = t.create_bead("work").unwrap();
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let assignee = show(&t, &id)["assignee"].clone();
    t.start_work(&id).unwrap();
    let b = t.bead(&id).unwrap().unwrap();
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["assignee"], assignee);
    t.close(&id, "merged").unwrap();
    let b = t.bead(&id).unwrap().unwrap();
    assert_eq!(b["status"], "closed");
    assert_eq!(b["close_reason"], "merged");
    assert!(t.bead("gt-nope").unwrap().is_none());
    // Helper calls are not in calls().
    assert!(t.calls().unwrap().iter().all(|c| !c.internal));
    assert!(t.all_calls().unwrap().iter().any(|c| c.internal));
}

#[test]
fn every_call_is_logged() {
    let t = town();
    let id = create(&t, "work");
    fails(&t, "gt", &["sling", &id, "nosuchrig"]);
    ok(&t, "gt", &["sling", &id, "gastown"]);
    let calls = t.calls().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].tool, "bd");
    assert_eq!(
        calls[0].argv,
        vec!["create", "work", "-t", "task", "-p", "2", "--silent"]
    );
    assert_eq!(calls[0].exit_code, 0);
    assert_eq!(calls[1].tool, "gt");
    assert_eq!(calls[1].exit_code, 1);
    assert_eq!(calls[2].argv, vec!["sling", id.as_str(), "gastown"]);
    assert!(calls[2].dispatched && !calls[2].env_gt_role && !calls[2].hung);
    assert!(
        calls
            .windows(2)
            .all(|w| w[0].ts_ms <= w[1].ts_ms && w[0].seq < w[1].seq)
    );
    // The raw file has the documented keys.
    let raw = std::fs::read_to_string(t.town_root().join(".fake-gastown/calls.jsonl")).unwrap();
    let first: Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    for k in ["ts_ms", "tool", "argv", "exit_code", "env_gt_role"] {
        assert!(first.get(k).is_some(), "{k}");
    }
}

#[test]
fn at_reuses_an_existing_town() {
    let t = town();
    let id = create(&t, "persisted");
    let again = FakeGasTown::at_with_binary(t.town_root(), Path::new(BIN)).unwrap();
    assert_eq!(again.bead(&id).unwrap().unwrap()["title"], "persisted");
    drop(again);
    assert!(t.town_root().join("mayor/town.json").is_file(), "at() does not delete");
}

#[test]
fn init_prepares_a_town_for_a_simulated_run() {
    let t = town(); // only for a unique temporary directory
    let dir = t.town_root().join("sim");
    let o = std::process::Command::new(BIN)
        .args(["init", dir.to_str().unwrap(), "--rigs", "forge,demo", "--prefix", "sim"])
        .args(["--auto-progress", "100,200,merged"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bin = std::path::PathBuf::from(stdout(&o).trim());
    assert!(bin.join("gt").exists() && bin.join("bd").exists());
    let sim = FakeGasTown::at_with_binary(&dir, Path::new(BIN)).unwrap();
    let id = ok(&sim, "bd", &["create", "x", "--silent"]).trim().to_string();
    assert!(is_bead_id(&id, "sim"), "{id}");
    ok(&sim, "gt", &["sling", &id, "forge"]);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(show(&sim, &id)["status"], "closed");
    let o = std::process::Command::new(BIN).args(["init"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_town_written_by_the_older_whole_file_fake_is_migrated() {
    let t = town();
    let legacy = serde_json::json!({
        "beads": [
            {"id": "gt-b2", "title": "second", "status": "hooked", "issue_type": "task", "priority": 2,
             "assignee": "gastown/polecats/Toast", "created_at_ms": 1_767_225_599_000u64,
             "updated_at_ms": 1_767_225_599_000u64, "slung_at_ms": 1_767_225_599_000u64},
            {"id": "gt-a1", "title": "first", "status": "open", "issue_type": "task", "priority": 2,
             "created_at_ms": 1_767_225_599_000u64, "updated_at_ms": 1_767_225_599_000u64},
        ],
        "convoys": [{"id": "hq-cv-zz", "title": "Work: second", "beads": ["gt-b2"],
                     "created_at_ms": 1_767_225_599_000u64, "created_by": "mayor"}],
        "polecats": [{"rig": "gastown", "name": "Toast", "issue": "gt-b2",
                      "created_at_ms": 1_767_225_599_000u64, "last_activity_ms": 1_767_225_599_000u64}],
    });
    std::fs::create_dir_all(t.state_dir()).unwrap();
    std::fs::write(t.state_dir().join("state.json"), legacy.to_string()).unwrap();

    assert_eq!(listed_ids(&t), ["gt-a1", "gt-b2"], "same priority and time: by ID");
    assert!(!t.state_dir().join("state.json").exists());
    assert!(t.state_dir().join("state.json.migrated").is_file());
    assert_eq!(show(&t, "hq-cv-zz")["status"], "open");
    // Toast still holds gt-b2, so the next sling gets another polecat.
    ok(&t, "gt", &["sling", "gt-a1", "gastown"]);
    assert_eq!(show(&t, "gt-a1")["assignee"], "gastown/polecats/Nux");
    let polecat: Value =
        serde_json::from_str(&ok(&t, "gt", &["polecat", "status", "gastown/Toast", "--json"])).unwrap();
    assert_eq!(polecat["issue"], "gt-b2");
    assert_eq!(polecat["state"], "working");
}

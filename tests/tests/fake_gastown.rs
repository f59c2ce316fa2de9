//! The fake Gas Town obeys the contract in shared/docs/gastown-contract.md: each test runs the real
//! `fake-gastown` binary as `gt` or `bd` and checks one rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use gastown_tests::fake_gastown::{AutoProgress, Config, FakeGasTown, Faults};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fake-gastown");

fn town() -> FakeGasTown {
    FakeGasTown::with_binary(Path::new(BIN)).expect("fake town")
}

fn run(town: &FakeGasTown, tool: &str, args: &[&str]) -> Output {
    town.command(tool).args(args).output().expect("spawn")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(town: &FakeGasTown, tool: &str, args: &[&str]) -> String {
    let o = run(town, tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and asserts failure (exit 1); returns stderr.
fn fails(town: &FakeGasTown, tool: &str, args: &[&str]) -> String {
    let o = run(town, tool, args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{tool} {args:?} should fail: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

fn create(town: &FakeGasTown, title: &str) -> String {
    ok(town, "bd", &["create", title, "-t", "task", "-p", "2", "--silent"])
        .trim()
        .to_string()
}

fn show(town: &FakeGasTown, id: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(town, "bd", &["show", id, "--json"])).expect("bd show --json prints JSON");
    v.as_array().expect("bd show --json prints an array")[0].clone()
}

fn is_bead_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| (3..=6).contains(&h.len()) && h.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()))
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z'))
}

const FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "status",
    "priority",
    "issue_type",
    "assignee",
    "owner",
    "created_at",
    "created_by",
    "updated_at",
    "started_at",
    "closed_at",
    "close_reason",
    "external_ref",
    "metadata",
    "labels",
];

#[test]
fn create_silent_prints_only_the_id() {
    let t = town();
    let out = ok(&t, "bd", &["create", "Fix the thing", "--silent"]);
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    assert!(is_bead_id(out.trim(), "gt"), "{out:?}");

    t.set_config(&Config {
        prefix: Some("go".into()),
        ..Config::default()
    })
    .unwrap();
    let id = create(&t, "other prefix");
    assert!(is_bead_id(&id, "go"), "{id}");
}

#[test]
fn create_json_prints_one_object_with_every_field() {
    let t = town();
    let o = t
        .command("bd")
        .env("BD_ACTOR", "gastown-operator")
        .args([
            "create",
            "Automaton demo/one",
            "-t",
            "feature",
            "-p",
            "1",
            "-d",
            "do it",
            "--external-ref",
            "k8s:default/one",
            "-l",
            "a,b",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let b: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(b.is_object());
    for f in FIELDS {
        assert!(b.get(f).is_some(), "missing {f} in {b}");
    }
    assert_eq!(b["title"], "Automaton demo/one");
    assert_eq!(b["issue_type"], "feature");
    assert_eq!(b["priority"], 1);
    assert_eq!(b["description"], "do it");
    assert_eq!(b["external_ref"], "k8s:default/one");
    assert_eq!(b["labels"], serde_json::json!(["a", "b"]));
    assert_eq!(b["created_by"], "gastown-operator");
    assert_eq!(b["status"], "open");
    assert!(is_rfc3339(&b["created_at"]) && is_rfc3339(&b["updated_at"]));
    assert!(b["started_at"].is_null() && b["closed_at"].is_null());
}

#[test]
fn show_prints_an_array_with_all_contract_fields() {
    let t = town();
    let a = create(&t, "first");
    let b = create(&t, "second");
    let v: Value = serde_json::from_str(&ok(&t, "bd", &["show", &a, &b, "--json"])).unwrap();
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["id"], a.as_str());
    assert_eq!(arr[1]["id"], b.as_str());
    for f in FIELDS {
        assert!(arr[0].get(f).is_some(), "missing {f}");
    }
    // One ID is still an array; --json may come first (persistent flag).
    let one: Value = serde_json::from_str(&ok(&t, "bd", &["--json", "show", &a])).unwrap();
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    // Human output without --json.
    assert!(!ok(&t, "bd", &["show", &a]).trim_start().starts_with('['));
}

#[test]
fn unknown_id_exits_non_zero_with_an_error() {
    let t = town();
    let o = run(&t, "bd", &["show", "gt-zzzz", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("gt-zzzz"));
    // With --json real bd (>= v0.50.0) also prints a JSON error object on stdout.
    let err: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(err["error"], "no issues found matching the provided IDs");
    let plain = run(&t, "bd", &["show", "gt-zzzz"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(stdout(&plain).trim().is_empty());
    fails(&t, "bd", &["update", "gt-zzzz", "--status", "in_progress"]);
    fails(&t, "bd", &["close", "gt-zzzz"]);
    fails(&t, "gt", &["sling", "gt-zzzz", "gastown"]);
    assert!(t.bead("gt-zzzz").unwrap().is_none());
}

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
fn update_close_and_list_follow_the_contract() {
    let t = town();
    let id = create(&t, "work");
    ok(
        &t,
        "bd",
        &[
            "update",
            &id,
            "--status",
            "in_progress",
            "--assignee",
            "me",
            "--set-metadata",
            "k8s.uid=123",
            "--set-metadata=phase=x",
        ],
    );
    let b = show(&t, &id);
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["assignee"], "me");
    assert_eq!(b["metadata"]["k8s.uid"], "123");
    assert_eq!(b["metadata"]["phase"], "x");
    assert!(is_rfc3339(&b["started_at"]));
    fails(&t, "bd", &["update", &id, "--status", "bogus"]);

    ok(&t, "bd", &["close", &id, "-r", "merged"]);
    let b = show(&t, &id);
    assert_eq!(b["status"], "closed");
    assert_eq!(b["close_reason"], "merged");
    assert!(is_rfc3339(&b["closed_at"]));

    let other = create(&t, "other");
    let list: Value = serde_json::from_str(&ok(&t, "bd", &["list", "--json"])).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![other.as_str()], "closed beads are hidden by default");
    let list: Value = serde_json::from_str(&ok(&t, "bd", &["list", "--status", "closed", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
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
fn fifty_concurrent_creates_give_fifty_distinct_ids() {
    let t = town();
    let children: Vec<_> = (0..50)
        .map(|i| {
            t.command("bd")
                .args(["create", &format!("bead {i}"), "--silent"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = HashSet::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        assert!(is_bead_id(&id, "gt"), "{id}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 50);
    let beads = t.beads().unwrap();
    assert_eq!(beads.len(), 50);
    let listed: HashSet<String> = beads.iter().map(|b| b["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, ids);
    assert_eq!(t.calls().unwrap().len(), 50);
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

#[test]
fn ids_cannot_reach_outside_the_town_and_a_damaged_record_is_a_clear_error() {
    let t = town();
    let good = create(&t, "good");
    let bad = create(&t, "bad");
    for id in ["../index", "../../mayor/town", "beads/x", ".hidden", ""] {
        let err = fails(&t, "bd", &["show", "--json", "--", id]);
        assert!(err.contains("no issue found"), "{id:?}: {err}");
        let err = fails(&t, "gt", &["sling", id, "gastown"]);
        assert!(err.contains("not found"), "{id:?}: {err}");
    }
    std::fs::write(t.state_dir().join("beads").join(format!("{bad}.json")), b"{ torn").unwrap();
    // Calls that do not need the damaged bead go on.
    assert_eq!(show(&t, &good)["title"], "good");
    ok(&t, "gt", &["sling", &good, "gastown"]);
    // Calls that need it fail with the file named, and change nothing.
    let err = fails(&t, "bd", &["show", "--json", "--", &bad]);
    assert!(
        err.contains(&format!("{bad}.json")) && err.contains("invalid JSON"),
        "{err}"
    );
    let err = fails(&t, "bd", &["list", "--all", "--json"]);
    assert!(err.contains("invalid JSON"), "{err}");
    let err = fails(&t, "bd", &["close", "--", &good, &bad]);
    assert!(err.contains("invalid JSON"), "{err}");
    assert_eq!(show(&t, &good)["status"], "hooked", "the failed close changed nothing");
}

/// The IDs `bd list --all --json` prints, in its order.
fn listed_ids(t: &FakeGasTown) -> Vec<String> {
    t.beads()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Real `bd list` order: priority, then newest first, then ID.
fn bd_order(beads: &[Value]) -> Vec<String> {
    let mut keyed: Vec<(i64, std::cmp::Reverse<jiff::Timestamp>, String)> = beads
        .iter()
        .map(|b| {
            (
                b["priority"].as_i64().unwrap(),
                std::cmp::Reverse(b["created_at"].as_str().unwrap().parse().unwrap()),
                b["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, id)| id).collect()
}

#[test]
fn list_sorts_by_priority_then_newest_first() {
    let t = town();
    let older = create(&t, "older");
    std::thread::sleep(Duration::from_millis(5));
    let newer = create(&t, "newer");
    for i in 0..10 {
        create(&t, &format!("bead {i}"));
    }
    std::thread::sleep(Duration::from_millis(5));
    let urgent = t.fill_with_beads(2, 0).unwrap();
    let beads = t.beads().unwrap();
    assert_eq!(beads.len(), 14);
    let listed = listed_ids(&t);
    assert_eq!(listed, bd_order(&beads));
    assert_eq!(
        listed[..2].iter().collect::<HashSet<_>>(),
        urgent.iter().collect::<HashSet<_>>()
    );
    let pos = |id: &str| listed.iter().position(|l| l == id).unwrap();
    assert!(pos(&newer) < pos(&older), "newest first within a priority");
    assert_eq!(listed.last(), Some(&older));
}

#[test]
fn list_shows_50_beads_unless_limit_0() {
    let t = town();
    let ours = ok(
        &t,
        "bd",
        &[
            "create",
            "-p",
            "2",
            "-l",
            "ours,ref-1",
            "--external-ref",
            "automaton:ns/a/u1",
            "--silent",
            "--",
            "ours",
        ],
    )
    .trim()
    .to_string();
    t.fill_with_beads(60, 1).unwrap();
    let ids = |o: &Output| -> Vec<String> {
        serde_json::from_slice::<Vec<Value>>(&o.stdout)
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    // The default limit, with or without --all (bd v0.42.0-v0.49.4): 50 P1 beads, ours cut,
    // and a hint on stderr.
    for args in [vec!["list", "--json"], vec!["list", "--json", "--all"]] {
        let o = run(&t, "bd", &args);
        assert!(o.status.success());
        let listed = ids(&o);
        assert_eq!(listed.len(), 50, "{args:?}");
        assert!(!listed.contains(&ours), "{args:?}");
        assert!(stderr(&o).contains("Use --limit 0 for all"), "{}", stderr(&o));
    }
    let all = run(&t, "bd", &["list", "--json", "--all", "--limit", "0"]);
    assert_eq!(ids(&all).len(), 61);
    assert_eq!(ids(&all).last(), Some(&ours), "lowest priority last");
    assert!(stderr(&all).is_empty());
    assert_eq!(ids(&run(&t, "bd", &["list", "--json", "-n", "3"])).len(), 3);
    // The label filter narrows to our bead (AND of all labels given), closed ones with --all.
    let by_label = run(&t, "bd", &["list", "--json", "--all", "--limit", "0", "-l", "ref-1"]);
    assert_eq!(ids(&by_label), [ours.as_str()]);
    assert!(ids(&run(&t, "bd", &["list", "--json", "-l", "ref-1,other"])).is_empty());
    ok(&t, "bd", &["close", "--", &ours]);
    assert!(ids(&run(&t, "bd", &["list", "--json", "--limit", "0", "-l", "ref-1"])).is_empty());
    assert_eq!(
        ids(&run(
            &t,
            "bd",
            &["list", "--json", "--all", "--limit", "0", "-l", "ref-1"]
        )),
        [ours.as_str()]
    );
    // bd >= v0.49.5: --all without --limit lists everything.
    t.set_config(&Config {
        bd_all_lifts_limit: Some(true),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(ids(&run(&t, "bd", &["list", "--json", "--all"])).len(), 61);
    assert_eq!(
        ids(&run(&t, "bd", &["list", "--json"])).len(),
        50,
        "without --all the limit stays"
    );
    fails(&t, "bd", &["list", "--json", "--limit", "many"]);
}

#[test]
fn show_of_several_ids_answers_those_it_found() {
    let t = town();
    let a = create(&t, "first");
    let o = run(&t, "bd", &["show", "--json", "--", &a, "gt-zzzz"]);
    assert_eq!(o.status.code(), Some(0), "real bd exits 0 when it found any");
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["id"], a.as_str());
    assert!(stderr(&o).contains("Error fetching gt-zzzz: no issue found matching \"gt-zzzz\""));
    let none = run(&t, "bd", &["show", "--json", "--", "gt-yyyy", "gt-zzzz"]);
    assert_eq!(none.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&none.stdout).unwrap();
    assert_eq!(err["error"], "no issues found matching the provided IDs");
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

// The controller's Gas Town client against this fake (issue 14, items 1 and 4b).

mod client {
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
}

//! `bd`: create, show, update, close and list print what the contract says, IDs are unique
//! and stay inside the town.

use super::*;

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

//! The fake Gas Town obeys the contract in shared/docs/gastown-contract.md: each test runs the real
//! `fake-gastown` binary as `gt` or `bd` and checks one rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use gastown_tests::fake_gastown::{AutoProgress, Config, FakeGasTown, Faults};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

mod beads;
mod client;
mod faults;
mod progress;
mod sling;
mod workspace;

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

/// The IDs `bd list --all --json` prints, in its order.
fn listed_ids(t: &FakeGasTown) -> Vec<String> {
    t.beads()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

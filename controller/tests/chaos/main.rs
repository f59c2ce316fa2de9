//! Chaos: many claims against the real controller binary, a real kube-apiserver (dedicated to
//! this test, it is restarted) and the fake Gas Town, while
//!
//! - the API server is restarted once (etcd data kept),
//! - a replica is killed with SIGKILL three times at random points, and the leader once more,
//! - 20 % of `gt`/`bd` calls fail and 5 % hang past the controller's command timeout (before
//!   doing anything), and of the `bd create` and `gt sling` calls that did their work, 5 % then
//!   fail, 5 % hang past the timeout and 5 % are killed by a signal (the outcome is unknown to
//!   the controller: the bead exists, the work is hooked),
//! - the town holds more than 50 other beads of a higher priority than the controller's, so a
//!   lookup by external ref that stops at `bd list`'s default limit misses the bead,
//! - two replicas run with leader election; replicas that exit (lost leadership) or were
//!   killed are started again with the same identity, as a kubelet would.
//!
//! The same workload runs once without any fault first; both timings are printed as a table
//! (`cargo build --workspace --bins && cargo test --workspace --test chaos -- --nocapture`, or `make chaos`).
//!
//! Workload (by claim index, out of ten): seven are merged by Gas Town (auto progress) and end
//! `Succeeded`; one is rejected (the test closes its bead with a failure) and ends `Failed`;
//! one is deleted while its work is running; one targets a rig Gas Town does not have, with a
//! claim about to expire, and is released back to Kubernetes.
//!
//! Checked from the fake's call log and the API ([`checks`]): every claim reaches its terminal
//! phase (or, when deleted on purpose, is gone); no bead is hooked twice; one bead per external
//! ref `automaton:<ns>/<name>/<uid>` (counting beads whose `bd create` then failed); released
//! claims are back in `kubernetes` mode without claim marks or finalizer, the others keep their
//! claim; after all Automatons are deleted every bead is closed.
//!
//! Size: `GASTOWN_CHAOS_CLAIMS` (default 30; `make chaos` uses 200). Random points:
//! `GASTOWN_CHAOS_SEED` (default: from the clock; printed, to replay a failure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod checks;
mod claims;
mod report;
mod run;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use gastown_tests::cluster::TestCluster;

use crate::report::print_table;
use crate::run::{Run, RunOptions};

const CLAIMS_ENV: &str = "GASTOWN_CHAOS_CLAIMS";
const SEED_ENV: &str = "GASTOWN_CHAOS_SEED";
const DEFAULT_CLAIMS: usize = 30;

/// Per-call timeout of the controller; injected hangs last longer.
const COMMAND_TIMEOUT: &str = "2s";
const HANG_SECONDS: u64 = 4;
const FAIL_RATE: f64 = 0.20;
const HANG_RATE: f64 = 0.05;
/// Of the `bd create` / `gt sling` calls that did their work: then failed, hung, were killed.
const AFTER_WORK_RATE: f64 = 0.05;
const AFTER_WORK_VERBS: [&str; 2] = ["bd create", "gt sling"];
/// Other work in the town, of a higher priority (1) than the controller's beads (2): more than
/// `bd list`'s default limit of 50.
const OTHER_BEADS: usize = 60;
/// `--create-outcome-wait`: longer than any `bd create` can still run after its mark here (three
/// attempts of at most the 2 s command timeout plus backoff, or a killed replica's create that
/// still hangs for `HANG_SECONDS`), far shorter than the production default.
const CREATE_OUTCOME_WAIT: &str = "15s";
const LEASE_DURATION: &str = "4s";
/// Long enough that no healthy claim expires, even at 200 claims under chaos.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(300);
/// The claims meant to be released are created this long before their claim expires.
const EXPIRE_AFTER: Duration = Duration::from_secs(6);
/// One claim is created every this often.
const CREATE_EVERY: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(400);
/// Gas Town's merge: hooked → in_progress → closed ("merged"), applied when beads are read.
const START_AFTER_MS: u64 = 300;
const CLOSE_AFTER_MS: u64 = 1200;
/// A rig of the fake town whose work does not close by itself (the test rejects or cancels it).
const SLOW_RIG: &str = "demo";
/// Rig the fake town does not know: `gt sling` fails for good, the claim must be released.
const UNKNOWN_RIG: &str = "nowhere";
const REJECT_REASON: &str = "failed: tests do not pass";
const LEASE_NAME: &str = "gastown-operator";
const REPLICAS: [&str; 2] = ["replica-a", "replica-b"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Merged by Gas Town: `Succeeded`.
    Merge,
    /// Closed with a failure reason by the test once running: `Failed`.
    Reject,
    /// Deleted by the test once its bead is hooked or running.
    Cancel,
    /// Unknown rig and a claim about to expire: `Released`.
    Expire,
}

impl Kind {
    fn of(index: usize) -> Kind {
        match index % 10 {
            7 => Kind::Reject,
            8 => Kind::Cancel,
            9 => Kind::Expire,
            _ => Kind::Merge,
        }
    }
}

fn claim_name(index: usize) -> String {
    format!("claim-{index:04}")
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_survive_api_restart_kills_leader_loss_and_faulty_gastown() {
    let claims = env_number(CLAIMS_ENV).map_or(DEFAULT_CLAIMS, |n| usize::try_from(n).unwrap().max(10));
    let seed = env_number(SEED_ENV).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("chaos: {claims} claims, seed {seed}");
    // Its own API server: this test restarts it.
    let cluster = Arc::new(TestCluster::start_dedicated().await.unwrap());
    cluster.install_crds().await.unwrap();

    let options = |label, chaos| RunOptions {
        label,
        claims,
        chaos,
        seed,
    };
    let baseline = Run::new(Arc::clone(&cluster), options("fault-free", false)).await;
    let baseline = baseline.execute().await;
    let chaos = Run::new(Arc::clone(&cluster), options("chaos", true)).await;
    let chaos = chaos.execute().await;
    print_table(&[&baseline, &chaos], seed);

    let mut failures = Vec::new();
    for r in [&baseline, &chaos] {
        for violation in &r.violations {
            failures.push(format!("[{}] {violation}", r.label));
        }
    }
    assert_eq!(chaos.api_restarts, 1, "the API server was not restarted");
    assert!(chaos.kills >= 4, "expected four SIGKILLs, got {}", chaos.kills);
    assert!(
        chaos.injected_failures > 0 && chaos.injected_hangs > 0,
        "no fault was injected"
    );
    assert!(chaos.after_work_faults > 0, "no after-the-work fault was injected");
    assert!(
        failures.is_empty(),
        "seed {seed} ({SEED_ENV}={seed} replays the random points; FAKE_GASTOWN_KEEP=1 keeps the towns and controller logs, {} and {}):\n{}",
        baseline.logs.display(),
        chaos.logs.display(),
        failures.join("\n")
    );
}

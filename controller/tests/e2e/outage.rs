//! Gas Town unreachable: reported, retried with backoff, recovered without a restart.

use gastown_crds::{ConditionStatus, Phase};
use serde_json::json;

use super::*;

#[tokio::test]
async fn gastown_outage_is_reported_and_recovers_without_restart() {
    let (env, _c) = Env::gastown_down("outage", &[]).await;
    env.create_claimed("patient", json!({})).await;
    let a = env.wait_unreachable("patient").await;
    assert_ne!(a.phase(), Some(Phase::Dispatched));
    env.town.clear_faults();
    let a = env
        .wait_phase("patient", Phase::Dispatched, Duration::from_secs(60))
        .await;
    assert_eq!(condition_status(&a, "GasTownReachable"), Some(ConditionStatus::True));
    assert_eq!(env.town.beads().unwrap().len(), 1);
}

/// While Gas Town is down, each failed attempt changes the status, and the watch event of that
/// write must not start the next attempt before the backoff is due (a regression once made
/// hundreds of `bd create` calls a second).
#[tokio::test]
async fn gastown_down_is_retried_with_backoff_not_at_once() {
    let (env, _c) = Env::gastown_down("backoff", &[]).await;
    env.create_claimed("patient", json!({})).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Backoff 1 s, 2 s, 4 s (±25 %): at most four attempts in 6 s, each at most a `bd create`
    // and the lookup that follows it.
    let calls = env.town.calls().unwrap();
    assert!(!calls.is_empty(), "Gas Town was never asked");
    assert!(calls.len() <= 8, "{} calls in 6 s: {calls:?}", calls.len());
}

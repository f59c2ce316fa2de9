//! `spec.timeoutSeconds`: recorded before the release, holding while the bead is blocked.

use gastown_crds::{ConditionStatus, Phase};
use gastown_tests::fake_gastown::Faults;
use serde_json::json;

use super::*;

/// Item 5: `spec.timeoutSeconds` runs out and the controller dies while `gt unsling` runs (the
/// command finishes after it): the bead is open again. Had the timeout not been recorded
/// first, the next controller would sling it again.
#[tokio::test]
async fn a_timeout_is_recorded_before_the_release_so_a_crash_never_reslings() {
    let env = Env::new("timeout-crash").await;
    let mut c1 = env.controller("c1", &[]);
    env.create_claimed("slowpoke", json!({"timeoutSeconds": 60})).await;
    // Hooked, not started: real `gt unsling --force` takes hooked work back (it refuses an
    // in_progress bead, which the controller then reopens with bd).
    let bead = bead_of(&env.wait_phase("slowpoke", Phase::Dispatched, T).await);
    env.town.set_faults(&Faults::default().delay_ms(3000)).unwrap();
    env.age_dispatch("slowpoke").await;
    wait_running(&env.town, "unsling", T).await;
    c1.kill();
    env.town.clear_faults();
    wait_not_running(&env.town, "unsling").await;
    assert_eq!(env.town.bead(&bead).unwrap().unwrap()["status"], "open");
    let _c2 = env.controller("c2", &[]);
    let a = env.wait_phase("slowpoke", Phase::Failed, T).await;
    assert_closed_for_timeout(&env, "slowpoke", &bead).await;
    assert_eq!(env.town.dispatch_count(&bead), 1, "never slung again");
    assert_eq!(condition_status(&a, "Completed"), Some(ConditionStatus::False));
}

/// Item 6: the deadline holds while the bead is blocked (and the timed-out bead the controller
/// created is closed with a reason, item 5).
#[tokio::test]
async fn timeout_fires_while_the_bead_is_blocked_and_closes_our_bead() {
    let env = Env::new("timeout-blocked").await;
    let _c = env.controller("c", &[]);
    env.create_claimed("stuck", json!({"timeoutSeconds": 60})).await;
    let bead = bead_of(&env.wait_phase("stuck", Phase::Dispatched, T).await);
    by_hand(&env.town, "bd", &["update", "--status", "blocked", "--", &bead]);
    env.wait_for("stuck", "blocked seen", T, |a| {
        a.status
            .as_ref()
            .and_then(|s| s.gastown.as_ref())
            .and_then(|g| g.bead_status.as_deref())
            == Some("blocked")
    })
    .await;
    env.age_dispatch("stuck").await;
    let a = env.wait_phase("stuck", Phase::Failed, T).await;
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .message
            .as_ref()
            .unwrap()
            .contains("timeoutSeconds")
    );
    assert_closed_for_timeout(&env, "stuck", &bead).await;
    assert_eq!(env.town.dispatch_count(&bead), 1);
}

/// Waits until `bead` (of `name`) is closed, and checks that the reason says it timed out.
async fn assert_closed_for_timeout(env: &Env, name: &str, bead: &str) {
    env.wait_for(name, "bead closed", T, |_| {
        env.town.bead(bead).unwrap().unwrap()["status"] == "closed"
    })
    .await;
    let closed = env.town.bead(bead).unwrap().unwrap();
    assert!(
        closed["close_reason"].as_str().unwrap().starts_with("timeout"),
        "{closed}"
    );
}

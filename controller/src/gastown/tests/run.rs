//! Running commands: retries of transient failures, bounded retries, the concurrency limit.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn transient_timeout_is_retried_then_succeeds() {
    let bd = r#"#!/bin/sh
n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count
if [ "$n" -lt 2 ]; then exec sleep 30; fi
echo '[{"id":"go-7xq","status":"open"}]'
"#;
    let town = Town::new(OK_BD, bd);
    let (client, recorder) = town.client(|c| c.command_timeout = Duration::from_millis(1500));
    let bead = client.show_bead(&id("go-7xq")).await.unwrap();
    assert_eq!(bead.map(|b| b.status), Some(BeadStatus::Open));
    assert_eq!(town.read("count").trim(), "2");
    assert_eq!(recorder.seen(), vec!["bd show timeout", "bd show ok"]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let gt = "#!/bin/sh\necho x >> count\nexec sleep 30\n";
    let town = Town::new(gt, OK_BD);
    let (client, recorder) = town.client(timeouts(Duration::from_millis(1000), 2));
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert_eq!(err.metric_label(), "timeout");
    assert_eq!(town.read("count").lines().count(), 3);
    assert_eq!(recorder.seen().len(), 3);
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let gt = "#!/bin/sh\nsleep 0.3\n";
    let town = Town::new(gt, OK_BD);
    let (client, _) = town.client(|c| c.max_concurrency = 1);
    let bead = id("go-7xq");
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        client.sling(&bead, "gastown", None, None),
        client.sling(&bead, "gastown", None, None),
        client.sling(&bead, "gastown", None, None),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
}

//! Batched reads: one `bd show` for reads close together, the fallbacks, the cap.

use std::time::{Duration, Instant};

use super::*;

/// `bd show --json -- <id>...` as real `bd` answers it (beads `cmd/bd/show.go`): each known ID
/// as a hooked bead; an ID starting with `gt-gone` is unknown: "Error fetching" on stderr, and
/// the others are still printed with exit 0; none found is exit 1 with a JSON error. Each call
/// appends its IDs to `bd.calls`.
const BATCH_BD: &str = r#"#!/bin/sh
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
echo "$*" >> bd.calls
out="["
sep=""
for id in "$@"; do
  case "$id" in
  gt-gone*)
    echo "Error fetching $id: no issue found matching \"$id\"" >&2 ;;
  *)
    out="$out$sep{\"id\":\"$id\",\"status\":\"hooked\",\"assignee\":\"gastown/polecats/Toast\"}"
    sep="," ;;
  esac
done
if [ -z "$sep" ]; then
  echo '{"error": "no issues found matching the provided IDs"}'
  exit 1
fi
echo "$out]"
"#;

#[tokio::test]
async fn batched_reads_share_one_bd_show() {
    let (town, client, _) = Town::started(RECORD_GT, BATCH_BD);
    let reader = BatchedReader::spawn(client, Duration::from_millis(300), 50);
    let ids = ["gt-a1", "gt-b2", "gt-c3", "gt-a1"];
    let reads = ids.iter().map(|s| {
        let reader = reader.clone();
        async move { reader.show(&id(s)).await }
    });
    let results = futures::future::join_all(reads).await;
    for (s, r) in ids.iter().zip(results) {
        let bead = r.unwrap().unwrap();
        assert_eq!(bead.id, *s);
        assert_eq!(bead.assignee.as_deref(), Some("gastown/polecats/Toast"));
    }
    assert_eq!(town.read("bd.calls"), "gt-a1 gt-b2 gt-c3\n", "one call, each ID once");
}

#[tokio::test]
async fn a_bead_missing_from_the_batch_is_read_on_its_own() {
    let (town, client, _) = Town::started(RECORD_GT, BATCH_BD);
    let reader = BatchedReader::spawn(client, Duration::from_millis(300), 50);
    let (a1, gone, b2) = (id("gt-a1"), id("gt-gone"), id("gt-b2"));
    let (a, gone, b) = tokio::join!(reader.show(&a1), reader.show(&gone), reader.show(&b2));
    assert_eq!(a.unwrap().unwrap().id, "gt-a1");
    assert!(
        gone.unwrap().is_none(),
        "an unknown bead reads as missing, not as an error"
    );
    assert_eq!(b.unwrap().unwrap().id, "gt-b2");
    let calls: Vec<String> = town.read("bd.calls").lines().map(str::to_string).collect();
    assert_eq!(
        calls,
        ["gt-a1 gt-b2 gt-gone", "gt-gone"],
        "the batch, then the missing one"
    );
}

#[tokio::test]
async fn a_batch_bd_answers_with_a_non_zero_exit_falls_back_to_one_read_per_bead() {
    let (town, client, _) = Town::started(RECORD_GT, BATCH_BD);
    let reader = BatchedReader::spawn(client, Duration::from_millis(300), 50);
    let (g1, g2) = (id("gt-gone1"), id("gt-gone2"));
    let (a, b) = tokio::join!(reader.show(&g1), reader.show(&g2));
    assert!(a.unwrap().is_none() && b.unwrap().is_none());
    let mut calls: Vec<String> = town.read("bd.calls").lines().map(str::to_string).collect();
    assert_eq!(calls.remove(0), "gt-gone1 gt-gone2", "the batch first");
    calls.sort();
    assert_eq!(calls, ["gt-gone1", "gt-gone2"], "then one read per bead");
}

#[tokio::test]
async fn a_hung_batch_fails_all_its_reads_with_one_command() {
    let bd = "#!/bin/sh\necho x >> bd.calls\nexec sleep 30\n";
    let town = Town::new(RECORD_GT, bd);
    let (client, recorder) = town.client(timeouts(Duration::from_millis(800), 0));
    let reader = BatchedReader::spawn(client, Duration::from_millis(300), 50);
    let ids: Vec<BeadId> = (0..6).map(|i| id(&format!("gt-h{i}"))).collect();
    let reads = ids.iter().map(|bead| {
        let reader = reader.clone();
        async move { reader.show(bead).await }
    });
    let started = Instant::now();
    let results = futures::future::join_all(reads).await;
    let elapsed = started.elapsed();
    for r in results {
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
    // One command, not one more per bead (six more timeouts).
    assert_eq!(town.read("bd.calls").lines().count(), 1);
    assert_eq!(recorder.seen(), vec!["bd show timeout"]);
    assert!(elapsed < Duration::from_millis(800 * 4), "{elapsed:?}");
}

#[tokio::test]
async fn batches_are_capped() {
    let (town, client, _) = Town::started(RECORD_GT, BATCH_BD);
    let reader = BatchedReader::spawn(client, Duration::from_millis(300), 2);
    let names: Vec<String> = (0..5).map(|i| format!("gt-x{i}")).collect();
    let reads = names.iter().map(|s| {
        let reader = reader.clone();
        async move { reader.show(&id(s)).await }
    });
    for r in futures::future::join_all(reads).await {
        assert!(r.unwrap().is_some());
    }
    let calls = town.read("bd.calls");
    assert_eq!(calls.lines().count(), 3, "5 reads in batches of at most 2: {calls}");
    assert!(calls.lines().all(|l| l.split(' ').count() <= 2), "{calls}");
}

//! Creating a bead exactly once: every failure that may have made the bead is followed by a
//! lookup, and an error says whether a bead may exist.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn create_retry_finds_the_bead_an_ambiguous_attempt_created() {
    let bd = r#"#!/bin/sh
case "$1" in
create)
  echo x >> creates
  touch made
  exec sleep 30 ;;
list)
  if [ -f made ]; then
    echo '[{"id":"go-other","status":"open"},{"id":"go-abc","status":"open","external_ref":"automaton:ns/a/u1"}]'
  else
    echo '[]'
  fi ;;
*) exit 2 ;;
esac
"#;
    let town = Town::new(OK_BD, bd);
    let (client, recorder) = town.client(|c| c.command_timeout = Duration::from_millis(1500));
    let created = client.create_bead("Fix login", "", &reference()).await.unwrap();
    assert_eq!(created.as_str(), "go-abc");
    assert_eq!(town.read("creates").lines().count(), 1, "created exactly once");
    assert_eq!(recorder.seen(), vec!["bd create timeout", "bd list ok"]);
}

/// A `bd` whose `create` runs `$CREATE` (a shell snippet) after logging the call, and whose
/// `list` prints the bead `go-abc` with our external ref once a file `made` exists (checking
/// the exact argv of the lookup), or fails when `list-fails` exists.
fn create_town(create: &str) -> Town {
    let label = reference().lookup_label();
    let bd = format!(
        r#"#!/bin/sh
case "$1" in
create)
  echo x >> creates
  {create} ;;
list)
  [ "$*" = "list --json --all --limit 0 -l {label}" ] || {{ echo "unexpected: $*" >&2; exit 2; }}
  echo x >> lists
  if [ -f list-fails ]; then echo "Error: database locked" >&2; exit 1; fi
  if [ -f made ]; then
    echo '[{{"id":"go-abc","status":"open","external_ref":"automaton:ns/a/u1","labels":["{label}"]}}]'
  else
    echo '[]'
  fi ;;
*) exit 2 ;;
esac
"#
    );
    Town::new(OK_BD, &bd)
}

#[tokio::test]
async fn create_passes_the_labels_the_lookup_filters_on() {
    let bd = "#!/bin/sh\nprintf '%s\\n' \"$@\" > bd.args\necho go-7xq\n";
    let (town, client, _) = Town::started(OK_BD, bd);
    client.create_bead("Fix it", "", &reference()).await.unwrap();
    let args = town.read("bd.args");
    let labels = format!("-l\ngastown-operator,{}\n--silent\n", reference().lookup_label());
    assert!(args.contains(&labels), "{args}");
}

#[tokio::test]
async fn a_create_that_did_its_work_then_exited_non_zero_returns_the_bead() {
    let town = create_town("touch made; echo 'Error: failed to push' >&2; exit 1");
    let (client, recorder) = town.client(|_| {});
    let created = client.create_bead("Fix login", "", &reference()).await.unwrap();
    assert_eq!(created.as_str(), "go-abc");
    assert_eq!(town.read("creates").lines().count(), 1);
    assert_eq!(recorder.seen(), vec!["bd create exit", "bd list ok"]);
}

#[tokio::test]
async fn a_create_that_exited_non_zero_and_made_nothing_is_definite() {
    let town = create_town("echo 'Error: title cannot be empty' >&2; exit 1");
    let (client, recorder) = town.client(|_| {});
    let err = client.create_bead("Fix login", "", &reference()).await.unwrap_err();
    assert!(matches!(err, Error::Exit { code: Some(1), .. }), "{err:?}");
    assert!(err.is_definite_failure());
    assert_eq!(town.read("creates").lines().count(), 1, "not retried");
    assert_eq!(recorder.seen(), vec!["bd create exit", "bd list ok"]);
}

#[tokio::test]
async fn a_create_killed_by_a_signal_is_looked_for_and_never_definite() {
    // Killed after making the bead: found.
    let town = create_town("touch made; echo go-abc; kill -9 $$");
    let (client, _) = town.client(|_| {});
    assert_eq!(
        client
            .create_bead("Fix login", "", &reference())
            .await
            .unwrap()
            .as_str(),
        "go-abc"
    );
    // Killed before: nothing found, and the error (no exit code) says the outcome is unknown.
    let town = create_town("kill -9 $$");
    let (client, recorder) = town.client(|_| {});
    let err = client.create_bead("Fix login", "", &reference()).await.unwrap_err();
    assert!(matches!(err, Error::Exit { code: None, .. }), "{err:?}");
    assert!(err.outcome_unknown());
    assert_eq!(town.read("creates").lines().count(), 1);
    assert_eq!(recorder.seen(), vec!["bd create exit", "bd list ok"]);
}

#[tokio::test]
async fn a_failing_lookup_after_an_unknown_create_is_not_taken_for_the_answer() {
    let town = create_town("touch list-fails; exec sleep 30");
    let (client, recorder) = town.client(|c| c.command_timeout = Duration::from_millis(800));
    let err = client.create_bead("Fix login", "", &reference()).await.unwrap_err();
    match &err {
        Error::OutcomeUnknown { source, check } => {
            assert!(matches!(**source, Error::Timeout { .. }), "{source:?}");
            assert!(matches!(**check, Error::Exit { code: Some(1), .. }), "{check:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The lookup's own error (a non-zero exit) would claim that nothing was created.
    assert!(!err.is_definite_failure() && err.outcome_unknown());
    assert_eq!(err.metric_label(), "timeout");
    assert_eq!(town.read("creates").lines().count(), 1, "never created again");
    assert_eq!(recorder.seen(), vec!["bd create timeout", "bd list exit"]);
}

#[tokio::test]
async fn a_create_that_never_started_is_not_looked_for() {
    let town = create_town("exit 0");
    let missing = town.dir.path().join("bin/no-such-bd");
    let (client, recorder) = town.client(|c| {
        if let Transport::Exec { bd_path, .. } = &mut c.transport {
            *bd_path = missing.clone();
        }
    });
    let err = client.create_bead("Fix login", "", &reference()).await.unwrap_err();
    assert!(matches!(err, Error::Missing { .. }) && err.is_definite_failure());
    assert_eq!(recorder.seen(), vec!["bd create not_found"]);
}

#[tokio::test]
async fn a_create_that_exited_non_zero_is_unknown_while_its_lookup_fails() {
    // bd may insert the bead and then fail (labels, commit) with exit 1: while the lookup after
    // it fails too, nobody knows whether a bead exists, so the error may never say "none was
    // made" (the chaos test made two beads for one Automaton when it did).
    let town = create_town("touch list-fails; echo 'Error: cannot connect to Dolt server' >&2; exit 1");
    let (client, recorder) = town.client(|_| {});
    let err = client.create_bead("Fix login", "", &reference()).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(err.outcome_unknown() && !err.is_definite_failure());
    assert_eq!(recorder.seen(), vec!["bd create exit", "bd list exit"]);
}

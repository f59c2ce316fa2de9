//! Client and exec-transport tests with small `#!/bin/sh` stand-ins for `gt` and `bd`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::testing::TempDir;
use super::*;

/// A town directory with stand-in binaries next to it.
struct Town {
    dir: TempDir,
    root: PathBuf,
    gt: PathBuf,
    bd: PathBuf,
}

impl Town {
    fn new(gt_script: &str, bd_script: &str) -> Town {
        let dir = TempDir::new("gastown-exec-test").unwrap();
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor")).unwrap();
        std::fs::write(root.join("mayor/town.json"), "{}").unwrap();
        let gt = dir.write_executable("bin/gt", gt_script).unwrap();
        let bd = dir.write_executable("bin/bd", bd_script).unwrap();
        Town { dir, root, gt, bd }
    }

    fn config(&self) -> GasTownConfig {
        let mut config = GasTownConfig::new(Transport::Exec {
            town_root: self.root.clone(),
            gt_path: self.gt.clone(),
            bd_path: self.bd.clone(),
            actor: Some("gastown-operator".to_owned()),
        });
        config.command_timeout = Duration::from_secs(10);
        config.backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            multiplier: 2,
        };
        config
    }

    fn client(&self, change: impl FnOnce(&mut GasTownConfig)) -> (GasTown, Arc<Recorder>) {
        let mut config = self.config();
        change(&mut config);
        let recorder = Arc::new(Recorder::default());
        (GasTown::new(config).unwrap().with_observer(recorder.clone()), recorder)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl CommandObserver for Recorder {
    fn observe(&self, tool: &str, verb: &str, result: &str, _duration: Duration) {
        self.0.lock().unwrap().push(format!("{tool} {verb} {result}"));
    }
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn id(s: &str) -> BeadId {
    BeadId::parse(s).unwrap()
}

fn reference() -> ExternalRef {
    ExternalRef::parse("automaton:ns/a/u1").unwrap()
}

const RECORD_GT: &str = "#!/bin/sh\nprintf '%s\\n' \"$@\" > gt.args\npwd > gt.pwd\nenv > gt.env\n";
const OK_BD: &str = "#!/bin/sh\nexit 0\n";

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap()
}

#[tokio::test]
async fn sling_runs_in_town_root_with_exact_argv_and_minimal_env() {
    let town = Town::new(RECORD_GT, OK_BD);
    let (client, recorder) = town.client(|_| {});
    client
        .sling(&id("go-7xq"), "gastown", Some(MergeStrategy::Mr), Some("claude"))
        .await
        .unwrap();
    assert_eq!(
        town.read("gt.args"),
        "sling\n--merge=mr\n--agent\nclaude\n--\ngo-7xq\ngastown\n"
    );
    assert_eq!(canonical(Path::new(town.read("gt.pwd").trim())), canonical(&town.root));
    let env = town.read("gt.env");
    let keys: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    // sh itself may add PWD, OLDPWD, SHLVL and `_`.
    let allowed = ["PATH", "HOME", "BD_ACTOR", "PWD", "OLDPWD", "SHLVL", "_"];
    assert!(
        keys.iter().all(|k| allowed.contains(k)),
        "unexpected variables in {keys:?}"
    );
    assert!(env.lines().any(|l| l == "BD_ACTOR=gastown-operator"), "{env}");
    assert!(keys.contains(&"PATH"));
    assert!(!env.contains("GT_ROLE") && !env.contains("GT_POLECAT") && !env.contains("CARGO"));
    assert_eq!(recorder.seen(), vec!["gt sling ok"]);
}

#[tokio::test]
async fn title_with_shell_syntax_is_one_literal_operand() {
    let bd = "#!/bin/sh\nprintf '%s\\n' \"$@\" > bd.args\necho go-7xq\n";
    let town = Town::new(OK_BD, bd);
    let (client, _) = town.client(|_| {});
    let title = "Fix; touch pwned $(touch pwned2) `touch pwned3` | x > y";
    let created = client
        .create_bead(title, "first line\nsecond line", &reference())
        .await
        .unwrap();
    assert_eq!(created.as_str(), "go-7xq");
    let args = town.read("bd.args");
    assert!(args.ends_with(&format!("--silent\n--\n{title}\n")), "{args}");
    assert!(
        args.contains("-d\nfirst line\nsecond line\n--external-ref\nautomaton:ns/a/u1\n"),
        "{args}"
    );
    for file in ["pwned", "pwned2", "pwned3", "y"] {
        assert!(!town.root.join(file).exists(), "{file} was created: a shell ran");
    }
}

#[tokio::test]
async fn invalid_arguments_run_nothing() {
    let town = Town::new(RECORD_GT, OK_BD);
    let (client, recorder) = town.client(|_| {});
    for rig in ["gas;town", "-rf", "gаstown", "..", "a\nb"] {
        let err = client.sling(&id("go-7xq"), rig, None, None).await.unwrap_err();
        assert_eq!(err.metric_label(), "invalid_argument");
        assert!(!err.is_unreachable() && !err.is_retryable());
    }
    let err = client.close_bead(&id("go-7xq"), "bad\nreason").await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_argument");
    assert!(!town.root.join("gt.args").exists());
    assert!(recorder.seen().is_empty());
}

#[tokio::test]
async fn missing_binary_and_missing_town_are_distinct_not_found_errors() {
    let town = Town::new(OK_BD, OK_BD);
    let missing = town.dir.path().join("bin/no-such-gt");
    let (client, recorder) = town.client(|c| {
        if let Transport::Exec { gt_path, .. } = &mut c.transport {
            *gt_path = missing.clone();
        }
    });
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(matches!(err, Error::Missing { what: "gt", .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("gt not installed at {}", missing.display()));
    assert_eq!(err.metric_label(), "not_found");
    assert!(err.is_unreachable());
    assert_eq!(recorder.seen(), vec!["gt sling not_found"], "not retried");

    let (no_town, _) = town.client(|c| {
        if let Transport::Exec { town_root, .. } = &mut c.transport {
            *town_root = PathBuf::from("/nonexistent/town");
        }
    });
    let err = no_town.show_bead(&id("go-7xq")).await.unwrap_err();
    assert!(matches!(err, Error::Missing { what: "town root", .. }), "{err:?}");

    // Present but not executable: a spawn error, reported and not retried.
    let not_executable = town.dir.write("bin/plain-bd", "#!/bin/sh\n").unwrap();
    let (broken, recorder) = town.client(|c| {
        if let Transport::Exec { bd_path, .. } = &mut c.transport {
            *bd_path = not_executable.clone();
        }
    });
    let err = broken.show_bead(&id("go-7xq")).await.unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(err.is_unreachable() && !err.is_retryable());
    assert_eq!(recorder.seen(), vec!["bd show transport"]);
}

#[test]
fn client_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<GasTown>();
    let town = Town::new(OK_BD, OK_BD);
    let (client, _) = town.client(|_| {});
    let bead = id("go-7xq");
    let r = reference();
    send(&client.create_bead("t", "", &r));
    send(&client.show_bead(&bead));
    send(&client.find_bead_by_external_ref(&r));
    send(&client.sling(&bead, "gastown", None, None));
    send(&client.unsling(&bead, None, false));
    send(&client.reopen_bead(&bead));
    send(&client.close_bead(&bead, "done"));
}

#[tokio::test]
async fn non_zero_exit_is_reported_once_with_code_and_stderr() {
    let bd = "#!/bin/sh\necho 'Error: database locked' >&2\nexit 3\n";
    let town = Town::new(OK_BD, bd);
    let (client, recorder) = town.client(|_| {});
    let err = client.close_bead(&id("go-7xq"), "done").await.unwrap_err();
    match &err {
        Error::Exit { code, stderr, command } => {
            assert_eq!(*code, Some(3));
            assert_eq!(stderr, "Error: database locked");
            assert_eq!(command.to_string(), "bd close -r done -- go-7xq");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_unreachable());
    assert_eq!(recorder.seen(), vec!["bd close exit"]);
}

#[tokio::test]
async fn show_bead_found_not_found_and_broken() {
    let bd = r#"#!/bin/sh
case "$4" in
go-7xq) echo '[{"id":"go-7xq","status":"in_progress","assignee":"gastown/polecats/Toast","new_field":1}]' ;;
go-gone) echo "Error fetching go-gone: no issue found matching \"go-gone\"" >&2
         echo '{"error": "no issues found matching the provided IDs"}'; exit 1 ;;
*) echo "Error: failed to open database: .beads directory not found" >&2; exit 1 ;;
esac
"#;
    let town = Town::new(OK_BD, bd);
    let (client, recorder) = town.client(|_| {});
    let bead = client.show_bead(&id("go-7xq")).await.unwrap().unwrap();
    assert_eq!(bead.status, BeadStatus::InProgress);
    assert_eq!(bead.assignee_rig(), Some("gastown"));
    assert_eq!(client.show_bead(&id("go-gone")).await.unwrap(), None);
    let err = client.show_bead(&id("go-other")).await.unwrap_err();
    assert_eq!(err.metric_label(), "exit");
    assert_eq!(recorder.seen(), vec!["bd show ok", "bd show ok", "bd show exit"]);
}

/// Whether a process is still running (a zombie waiting to be reaped counts as gone).
fn running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn hung_command_is_killed_at_the_timeout() {
    let gt = "#!/bin/sh\necho $$ > gt.pid\nexec sleep 30\n";
    let town = Town::new(gt, OK_BD);
    let (client, recorder) = town.client(|c| {
        c.command_timeout = Duration::from_millis(500);
        c.retries = 0;
    });
    let started = Instant::now();
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_unreachable() && err.is_retryable());
    assert_eq!(recorder.seen(), vec!["gt sling timeout"]);
    let pid = town.read("gt.pid").trim().to_owned();
    assert!(!pid.is_empty());
    // Gone (killed and reaped) before the error is returned: a timed-out `bd create` cannot
    // make its bead after the caller has looked for it.
    assert!(
        !running(&pid),
        "process {pid} still runs after its timeout was reported"
    );
}

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
    let (client, recorder) = town.client(|c| {
        c.command_timeout = Duration::from_millis(1000);
        c.retries = 2;
    });
    let err = client.sling(&id("go-7xq"), "gastown", None, None).await.unwrap_err();
    assert_eq!(err.metric_label(), "timeout");
    assert_eq!(town.read("count").lines().count(), 3);
    assert_eq!(recorder.seen().len(), 3);
}

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

#[tokio::test]
async fn find_by_external_ref_skips_tombstones() {
    let bd = r#"#!/bin/sh
[ "$1 $2 $3" = "list --json --all" ] || exit 2
cat <<'EOF'
[{"id":"go-1","status":"tombstone","external_ref":"automaton:ns/a/u1","created_at":"2026-01-01T00:00:00Z"},
 {"id":"go-2","status":"closed","external_ref":"automaton:ns/a/u1","created_at":"2026-01-02T00:00:00Z"},
 {"id":"go-3","status":"open","external_ref":"automaton:ns/a/u2"}]
EOF
"#;
    let town = Town::new(OK_BD, bd);
    let (client, _) = town.client(|_| {});
    let found = client.find_bead_by_external_ref(&reference()).await.unwrap().unwrap();
    assert_eq!(found.id, "go-2");
    let none = client
        .find_bead_by_external_ref(&ExternalRef::parse("automaton:ns/b/u9").unwrap())
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn oversized_output_fails_to_parse_instead_of_being_misread() {
    let bd =
        "#!/bin/sh\ni=0\nwhile [ $i -lt 500 ]; do echo '[{\"id\":\"go-1\",\"status\":\"open\"}]'; i=$((i+1)); done\n";
    let town = Town::new(OK_BD, bd);
    let (client, _) = town.client(|c| c.max_output_bytes = 1024);
    let err = client.find_bead_by_external_ref(&reference()).await.unwrap_err();
    assert_eq!(err.metric_label(), "parse");
    assert!(err.to_string().contains("maximum size"), "{err}");
}

#[tokio::test]
async fn stdin_is_closed() {
    let gt = "#!/bin/sh\ncat\necho done\n";
    let town = Town::new(gt, OK_BD);
    let (client, _) = town.client(|c| c.command_timeout = Duration::from_secs(5));
    client
        .unsling(&id("go-7xq"), Some("gastown/polecats/Toast"), true)
        .await
        .unwrap();
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

#[tokio::test]
async fn reopen_and_close_argv() {
    let bd = "#!/bin/sh\nprintf '[%s]' \"$@\" >> bd.args\necho >> bd.args\n";
    let town = Town::new(OK_BD, bd);
    let (client, _) = town.client(|_| {});
    client.reopen_bead(&id("go-7xq")).await.unwrap();
    client.close_bead(&id("go-7xq"), "Automaton deleted").await.unwrap();
    assert_eq!(
        town.read("bd.args"),
        "[update][--status][open][--assignee][][--][go-7xq]\n[close][-r][Automaton deleted][--][go-7xq]\n"
    );
}

#[test]
fn configuration_is_checked() {
    let town = Town::new(OK_BD, OK_BD);
    let bad = |change: &dyn Fn(&mut GasTownConfig)| {
        let mut config = town.config();
        change(&mut config);
        GasTown::new(config).unwrap_err().metric_label()
    };
    assert_eq!(bad(&|c| c.command_timeout = Duration::ZERO), "config");
    assert_eq!(bad(&|c| c.max_concurrency = 0), "config");
    assert_eq!(bad(&|c| c.max_output_bytes = 10), "config");
    assert_eq!(
        bad(&|c| {
            if let Transport::Exec { actor, .. } = &mut c.transport {
                *actor = Some("evil\nGT_ROLE=polecat".to_owned());
            }
        }),
        "config"
    );
    let client = GasTown::new(town.config()).unwrap();
    assert_eq!(client.transport_kind(), "exec");
    assert!(format!("{client:?}").contains("exec"));
    assert_eq!(
        Transport::exec("/t"),
        Transport::Exec {
            town_root: "/t".into(),
            gt_path: "gt".into(),
            bd_path: "bd".into(),
            actor: None
        }
    );
}

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
    let town = Town::new(RECORD_GT, BATCH_BD);
    let (client, _) = town.client(|_| {});
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
    let town = Town::new(RECORD_GT, BATCH_BD);
    let (client, _) = town.client(|_| {});
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
    let town = Town::new(RECORD_GT, BATCH_BD);
    let (client, _) = town.client(|_| {});
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
    let (client, recorder) = town.client(|c| {
        c.command_timeout = Duration::from_millis(800);
        c.retries = 0;
    });
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
    // One command, not one more per bead (which took 6 more timeouts before).
    assert_eq!(town.read("bd.calls").lines().count(), 1);
    assert_eq!(recorder.seen(), vec!["bd show timeout"]);
    assert!(elapsed < Duration::from_millis(800 * 4), "{elapsed:?}");
}

#[tokio::test]
async fn batches_are_capped() {
    let town = Town::new(RECORD_GT, BATCH_BD);
    let (client, _) = town.client(|_| {});
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
    let town = Town::new(OK_BD, bd);
    let (client, _) = town.client(|_| {});
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

#[test]
fn the_default_timeout_outlasts_gt_proxy_server() {
    let config = GasTownConfig::new(Transport::exec("/t"));
    assert_eq!(config.command_timeout, DEFAULT_COMMAND_TIMEOUT);
    assert!(DEFAULT_COMMAND_TIMEOUT > PROXY_EXEC_LIMIT);
    assert_eq!(PROXY_EXEC_LIMIT, Duration::from_secs(60));
    assert!(config.remote_command_limit > PROXY_EXEC_LIMIT);
    let town = Town::new(OK_BD, OK_BD);
    let (client, _) = town.client(|c| c.command_timeout = Duration::from_secs(3));
    assert_eq!(client.command_lifetime(), Duration::from_secs(3));
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

//! The local transport: argv, working directory, environment, no shell, missing binaries,
//! exit codes, timeouts that kill, closed stdin, capped output.

use std::path::Path;
use std::time::{Duration, Instant};

use gastown_crds::MergeStrategy;

use super::*;

#[tokio::test]
async fn sling_runs_in_town_root_with_exact_argv_and_minimal_env() {
    let (town, client, recorder) = Town::started(RECORD_GT, OK_BD);
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
    let (town, client, _) = Town::started(OK_BD, bd);
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
    let (town, client, recorder) = Town::started(RECORD_GT, OK_BD);
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

#[tokio::test]
async fn non_zero_exit_is_reported_once_with_code_and_stderr() {
    let bd = "#!/bin/sh\necho 'Error: database locked' >&2\nexit 3\n";
    let (_town, client, recorder) = Town::started(OK_BD, bd);
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
    let (client, recorder) = town.client(timeouts(Duration::from_millis(500), 0));
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
async fn reopen_and_close_argv() {
    let bd = "#!/bin/sh\nprintf '[%s]' \"$@\" >> bd.args\necho >> bd.args\n";
    let (town, client, _) = Town::started(OK_BD, bd);
    client.reopen_bead(&id("go-7xq")).await.unwrap();
    client.close_bead(&id("go-7xq"), "Automaton deleted").await.unwrap();
    assert_eq!(
        town.read("bd.args"),
        "[update][--status][open][--assignee][][--][go-7xq]\n[close][-r][Automaton deleted][--][go-7xq]\n"
    );
}

//! The Gas Town client (controller/src/gastown): public validation and argv.

use std::sync::Arc;
use std::time::Duration;

use gastown_controller::gastown::testing::{EchoHandler, FakeProxyServer, TempDir, TestPki};
use gastown_controller::gastown::{
    Backoff, BeadId, Error, ExternalRef, GasTown, GasTownConfig, Transport, validate_agent_address,
    validate_description, validate_reason,
};
use gastown_tests::admission_gen::{BEAD_ID_INJECTIONS, INJECTIONS};
use serde_json::json;
use std::path::PathBuf;

/// Injection strings that are not valid agent names (`hq` is a fine agent name).
fn agent_injections() -> impl Iterator<Item = &'static str> {
    INJECTIONS.iter().copied().filter(|s| !s.eq_ignore_ascii_case("hq"))
}

#[test]
fn client_validation_refuses_injection() {
    for id in BEAD_ID_INJECTIONS {
        assert!(BeadId::parse(id).is_err(), "bead ID {id:?}");
        assert!(
            serde_json::from_value::<BeadId>(json!(id)).is_err(),
            "bead ID {id:?} via serde"
        );
    }
    for ok in ["go-7xq", "gt-a3f8.1", "hq-cv-x1"] {
        assert_eq!(BeadId::parse(ok).unwrap().as_str(), ok);
    }
    for value in INJECTIONS.iter().chain(&[
        "automaton:ns/../x",
        "automaton:ns/./x",
        "automaton:ns/a b/c",
        "automaton:ns/x/..",
    ]) {
        if *value == "hq" || *value == "HQ" {
            continue; // a valid reference; not an operand position that matters
        }
        assert!(ExternalRef::parse(value).is_err(), "external ref {value:?}");
    }
    // (`hq` is a fine namespace, name and UID.)
    for inj in INJECTIONS.iter().filter(|s| !s.eq_ignore_ascii_case("hq")) {
        for (ns, name, uid) in [(*inj, "a", "u1"), ("ns", *inj, "u1"), ("ns", "a", *inj)] {
            assert!(
                ExternalRef::for_automaton(ns, name, uid).is_err(),
                "{ns:?} {name:?} {uid:?}"
            );
        }
    }
    for inj in agent_injections() {
        for address in [
            format!("{inj}/Toast"),
            format!("gastown/{inj}"),
            format!("gastown/polecats/{inj}"),
            format!("gastown/{inj}/Toast"),
        ] {
            assert!(validate_agent_address(&address).is_err(), "agent address {address:?}");
        }
    }
    for reason in ["a\nb", "a\rb", "done\u{0}", "\u{1b}[2J", "x\u{85}y", ""] {
        assert!(validate_reason(reason).is_err(), "reason {reason:?}");
    }
    for description in ["a\u{0}b", "\u{1b}]0;title\u{7}", "a\u{7f}"] {
        assert!(
            validate_description(description).is_err(),
            "description {description:?}"
        );
    }
}

/// A town with `gt` and `bd` stand-ins that record their argv (NUL-separated) and print a
/// bead ID; none of them goes through a shell interpretation of its arguments.
struct Town {
    _dir: TempDir,
    root: PathBuf,
    client: GasTown,
}

const RECORD: &str = "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\" >> argv.log\necho go-7xq\n";

impl Town {
    fn new() -> Town {
        let dir = TempDir::new("gastown-adversarial").unwrap();
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor")).unwrap();
        std::fs::write(root.join("mayor/town.json"), "{}").unwrap();
        let gt = dir.write_executable("bin/gt", RECORD).unwrap();
        let bd = dir.write_executable("bin/bd", RECORD).unwrap();
        let mut config = GasTownConfig::new(Transport::Exec {
            town_root: root.clone(),
            gt_path: gt,
            bd_path: bd,
            actor: Some("gastown-operator".to_string()),
        });
        config.retries = 0;
        config.command_timeout = Duration::from_secs(10);
        config.backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            multiplier: 1,
        };
        Town {
            _dir: dir,
            root,
            client: GasTown::new(config).unwrap(),
        }
    }

    /// Every recorded invocation, each as its argv (program path first).
    fn invocations(&self) -> Vec<Vec<String>> {
        let log = std::fs::read(self.root.join("argv.log")).unwrap_or_default();
        let log = log.strip_suffix(&[0]).unwrap_or(&log);
        let args: Vec<String> = log
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let mut out: Vec<Vec<String>> = Vec::new();
        for arg in args {
            if arg.ends_with("/bin/gt") || arg.ends_with("/bin/bd") {
                out.push(vec![arg]);
            } else if let Some(last) = out.last_mut() {
                last.push(arg);
            }
        }
        out
    }

    fn no_shell_ran(&self) {
        for marker in ["pwned", "pwned2", "pwned3", "y", "passwd"] {
            assert!(
                !self.root.join(marker).exists(),
                "{marker} exists: a shell interpreted an argument"
            );
        }
    }
}

fn invalid(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.metric_label(), "invalid_argument", "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted ({v:?})"),
    }
}

#[tokio::test]
async fn client_refuses_hostile_operands_before_running_anything() {
    let town = Town::new();
    let bead = BeadId::parse("go-7xq").unwrap();
    for rig in INJECTIONS {
        invalid(
            town.client.sling(&bead, rig, None, None).await,
            &format!("sling to rig {rig:?}"),
        );
    }
    for agent in agent_injections() {
        invalid(
            town.client.sling(&bead, "gastown", None, Some(agent)).await,
            &format!("sling with agent {agent:?}"),
        );
        invalid(
            town.client
                .unsling(&bead, Some(&format!("gastown/polecats/{agent}")), true)
                .await,
            &format!("unsling holder gastown/polecats/{agent:?}"),
        );
    }
    let reference = ExternalRef::for_automaton("team-a", "fix-login", "6f1c2a9e").unwrap();
    let long = "t".repeat(201);
    for title in ["a\nb", "x\u{0}", "\u{1b}[31mred", "", long.as_str()] {
        invalid(
            town.client.create_bead(title, "", &reference).await,
            &format!("title {title:.20?}"),
        );
    }
    for reason in ["done\n--force", "x\u{0}", ""] {
        invalid(
            town.client.close_bead(&bead, reason).await,
            &format!("reason {reason:?}"),
        );
    }
    assert!(town.invocations().is_empty(), "something ran: {:?}", town.invocations());
}

#[tokio::test]
async fn hostile_but_valid_text_stays_one_literal_operand() {
    let town = Town::new();
    let reference = ExternalRef::for_automaton("team-a", "fix-login", "6f1c2a9e").unwrap();
    let titles = [
        "-rf",
        "--help",
        "--external-ref=evil",
        "Fix; touch pwned $(touch pwned2) `touch pwned3` | x > y",
        "'; cat /etc/passwd > passwd; '",
        "\u{202e}gnp.exe",
        "../../etc/passwd",
    ];
    for title in titles {
        let id = town
            .client
            .create_bead(title, "--silent\n-d x\n$(touch pwned)", &reference)
            .await
            .unwrap();
        assert_eq!(id.as_str(), "go-7xq");
    }
    let bead = BeadId::parse("go-7xq").unwrap();
    town.client
        .close_bead(&bead, "--force -- $(touch pwned)")
        .await
        .unwrap();
    let calls = town.invocations();
    assert_eq!(calls.len(), titles.len() + 1, "{calls:?}");
    for (call, title) in calls.iter().zip(titles) {
        let sep = call.iter().position(|a| a == "--").expect("an option terminator");
        assert_eq!(
            &call[sep + 1..],
            [title.to_string()],
            "title after `--` as one operand: {call:?}"
        );
        let d = call.iter().position(|a| a == "-d").unwrap();
        assert_eq!(
            call[d + 1],
            "--silent\n-d x\n$(touch pwned)",
            "description as one option value"
        );
    }
    let close = calls.last().unwrap();
    assert_eq!(close[1..], ["close", "-r", "--force -- $(touch pwned)", "--", "go-7xq"]);
    town.no_shell_ran();
}

#[tokio::test]
async fn proxy_transport_sends_hostile_text_as_literal_argv() {
    let pki = TestPki::new("adversarial CA").unwrap();
    let server = pki.server_cert().unwrap();
    let (_, proxy) = FakeProxyServer::start_with_allow_list(
        pki.ca_pem(),
        &server.cert_pem,
        &server.key_pem,
        Arc::new(EchoHandler),
        None,
    )
    .await
    .unwrap();
    let client_cert = pki.client_cert("gt-operator-controller").unwrap();
    let dir = TempDir::new("gastown-adversarial-proxy").unwrap();
    let mut config = GasTownConfig::new(Transport::Proxy {
        url: proxy.url(),
        client_cert: dir.write("client.crt", &client_cert.cert_pem).unwrap(),
        client_key: dir.write("client.key", &client_cert.key_pem).unwrap(),
        ca: dir.write("ca.crt", pki.ca_pem()).unwrap(),
    });
    config.retries = 0;
    let client = GasTown::new(config).unwrap();
    let bead = BeadId::parse("go-7xq").unwrap();
    // Refused before anything is sent.
    for rig in INJECTIONS {
        invalid(
            client.sling(&bead, rig, None, None).await,
            &format!("proxy sling to {rig:?}"),
        );
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    // Valid operands arrive exactly, after `--`.
    client.sling(&bead, "gastown", None, Some("claude-1.x")).await.unwrap();
    client.close_bead(&bead, "-rf $(id); `id`").await.unwrap();
    let sent: Vec<Vec<String>> = proxy.requests().into_iter().map(|r| r.argv).collect();
    assert_eq!(
        sent,
        [
            vec!["gt", "sling", "--agent", "claude-1.x", "--", "go-7xq", "gastown"],
            vec!["bd", "close", "-r", "-rf $(id); `id`", "--", "go-7xq"],
        ]
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    );
}

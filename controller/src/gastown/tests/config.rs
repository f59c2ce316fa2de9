//! Client construction: configuration checks, defaults, and that the client can be shared.

use std::time::Duration;

use super::*;

#[test]
fn client_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<GasTown>();
    let (_town, client, _) = Town::started(OK_BD, OK_BD);
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

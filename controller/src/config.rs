//! Command-line flags; every flag has an environment variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// `--command-timeout`'s default: [`crate::gastown::DEFAULT_COMMAND_TIMEOUT`] (70 s, above
/// gt-proxy-server's 60 s limit), spelled for clap.
const COMMAND_TIMEOUT_DEFAULT: &str = "70s";

/// gastown-controller: dispatches claimed Automatons to Gas Town and reports their status.
#[derive(Debug, Parser)]
#[command(name = "gastown-controller", version, about)]
pub struct Cli {
    /// What to do (default: run the controller).
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// Controller flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the controller (the default).
    Run,
    /// Print the Automaton CRD as YAML.
    Crd,
}

/// Where Gas Town commands go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// Run `gt`/`bd` locally in the town root (controller on the Gas Town host).
    Exec,
    /// HTTPS with mutual TLS to gt-proxy-server (in-cluster deployment).
    Proxy,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig context to use (default: the current context, or in-cluster config).
    #[arg(long, env = "GASTOWN_CONTEXT", global = true)]
    pub context: Option<String>,
    /// Namespaces to watch, comma-separated (default: all namespaces).
    #[arg(long, env = "GASTOWN_NAMESPACES", value_delimiter = ',', global = true)]
    pub namespaces: Vec<String>,
    /// Claimer name: this controller handles Automatons labelled gastown.io/claimed-by=<claimer>.
    #[arg(long, env = "GASTOWN_CLAIMER", default_value = gastown_crds::contract::DEFAULT_CLAIMER, global = true)]
    pub claimer: String,
    /// How commands reach Gas Town.
    #[arg(long, env = "GASTOWN_TRANSPORT", value_enum, default_value = "exec", global = true)]
    pub transport: TransportKind,
    /// Gas Town town root (working directory of `gt`/`bd`; exec transport).
    #[arg(long, env = "GASTOWN_TOWN_ROOT", global = true)]
    pub town_root: Option<PathBuf>,
    /// Path of the `gt` binary (exec transport).
    #[arg(long, env = "GASTOWN_GT_PATH", default_value = "gt", global = true)]
    pub gt_path: PathBuf,
    /// Path of the `bd` binary (exec transport).
    #[arg(long, env = "GASTOWN_BD_PATH", default_value = "bd", global = true)]
    pub bd_path: PathBuf,
    /// BD_ACTOR for bead changes (audit name).
    #[arg(long, env = "GASTOWN_BD_ACTOR", default_value = "gastown-operator", global = true)]
    pub bd_actor: String,
    /// gt-proxy-server URL, https://host:9876 (proxy transport).
    #[arg(long, env = "GASTOWN_PROXY_URL", global = true)]
    pub proxy_url: Option<String>,
    /// Client certificate (PEM) for gt-proxy-server.
    #[arg(long, env = "GASTOWN_PROXY_CERT", global = true)]
    pub proxy_cert: Option<PathBuf>,
    /// Client key (PEM) for gt-proxy-server.
    #[arg(long, env = "GASTOWN_PROXY_KEY", global = true)]
    pub proxy_key: Option<PathBuf>,
    /// CA (PEM) that signed gt-proxy-server's certificate.
    #[arg(long, env = "GASTOWN_PROXY_CA", global = true)]
    pub proxy_ca: Option<PathBuf>,
    /// How often Gas Town is read for progress (e.g. 15s, 1m).
    #[arg(long, env = "GASTOWN_SYNC_INTERVAL", default_value = "15s", value_parser = parse_duration, global = true)]
    pub sync_interval: Duration,
    /// Time Gas Town has to take a claim before it is released back to Kubernetes.
    #[arg(long, env = "GASTOWN_CLAIM_TIMEOUT", default_value = "10m", value_parser = parse_duration, global = true)]
    pub claim_timeout: Duration,
    /// How long deletion waits for an unreachable Gas Town before letting the object go.
    #[arg(long, env = "GASTOWN_RELEASE_TIMEOUT", default_value = "10m", value_parser = parse_duration, global = true)]
    pub release_timeout: Duration,
    /// Longest time between status writes when only lastSyncTime would change.
    #[arg(long, env = "GASTOWN_STATUS_HEARTBEAT", default_value = "5m", value_parser = parse_duration, global = true)]
    pub status_heartbeat: Duration,
    /// Timeout of one Gas Town command (a hung command is killed). Keep it above
    /// gt-proxy-server's own limit of 60 s, so that the proxy's answer arrives before the
    /// controller gives up on a command that may still be running.
    #[arg(long, env = "GASTOWN_COMMAND_TIMEOUT", default_value = COMMAND_TIMEOUT_DEFAULT, value_parser = parse_duration, global = true)]
    pub command_timeout: Duration,
    /// After a `bd create` that may still be running (the controller stopped during it), only
    /// look its bead up for this long before creating another (default: from the command
    /// timeout and the transport, see `decision::create_outcome_wait`).
    #[arg(long, env = "GASTOWN_CREATE_OUTCOME_WAIT", value_parser = parse_duration, global = true)]
    pub create_outcome_wait: Option<Duration>,
    /// Automatons reconciled at once.
    #[arg(long, env = "GASTOWN_CONCURRENCY", default_value_t = 8, global = true)]
    pub concurrency: u16,
    /// Gas Town commands in flight at once.
    #[arg(long, env = "GASTOWN_GASTOWN_CONCURRENCY", default_value_t = 4, global = true)]
    pub gastown_concurrency: usize,
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, env = "GASTOWN_METRICS_ADDR", default_value = "0.0.0.0:8080", global = true)]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "GASTOWN_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Elect a leader on a Lease (needed with more than one replica).
    #[arg(long, env = "GASTOWN_LEADER_ELECTION", global = true)]
    pub leader_election: bool,
    /// Name of the Lease (default: `gastown-operator`, or `gastown-operator-<claimer>` for a
    /// claimer other than the default, so that two towns' controllers never share one Lease).
    #[arg(long, env = "GASTOWN_LEASE_NAME", global = true)]
    pub lease_name: Option<String>,
    /// Namespace of the Lease (default: POD_NAMESPACE, else `default`).
    #[arg(long, env = "GASTOWN_LEASE_NAMESPACE", global = true)]
    pub lease_namespace: Option<String>,
    /// Lease duration.
    #[arg(long, env = "GASTOWN_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, global = true)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name and pid).
    #[arg(long, env = "GASTOWN_IDENTITY", global = true)]
    pub identity: Option<String>,
}

impl RunArgs {
    /// The Lease this controller elects its leader on: `--lease-name`, else one per claimer
    /// (the default claimer keeps the single-town name).
    pub fn lease_name(&self) -> String {
        match &self.lease_name {
            Some(name) => name.clone(),
            None if self.claimer == gastown_crds::contract::DEFAULT_CLAIMER => DEFAULT_LEASE_NAME.to_string(),
            None => format!("{DEFAULT_LEASE_NAME}-{}", self.claimer),
        }
    }
}

/// The Lease name of the single-town (default claimer) controller.
pub const DEFAULT_LEASE_NAME: &str = "gastown-operator";

/// Parses `500ms`, `15s`, `10m`, `1h` or a plain number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {value:?}: use e.g. 500ms, 15s, 10m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {value:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 30.0 * 86_400.0 {
        return Err(format!(
            "duration {value:?} out of range (more than 0, at most 30 days)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_documented_in_the_readme() {
        use clap::CommandFactory;
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            assert!(
                readme.contains(&format!("`--{long}"))
                    || readme.contains(&format!(" `--{long}`"))
                    || readme.contains(&format!("--{long}`")),
                "README lacks --{long}"
            );
            let env = env.to_string_lossy();
            assert!(readme.contains(env.as_ref()), "README lacks {env}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli = Cli::try_parse_from(["gastown-controller"]).unwrap();
        assert_eq!(cli.run.claimer, "gastown-local");
        assert_eq!(cli.run.sync_interval, Duration::from_secs(15));
        assert_eq!(cli.run.claim_timeout, Duration::from_secs(600));
        assert_eq!(cli.run.transport, TransportKind::Exec);
        assert_eq!(cli.run.command_timeout, crate::gastown::DEFAULT_COMMAND_TIMEOUT);
        assert!(cli.run.command_timeout > crate::gastown::PROXY_EXEC_LIMIT);
        let cli = Cli::try_parse_from([
            "gastown-controller",
            "--namespaces",
            "a,b",
            "--transport",
            "proxy",
            "--leader-election",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.run.namespaces, ["a", "b"]);
        assert!(cli.run.leader_election);
        assert_eq!(cli.run.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["gastown-controller", "--sync-interval", "soon"]).is_err());
    }

    #[test]
    fn each_town_elects_on_its_own_lease() {
        let lease = |argv: &[&str]| Cli::try_parse_from(argv).unwrap().run.lease_name();
        assert_eq!(lease(&["c"]), "gastown-operator");
        assert_eq!(lease(&["c", "--claimer", "gastown-local"]), "gastown-operator");
        assert_eq!(lease(&["c", "--claimer", "town-a"]), "gastown-operator-town-a");
        assert_ne!(
            lease(&["c", "--claimer", "town-a"]),
            lease(&["c", "--claimer", "town-b"])
        );
        assert_eq!(lease(&["c", "--claimer", "town-a", "--lease-name", "mine"]), "mine");
    }
}

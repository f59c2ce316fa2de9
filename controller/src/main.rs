//! The `gastown-controller` binary: flags, logging, then [`gastown_controller::run`].

use clap::Parser;
use gastown_controller::config::{Cli, Cmd, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Crd) = cli.command {
        print!("{}", gastown_crds::crd_yaml()?);
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    match cli.run.log_format {
        LogFormat::Json => tracing_subscriber::fmt().with_env_filter(filter).json().init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    match gastown_controller::run(cli.run).await {
        Err(e) if e.is::<gastown_controller::Stopped>() => {
            // Lost leadership or a dead election task: exit now (non-zero, so the replica restarts
            // as a candidate) instead of letting the runtime wait for reconciles still in flight.
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
        result => result,
    }
}

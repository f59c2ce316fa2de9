//! Developer helpers used by `make run` on a machine without a cluster.
//!
//! `gastown-dev webhook --kubeconfig K --manifests M` serves `policy/policy.wasm` as a mutating
//! admission webhook (the protocol policy-server speaks), registered with a
//! MutatingWebhookConfiguration built from the ClusterAdmissionPolicy found in the rendered
//! chart `M`, until SIGTERM/Ctrl-C; then it removes the configuration again.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gastown_tests::cluster::client_from_kubeconfig;
use gastown_tests::policy_host::PolicyModule;
use gastown_tests::webhook::{ClusterCapabilities, PolicyWebhook, register};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::api::DeleteParams;
use serde::Deserialize;
use serde_json::Value;

#[derive(Parser)]
#[command(name = "gastown-dev", about = "Developer helpers for `make run`")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the compiled policy as a mutating admission webhook.
    Webhook {
        /// Admin kubeconfig of the cluster to register with.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Rendered chart (multi-document YAML) holding the ClusterAdmissionPolicy.
        #[arg(long)]
        manifests: PathBuf,
        /// The compiled policy.
        #[arg(long, default_value = "policy/policy.wasm")]
        policy: PathBuf,
        /// Name of the MutatingWebhookConfiguration.
        #[arg(long, default_value = "gastown-claim-dev")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Webhook {
            kubeconfig,
            manifests,
            policy,
            name,
        } => webhook(kubeconfig, manifests, policy, name).await,
    }
}

async fn webhook(kubeconfig: PathBuf, manifests: PathBuf, policy: PathBuf, name: String) -> Result<()> {
    let text = std::fs::read_to_string(&manifests).with_context(|| format!("reading {}", manifests.display()))?;
    let mut cap: Option<Value> = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).context("parsing the rendered chart")?;
        if value.get("kind").and_then(Value::as_str) == Some("ClusterAdmissionPolicy") {
            cap = Some(value);
        }
    }
    let Some(cap) = cap else {
        bail!(
            "no ClusterAdmissionPolicy in {} (render with policy.enabled=true)",
            manifests.display()
        )
    };
    let client = client_from_kubeconfig(&kubeconfig).await?;
    let module = PolicyModule::load(&policy)?;
    let settings = cap["spec"]["settings"].clone();
    let hook = PolicyWebhook::start(
        module,
        settings.clone(),
        Arc::new(ClusterCapabilities::new(client.clone())),
        0,
    )
    .await?;
    register(&client, &hook.webhook_configuration(&name, &cap)).await?;
    println!(
        "policy webhook: {} (MutatingWebhookConfiguration {name}), settings {settings}",
        hook.url()
    );
    gastown_controller::shutdown_signal().await;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let _ = api.delete(&name, &DeleteParams::default()).await;
    println!("policy webhook stopped ({} requests served)", hook.requests());
    Ok(())
}

//! The Automaton API (`olympus.io/v1alpha1`) and the Gas Town claim contract.
//!
//! Shared by the admission policy (compiled to `wasm32-wasip1`) and the controller, so it
//! depends on kube's derive machinery only: no client, no async runtime.

pub mod contract;
mod types;
pub mod validate;

pub use types::*;

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as checked in at `crds/automaton.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let crd = Automaton::crd();
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated from the Rust types in crds/src by `make crds`. Do not edit.\n{body}"
    ))
}

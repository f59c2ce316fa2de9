//! Counting active claims through Kubewarden's `kubernetes/list_resources_by_namespace` host
//! capability (declared in metadata.yml `contextAwareResources`).

use gastown_crds::contract::CLAIMED_BY_LABEL;
use gastown_crds::{Automaton, Phase};
use kube::Resource;
use serde::Deserialize;

use crate::decision::ClaimLedger;

/// The host request for the Automatons claimed by `claimer` in `namespace`, as JSON.
pub fn list_request(namespace: &str, claimer: &str) -> Result<Vec<u8>, String> {
    let req = kubewarden_policy_sdk::host_capabilities::kubernetes::ListResourcesByNamespaceRequest {
        api_version: Automaton::api_version(&()).into_owned(),
        kind: Automaton::kind(&()).into_owned(),
        namespace: namespace.to_string(),
        label_selector: Some(format!("{CLAIMED_BY_LABEL}={claimer}")),
        field_selector: None,
        field_masks: Some(
            ["metadata.name".to_string(), "status.phase".to_string()]
                .into_iter()
                .collect(),
        ),
    };
    serde_json::to_vec(&req).map_err(|e| format!("cannot encode the list request: {e}"))
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    status: Option<ItemStatus>,
}

#[derive(Deserialize)]
struct ItemStatus {
    #[serde(default)]
    phase: Option<String>,
}

/// Counts the non-terminal items of a list answer (unknown phases count as active).
pub fn count_active(list_json: &[u8]) -> Result<u64, String> {
    let list: List =
        serde_json::from_slice(list_json).map_err(|e| format!("unexpected list answer from the host: {e}"))?;
    let active = list
        .items
        .iter()
        .filter(|item| {
            let phase = item
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .and_then(Phase::parse);
            !phase.is_some_and(Phase::is_terminal)
        })
        .count();
    Ok(active as u64)
}

/// The ledger backed by the policy-server host.
pub struct HostLedger;

impl ClaimLedger for HostLedger {
    fn active_claims(&self, namespace: &str, claimer: &str) -> Result<u64, String> {
        let msg = list_request(namespace, claimer)?;
        let answer = wapc_guest::host_call("kubewarden", "kubernetes", "list_resources_by_namespace", &msg)
            .map_err(|e| format!("host capability kubernetes/list_resources_by_namespace failed: {e}"))?;
        count_active(&answer)
    }
}

//! `olympus.io/v1alpha1` `Automaton`: the Rust types are the single source of truth for the CRD.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::contract::{CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIMED_BY_LABEL};
use crate::validate::{
    AGENT_NAME_PATTERN, BEAD_ID_PATTERN, DESCRIPTION_MAX_CHARS, DNS_LABEL_PATTERN, RIG_NAME_PATTERN, TITLE_MAX_CHARS,
    TITLE_PATTERN,
};

/// A unit of agent work. Normally run in pods by the Kubernetes executor; a local Gas Town
/// may claim it (see the claim contract in [`crate::contract`]).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "olympus.io",
    version = "v1alpha1",
    kind = "Automaton",
    plural = "automatons",
    shortname = "atm",
    namespaced,
    status = "AutomatonStatus",
    doc = "A unit of agent work, run in pods by the Kubernetes executor or claimed by a local Gas Town",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.executionMode"}"#,
    printcolumn = r#"{"name":"Town","type":"string","jsonPath":".metadata.labels.gastown\\.io/claimed-by"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Bead","type":"string","jsonPath":".status.gastown.beadId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AutomatonSpec {
    /// What to do.
    pub task: TaskSpec,
    /// The Forge this Automaton belongs to; mapped to a Gas Town rig by the policy settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub forge: Option<String>,
    /// The Gas Town rig that runs the work (filled in by the claim policy when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RIG_NAME_PATTERN))]
    pub rig: Option<String>,
    /// Where the work runs: `kubernetes` (pods, the default) or `local` (a local Gas Town).
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// The agent to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// How finished work is merged (`gt sling --merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_strategy: Option<MergeStrategy>,
    /// Seconds the work may take after dispatch before it is failed and released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub timeout_seconds: Option<i64>,
}

/// The work item.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Short title; becomes the bead title.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS), regex(pattern = TITLE_PATTERN))]
    pub title: String,
    /// Longer description; becomes the bead description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// An existing bead to dispatch instead of creating a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BEAD_ID_PATTERN))]
    pub bead_id: Option<String>,
}

/// Where an Automaton is executed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// Pods, run by the Kubernetes executor.
    #[default]
    Kubernetes,
    /// A local Gas Town, through gastown-operator.
    Local,
}

impl ExecutionMode {
    /// The value as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Kubernetes => "kubernetes",
            ExecutionMode::Local => "local",
        }
    }
}

/// The agent that does the work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Agent name (`gt sling --agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = AGENT_NAME_PATTERN))]
    pub name: Option<String>,
    /// Model the agent should use (informational for Gas Town).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub model: Option<String>,
}

/// Gas Town merge strategies (`gt sling --merge=`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MergeStrategy {
    /// Merge straight to the base branch.
    Direct,
    /// Open a merge request.
    Mr,
    /// Keep the result local; nothing closes the bead automatically.
    Local,
}

impl MergeStrategy {
    /// The value `gt sling --merge=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStrategy::Direct => "direct",
            MergeStrategy::Mr => "mr",
            MergeStrategy::Local => "local",
        }
    }
}

/// Lifecycle phase reported by the controller.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Created, not yet claimed or handled.
    Pending,
    /// Claimed by a local Gas Town; not yet dispatched.
    Claimed,
    /// Handed to Gas Town (`gt sling`), the bead is hooked.
    Dispatched,
    /// A Gas Town worker is working on it.
    Running,
    /// Done.
    Succeeded,
    /// Failed (see the message and the `Completed` condition).
    Failed,
    /// The claim was given back to Kubernetes.
    Released,
}

impl Phase {
    /// Every phase, in lifecycle order (the order of the CRD's `status.phase` enum).
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Claimed,
        Phase::Dispatched,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Released,
    ];

    /// Phases after which nothing more happens to the Automaton in Gas Town.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Released)
    }

    /// The phase name as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Claimed => "Claimed",
            Phase::Dispatched => "Dispatched",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Released => "Released",
        }
    }

    /// Parses a phase name as written in the API.
    pub fn parse(value: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == value)
    }
}

/// Observed state, written only by the controller (through the status subresource).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomatonStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions, one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who claimed the Automaton, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimStatus>,
    /// What Gas Town reports about the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gastown: Option<GasTownStatus>,
}

/// The claim as seen by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// The claimer name (value of the `gastown.io/claimed-by` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// When the claim was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Time>,
    /// The Kubernetes user who asked for the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Gas Town's view of the work.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GasTownStatus {
    /// The bead that carries the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_id: Option<String>,
    /// Whether the controller created the bead (and so closes it on release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_created: Option<bool>,
    /// The rig the work was slung to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig: Option<String>,
    /// The worker (`<rig>/polecats/<Name>`) from the bead's assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// The bead status last read (`open`, `hooked`, `in_progress`, `closed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_status: Option<String>,
    /// When `gt sling` succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<Time>,
    /// When Gas Town was last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

/// A standard Kubernetes condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Dispatched`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason.
    pub reason: String,
    /// Human-readable detail (required, may be empty, as in `metav1.Condition`; no schema
    /// default because kube-apiserver 1.20 reads an empty-string default as null).
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition status values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known.
    Unknown,
}

fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = generator.subschema_for::<Condition>();
    schemars::json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "description": "Standard conditions, one per type."
    })
}

impl Automaton {
    /// The claimer named by the `gastown.io/claimed-by` label, if any.
    pub fn claimed_by(&self) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(CLAIMED_BY_LABEL).map(String::as_str)
    }

    /// Whether `claimer` holds the claim.
    pub fn is_claimed_by(&self, claimer: &str) -> bool {
        self.claimed_by() == Some(claimer)
    }

    /// Whether a user asked for a local claim with the `gastown.io/claim` annotation.
    pub fn claim_requested(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLAIM_REQUEST_ANNOTATION))
            .is_some_and(|v| v == CLAIM_REQUEST_VALUE)
    }

    /// The phase reported in status, if any.
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref()?.phase
    }

    /// Whether the Automaton reached a terminal phase.
    pub fn is_terminal(&self) -> bool {
        self.phase().is_some_and(Phase::is_terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;

    /// `Phase::as_str` (which `Phase::parse` reads back) writes what serde writes.
    #[test]
    fn phase_names_are_the_serialized_names() {
        for phase in Phase::ALL {
            assert_eq!(
                serde_json::to_value(phase).ok(),
                Some(serde_json::json!(phase.as_str()))
            );
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(Phase::parse("running"), None);
    }
}

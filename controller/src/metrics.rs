//! Prometheus metrics: one registry, prefix `gastown`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::gastown::CommandObserver;

/// Labels of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Error kind (see `Error::metric_label`).
    pub kind: String,
}

/// Labels of a Gas Town command.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `gt` or `bd`.
    pub tool: String,
    /// e.g. `sling`, `show`.
    pub verb: String,
    /// `ok` or an error kind.
    pub result: String,
}

/// Labels of the per-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Automaton phase (`None` for not yet reported).
    pub phase: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconcile errors by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Gas Town commands by tool, verb and result.
    pub commands: Family<CommandLabels, Counter>,
    /// Gas Town command durations.
    pub command_seconds: Family<CommandLabels, Histogram>,
    /// Time from the claim (policy timestamp) to a successful `gt sling`.
    pub claim_to_dispatch: Histogram,
    /// Claimed Automatons by phase.
    pub active_claims: Family<PhaseLabels, Gauge>,
    /// Kubernetes API writes made by the controller, by kind (`status`, `finalizer`, `release`).
    pub api_writes: Family<ErrorLabels, Counter>,
    /// 1 while this replica may act (leads, or runs without leader election), else 0; set when
    /// scraped.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gastown");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let commands = Family::<CommandLabels, Counter>::default();
        let command_seconds = Family::<CommandLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        let claim_to_dispatch = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let active_claims = Family::<PhaseLabels, Gauge>::default();
        let api_writes = Family::<ErrorLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors by kind", errors.clone());
        registry.register(
            "commands",
            "Gas Town commands by tool, verb and result",
            commands.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Gas Town command duration",
            command_seconds.clone(),
        );
        registry.register(
            "claim_to_dispatch_seconds",
            "Time from the claim to a successful gt sling",
            claim_to_dispatch.clone(),
        );
        registry.register("active_claims", "Claimed Automatons by phase", active_claims.clone());
        registry.register("api_writes", "Kubernetes API writes by kind", api_writes.clone());
        registry.register(
            "leader",
            "1 while this replica may act (it holds the Lease, or leader election is off)",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            commands,
            command_seconds,
            claim_to_dispatch,
            active_claims,
            api_writes,
            leader,
        }
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts an API write of `kind`.
    pub fn api_write(&self, kind: &str) {
        self.api_writes
            .get_or_create(&ErrorLabels { kind: kind.to_string() })
            .inc();
    }

    /// Counts a reconcile error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.to_string() }).inc();
    }
}

/// Feeds Gas Town command results into [`Metrics`].
pub struct MetricsObserver(pub Arc<Metrics>);

impl CommandObserver for MetricsObserver {
    fn observe(&self, tool: &str, verb: &str, result: &str, duration: Duration) {
        let labels = CommandLabels {
            tool: tool.to_string(),
            verb: verb.to_string(),
            result: result.to_string(),
        };
        self.0.commands.get_or_create(&labels).inc();
        self.0
            .command_seconds
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }
}

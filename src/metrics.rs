//! Prometheus metrics of the daemon, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub sync_duration: Histogram,
    pub syncs: Family<OutcomeLabel, Counter>,
    pub sync_triggers: Family<TriggerLabel, Counter>,
    pub planned_runs: Counter,
    pub removed_tests: Counter,
    pub invalid_tests: Gauge,
    pub webhooks: Family<WebhookLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("perfsync");
        let sync_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let syncs = Family::<OutcomeLabel, Counter>::default();
        let sync_triggers = Family::<TriggerLabel, Counter>::default();
        let planned_runs = Counter::default();
        let removed_tests = Counter::default();
        let invalid_tests = Gauge::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "sync_duration_seconds",
            "Duration of syncs (fetch, plan, record)",
            sync_duration.clone(),
        );
        registry.register("syncs", "Syncs by outcome", syncs.clone());
        registry.register(
            "sync_triggers",
            "Triggers received, by kind",
            sync_triggers.clone(),
        );
        registry.register(
            "planned_runs",
            "Runs planned by syncs",
            planned_runs.clone(),
        );
        registry.register(
            "removed_tests",
            "Tests removed by syncs",
            removed_tests.clone(),
        );
        registry.register(
            "invalid_tests",
            "Tests invalid at the last synced commit",
            invalid_tests.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook requests by provider and outcome",
            webhooks.clone(),
        );
        Metrics {
            registry,
            sync_duration,
            syncs,
            sync_triggers,
            planned_runs,
            removed_tests,
            invalid_tests,
            webhooks,
        }
    }

    pub fn sync_outcome(&self, outcome: &str) {
        self.syncs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn webhook(&self, provider: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                provider: provider.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

//! Every Prometheus metric of the sidecar, named in one place.
//!
//! What this module owns: the [`Name`] enum (every metric name and help
//! text), the registry, and typed handles the other modules increment.
//!
//! Invariants (STYLE §6, DESIGN §5):
//! - names follow `coi_<subsystem>_<name>_<unit>[_total]`, counters end in
//!   `_total`, units are base units;
//! - labels come from closed sets only: outcome/kind/reason/error_type enums
//!   of this code, plus the endpoint NAME from the config (and the fixed
//!   `push:<channel>` names of the push queues). Never a user,
//!   address, folder, URL or token. A record's free-text `kind` is mapped to
//!   the known kinds or `other` before it becomes a label.
//! - label values of closed sets are pre-registered at 0, so a scrape shows
//!   every series from the start (rates work, absent != zero).
//!
//! Callers: everything that counts; `server.rs` encodes the registry.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::config::KNOWN_KINDS;
use crate::delivery::retry::Outcome;
use crate::push::jobs::{Channel, TargetKind, TargetResult};
use coi_core::wire::{FallbackReason, WireError};

/// Every metric name. The string is the exposed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// Doorbell datagrams by outcome.
    IntakeDatagrams,
    /// Spool records accepted, by kind.
    IntakeEvents,
    /// Spool records rejected, by error type.
    SpoolRecordsRejected,
    /// Spool files rotated.
    SpoolRotations,
    /// Events with a pending delivery.
    QueueDepth,
    /// Age of the oldest pending event.
    QueueOldestAge,
    /// Webhook attempts by endpoint and outcome.
    DeliveryAttempts,
    /// Delivery commit to 2xx.
    DeliveryLatency,
    /// Due rows a per-key limit held back, by endpoint and limit.
    DeliveryHeldBack,
    /// Deliveries moved to dead letters, by endpoint.
    DeadLetters,
    /// Dead letters waiting.
    DeadLettersPending,
    /// Plugin: messages classified, by kind.
    PluginClassified,
    /// Plugin: messages routed to the chats folder.
    PluginRouted,
    /// Plugin: messages tagged `$Chat`.
    PluginTagged,
    /// Plugin: fallbacks to ordinary delivery, by reason.
    PluginFallbacks,
    /// Plugin: events it could not append.
    PluginDropped,
    /// Plugin: push targets left out of records that would not fit.
    PluginPushTargetsDropped,
    /// Push targets seen at intake, by channel and result.
    PushTargets,
    /// Push requests (and doveadm clean-ups) by channel and outcome.
    PushRequests,
    /// Push record to the push service's 2xx, by channel.
    PushLatency,
    /// Push targets a push service declared gone, by target kind.
    PushTargetsGone,
    /// What became of gone targets' METADATA keys.
    PushMetadataRemovals,
    /// Pending deliveries by kind (webhook or push channel).
    QueueDepthDeliveries,
    /// Queue transactions committed, by writer.
    QueueCommits,
    /// Internal errors by stage and error type.
    Errors,
    /// Build information.
    BuildInfo,
}

impl Name {
    /// The exposed metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Name::IntakeDatagrams => "coi_intake_datagrams_total",
            Name::IntakeEvents => "coi_intake_events_total",
            Name::SpoolRecordsRejected => "coi_spool_records_rejected_total",
            Name::SpoolRotations => "coi_spool_rotations_total",
            Name::QueueDepth => "coi_queue_depth_events",
            Name::QueueOldestAge => "coi_queue_oldest_age_seconds",
            Name::DeliveryAttempts => "coi_delivery_attempts_total",
            Name::DeliveryLatency => "coi_delivery_latency_seconds",
            Name::DeliveryHeldBack => "coi_delivery_held_back_total",
            Name::DeadLetters => "coi_dead_letters_total",
            Name::DeadLettersPending => "coi_dead_letters_pending",
            Name::PluginClassified => "coi_plugin_messages_classified_total",
            Name::PluginRouted => "coi_plugin_messages_routed_total",
            Name::PluginTagged => "coi_plugin_messages_tagged_total",
            Name::PluginFallbacks => "coi_plugin_fallbacks_total",
            Name::PluginDropped => "coi_plugin_events_dropped_total",
            Name::PluginPushTargetsDropped => "coi_plugin_push_targets_dropped_total",
            Name::PushTargets => "coi_push_targets_total",
            Name::PushRequests => "coi_push_requests_total",
            Name::PushLatency => "coi_push_latency_seconds",
            Name::PushTargetsGone => "coi_push_targets_gone_total",
            Name::PushMetadataRemovals => "coi_push_metadata_removals_total",
            Name::QueueDepthDeliveries => "coi_queue_depth_deliveries",
            Name::QueueCommits => "coi_queue_commits_total",
            Name::Errors => "coi_errors_total",
            Name::BuildInfo => "coi_build_info",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Name::IntakeDatagrams => "Doorbell datagrams received, by outcome (accepted, peer, oversized, garbage, version).",
            Name::IntakeEvents => "Spool records accepted into the sidecar, by kind (message kinds, other, fallback).",
            Name::SpoolRecordsRejected => "Spool bytes that did not form a valid record, by error type.",
            Name::SpoolRotations => "Spool files rotated by the sidecar.",
            Name::QueueDepth => "Events (webhook events and push jobs) with at least one pending delivery.",
            Name::QueueOldestAge => "Age of the oldest event with a pending delivery, from its delivery commit.",
            Name::DeliveryAttempts => "Webhook attempts, by endpoint name and outcome.",
            Name::DeliveryLatency => "Time from the delivery commit to the webhook's 2xx answer.",
            Name::DeliveryHeldBack => "Due deliveries held back because a per-user or per-host in-flight limit was reached, by endpoint and limit.",
            Name::DeadLetters => "Deliveries moved to the dead letters, by endpoint name.",
            Name::DeadLettersPending => "Dead letters in the queue database.",
            Name::PluginClassified => "Messages the plugin classified at delivery, by kind.",
            Name::PluginRouted => "Messages the plugin filed into the chats folder.",
            Name::PluginTagged => "Messages the plugin tagged with $Chat.",
            Name::PluginFallbacks => "Deliveries where the plugin fell back to ordinary delivery, by reason.",
            Name::PluginDropped => "Events the plugin could not append to the spool (as it reported them).",
            Name::PluginPushTargetsDropped => "Push targets the plugin left out of push records that would have exceeded 16 KiB (identity fields are never cut).",
            Name::PushTargets => "Push targets in the plugin's push records, by channel (webpush, validation, deltachat) and result (queued, deduplicated, known_dead, disabled, invalid_target, private_address).",
            Name::PushRequests => "Push requests by channel (webpush, validation, deltachat, metadata_unset) and outcome (delivery outcomes, gone, no_user).",
            Name::PushLatency => "Time from the plugin's push record to the push service's 2xx answer, by channel.",
            Name::PushTargetsGone => "Push targets (webpush subscriptions, deltachat tokens) a push service answered 404/410 for, first time each.",
            Name::PushMetadataRemovals => "METADATA keys of gone targets, by target and result (removed, no_user, dead_letter, not_configured).",
            Name::QueueDepthDeliveries => "Pending deliveries by kind (webhook, webpush, validation, deltachat, metadata_unset).",
            Name::QueueCommits => "Transactions committed to the queue database, by writer (intake: spool records and their offsets, synchronous=FULL; delivery: outcomes of attempts).",
            Name::Errors => "Internal errors of the sidecar, by stage and error type.",
            Name::BuildInfo => "Build information; the value is always 1.",
        }
    }

    fn opts(self) -> Opts {
        Opts::new(self.as_str(), self.help())
    }
}

/// Buckets of the latency histograms (seconds): milliseconds to a day.
const LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0,
    86400.0,
];

/// Intake kinds of the push records (besides message kinds and `fallback`).
pub const PUSH_RECORD_KINDS: [&str; 2] = ["push", "webpush_validation"];

/// Extra `result` of [`Name::PushTargets`] counted by the queue.
pub const TARGET_KNOWN_DEAD: &str = "known_dead";

/// Extra outcomes of [`Name::PushRequests`].
pub const PUSH_EXTRA_OUTCOMES: [&str; 3] = ["gone", "no_user", crate::push::sinks::USER_RATE_LIMITED];

/// Results of [`Name::PushMetadataRemovals`]: `changed` = the key holds
/// another target now (a client re-subscribed under the same id) and is
/// kept; `absent` = nothing was there any more.
pub const REMOVAL_RESULTS: [&str; 6] = ["removed", "changed", "absent", "no_user", "dead_letter", "not_configured"];

/// `limit` labels of [`Name::DeliveryHeldBack`] (the Web Push limits).
pub const HELD_BACK_LIMITS: [&str; 2] = ["user", "host"];

/// Outcome labels of [`Name::IntakeDatagrams`].
pub const DATAGRAM_OUTCOMES: [&str; 5] = ["accepted", "peer", "oversized", "garbage", "version"];

/// `writer` labels of [`Name::QueueCommits`]: the intake thread's
/// connection and the delivery store's.
pub const COMMIT_WRITERS: [&str; 2] = ["intake", "delivery"];

/// Maps a record's `kind` to a bounded label.
pub fn kind_label(kind: &str) -> &'static str {
    KNOWN_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

/// Typed handles on every metric.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// See [`Name::IntakeDatagrams`].
    pub intake_datagrams: IntCounterVec,
    /// See [`Name::IntakeEvents`].
    pub intake_events: IntCounterVec,
    /// See [`Name::SpoolRecordsRejected`].
    pub spool_rejected: IntCounterVec,
    /// See [`Name::SpoolRotations`].
    pub spool_rotations: IntCounter,
    /// See [`Name::QueueDepth`].
    pub queue_depth: IntGauge,
    /// See [`Name::QueueOldestAge`].
    pub queue_oldest_age: Gauge,
    /// See [`Name::DeliveryAttempts`].
    pub delivery_attempts: IntCounterVec,
    /// See [`Name::DeliveryLatency`].
    pub delivery_latency: Histogram,
    /// See [`Name::DeadLetters`].
    pub dead_letters: IntCounterVec,
    /// See [`Name::DeliveryHeldBack`].
    pub delivery_held_back: IntCounterVec,
    /// See [`Name::DeadLettersPending`].
    pub dead_letters_pending: IntGauge,
    /// See [`Name::PluginClassified`].
    pub plugin_classified: IntCounterVec,
    /// See [`Name::PluginRouted`].
    pub plugin_routed: IntCounter,
    /// See [`Name::PluginTagged`].
    pub plugin_tagged: IntCounter,
    /// See [`Name::PluginFallbacks`].
    pub plugin_fallbacks: IntCounterVec,
    /// See [`Name::PluginDropped`].
    pub plugin_dropped: IntCounter,
    /// See [`Name::PluginPushTargetsDropped`].
    pub plugin_push_targets_dropped: IntCounter,
    /// See [`Name::PushTargets`].
    pub push_targets: IntCounterVec,
    /// See [`Name::PushRequests`].
    pub push_requests: IntCounterVec,
    /// See [`Name::PushLatency`].
    pub push_latency: HistogramVec,
    /// See [`Name::PushTargetsGone`].
    pub push_targets_gone: IntCounterVec,
    /// See [`Name::PushMetadataRemovals`].
    pub push_metadata_removals: IntCounterVec,
    /// See [`Name::QueueDepthDeliveries`].
    pub queue_depth_deliveries: IntGaugeVec,
    /// See [`Name::QueueCommits`].
    pub queue_commits: IntCounterVec,
    /// See [`Name::Errors`].
    pub errors: IntCounterVec,
    /// See [`Name::BuildInfo`].
    pub build_info: IntGaugeVec,
    /// Recall and read status (`recall::metrics`).
    pub recall: crate::recall::metrics::RecallMetrics,
    /// Fleet mode (`fleet::metrics`).
    pub fleet: crate::fleet::metrics::FleetMetrics,
}

impl Metrics {
    /// Creates and registers every metric (plus process metrics).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let recall = crate::recall::metrics::RecallMetrics::new(&registry)?;
        let fleet = crate::fleet::metrics::FleetMetrics::new(&registry)?;
        let m = Metrics {
            recall,
            fleet,
            intake_datagrams: IntCounterVec::new(Name::IntakeDatagrams.opts(), &["outcome"])?,
            intake_events: IntCounterVec::new(Name::IntakeEvents.opts(), &["kind"])?,
            spool_rejected: IntCounterVec::new(Name::SpoolRecordsRejected.opts(), &["error_type"])?,
            spool_rotations: IntCounter::with_opts(Name::SpoolRotations.opts())?,
            queue_depth: IntGauge::with_opts(Name::QueueDepth.opts())?,
            queue_oldest_age: Gauge::with_opts(Name::QueueOldestAge.opts())?,
            delivery_attempts: IntCounterVec::new(
                Name::DeliveryAttempts.opts(),
                &["endpoint", "outcome"],
            )?,
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(Name::DeliveryLatency.as_str(), Name::DeliveryLatency.help())
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            dead_letters: IntCounterVec::new(Name::DeadLetters.opts(), &["endpoint"])?,
            delivery_held_back: IntCounterVec::new(Name::DeliveryHeldBack.opts(), &["endpoint", "limit"])?,
            dead_letters_pending: IntGauge::with_opts(Name::DeadLettersPending.opts())?,
            plugin_classified: IntCounterVec::new(Name::PluginClassified.opts(), &["kind"])?,
            plugin_routed: IntCounter::with_opts(Name::PluginRouted.opts())?,
            plugin_tagged: IntCounter::with_opts(Name::PluginTagged.opts())?,
            plugin_fallbacks: IntCounterVec::new(Name::PluginFallbacks.opts(), &["reason"])?,
            plugin_dropped: IntCounter::with_opts(Name::PluginDropped.opts())?,
            plugin_push_targets_dropped: IntCounter::with_opts(Name::PluginPushTargetsDropped.opts())?,
            push_targets: IntCounterVec::new(Name::PushTargets.opts(), &["channel", "result"])?,
            push_requests: IntCounterVec::new(Name::PushRequests.opts(), &["channel", "outcome"])?,
            push_latency: HistogramVec::new(
                HistogramOpts::new(Name::PushLatency.as_str(), Name::PushLatency.help()).buckets(LATENCY_BUCKETS.to_vec()),
                &["channel"],
            )?,
            push_targets_gone: IntCounterVec::new(Name::PushTargetsGone.opts(), &["target"])?,
            push_metadata_removals: IntCounterVec::new(Name::PushMetadataRemovals.opts(), &["target", "result"])?,
            queue_depth_deliveries: IntGaugeVec::new(Name::QueueDepthDeliveries.opts(), &["kind"])?,
            queue_commits: IntCounterVec::new(Name::QueueCommits.opts(), &["writer"])?,
            errors: IntCounterVec::new(Name::Errors.opts(), &["stage", "error_type"])?,
            build_info: IntGaugeVec::new(Name::BuildInfo.opts(), &["version"])?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.intake_datagrams.clone()))?;
        r.register(Box::new(m.intake_events.clone()))?;
        r.register(Box::new(m.spool_rejected.clone()))?;
        r.register(Box::new(m.spool_rotations.clone()))?;
        r.register(Box::new(m.queue_depth.clone()))?;
        r.register(Box::new(m.queue_oldest_age.clone()))?;
        r.register(Box::new(m.delivery_attempts.clone()))?;
        r.register(Box::new(m.delivery_latency.clone()))?;
        r.register(Box::new(m.dead_letters.clone()))?;
        r.register(Box::new(m.delivery_held_back.clone()))?;
        r.register(Box::new(m.dead_letters_pending.clone()))?;
        r.register(Box::new(m.plugin_classified.clone()))?;
        r.register(Box::new(m.plugin_routed.clone()))?;
        r.register(Box::new(m.plugin_tagged.clone()))?;
        r.register(Box::new(m.plugin_fallbacks.clone()))?;
        r.register(Box::new(m.plugin_dropped.clone()))?;
        r.register(Box::new(m.plugin_push_targets_dropped.clone()))?;
        r.register(Box::new(m.push_targets.clone()))?;
        r.register(Box::new(m.push_requests.clone()))?;
        r.register(Box::new(m.push_latency.clone()))?;
        r.register(Box::new(m.push_targets_gone.clone()))?;
        r.register(Box::new(m.push_metadata_removals.clone()))?;
        r.register(Box::new(m.queue_depth_deliveries.clone()))?;
        r.register(Box::new(m.queue_commits.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;

        for o in DATAGRAM_OUTCOMES {
            m.intake_datagrams.with_label_values(&[o]);
        }
        for k in KNOWN_KINDS.iter().chain(&["other", "fallback"]).chain(&PUSH_RECORD_KINDS) {
            m.intake_events.with_label_values(&[k]);
        }
        for c in [Channel::WebPush, Channel::Validation, Channel::DeltaChat] {
            for r in TargetResult::ALL.iter().map(|r| r.label()).chain([TARGET_KNOWN_DEAD]) {
                m.push_targets.with_label_values(&[c.label(), r]);
            }
        }
        for c in Channel::ALL {
            for o in Outcome::ALL.iter().map(|o| o.label()).chain(PUSH_EXTRA_OUTCOMES) {
                m.push_requests.with_label_values(&[c.label(), o]);
            }
            m.push_latency.with_label_values(&[c.label()]);
            m.queue_depth_deliveries.with_label_values(&[c.label()]);
            m.dead_letters.with_label_values(&[c.queue_name()]);
        }
        for c in [Channel::WebPush, Channel::Validation] {
            for limit in HELD_BACK_LIMITS {
                m.delivery_held_back.with_label_values(&[c.queue_name(), limit]);
            }
        }
        m.queue_depth_deliveries.with_label_values(&["webhook"]);
        for w in COMMIT_WRITERS {
            m.queue_commits.with_label_values(&[w]);
        }
        m.queue_depth_deliveries.with_label_values(&[crate::recall::jobs::DEPTH_KIND]);
        m.dead_letters.with_label_values(&[crate::recall::jobs::DOVEADM_ENDPOINT]);
        for t in [TargetKind::Webpush, TargetKind::Deltachat] {
            m.push_targets_gone.with_label_values(&[t.label()]);
            for r in REMOVAL_RESULTS {
                m.push_metadata_removals.with_label_values(&[t.label(), r]);
            }
        }
        for k in KNOWN_KINDS.iter().chain(&["other"]) {
            m.plugin_classified.with_label_values(&[k]);
        }
        for e in WireError::ERROR_TYPES {
            m.spool_rejected.with_label_values(&[e]);
        }
        for r in FallbackReason::ALL {
            m.plugin_fallbacks.with_label_values(&[r.name()]);
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(m)
    }

    /// Pre-registers an endpoint's series at 0 (on start and reload).
    pub fn register_endpoint(&self, endpoint: &str) {
        for o in Outcome::ALL {
            self.delivery_attempts.with_label_values(&[endpoint, o.label()]);
        }
        self.dead_letters.with_label_values(&[endpoint]);
    }

    /// Counts an internal error.
    pub fn error(&self, stage: &'static str, error_type: &'static str) {
        self.errors.with_label_values(&[stage, error_type]).inc();
    }

    /// Renders the registry in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_prefixed_and_suffixed_by_type() {
        let m = Metrics::new().unwrap();
        m.register_endpoint("ops");
        let text = m.encode().unwrap();
        for fam in m.registry.gather() {
            let name = fam.name();
            if name.starts_with("process_") {
                continue;
            }
            assert!(name.starts_with("coi_"), "{name}");
            if fam.get_field_type() == prometheus::proto::MetricType::COUNTER {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("coi_build_info{version=\""));
        assert!(text.contains("coi_delivery_attempts_total{endpoint=\"ops\",outcome=\"success\"} 0"));
    }

    #[test]
    fn free_text_kinds_become_bounded_labels() {
        assert_eq!(kind_label("chat"), "chat");
        assert_eq!(kind_label("alice@example.org"), "other");
    }
}

//! The fleet counters and gauges (docs/metrics.md, docs/fleet.md),
//! registered in the sidecar's registry next to the others.
//!
//! Labels are closed sets (results, outcomes). Gauges of the consumer are
//! read from the stream by each dispatcher every few seconds, so every
//! dispatcher reports the same fleet-wide figures; dashboards take `max`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Results of `coi_fleet_published_events_total`.
pub const PUBLISH_RESULTS: [&str; 3] = ["stored", "duplicate", "failed"];
/// Outcomes of `coi_fleet_acked_messages_total`.
pub const ACK_OUTCOMES: [&str; 3] = ["delivered", "dead_letter", "rejected"];

/// Handles on the fleet metrics.
#[derive(Clone)]
pub struct FleetMetrics {
    /// `coi_fleet_published_events_total{result}`.
    pub published: IntCounterVec,
    /// `coi_fleet_publish_duration_seconds`: one batch, publish to last ack.
    pub publish_duration: Histogram,
    /// `coi_fleet_received_messages_total`.
    pub received: IntCounter,
    /// `coi_fleet_redeliveries_total`: messages received that an earlier
    /// dispatcher (or this one) had already been handed.
    pub redeliveries: IntCounter,
    /// `coi_fleet_acked_messages_total{outcome}`.
    pub acked: IntCounterVec,
    /// `coi_fleet_dispatch_in_flight_messages`: held by this dispatcher.
    pub in_flight: IntGauge,
    /// `coi_fleet_consumer_pending_messages`: in the stream, not yet handed
    /// to any dispatcher (the stream lag).
    pub consumer_pending: IntGauge,
    /// `coi_fleet_consumer_ack_pending_messages`: handed out, not yet acked.
    pub consumer_ack_pending: IntGauge,
    /// `coi_fleet_consumer_redelivered_messages`: handed out more than once
    /// and not yet acked.
    pub consumer_redelivered: IntGauge,
    /// `coi_fleet_stream_errors_total`: failed calls to the stream.
    pub stream_errors: IntCounter,
}

impl FleetMetrics {
    /// Creates and registers every metric, label values at 0.
    pub fn new(registry: &Registry) -> Result<FleetMetrics, prometheus::Error> {
        let m = FleetMetrics {
            published: IntCounterVec::new(
                Opts::new("coi_fleet_published_events_total", "Events published to the JetStream stream, by result."),
                &["result"],
            )?,
            publish_duration: Histogram::with_opts(HistogramOpts::new(
                "coi_fleet_publish_duration_seconds",
                "Time from publishing one intake batch to the stream's last acknowledgement.",
            ).buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]))?,
            received: IntCounter::with_opts(Opts::new("coi_fleet_received_messages_total", "Stream messages this dispatcher received."))?,
            redeliveries: IntCounter::with_opts(Opts::new(
                "coi_fleet_redeliveries_total",
                "Stream messages received that had been handed to a dispatcher before.",
            ))?,
            acked: IntCounterVec::new(
                Opts::new("coi_fleet_acked_messages_total", "Stream messages this dispatcher acknowledged, by outcome."),
                &["outcome"],
            )?,
            in_flight: IntGauge::with_opts(Opts::new(
                "coi_fleet_dispatch_in_flight_messages",
                "Stream messages this dispatcher holds until their deliveries are settled.",
            ))?,
            consumer_pending: IntGauge::with_opts(Opts::new(
                "coi_fleet_consumer_pending_messages",
                "Messages in the stream not yet handed to any dispatcher (stream lag).",
            ))?,
            consumer_ack_pending: IntGauge::with_opts(Opts::new(
                "coi_fleet_consumer_ack_pending_messages",
                "Messages handed to dispatchers and not yet acknowledged.",
            ))?,
            consumer_redelivered: IntGauge::with_opts(Opts::new(
                "coi_fleet_consumer_redelivered_messages",
                "Unacknowledged messages handed out more than once.",
            ))?,
            stream_errors: IntCounter::with_opts(Opts::new("coi_fleet_stream_errors_total", "Failed calls to the JetStream stream."))?,
        };
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.publish_duration.clone()))?;
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.redeliveries.clone()))?;
        registry.register(Box::new(m.acked.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.consumer_pending.clone()))?;
        registry.register(Box::new(m.consumer_ack_pending.clone()))?;
        registry.register(Box::new(m.consumer_redelivered.clone()))?;
        registry.register(Box::new(m.stream_errors.clone()))?;
        for r in PUBLISH_RESULTS {
            m.published.with_label_values(&[r]);
        }
        for o in ACK_OUTCOMES {
            m.acked.with_label_values(&[o]);
        }
        Ok(m)
    }
}

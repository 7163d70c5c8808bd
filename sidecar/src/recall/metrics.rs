//! The recall and read-status counters (docs/metrics.md), registered in
//! the sidecar's registry next to the others.
//!
//! Labels are closed sets: request results, copy outcomes, read sources
//! and results, doveadm call purposes and outcomes. Never a user, address
//! or Message-ID.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use coi_core::recall::exec::CopyOutcome;

use super::ingest::Applied;

/// Results of `coi_recall_requests_total`.
pub const REQUEST_RESULTS: [&str; 3] = ["queued", "no_copies", "unavailable"];
/// `(via, result)` of `coi_read_status_reads_total`.
pub const READ_LABELS: [(&str, &str); 5] =
    [("seen", "reported"), ("seen", "not_indexed"), ("seen", "unavailable"), ("mdn", "reported"), ("mdn", "unavailable")];
/// Purposes of doveadm calls.
pub const PURPOSES: [&str; 3] = ["execute", "state", "mark"];
/// Outcomes of doveadm calls.
pub const CALL_OUTCOMES: [&str; 6] = ["success", "no_user", "retry", "permanent", "dead_letter", "unreadable"];

/// Handles on the counters.
#[derive(Clone)]
pub struct RecallMetrics {
    /// `coi_recall_index_copies_total`.
    pub indexed: IntCounter,
    /// `coi_recall_requests_total{result}`.
    pub requests: IntCounterVec,
    /// `coi_recall_copies_total{outcome}`.
    pub copies: IntCounterVec,
    /// `coi_read_status_reads_total{via,result}`.
    pub reads: IntCounterVec,
    /// `coi_recall_doveadm_calls_total{purpose,outcome}`.
    pub calls: IntCounterVec,
}

impl RecallMetrics {
    /// Creates and registers every counter, label values at 0.
    pub fn new(registry: &Registry) -> Result<RecallMetrics, prometheus::Error> {
        let m = RecallMetrics {
            indexed: IntCounter::with_opts(Opts::new(
                "coi_recall_index_copies_total",
                "Stored copies of messages sent by authenticated local users added to the recall index.",
            ))?,
            requests: IntCounterVec::new(
                Opts::new("coi_recall_requests_total", "Recall requests by result."),
                &["result"],
            )?,
            copies: IntCounterVec::new(
                Opts::new("coi_recall_copies_total", "Copies a recall asked about, by outcome."),
                &["outcome"],
            )?,
            reads: IntCounterVec::new(
                Opts::new("coi_read_status_reads_total", "First reads (\\Seen) and MDNs, by source and result."),
                &["via", "result"],
            )?,
            calls: IntCounterVec::new(
                Opts::new("coi_recall_doveadm_calls_total", "doveadm calls of recall and read status, by purpose and outcome."),
                &["purpose", "outcome"],
            )?,
        };
        registry.register(Box::new(m.indexed.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.copies.clone()))?;
        registry.register(Box::new(m.reads.clone()))?;
        registry.register(Box::new(m.calls.clone()))?;
        for r in REQUEST_RESULTS {
            m.requests.with_label_values(&[r]);
        }
        for o in CopyOutcome::ALL {
            m.copies.with_label_values(&[o.name()]);
        }
        for (via, result) in READ_LABELS {
            m.reads.with_label_values(&[via, result]);
        }
        for p in PURPOSES {
            for o in CALL_OUTCOMES {
                m.calls.with_label_values(&[p, o]);
            }
        }
        Ok(m)
    }

    /// Counts what one `ingest::apply` did.
    pub fn count(&self, applied: &Applied) {
        self.indexed.inc_by(applied.indexed);
        for r in &applied.requests {
            self.requests.with_label_values(&[r]).inc();
        }
        for o in &applied.copies {
            self.copies.with_label_values(&[o.name()]).inc();
        }
        for (via, result) in &applied.reads {
            self.reads.with_label_values(&[via, result]).inc();
        }
    }

    /// Counts one doveadm call; `purpose` is mapped onto the closed set.
    pub fn call(&self, purpose: &str, outcome: &'static str) {
        let purpose = PURPOSES.iter().find(|p| **p == purpose).copied().unwrap_or("execute");
        self.calls.with_label_values(&[purpose, outcome]).inc();
    }
}

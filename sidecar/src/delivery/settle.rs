//! Recording what an attempt's failure means for its queue row, shared by
//! every sink (webhooks and push channels).
//!
//! What this module owns: [`Ledger`], a sink's handle on the queue and the
//! metrics for one endpoint name, with
//! - [`Ledger::retry_later`]: the next delay from the schedule (jitter,
//!   `Retry-After` clamp, `delivery::retry::next_delay`); rescheduled if it
//!   falls before the deadline, else a dead letter;
//! - [`Ledger::bury`]: a dead letter, counted in
//!   `coi_dead_letters_total{endpoint}` and logged;
//! - [`Ledger::settled`]: the wrapper that turns an attempt's result into
//!   an [`Attempted`] for the driver; a failure to record (a queue error)
//!   is counted, logged and reported as [`Attempted::Unrecorded`].
//!
//! Invariant: a row is never left without a decision when the queue
//! answers: it is delivered (caller), rescheduled, ended some other way by
//! the sink, or buried. A queue error leaves it untouched, still due at
//! its old time, so the driver holds it back for a while before it is
//! attempted again (`delivery::driver`; at-least-once, but no tight loop
//! while the disk is full or read-only).
//!
//! Callers: `delivery::webhook`, `push::sinks`.

use std::time::Duration;

use super::retry::{next_delay, Outcome};
use crate::metrics::Metrics;
use crate::queue::deliveries::DueDelivery;
use crate::queue::store::DeliveryStore;
use crate::queue::QueueError;
use crate::time::now_ms;

/// Why an attempt could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The queue update failed; the row stays as it was (retried later).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl AttemptError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            AttemptError::Queue(e) => e.error_type(),
        }
    }

    /// The row is still pending, so the attempt will be made again.
    pub fn is_retriable(&self) -> bool {
        true
    }
}

/// How an attempt ended, for the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// 2xx: the driver deletes the row (batched).
    Delivered,
    /// Not delivered, and the decision (reschedule, dead letter, ...) is
    /// recorded: the row is free again.
    Recorded,
    /// Not delivered, and recording that failed (full or read-only queue
    /// disk): the row is still due at its old time, so the driver holds it
    /// back before handing it out again.
    Unrecorded,
}

/// One endpoint's way to record outcomes.
#[derive(Clone)]
pub struct Ledger {
    /// The queue endpoint name.
    pub name: String,
    /// Queue handle.
    pub store: DeliveryStore,
    /// Metrics.
    pub metrics: Metrics,
}

impl Ledger {
    /// The row's deadline: its enqueue time plus `deadline`.
    pub fn deadline_ms(d: &DueDelivery, deadline: Duration) -> u64 {
        d.enqueued_ms.saturating_add(deadline.as_millis() as u64)
    }

    /// Runs an attempt body (`Ok(true)` = delivered); a failure to record
    /// is counted and logged and reported as [`Attempted::Unrecorded`] (the
    /// row is still pending).
    pub async fn settled(
        &self,
        d: &DueDelivery,
        body: impl std::future::Future<Output = Result<bool, AttemptError>>,
    ) -> Attempted {
        match body.await {
            Ok(true) => Attempted::Delivered,
            Ok(false) => Attempted::Recorded,
            Err(e) => {
                self.metrics.error("delivery_record", e.error_type());
                tracing::error!(endpoint = %self.name, seq = d.event_seq, error = %e, "could not record an attempt; holding it back, then it will be repeated");
                Attempted::Unrecorded
            }
        }
    }

    /// Moves the row to the dead letters.
    pub async fn bury(&self, d: &DueDelivery, attempts: u32, why: String) -> Result<(), AttemptError> {
        if self
            .store
            .bury(&self.name, d.event_seq, attempts, why.clone(), now_ms())
            .await?
            .is_some()
        {
            self.metrics.dead_letters.with_label_values(&[&self.name]).inc();
            tracing::warn!(endpoint = %self.name, seq = d.event_seq, attempts, reason = %why, "delivery moved to dead letters");
        }
        Ok(())
    }

    /// A retriable failure after `attempts` attempts: reschedule, or bury
    /// when the schedule is used up or the next try would pass the deadline.
    /// Returns whether it was buried.
    #[allow(clippy::too_many_arguments)]
    pub async fn retry_later(
        &self,
        d: &DueDelivery,
        attempts: u32,
        outcome: Outcome,
        retry_after: Option<Duration>,
        detail: String,
        schedule: &[Duration],
        deadline_ms: u64,
    ) -> Result<bool, AttemptError> {
        let now = now_ms();
        let delay = next_delay(schedule, attempts, outcome, retry_after, fastrand::f64());
        match delay.map(|delay| now.saturating_add(delay.as_millis() as u64)) {
            Some(at) if at <= deadline_ms => {
                tracing::info!(endpoint = %self.name, seq = d.event_seq, attempts, detail = %detail, retry_in_ms = at - now, "attempt failed; will retry");
                self.store
                    .reschedule(&self.name, d.event_seq, attempts, at, detail)
                    .await?;
                Ok(false)
            }
            Some(_) => {
                self.bury(d, attempts, format!("{detail}; next retry would pass the deadline")).await?;
                Ok(true)
            }
            None => {
                self.bury(d, attempts, format!("{detail}; retries exhausted")).await?;
                Ok(true)
            }
        }
    }
}

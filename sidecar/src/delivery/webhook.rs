//! Webhook endpoints as a delivery [`Sink`]: one attempt of one message
//! event to one configured endpoint.
//!
//! What this module owns: an attempt builds the payload (`standard` or
//! `ox`), signs it (`webhook-id` = event id, `webhook-timestamp` = now),
//! sends it, classifies the result (`StandardRetryLogic`) and records it:
//! 2xx -> delivered (the driver deletes the row; latency observed from the
//! delivery commit); retriable -> reschedule by the retry schedule, unless
//! the schedule is used up or the next try would pass the deadline -> dead
//! letter; permanent -> dead letter. Every attempt is counted by outcome in
//! `coi_delivery_attempts_total{endpoint,outcome}`.
//!
//! Callers: `delivery::supervisor` (one sink per configured endpoint).

use std::sync::Arc;

use coi_core::wire::MessageEventV1;

use super::driver::Sink;
use super::http::{HttpSender, Response};
use super::payload;
use super::retry::{RetryLogic, StandardRetryLogic, Verdict};
use super::settle::{AttemptError, Attempted, Ledger};
use super::signing::signature_header;
use crate::config::Endpoint;
use crate::queue::deliveries::DueDelivery;
use crate::time::{now_ms, now_secs};

/// One webhook endpoint.
pub struct WebhookSink {
    endpoint: Arc<Endpoint>,
    sender: HttpSender,
    ledger: Ledger,
}

impl WebhookSink {
    /// A sink for `endpoint` sending with `sender`, recording in `ledger`.
    pub fn new(endpoint: Arc<Endpoint>, sender: HttpSender, ledger: Ledger) -> WebhookSink {
        WebhookSink { endpoint, sender, ledger }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn concurrency(&self) -> usize {
        self.endpoint.concurrency
    }

    async fn attempt(self: Arc<Self>, d: DueDelivery) -> Attempted {
        self.ledger.settled(&d, self.attempt_inner(&d)).await
    }
}

impl WebhookSink {
    async fn attempt_inner(&self, d: &DueDelivery) -> Result<bool, AttemptError> {
            let ep = &self.endpoint;
        let deadline_ms = Ledger::deadline_ms(d, ep.deadline);
        if now_ms() >= deadline_ms {
            self.ledger.bury(d, d.attempts, "deadline passed before the next attempt".into()).await?;
            return Ok(false);
        }
        // Recall and read-status notices (recall::notice) share the
        // endpoint's queue, signing and retries; only the body differs.
        let built = match crate::recall::notice::Notice::parse(&d.payload) {
            Some(n) => Ok((n.id.clone(), n.ts_ms, payload::Payload { method: reqwest::Method::POST, body: n.body() })),
            None => match serde_json::from_str::<MessageEventV1>(&d.payload) {
                Ok(event) => payload::build(ep.format, &event)
                    .map(|p| (event.id.clone(), event.ts_ms, p))
                    .map_err(|e| format!("cannot build payload: {e}")),
                Err(e) => Err(format!("unreadable queued event: {e}")),
            },
        };
        let (event_id, event_ts_ms, payload) = match built {
            Ok(b) => b,
            Err(why) => {
                self.ledger.bury(d, d.attempts, why).await?;
                return Ok(false);
            }
        };
        let timestamp = now_secs();
        let signature = signature_header(&ep.secrets, &event_id, timestamp, &payload.body);
        let response = self
            .sender
            .send(ep, &payload, &event_id, timestamp, &signature)
            .await;
        let logic = StandardRetryLogic;
        let (verdict, detail) = match &response {
            Response::Status { code, retry_after } => {
                (logic.classify_status(*code, *retry_after), format!("HTTP {code}"))
            }
            Response::Failure { failure, detail } => (logic.classify_failure(*failure), detail.clone()),
        };
        let attempts = d.attempts.saturating_add(1);
        let now = now_ms();
        match verdict {
            Verdict::Delivered => {
                self.ledger.metrics
                    .delivery_attempts
                    .with_label_values(&[&ep.name, "success"])
                    .inc();
                self.ledger.metrics
                    .delivery_latency
                    .observe(now.saturating_sub(event_ts_ms) as f64 / 1000.0);
                tracing::debug!(endpoint = %ep.name, event_id = %event_id, attempts, "delivered");
                return Ok(true);
            }
            Verdict::Retry { outcome, retry_after } => {
                self.ledger.metrics
                    .delivery_attempts
                    .with_label_values(&[&ep.name, outcome.label()])
                    .inc();
                self.ledger
                    .retry_later(d, attempts, outcome, retry_after, detail, &ep.retry_schedule, deadline_ms)
                    .await?;
            }
            Verdict::Permanent { outcome } => {
                self.ledger.metrics
                    .delivery_attempts
                    .with_label_values(&[&ep.name, outcome.label()])
                    .inc();
                self.ledger.bury(d, attempts, format!("{detail} (permanent)")).await?;
            }
        }
        Ok(false)
    }
}

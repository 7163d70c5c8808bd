//! The intake's JetStream engine: `[queue] engine = "jetstream"`.
//!
//! What this module owns: [`JetStreamQueue`], an `EventQueue` that
//! publishes each event of an intake batch to the event stream (subject
//! from `fleet::envelope`, `Nats-Msg-Id` = event id), waits for every
//! acknowledgement, and only then commits the spool offset in the local
//! database. Recall records never come here (they are applied to the local
//! database by `recall::ingest`, and this sidecar's own drivers send them).
//!
//! Invariants:
//! - the offset moves only past records the stream stored (or already had:
//!   an acknowledgement marked duplicate is a success), so a cluster that
//!   refuses writes leaves the records in the spool; the intake's next
//!   cycle (doorbell or scan timer) publishes them again;
//! - a crash between the acknowledgements and the offset commit republishes
//!   the batch; the stream's duplicate window drops those copies;
//! - the intake thread is not a tokio thread: it blocks on the runtime's
//!   handle for one batch at a time, never longer than `publish_timeout`.
//!
//! Callers: `intake::pump` (through `queue::engine::EventQueue`), `app.rs`.

use std::time::Instant;

use async_nats::jetstream::{self, message::PublishMessage};
use rusqlite::Connection;

use super::envelope::{subject, Envelope};
use super::metrics::FleetMetrics;
use super::settings::FleetSettings;
use super::stream;
use crate::queue::engine::EventQueue;
use crate::queue::ingest::{self, Committed, FileProgress, NewEvent};
use crate::queue::QueueError;

/// Publishes intake batches to the event stream.
pub struct JetStreamQueue {
    settings: FleetSettings,
    runtime: tokio::runtime::Handle,
    js: Option<jetstream::Context>,
    stream_ready: bool,
    metrics: FleetMetrics,
}

impl JetStreamQueue {
    /// A publisher that connects on its first batch.
    pub fn new(settings: FleetSettings, runtime: tokio::runtime::Handle, metrics: FleetMetrics) -> JetStreamQueue {
        JetStreamQueue { settings, runtime, js: None, stream_ready: false, metrics }
    }

    async fn context(&mut self) -> Result<jetstream::Context, String> {
        let js = match &self.js {
            Some(js) => js.clone(),
            None => {
                let js = stream::connect(&self.settings, "coi-sidecar publish").await?;
                self.js = Some(js.clone());
                js
            }
        };
        if !self.stream_ready {
            stream::events(&js, &self.settings).await?;
            self.stream_ready = true;
        }
        Ok(js)
    }

    /// Publishes every event and waits for the acknowledgements: (stored,
    /// duplicates).
    async fn publish_all(&mut self, events: &[NewEvent]) -> Result<(usize, usize), String> {
        let js = self.context().await?;
        let prefix = self.settings.subject_prefix.clone();
        let mut acks = Vec::with_capacity(events.len());
        for ev in events {
            let body = serde_json::to_vec(&Envelope::from_event(ev)).map_err(|e| e.to_string())?;
            let publish = PublishMessage::build().payload(body.into()).message_id(&ev.event_id);
            let ack = js.send_publish(subject(&prefix, ev), publish).await.map_err(|e| format!("publish: {e}"))?;
            acks.push(ack);
        }
        let (mut stored, mut duplicates) = (0, 0);
        for ack in acks {
            let ack = ack.await.map_err(|e| format!("publish ack: {e}"))?;
            if ack.duplicate {
                duplicates += 1;
            } else {
                stored += 1;
            }
        }
        Ok((stored, duplicates))
    }
}

impl EventQueue for JetStreamQueue {
    fn commit(
        &mut self,
        offsets: &mut Connection,
        events: &[NewEvent],
        progress: &FileProgress,
        now_ms: u64,
    ) -> Result<Committed, QueueError> {
        let mut done = Committed::default();
        if !events.is_empty() {
            let started = Instant::now();
            let timeout = self.settings.publish_timeout;
            let runtime = self.runtime.clone();
            let result = runtime.block_on(async { tokio::time::timeout(timeout, self.publish_all(events)).await });
            let (stored, duplicates) = match result {
                Ok(Ok(counts)) => counts,
                Ok(Err(e)) => return Err(self.failed(events.len(), e)),
                Err(_) => return Err(self.failed(events.len(), format!("no acknowledgement within {timeout:?}"))),
            };
            self.metrics.publish_duration.observe(started.elapsed().as_secs_f64());
            self.metrics.published.with_label_values(&["stored"]).inc_by(stored as u64);
            self.metrics.published.with_label_values(&["duplicate"]).inc_by(duplicates as u64);
            done.events = stored;
            done.duplicates = duplicates;
            done.deliveries = events.iter().map(|e| e.endpoints.len()).sum();
        }
        // Only the offset: the events live in the stream now.
        ingest::commit_batch(offsets, &[], progress, now_ms)?;
        Ok(done)
    }

    fn delivers_locally(&self) -> bool {
        false
    }
}

impl JetStreamQueue {
    fn failed(&mut self, n: usize, why: String) -> QueueError {
        self.metrics.published.with_label_values(&["failed"]).inc_by(n as u64);
        self.metrics.stream_errors.inc();
        // The stream may have been deleted or the cluster rebuilt: check
        // it again on the next batch.
        self.stream_ready = false;
        QueueError::Stream(why)
    }
}

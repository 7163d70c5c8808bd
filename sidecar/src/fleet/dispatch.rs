//! `coi-sidecar dispatch`: sending what the backends published.
//!
//! What this module owns: [`Dispatcher::run`], one durable pull consumer
//! (`[jetstream] consumer`, shared by every dispatcher: the stream hands
//! each message to one of them) that feeds the ordinary senders. Each
//! message received is put into this dispatcher's local queue database
//! (the same tables and drivers as local mode: Standard Webhooks, Web Push,
//! Delta Chat, doveadm clean-ups, with their retry schedules, `Retry-After`,
//! deadlines and dead letters) and held, unacknowledged, until every one of
//! its deliveries is settled: delivered, dead-lettered, or retired (a push
//! target that is gone). Then it is acknowledged, and the stream removes it.
//!
//! Invariants:
//! - a message is acknowledged only after its outcome is settled; a
//!   dispatcher that dies holding messages stops sending progress for them,
//!   and after `ack_wait` the stream hands them to another dispatcher
//!   (at-least-once; the webhook-id stays the event id, so receivers can
//!   drop the copies: `coi_fleet_redeliveries_total` counts them);
//! - held messages get a progress acknowledgement every `ack_wait / 3`, so
//!   a long retry schedule does not make the stream redeliver them;
//! - at most `max_in_flight` messages are held (pull requests ask for no
//!   more than the free slots);
//! - a dead letter is also published to the dead-letter stream (a
//!   fleet-wide copy) before its message is acknowledged; the local row
//!   stays listable and replayable with `coi-sidecar dead-letters`;
//! - the local database is a working copy: losing it loses nothing that
//!   is not acknowledged (only local dead letters, whose copies are in the
//!   dead-letter stream).
//!
//! Callers: `app.rs` (`coi-sidecar dispatch`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use rusqlite::{params, Connection, OptionalExtension};

use super::dead_letters::DeadLetterCopy;
use super::envelope::{dead_letter_subject, Envelope};
use super::settings::FleetSettings;
use super::stream;
use crate::metrics::Metrics;
use crate::queue::dead_letters::{self, Selection};
use crate::queue::ingest::{self, FileProgress, NewEvent};
use crate::shutdown::ShutdownWatch;
use crate::time::now_ms;

/// How often received messages are written to the local queue (and their
/// drivers woken) while a pull is open.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// How often held messages are checked for settlement.
const SETTLE_EVERY: Duration = Duration::from_millis(50);
/// How often the consumer's figures are read for the gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(5);
/// Pause after a failed call to the stream.
const STREAM_BACKOFF: Duration = Duration::from_secs(1);
/// Longest one pull request stays open.
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// A message held until its deliveries are settled.
struct Held {
    msg: jetstream::Message,
    last_progress: Instant,
}

/// Where a held event stands in the local queue.
enum Standing {
    Pending,
    Delivered,
    /// Settled with dead letters: (endpoint, attempts, last error).
    Dead(Vec<(String, i64, String)>),
}

/// Wakes delivery drivers: those of the endpoints named, or all
/// (`delivery::supervisor::Supervisor::waker`).
pub type Wake = Arc<dyn Fn(Option<&[&str]>) + Send + Sync>;

/// The dispatch loop's state.
pub struct Dispatcher {
    /// `[queue]` / `[jetstream]`.
    pub settings: FleetSettings,
    /// Its own connection to the local queue database.
    pub db: Arc<Mutex<Connection>>,
    /// Wakes delivery drivers: those of the endpoints named, or all.
    pub wake: Wake,
    /// Metrics.
    pub metrics: Metrics,
    /// Unix ms of the last pull that reached the stream (`/healthz`).
    pub heartbeat: Arc<AtomicU64>,
}

async fn blocking<T: Send + 'static>(
    db: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, crate::queue::QueueError> + Send + 'static,
) -> Result<T, String> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = db.lock().map_err(|_| crate::queue::QueueError::Task("poisoned".into()))?;
        f(&mut c)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Event ids (among all) that still have a pending delivery: one pass over
/// the pending deliveries, whatever the number of held messages.
fn pending_ids(c: &Connection) -> Result<HashSet<String>, crate::queue::QueueError> {
    let mut stmt = c.prepare_cached("SELECT DISTINCT e.event_id FROM deliveries d JOIN events e ON e.seq = d.event_seq")?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<HashSet<_>, _>>()?;
    Ok(ids)
}

/// Where a held event stands, once [`pending_ids`] no longer lists it.
fn standing(c: &Connection, event_id: &str) -> Result<Standing, crate::queue::QueueError> {
    let seq: Option<i64> = c
        .prepare_cached("SELECT seq FROM events WHERE event_id = ?1")?
        .query_row(params![event_id], |r| r.get(0))
        .optional()?;
    let Some(seq) = seq else {
        // Delivered everywhere (the event row goes with its last delivery),
        // or skipped as a known dead push target.
        return Ok(Standing::Delivered);
    };
    let pending: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)")?
        .query_row(params![seq], |r| r.get(0))?;
    if pending {
        return Ok(Standing::Pending);
    }
    let mut stmt = c.prepare_cached("SELECT endpoint, attempts, COALESCE(last_error, '') FROM dead_letters WHERE event_seq = ?1")?;
    let dead = stmt
        .query_map(params![seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if dead.is_empty() { Standing::Delivered } else { Standing::Dead(dead) })
}

/// Ids of this dispatcher's dead letters of `event_id` for `endpoints`.
fn local_dead_letters(c: &Connection, event_id: &str, endpoints: &[String]) -> Result<Vec<String>, crate::queue::QueueError> {
    let mut stmt = c.prepare_cached(
        "SELECT d.id, d.endpoint FROM dead_letters d JOIN events e ON e.seq = d.event_seq WHERE e.event_id = ?1",
    )?;
    let rows = stmt.query_map(params![event_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, endpoint) = row?;
        if endpoints.contains(&endpoint) {
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

/// The standing of every held id: pending ones from one query, the others
/// looked up one by one (they are few: the ones settled since the last pass).
fn standings(c: &Connection, held: Vec<String>) -> Result<Vec<(String, Standing)>, crate::queue::QueueError> {
    let pending = pending_ids(c)?;
    let mut out = Vec::with_capacity(held.len());
    for id in held {
        if pending.contains(&id) {
            out.push((id, Standing::Pending));
        } else {
            let s = standing(c, &id)?;
            out.push((id, s));
        }
    }
    Ok(out)
}

impl Dispatcher {
    /// Runs until `stop`. Errors of the stream are counted, logged and
    /// retried; the function returns only on stop.
    pub async fn run(self, mut stop: ShutdownWatch) {
        let mut held: HashMap<String, Held> = HashMap::new();
        let mut consumer: Option<jetstream::consumer::Consumer<pull::Config>> = None;
        let mut js: Option<jetstream::Context> = None;
        let mut gauges_at = Instant::now() - GAUGES_EVERY;
        let mut data_version = blocking(&self.db, |c| ingest::data_version(c)).await.unwrap_or(0);
        loop {
            if stop.is_triggered() {
                break;
            }
            if consumer.is_none() {
                match self.consumer(&mut js).await {
                    Ok(c) => consumer = Some(c),
                    Err(e) => {
                        self.stream_failed("consumer", &e);
                        tokio::select! { _ = tokio::time::sleep(STREAM_BACKOFF) => {}, _ = stop.wait() => break }
                        continue;
                    }
                }
            }
            let c = consumer.as_mut().expect("set above");
            if gauges_at.elapsed() >= GAUGES_EVERY {
                gauges_at = Instant::now();
                match c.info().await {
                    Ok(info) => {
                        self.metrics.fleet.consumer_pending.set(info.num_pending as i64);
                        self.metrics.fleet.consumer_ack_pending.set(info.num_ack_pending as i64);
                        self.metrics.fleet.consumer_redelivered.set(info.num_redelivered as i64);
                    }
                    Err(e) => self.stream_failed("consumer info", &e.to_string()),
                }
            }
            let free = self.settings.max_in_flight.saturating_sub(held.len());
            if free == 0 {
                tokio::select! { _ = tokio::time::sleep(SETTLE_EVERY) => {}, _ = stop.wait() => break }
                self.settle(&mut held, js.as_ref()).await;
                continue;
            }
            let batch = c.batch().max_messages(free).expires(PULL_EXPIRES).messages().await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    self.stream_failed("pull", &e.to_string());
                    tokio::select! { _ = tokio::time::sleep(STREAM_BACKOFF) => {}, _ = stop.wait() => break }
                    self.settle(&mut held, js.as_ref()).await;
                    continue;
                }
            };
            self.heartbeat.store(now_ms(), Ordering::Relaxed);
            let mut fresh: Vec<jetstream::Message> = Vec::new();
            // A pull request the cluster lost (its consumer changed leader
            // meanwhile) never ends by itself: give up on it and ask again.
            let abandon = tokio::time::sleep(PULL_EXPIRES * 2);
            tokio::pin!(abandon);
            let mut flush = tokio::time::interval(FLUSH_EVERY);
            let mut settle = tokio::time::interval(SETTLE_EVERY);
            loop {
                tokio::select! {
                    m = batch.next() => match m {
                        Some(Ok(m)) => fresh.push(m),
                        Some(Err(e)) => {
                            self.stream_failed("pull", &e.to_string());
                            break;
                        }
                        None => break,
                    },
                    _ = flush.tick() => self.take(&mut fresh, &mut held).await,
                    _ = settle.tick() => self.settle(&mut held, js.as_ref()).await,
                    _ = &mut abandon => break,
                    _ = stop.wait() => break,
                }
            }
            self.take(&mut fresh, &mut held).await;
            self.settle(&mut held, js.as_ref()).await;
            // A `dead-letters replay` on this dispatcher's database.
            if let Ok(v) = blocking(&self.db, |c| ingest::data_version(c)).await {
                if v != data_version {
                    data_version = v;
                    (self.wake)(None);
                }
            }
        }
        // What was delivered by now is acknowledged (fewer duplicates after
        // a restart); the rest is left unacknowledged: the stream redelivers
        // it to another dispatcher (or to this one after a restart).
        self.settle(&mut held, js.as_ref()).await;
        self.metrics.fleet.in_flight.set(0);
        tracing::info!(held = held.len(), "dispatcher stopped; unsettled messages go back to the stream");
    }

    async fn consumer(&self, js: &mut Option<jetstream::Context>) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
        let ctx = match js {
            Some(ctx) => ctx.clone(),
            None => {
                let ctx = stream::connect(&self.settings, "coi-sidecar dispatch").await?;
                *js = Some(ctx.clone());
                ctx
            }
        };
        let events = stream::events(&ctx, &self.settings).await?;
        stream::dead_letters(&ctx, &self.settings).await?;
        let name = self.settings.consumer.clone();
        events
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    // Every dispatcher's slots, with room for dispatchers added later.
                    max_ack_pending: (self.settings.max_in_flight * 16).min(i64::MAX as usize) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {name}: {e}"))
    }

    fn stream_failed(&self, what: &'static str, e: &str) {
        self.metrics.fleet.stream_errors.inc();
        self.metrics.error("dispatch", "queue_stream");
        tracing::warn!(call = what, error = %e, "JetStream call failed; retrying");
    }

    /// Writes received messages to the local queue and holds them.
    async fn take(&self, fresh: &mut Vec<jetstream::Message>, held: &mut HashMap<String, Held>) {
        if fresh.is_empty() {
            return;
        }
        let mut events: Vec<NewEvent> = Vec::new();
        let mut replays: Vec<(String, Vec<String>)> = Vec::new();
        let mut msgs = Vec::new();
        for m in fresh.drain(..) {
            self.metrics.fleet.received.inc();
            if m.info().map(|i| i.delivered > 1).unwrap_or(false) {
                self.metrics.fleet.redeliveries.inc();
            }
            match serde_json::from_slice::<Envelope>(&m.payload) {
                Ok(env) => {
                    if env.replay {
                        replays.push((env.event_id.clone(), env.endpoints.clone()));
                    }
                    events.push(env.into_event());
                    msgs.push(m);
                }
                Err(e) => {
                    // Not ours or corrupt: never deliverable; stop redelivering.
                    tracing::warn!(error = %e, subject = %m.subject, "unreadable stream message terminated");
                    self.metrics.fleet.acked.with_label_values(&["rejected"]).inc();
                    let _ = m.ack_with(AckKind::Term).await;
                }
            }
        }
        if events.is_empty() {
            return;
        }
        let batch = events.clone();
        // The stream is not a spool file: one constant offset row.
        let progress = FileProgress { dev: 0, ino: 0, offset: 0, fingerprint: Vec::new() };
        match blocking(&self.db, move |c| {
            // A replayed dead letter this dispatcher holds goes back to
            // pending; elsewhere the event is simply queued (below).
            for (event_id, endpoints) in &replays {
                let ids = local_dead_letters(c, event_id, endpoints)?;
                if !ids.is_empty() {
                    dead_letters::replay(c, &Selection::Ids(ids), now_ms())?;
                }
            }
            ingest::commit_batch(c, &batch, &progress, now_ms())
        })
        .await
        {
            Ok(_) => {}
            Err(e) => {
                // Not held, not acked: the stream hands them out again after ack_wait.
                self.metrics.error("dispatch", "queue_sqlite");
                tracing::warn!(error = %e, messages = msgs.len(), "could not queue stream messages locally");
                for m in msgs {
                    let _ = m.ack_with(AckKind::Nak(Some(STREAM_BACKOFF))).await;
                }
                return;
            }
        }
        let mut woken: Vec<&str> = events.iter().flat_map(|e| e.endpoints.iter().map(String::as_str)).collect();
        woken.sort_unstable();
        woken.dedup();
        (self.wake)(Some(&woken));
        for (ev, msg) in events.into_iter().zip(msgs) {
            // A copy of a message still held (redelivered): keep the newer handle.
            held.insert(ev.event_id, Held { msg, last_progress: Instant::now() });
        }
        self.metrics.fleet.in_flight.set(held.len() as i64);
    }

    /// Acknowledges held messages whose deliveries are settled; sends
    /// progress for the others when due.
    async fn settle(&self, held: &mut HashMap<String, Held>, js: Option<&jetstream::Context>) {
        if held.is_empty() {
            return;
        }
        let ids: Vec<String> = held.keys().cloned().collect();
        let standings = match blocking(&self.db, move |c| standings(c, ids)).await
        {
            Ok(s) => s,
            Err(e) => {
                self.metrics.error("dispatch", "queue_sqlite");
                tracing::warn!(error = %e, "could not read local delivery state");
                return;
            }
        };
        let progress_every = self.settings.ack_wait / 3;
        for (id, s) in standings {
            let outcome = match s {
                Standing::Pending => {
                    let h = held.get_mut(&id).expect("held");
                    if h.last_progress.elapsed() >= progress_every {
                        h.last_progress = Instant::now();
                        if let Err(e) = h.msg.ack_with(AckKind::Progress).await {
                            self.stream_failed("progress", &e.to_string());
                        }
                    }
                    continue;
                }
                Standing::Delivered => "delivered",
                Standing::Dead(dead) => {
                    let copied = match js {
                        Some(ctx) => self.publish_dead(ctx, &id, &held[&id], &dead).await,
                        None => Err("not connected".into()),
                    };
                    if let Err(e) = copied {
                        // Stay held: retried on the next settle pass.
                        self.stream_failed("dead letter copy", &e);
                        continue;
                    }
                    "dead_letter"
                }
            };
            let h = held.remove(&id).expect("held");
            match h.msg.ack().await {
                Ok(()) => self.metrics.fleet.acked.with_label_values(&[outcome]).inc(),
                // The stream will hand it out again: a duplicate, not a loss.
                Err(e) => self.stream_failed("ack", &e.to_string()),
            }
        }
        self.metrics.fleet.in_flight.set(held.len() as i64);
    }

    async fn publish_dead(&self, ctx: &jetstream::Context, event_id: &str, h: &Held, dead: &[(String, i64, String)]) -> Result<(), String> {
        for (endpoint, attempts, error) in dead {
            let body = serde_json::to_string(&DeadLetterCopy {
                event_id: event_id.to_string(),
                endpoint: endpoint.clone(),
                attempts: *attempts,
                last_error: error.clone(),
                envelope: String::from_utf8_lossy(&h.msg.payload).into_owned(),
            })
            .map_err(|e| e.to_string())?;
            let publish = jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(format!("{event_id}/{endpoint}"));
            ctx.send_publish(dead_letter_subject(&self.settings.subject_prefix, endpoint), publish)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::deliveries::{bury, complete_many, due};
    use crate::queue::ingest::commit_batch;
    use crate::queue::schema::testing::temp_db;

    use crate::queue::ingest::testing::event as ev;

    fn progress() -> FileProgress {
        FileProgress { dev: 0, ino: 0, offset: 0, fingerprint: Vec::new() }
    }

    #[test]
    fn a_message_is_settled_only_when_every_delivery_is() {
        let (_d, mut c) = temp_db();
        commit_batch(&mut c, &[ev("e1", &["a", "b"])], &progress(), 1).unwrap();
        assert!(matches!(standing(&c, "e1").unwrap(), Standing::Pending));
        let seq = due(&c, "a", 10, 1, &Default::default()).unwrap()[0].event_seq;
        complete_many(&mut c, "a", &[seq]).unwrap();
        assert!(matches!(standing(&c, "e1").unwrap(), Standing::Pending), "b is still pending");
        bury(&mut c, "b", seq, 3, "HTTP 400", 5).unwrap();
        match standing(&c, "e1").unwrap() {
            Standing::Dead(d) => assert_eq!(d, vec![("b".to_string(), 3, "HTTP 400".to_string())]),
            _ => panic!("settled with a dead letter"),
        }
        commit_batch(&mut c, &[ev("e2", &["a"])], &progress(), 1).unwrap();
        let seq2 = due(&c, "a", 10, 1, &Default::default()).unwrap()[0].event_seq;
        complete_many(&mut c, "a", &[seq2]).unwrap();
        assert!(matches!(standing(&c, "e2").unwrap(), Standing::Delivered));
        // Never queued here (a known dead push target was skipped): nothing to wait for.
        assert!(matches!(standing(&c, "unknown").unwrap(), Standing::Delivered));
        commit_batch(&mut c, &[ev("e3", &["a"])], &progress(), 1).unwrap();
        let all = standings(&c, vec!["e1".into(), "e2".into(), "e3".into()]).unwrap();
        let kinds: Vec<&str> = all
            .iter()
            .map(|(_, s)| match s {
                Standing::Pending => "pending",
                Standing::Delivered => "delivered",
                Standing::Dead(_) => "dead",
            })
            .collect();
        assert_eq!(kinds, ["dead", "delivered", "pending"]);
    }
}

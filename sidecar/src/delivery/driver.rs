//! The per-endpoint delivery loop.
//!
//! What this module owns: for one endpoint, repeatedly
//! 1. take due deliveries from the queue, as many as there are free slots
//!    (`concurrency` minus attempts in flight);
//! 2. start one attempt task per delivery (a `JoinSet`; the in-flight set
//!    is the semaphore);
//! 3. sleep until the first of: new work (the intake's wake-up), an attempt
//!    finishing, the next row's due time, or stop. No polling interval.
//!
//! What an attempt does is the [`Sink`]'s business: a webhook endpoint
//! (`delivery::webhook`) or a push channel (`push::sinks`). The sink
//! records failures itself (reschedule or dead letter, `delivery::settle`)
//! and reports how the attempt ended ([`Attempted`]); the driver deletes
//! delivered rows.
//!
//! Completions are batched: a delivered row stays in the in-flight set (so
//! it is not handed out again) until the driver deletes it together with
//! others in one transaction ([`DeliveryStore::complete_many`]), at the
//! latest [`COMPLETE_BATCH_WINDOW`] after the first of them, or sooner when
//! [`COMPLETE_BATCH_MAX`] are waiting or they hold half the slots of a full
//! driver, and on stop. Due rows are only queried when that can find
//! something new (start, wake-up, a freed slot, a timer).
//!
//! Invariants: in-flight rows are tracked only in memory, so a crash leaves
//! them pending and they are retried (at-least-once); that includes rows
//! delivered but not yet deleted (a crash inside the batch window re-sends
//! them, which at-least-once allows). A batch that cannot be committed (disk
//! full, read-only database) keeps its rows in flight, not handed out again,
//! and is retried with a backoff from [`DB_ERROR_BACKOFF`] doubling to
//! [`COMPLETE_RETRY_MAX`]: re-sending them at once would hammer the endpoint
//! with duplicates for as long as the disk stays full. If the sidecar stops
//! first, they stay pending and are delivered again. A failed attempt whose
//! outcome cannot be recorded ([`Attempted::Unrecorded`]) is held back the
//! same way: its row stays due at its old time (the reschedule never
//! landed), so it stays in flight, not handed out again, until the same
//! backoff runs out; then it is released and attempted again. Without
//! that, a full disk turned every failing endpoint into a tight loop at
//! full concurrency. On stop, attempts in
//! flight get `grace` to finish; what is still running is aborted and stays
//! pending. A queue error backs off for [`DB_ERROR_BACKOFF`] (counted and
//! logged) instead of spinning.
//!
//! Per-key limits: a sink may refuse to start a due row now
//! ([`Sink::admit`]: the Web Push channels limit requests in flight per user
//! and per push-service host, so one user's never-answering endpoints
//! cannot hold the shared slots). A refused row is parked in memory (up to
//! [`PARK_MAX_PER_SLOT`] x concurrency rows, not handed out, taking no
//! slot) and started as soon as an attempt ends and the sink admits it;
//! past that many, refused rows are deferred in the queue by [`PARK_HOLD`]
//! (no attempt counted), so a flood of one user's rows never blocks the
//! head of the due list. Each row held back is counted once per fetch in
//! `coi_delivery_held_back_total{endpoint,limit}`.
//!
//! Callers: `delivery::supervisor`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::queue::deliveries::DueDelivery;
use crate::queue::store::DeliveryStore;
use crate::queue::QueueError;
use crate::time::now_ms;

use super::settle::Attempted;

/// Pause after a failed queue operation.
pub const DB_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait between attempts to record a batch of completions, and
/// longest hold of a row whose failure could not be recorded.
pub const COMPLETE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Most delivered rows deleted in one transaction.
pub const COMPLETE_BATCH_MAX: usize = 128;

/// Longest a delivered row waits for its batch to be committed. The webhook
/// was already sent, so this adds nothing to delivery latency; it only keeps
/// the row (and its concurrency slot) a little longer.
pub const COMPLETE_BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Rows refused by the sink's own limits kept in memory, per slot.
pub const PARK_MAX_PER_SLOT: usize = 4;

/// How long a refused row that does not fit in memory is deferred.
pub const PARK_HOLD: Duration = Duration::from_secs(5);

/// Held by an attempt while it runs; dropping it (when the attempt ends,
/// or is aborted) releases what the sink counted for it.
#[derive(Default)]
pub struct Permit {
    _guard: Option<Box<dyn Send>>,
}

impl Permit {
    /// A permit that drops `guard` when the attempt ends.
    pub fn new(guard: impl Send + 'static) -> Permit {
        Permit { _guard: Some(Box::new(guard)) }
    }
}

/// Whether a sink lets a due row start now.
pub enum Admission {
    /// Start it, holding the permit until the attempt ends.
    Start(Permit),
    /// Not now: the limit named (a bounded label, e.g. `user`, `host`) is
    /// reached. The driver parks the row until an attempt of its own ends.
    Wait(&'static str),
}

/// What a driver drives: one queue endpoint name and how to attempt one
/// of its rows.
pub trait Sink: Send + Sync + 'static {
    /// The queue endpoint name (a webhook name, or `push:<channel>`).
    fn name(&self) -> &str;
    /// Attempts in flight at most.
    fn concurrency(&self) -> usize;
    /// Makes one attempt for `d` and records a failure (reschedule, dead
    /// letter, or any other way the sink ends the row). Returns how it
    /// ended: a delivered row is deleted by the driver (batched), an
    /// unrecorded one held back (see the module docs).
    fn attempt(self: Arc<Self>, d: DueDelivery) -> impl Future<Output = Attempted> + Send;
    /// Whether `d` may start now. Only this driver's own attempts may hold
    /// what refuses it (a refused row is retried when one of them ends).
    /// Default: always.
    fn admit(&self, _d: &DueDelivery) -> Admission {
        Admission::Start(Permit::default())
    }
}

/// Rows the sink refused for now (see the module docs).
#[derive(Default)]
struct Parked {
    rows: std::collections::VecDeque<DueDelivery>,
    seqs: HashSet<i64>,
}

/// What an attempt task hands back: its row and how the attempt ended.
type AttemptDone = (i64, Attempted);

/// The backoff after `failures` failed queue writes in a row: 1 s,
/// doubling, at most [`COMPLETE_RETRY_MAX`].
fn db_backoff(failures: u32) -> Duration {
    DB_ERROR_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(5))
        .min(COMPLETE_RETRY_MAX)
}

/// Rows whose failure could not be recorded: in flight (not handed out)
/// until `until`, then all released together.
#[derive(Default)]
struct Held {
    seqs: Vec<i64>,
    until: Option<Instant>,
    /// Holds in a row without a recorded attempt in between.
    failures: u32,
}

impl Held {
    /// Holds `seq`; a hold already running takes it along, otherwise a new
    /// one starts with the next, longer backoff.
    fn hold(&mut self, seq: i64) {
        if self.until.is_none() {
            self.failures = self.failures.saturating_add(1);
            self.until = Some(Instant::now() + db_backoff(self.failures));
        }
        self.seqs.push(seq);
    }

    /// Frees the held rows once their hold ran out; returns whether any were.
    fn release_due(&mut self, inflight: &mut HashSet<i64>) -> bool {
        if self.until.is_none_or(|t| t > Instant::now()) {
            return false;
        }
        self.until = None;
        for seq in self.seqs.drain(..) {
            inflight.remove(&seq);
        }
        true
    }
}

/// Delivered rows whose deletion is not committed yet.
#[derive(Default)]
struct Completions {
    seqs: Vec<i64>,
    /// When the oldest of `seqs` must be committed at the latest.
    flush_at: Option<Instant>,
    /// Failed commits in a row, and no new try before this instant.
    failures: u32,
    blocked_until: Option<Instant>,
}

/// One endpoint's driver.
pub struct Driver<S: Sink> {
    sink: Arc<S>,
    store: DeliveryStore,
    metrics: Metrics,
    notify: Arc<Notify>,
    stop: watch::Receiver<bool>,
    grace: Duration,
}

impl<S: Sink> Driver<S> {
    /// A driver for `sink`; `notify` wakes it, `stop` ends it.
    pub fn new(
        sink: Arc<S>,
        store: DeliveryStore,
        metrics: Metrics,
        notify: Arc<Notify>,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> Driver<S> {
        Driver {
            sink,
            store,
            metrics,
            notify,
            stop,
            grace,
        }
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let name = self.sink.name().to_string();
        let limit = self.sink.concurrency();
        // Rows with an attempt running or delivered but not yet deleted:
        // never handed out again while in here.
        let mut inflight: HashSet<i64> = HashSet::new();
        let mut done = Completions::default();
        let mut held = Held::default();
        let mut parked = Parked::default();
        let mut tasks: JoinSet<AttemptDone> = JoinSet::new();
        // A query for due rows is needed (start, wake-up, a slot freed, a
        // timer expired); otherwise the last answer still holds.
        let mut want_fill = true;
        let mut next_due: Option<u64> = None;
        tracing::info!(endpoint = %name, "delivery driver started");
        loop {
            if *self.stop.borrow() {
                break;
            }
            while let Some(joined) = tasks.try_join_next() {
                want_fill |= finished(&mut inflight, &mut done, &mut held, joined);
            }
            want_fill |= held.release_due(&mut inflight);
            let slots_held = inflight.len() >= limit && done.seqs.len() * 2 >= limit;
            let window_over = done.flush_at.is_some_and(|t| t <= Instant::now());
            let may_flush = done.blocked_until.is_none_or(|t| t <= Instant::now());
            if may_flush
                && !done.seqs.is_empty()
                && (done.seqs.len() >= COMPLETE_BATCH_MAX || slots_held || window_over)
            {
                self.flush(&mut inflight, &mut done).await;
                want_fill = true;
            }
            if want_fill {
                want_fill = false;
                next_due = match self.fill(&mut inflight, &mut parked, &mut tasks, limit).await {
                    Ok(next) => next,
                    Err(e) => {
                        self.metrics.error("delivery_queue", e.error_type());
                        tracing::error!(endpoint = %name, error = %e, "queue read failed; backing off");
                        Some(now_ms() + DB_ERROR_BACKOFF.as_millis() as u64)
                    }
                };
            }
            let due_at = next_due
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let wake_at = [due_at, done.flush_at, held.until].into_iter().flatten().min();
            tokio::select! {
                _ = self.notify.notified() => want_fill = true,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    want_fill |= finished(&mut inflight, &mut done, &mut held, joined);
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
                    want_fill = true;
                }
                _ = self.stop.changed() => {}
            }
        }
        if !tasks.is_empty() {
            tracing::info!(endpoint = %name, in_flight = tasks.len(), "waiting for attempts in flight");
            let drained = tokio::time::timeout(self.grace, async {
                while let Some(joined) = tasks.join_next().await {
                    finished(&mut inflight, &mut done, &mut held, joined);
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(endpoint = %name, abandoned = tasks.len(), "abandoning attempts in flight; they stay pending");
                tasks.abort_all();
                while let Some(joined) = tasks.join_next().await {
                    finished(&mut inflight, &mut done, &mut held, joined);
                }
            }
        }
        self.flush(&mut inflight, &mut done).await;
        tracing::info!(endpoint = %name, "delivery driver stopped");
    }

    /// Deletes the delivered rows in `done` in one transaction and frees
    /// their slots. On failure the rows stay in flight (not sent again) and
    /// the commit is retried after a backoff; the error is counted and
    /// logged.
    async fn flush(&self, inflight: &mut HashSet<i64>, done: &mut Completions) {
        done.flush_at = None;
        if done.seqs.is_empty() {
            return;
        }
        let seqs = std::mem::take(&mut done.seqs);
        let name = self.sink.name();
        if let Err(e) = self.store.complete_many(name, seqs.clone()).await {
            self.metrics.error("delivery_record", e.error_type());
            done.failures = done.failures.saturating_add(1);
            let backoff = db_backoff(done.failures);
            let retry_at = Instant::now() + backoff;
            tracing::error!(endpoint = %name, rows = seqs.len(), error = %e, retry_in_ms = backoff.as_millis() as u64,
                "could not record deliveries; holding them (not re-sent) and retrying");
            done.seqs = seqs;
            done.blocked_until = Some(retry_at);
            done.flush_at = Some(retry_at);
            return;
        }
        done.failures = 0;
        done.blocked_until = None;
        for seq in seqs {
            inflight.remove(&seq);
        }
    }

    /// Starts attempts for parked rows the sink admits now, then for due
    /// rows while slots are free (parking or deferring the ones it
    /// refuses); returns when the next not-in-flight row is due (`None`:
    /// nothing to wait for but a wake-up or a finishing attempt).
    async fn fill(
        &self,
        inflight: &mut HashSet<i64>,
        parked: &mut Parked,
        tasks: &mut JoinSet<AttemptDone>,
        limit: usize,
    ) -> Result<Option<u64>, QueueError> {
        let name = self.sink.name();
        let mut i = 0;
        while inflight.len() < limit && i < parked.rows.len() {
            match self.sink.admit(&parked.rows[i]) {
                Admission::Start(permit) => {
                    if let Some(d) = parked.rows.remove(i) {
                        parked.seqs.remove(&d.event_seq);
                        self.start(d, permit, inflight, tasks);
                    }
                }
                Admission::Wait(_) => i += 1,
            }
        }
        let park_max = PARK_MAX_PER_SLOT.saturating_mul(limit);
        loop {
            let free = limit.saturating_sub(inflight.len());
            if free == 0 {
                return Ok(None);
            }
            let skip: HashSet<i64> = inflight.union(&parked.seqs).copied().collect();
            let (due, next) = self.store.due(name, now_ms(), free, skip).await?;
            let got = due.len();
            let mut deferred = Vec::new();
            for d in due {
                match self.sink.admit(&d) {
                    Admission::Start(permit) => self.start(d, permit, inflight, tasks),
                    Admission::Wait(why) => {
                        self.metrics.delivery_held_back.with_label_values(&[name, why]).inc();
                        if parked.rows.len() < park_max {
                            parked.seqs.insert(d.event_seq);
                            parked.rows.push_back(d);
                        } else {
                            deferred.push(d.event_seq);
                        }
                    }
                }
            }
            if !deferred.is_empty() {
                let until = now_ms() + PARK_HOLD.as_millis() as u64;
                self.store.defer(name, deferred, until).await?;
            }
            if got < free {
                return Ok(next);
            }
            // Every row fetched was started, parked or deferred: fetch on
            // while slots are free.
        }
    }

    fn start(&self, d: DueDelivery, permit: Permit, inflight: &mut HashSet<i64>, tasks: &mut JoinSet<AttemptDone>) {
        inflight.insert(d.event_seq);
        let sink = self.sink.clone();
        tasks.spawn(async move {
            let seq = d.event_seq;
            let outcome = sink.attempt(d).await;
            // Released before the driver learns the outcome, so the next
            // fill already sees the freed per-key count.
            drop(permit);
            (seq, outcome)
        });
    }
}

/// Books a finished attempt. Returns whether it freed a slot (a delivered
/// row keeps its slot until its deletion is committed, an unrecorded one
/// until its hold runs out).
fn finished(
    inflight: &mut HashSet<i64>,
    done: &mut Completions,
    held: &mut Held,
    joined: Result<AttemptDone, tokio::task::JoinError>,
) -> bool {
    match joined {
        Ok((seq, Attempted::Delivered)) => {
            done.seqs.push(seq);
            done.flush_at.get_or_insert_with(|| Instant::now() + COMPLETE_BATCH_WINDOW);
            false
        }
        Ok((seq, Attempted::Recorded)) => {
            held.failures = 0;
            inflight.remove(&seq);
            true
        }
        Ok((seq, Attempted::Unrecorded)) => {
            held.hold(seq);
            false
        }
        // Aborted tasks only happen at stop; a panic already ended the
        // process through the panic hook.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => false,
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ingest::{commit_batch, FileProgress, NewEvent};
    use crate::queue::schema::testing::temp_db;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sink whose attempts all fail and can never be recorded (the queue
    /// disk is full): it only counts them.
    struct Unrecordable {
        attempts: AtomicUsize,
    }

    impl Sink for Unrecordable {
        fn name(&self) -> &str {
            "hook"
        }
        fn concurrency(&self) -> usize {
            4
        }
        async fn attempt(self: Arc<Self>, _d: DueDelivery) -> Attempted {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            Attempted::Unrecorded
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unrecorded_failures_are_held_back_not_retried_in_a_loop() {
        let (dir, mut conn) = temp_db();
        let event = NewEvent {
            event_id: "e1".into(),
            ts_ms: 1,
            payload: "{}".into(),
            endpoints: vec!["hook".into()],
            skip_if_dead: None,
        };
        commit_batch(&mut conn, &[event], &FileProgress { dev: 1, ino: 1, offset: 1, fingerprint: vec![] }, 1).unwrap();
        let store = DeliveryStore::open(&dir.path().join("q.sqlite3")).unwrap();
        let sink = Arc::new(Unrecordable { attempts: AtomicUsize::new(0) });
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = Driver::new(
            sink.clone(),
            store,
            Metrics::new().unwrap(),
            Arc::new(Notify::new()),
            stop_rx,
            Duration::from_secs(1),
        );
        let run = tokio::spawn(driver.run());
        // Holds of 1 s, then 2 s: attempts at about 0 s and 1 s.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop_tx.send(true).unwrap();
        run.await.unwrap();
        let n = sink.attempts.load(Ordering::SeqCst);
        assert!((1..=3).contains(&n), "{n} attempts of one row in 2.5 s");
    }
}

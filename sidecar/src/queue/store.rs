//! [`DeliveryStore`]: the delivery side's handle on the queue database, for
//! async callers.
//!
//! What it owns: one SQLite connection (`synchronous=NORMAL`, see
//! `schema::Durability`) behind a mutex, used from tokio through
//! `spawn_blocking` so a slow fsync never stalls the runtime's workers.
//!
//! Invariants: every method is one short read or one transaction; the mutex
//! is never held across an await. SQLite serialises this connection's
//! writes with the intake connection's (busy handler retrying every 1 ms, ~30 s; see `schema::busy_wait`).
//!
//! Callers: `delivery::driver` and the push sinks (due work and results),
//! the metrics server
//! (stats, health).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::deliveries::{self, DueDelivery};
use super::schema::{self, Durability};
use super::ingest::{DeadTargetKey, NewEvent};
use super::stats::{self, QueueStats};
use super::targets::{self, Retired};
use super::QueueError;

/// Shared, cloneable handle.
#[derive(Clone)]
pub struct DeliveryStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for DeliveryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryStore")
    }
}

impl DeliveryStore {
    /// Opens the database for delivery bookkeeping.
    pub fn open(path: &Path) -> Result<DeliveryStore, QueueError> {
        Ok(DeliveryStore {
            conn: Arc::new(Mutex::new(schema::open(path, Durability::Normal)?)),
        })
    }

    /// Counts this connection's commits in `counter` (see
    /// [`schema::count_commits`]).
    pub fn count_commits(&self, counter: prometheus::IntCounter) {
        if let Ok(conn) = self.conn.lock() {
            schema::count_commits(&conn, counter);
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a panic, which is fatal for the process
            // anyway (panic hook); report rather than unwrap.
            let mut guard = conn
                .lock()
                .map_err(|_| QueueError::Task("queue mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
    }

    /// Up to `limit` due deliveries of `endpoint`, skipping those in `skip`
    /// (in flight), and, when fewer than `limit` were due, the earliest due
    /// time of the rest (outside `skip` and the rows returned): one trip to
    /// the blocking pool for both.
    pub async fn due(
        &self,
        endpoint: &str,
        now_ms: u64,
        limit: usize,
        skip: HashSet<i64>,
    ) -> Result<(Vec<DueDelivery>, Option<u64>), QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| {
            let rows = deliveries::due(c, &endpoint, now_ms, limit, &skip)?;
            if rows.len() == limit {
                return Ok((rows, None));
            }
            let mut skip = skip;
            skip.extend(rows.iter().map(|d| d.event_seq));
            let next = deliveries::next_due_ms(c, &endpoint, &skip)?;
            Ok((rows, next))
        })
        .await
    }

    /// See [`deliveries::complete`].
    pub async fn complete(&self, endpoint: &str, seq: i64) -> Result<(), QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| deliveries::complete(c, &endpoint, seq)).await
    }

    /// See [`deliveries::complete_many`]: one transaction for all of `seqs`.
    pub async fn complete_many(&self, endpoint: &str, seqs: Vec<i64>) -> Result<(), QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| deliveries::complete_many(c, &endpoint, &seqs)).await
    }

    /// See [`deliveries::reschedule`].
    pub async fn reschedule(
        &self,
        endpoint: &str,
        seq: i64,
        attempts: u32,
        next_ms: u64,
        error: String,
    ) -> Result<(), QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| deliveries::reschedule(c, &endpoint, seq, attempts, next_ms, &error))
            .await
    }

    /// See [`deliveries::defer`].
    pub async fn defer(&self, endpoint: &str, seqs: Vec<i64>, until_ms: u64) -> Result<(), QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| deliveries::defer(c, &endpoint, &seqs, until_ms)).await
    }

    /// See [`deliveries::bury`].
    pub async fn bury(
        &self,
        endpoint: &str,
        seq: i64,
        attempts: u32,
        error: String,
        now_ms: u64,
    ) -> Result<Option<i64>, QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| deliveries::bury(c, &endpoint, seq, attempts, &error, now_ms))
            .await
    }

    /// See [`targets::retire`].
    pub async fn retire(
        &self,
        endpoint: &str,
        seq: i64,
        key: DeadTargetKey,
        unset: Vec<NewEvent>,
        now_ms: u64,
    ) -> Result<Retired, QueueError> {
        let endpoint = endpoint.to_string();
        self.run(move |c| targets::retire(c, &endpoint, seq, &key, &unset, now_ms)).await
    }

    /// Current queue figures.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.run(|c| stats::read(c)).await
    }

    /// A trivial query: the database answers.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.run(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

//! Queue gauges, computed from the database at scrape time.
//!
//! Invariant: read-only; cost is one pass over the pending deliveries (fine
//! for a queue that is meant to stay short; a long queue is exactly when an
//! operator wants the numbers).
//!
//! Callers: the `/metrics` handler via `queue::store`.

use rusqlite::Connection;

use super::QueueError;

/// Queue size figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events (message events and push jobs) with at least one pending
    /// delivery.
    pub depth_events: u64,
    /// Commit time (unix ms) of the oldest event with a pending delivery.
    pub oldest_ts_ms: Option<u64>,
    /// Dead letters waiting for an operator.
    pub dead_letters: u64,
    /// Pending deliveries by endpoint name (webhook names, `push:<channel>`,
    /// the recall clean-up endpoint): what they are is the caller's
    /// business, the queue only stores the names.
    pub deliveries_by_endpoint: Vec<(String, u64)>,
}

/// Reads the current figures.
pub fn read(conn: &Connection) -> Result<QueueStats, QueueError> {
    let (depth, oldest): (i64, Option<i64>) = conn.query_row(
        "SELECT COUNT(DISTINCT d.event_seq), MIN(e.ts_ms)
           FROM deliveries d JOIN events e ON e.seq = d.event_seq",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let dead: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
    let mut by_endpoint: Vec<(String, u64)> = Vec::new();
    // Walks the (endpoint, next_attempt_ms) index; one row per endpoint.
    let mut stmt = conn.prepare_cached("SELECT endpoint, COUNT(*) FROM deliveries GROUP BY endpoint")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        by_endpoint.push((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64));
    }
    Ok(QueueStats {
        depth_events: depth.max(0) as u64,
        oldest_ts_ms: oldest.map(|v| v.max(0) as u64),
        dead_letters: dead.max(0) as u64,
        deliveries_by_endpoint: by_endpoint,
    })
}

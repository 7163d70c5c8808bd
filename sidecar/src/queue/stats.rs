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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events with at least one pending delivery.
    pub depth_events: u64,
    /// Commit time (unix ms) of the oldest event with a pending delivery.
    pub oldest_ts_ms: Option<u64>,
    /// Dead letters waiting for an operator.
    pub dead_letters: u64,
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
    Ok(QueueStats {
        depth_events: depth.max(0) as u64,
        oldest_ts_ms: oldest.map(|v| v.max(0) as u64),
        dead_letters: dead.max(0) as u64,
    })
}

//! Delivery rows: finding due work and recording each attempt's result.
//!
//! Invariants: a delivery row leaves the table only in [`complete`] (after a
//! 2xx) or [`bury`] (into `dead_letters`, same transaction); the event row
//! goes in the same transaction as its last reference. [`due`] is a read: it
//! claims nothing on disk, so a crash never strands a row "in flight".
//!
//! Callers: `queue::store` (from the delivery drivers).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::QueueError;

/// A delivery that is due, with its event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// `events.seq`.
    pub event_seq: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the sidecar accepted the event (deadline reference), unix ms.
    pub enqueued_ms: u64,
    /// The `MessageEventV1` JSON.
    pub payload: String,
}

/// Up to `limit` deliveries of `endpoint` due at `now_ms`, earliest first.
pub fn due(
    conn: &Connection,
    endpoint: &str,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<DueDelivery>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.event_seq, d.attempts, d.enqueued_ms, e.payload
           FROM deliveries d JOIN events e ON e.seq = d.event_seq
          WHERE d.endpoint = ?1 AND d.next_attempt_ms <= ?2
          ORDER BY d.next_attempt_ms, d.event_seq
          LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![endpoint, now_ms as i64, limit as i64], |r| {
        Ok(DueDelivery {
            event_seq: r.get(0)?,
            attempts: r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
            enqueued_ms: r.get::<_, i64>(2)?.max(0) as u64,
            payload: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The earliest `next_attempt_ms` of `endpoint` among rows not in `skip`
/// (the ones in flight), looking at most `skip.len() + 1` rows.
pub fn next_due_ms(
    conn: &Connection,
    endpoint: &str,
    skip: &std::collections::HashSet<i64>,
) -> Result<Option<u64>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_seq, next_attempt_ms FROM deliveries
          WHERE endpoint = ?1 ORDER BY next_attempt_ms, event_seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![endpoint, (skip.len() + 1) as i64])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if !skip.contains(&seq) {
            return Ok(Some(row.get::<_, i64>(1)?.max(0) as u64));
        }
    }
    Ok(None)
}

fn drop_event_if_unreferenced(tx: &rusqlite::Transaction<'_>, seq: i64) -> Result<(), QueueError> {
    tx.prepare_cached(
        "DELETE FROM events WHERE seq = ?1
            AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)
            AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_seq = ?1)",
    )?
    .execute(params![seq])?;
    Ok(())
}

/// The endpoint answered 2xx: the delivery is done.
pub fn complete(conn: &mut Connection, endpoint: &str, seq: i64) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("DELETE FROM deliveries WHERE endpoint = ?1 AND event_seq = ?2")?
        .execute(params![endpoint, seq])?;
    drop_event_if_unreferenced(&tx, seq)?;
    tx.commit()?;
    Ok(())
}

/// A retriable failure: try again at `next_ms`.
pub fn reschedule(
    conn: &mut Connection,
    endpoint: &str,
    seq: i64,
    attempts: u32,
    next_ms: u64,
    error: &str,
) -> Result<(), QueueError> {
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = ?3, next_attempt_ms = ?4, last_error = ?5
          WHERE endpoint = ?1 AND event_seq = ?2",
    )?
    .execute(params![endpoint, seq, attempts, next_ms as i64, error])?;
    Ok(())
}

/// Gives up: moves the delivery to `dead_letters`. Returns the dead letter's
/// id, or `None` if the delivery was already gone.
pub fn bury(
    conn: &mut Connection,
    endpoint: &str,
    seq: i64,
    attempts: u32,
    error: &str,
    now_ms: u64,
) -> Result<Option<i64>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let enqueued: Option<i64> = tx
        .prepare_cached("SELECT enqueued_ms FROM deliveries WHERE endpoint = ?1 AND event_seq = ?2")?
        .query_row(params![endpoint, seq], |r| r.get(0))
        .optional()?;
    let Some(enqueued) = enqueued else {
        return Ok(None);
    };
    tx.prepare_cached(
        "INSERT INTO dead_letters (endpoint, event_seq, attempts, last_error, enqueued_ms, died_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![endpoint, seq, attempts, error, enqueued, now_ms as i64])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("DELETE FROM deliveries WHERE endpoint = ?1 AND event_seq = ?2")?
        .execute(params![endpoint, seq])?;
    tx.commit()?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ingest::{commit_batch, FileProgress, NewEvent};
    use crate::queue::schema::testing::temp_db;
    use std::collections::HashSet;

    fn seed(c: &mut Connection, ids: &[&str]) {
        let evs: Vec<NewEvent> = ids
            .iter()
            .map(|id| NewEvent {
                event_id: id.to_string(),
                ts_ms: 1,
                payload: format!("{{\"id\":\"{id}\"}}"),
                endpoints: vec!["hook".into()],
            })
            .collect();
        let p = FileProgress { dev: 1, ino: 1, offset: 1, fingerprint: vec![] };
        commit_batch(c, &evs, &p, 1000).unwrap();
    }

    fn count(c: &Connection, table: &str) -> i64 {
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn due_complete_reschedule_bury() {
        let (_d, mut c) = temp_db();
        seed(&mut c, &["a", "b", "c"]);
        assert!(due(&c, "hook", 999, 10).unwrap().is_empty());
        let d = due(&c, "hook", 1000, 10).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].payload, "{\"id\":\"a\"}");
        complete(&mut c, "hook", d[0].event_seq).unwrap();
        assert_eq!(count(&c, "events"), 2, "event row goes with its last delivery");
        reschedule(&mut c, "hook", d[1].event_seq, 1, 5000, "503").unwrap();
        let skip: HashSet<i64> = [d[2].event_seq].into_iter().collect();
        assert_eq!(next_due_ms(&c, "hook", &skip).unwrap(), Some(5000));
        assert_eq!(next_due_ms(&c, "hook", &HashSet::new()).unwrap(), Some(1000));
        let id = bury(&mut c, "hook", d[2].event_seq, 1, "404", 2000).unwrap();
        assert!(id.is_some());
        assert_eq!(count(&c, "dead_letters"), 1);
        assert_eq!(count(&c, "events"), 2, "a dead letter keeps its event");
        assert_eq!(bury(&mut c, "hook", d[2].event_seq, 1, "404", 2000).unwrap(), None);
        assert_eq!(due(&c, "hook", 10_000, 10).unwrap().len(), 1);
    }
}

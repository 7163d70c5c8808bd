//! Delivery rows: finding due work and recording each attempt's result.
//!
//! Invariants: a delivery row leaves the table only in [`complete`] /
//! [`complete_many`] (after a 2xx) or [`bury`] (into `dead_letters`, same transaction); the event row
//! goes in the same transaction as its last reference. Each outcome also
//! updates the endpoint's `endpoint_health` row in its transaction
//! ([`health`]). [`due`] is a read: it
//! claims nothing on disk, so a crash never strands a row "in flight".
//!
//! Callers: `queue::store` (from the delivery drivers).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{health, QueueError};
use crate::time::now_ms;

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

/// Up to `limit` deliveries of `endpoint` due at `now_ms` and not in `skip`
/// (the ones in flight), earliest first.
///
/// The statements here have no `LIMIT ?`: SQLite (3.50) lets a bound LIMIT
/// steer the plan, so such a statement is re-prepared (parsed and planned
/// again) on every execution despite `prepare_cached`. Both walk the
/// `deliveries_due` index in order (no sort), so reading rows one at a time
/// and stopping early costs the same as a LIMIT.
pub fn due(
    conn: &Connection,
    endpoint: &str,
    now_ms: u64,
    limit: usize,
    skip: &HashSet<i64>,
) -> Result<Vec<DueDelivery>, QueueError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT d.event_seq, d.attempts, d.enqueued_ms, e.payload
           FROM deliveries d JOIN events e ON e.seq = d.event_seq
          WHERE d.endpoint = ?1 AND d.next_attempt_ms <= ?2
          ORDER BY d.next_attempt_ms, d.event_seq",
    )?;
    let mut rows = stmt.query(params![endpoint, now_ms as i64])?;
    while let Some(r) = rows.next()? {
        let event_seq: i64 = r.get(0)?;
        if skip.contains(&event_seq) {
            continue;
        }
        out.push(DueDelivery {
            event_seq,
            attempts: r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
            enqueued_ms: r.get::<_, i64>(2)?.max(0) as u64,
            payload: r.get(3)?,
        });
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

/// The earliest `next_attempt_ms` of `endpoint` among rows not in `skip`
/// (the ones in flight), looking at most `skip.len() + 1` rows.
pub fn next_due_ms(
    conn: &Connection,
    endpoint: &str,
    skip: &HashSet<i64>,
) -> Result<Option<u64>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_seq, next_attempt_ms FROM deliveries
          WHERE endpoint = ?1 ORDER BY next_attempt_ms, event_seq",
    )?;
    let mut rows = stmt.query(params![endpoint])?;
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
    complete_many(conn, endpoint, &[seq])
}

/// Several deliveries of `endpoint` answered 2xx: all their rows go in one
/// transaction (the driver batches completions, see `delivery::driver`).
pub fn complete_many(conn: &mut Connection, endpoint: &str, seqs: &[i64]) -> Result<(), QueueError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut delete = tx.prepare_cached("DELETE FROM deliveries WHERE endpoint = ?1 AND event_seq = ?2")?;
        for &seq in seqs {
            delete.execute(params![endpoint, seq])?;
        }
    }
    for &seq in seqs {
        drop_event_if_unreferenced(&tx, seq)?;
    }
    health::record_success(&tx, endpoint, now_ms())?;
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
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx
        .prepare_cached(
            "UPDATE deliveries SET attempts = ?3, next_attempt_ms = ?4, last_error = ?5
              WHERE endpoint = ?1 AND event_seq = ?2",
        )?
        .execute(params![endpoint, seq, attempts, next_ms as i64, error])?;
    if n > 0 {
        health::record_failure(&tx, endpoint, error, now_ms())?;
    }
    tx.commit()?;
    Ok(())
}

/// Not now, and not a failure: rows `seqs` of `endpoint` are due again at
/// `until_ms` at the earliest; their attempt count and error stay (the
/// driver holds back rows a per-user or per-host limit refuses, when it
/// cannot keep more of them in memory). One transaction.
pub fn defer(conn: &mut Connection, endpoint: &str, seqs: &[i64], until_ms: u64) -> Result<(), QueueError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE deliveries SET next_attempt_ms = MAX(next_attempt_ms, ?3)
              WHERE endpoint = ?1 AND event_seq = ?2",
        )?;
        for &seq in seqs {
            update.execute(params![endpoint, seq, until_ms as i64])?;
        }
    }
    tx.commit()?;
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
    health::record_failure(&tx, endpoint, error, now_ms)?;
    tx.commit()?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ingest::{commit_batch, FileProgress, NewEvent};
    use crate::queue::schema::testing::temp_db;

    fn seed(c: &mut Connection, ids: &[&str]) {
        let evs: Vec<NewEvent> = ids
            .iter()
            .map(|id| NewEvent {
                event_id: id.to_string(),
                ts_ms: 1,
                payload: format!("{{\"id\":\"{id}\"}}"),
                endpoints: vec!["hook".into()],
                skip_if_dead: None,
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
        let none = HashSet::new();
        assert!(due(&c, "hook", 999, 10, &none).unwrap().is_empty());
        let d = due(&c, "hook", 1000, 10, &none).unwrap();
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
        assert_eq!(due(&c, "hook", 10_000, 10, &none).unwrap().len(), 1);
    }

    #[test]
    fn defer_moves_rows_later_without_counting_an_attempt() {
        let (_d, mut c) = temp_db();
        seed(&mut c, &["a", "b"]);
        let none = HashSet::new();
        let d = due(&c, "hook", 1000, 10, &none).unwrap();
        defer(&mut c, "hook", &[d[0].event_seq], 9000).unwrap();
        let left = due(&c, "hook", 8999, 10, &none).unwrap();
        assert_eq!(left.iter().map(|r| r.event_seq).collect::<Vec<_>>(), vec![d[1].event_seq]);
        let later = due(&c, "hook", 9000, 10, &none).unwrap();
        assert_eq!(later.len(), 2);
        assert!(later.iter().all(|r| r.attempts == 0));
        // Never earlier than a retry already scheduled.
        reschedule(&mut c, "hook", d[1].event_seq, 1, 20_000, "503").unwrap();
        defer(&mut c, "hook", &[d[1].event_seq], 9000).unwrap();
        assert_eq!(next_due_ms(&c, "hook", &[d[0].event_seq].into_iter().collect()).unwrap(), Some(20_000));
    }

    #[test]
    fn due_skips_in_flight_and_honours_limit() {
        let (_d, mut c) = temp_db();
        seed(&mut c, &["a", "b", "c", "d"]);
        let all = due(&c, "hook", 1000, 10, &HashSet::new()).unwrap();
        let seqs: Vec<i64> = all.iter().map(|d| d.event_seq).collect();
        let skip: HashSet<i64> = [seqs[0], seqs[2]].into_iter().collect();
        let got: Vec<i64> = due(&c, "hook", 1000, 10, &skip).unwrap().iter().map(|d| d.event_seq).collect();
        assert_eq!(got, vec![seqs[1], seqs[3]]);
        let got: Vec<i64> = due(&c, "hook", 1000, 1, &skip).unwrap().iter().map(|d| d.event_seq).collect();
        assert_eq!(got, vec![seqs[1]]);
        assert!(due(&c, "hook", 1000, 0, &skip).unwrap().is_empty());
    }

    #[test]
    fn complete_many_removes_rows_and_unreferenced_events() {
        let (_d, mut c) = temp_db();
        seed(&mut c, &["a", "b", "c"]);
        let seqs: Vec<i64> = due(&c, "hook", 1000, 10, &HashSet::new()).unwrap().iter().map(|d| d.event_seq).collect();
        complete_many(&mut c, "hook", &seqs[..2]).unwrap();
        assert_eq!(count(&c, "deliveries"), 1);
        assert_eq!(count(&c, "events"), 1);
        complete_many(&mut c, "hook", &seqs).unwrap();
        assert_eq!(count(&c, "deliveries"), 0);
        assert_eq!(count(&c, "events"), 0);
    }

    #[test]
    fn cached_statements_are_not_reprepared() {
        let (_d, mut c) = temp_db();
        seed(&mut c, &["a", "b"]);
        let skip = HashSet::new();
        for limit in 1..5 {
            due(&c, "hook", 1000 + limit as u64, limit, &skip).unwrap();
            next_due_ms(&c, "hook", &skip).unwrap();
        }
        for sql in [
            "SELECT d.event_seq, d.attempts, d.enqueued_ms, e.payload
           FROM deliveries d JOIN events e ON e.seq = d.event_seq
          WHERE d.endpoint = ?1 AND d.next_attempt_ms <= ?2
          ORDER BY d.next_attempt_ms, d.event_seq",
            "SELECT event_seq, next_attempt_ms FROM deliveries
          WHERE endpoint = ?1 ORDER BY next_attempt_ms, event_seq",
        ] {
            let stmt = c.prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
            assert!(stmt.get_status(rusqlite::StatementStatus::Run) >= 4, "the cached statement was the one used");
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::Sort), 0, "walks the index, no sort: {sql}");
        }
    }
}

//! Applying the recall and read records of one spool chunk (see the
//! module docs of `recall`).
//!
//! What happens per record, all in one IMMEDIATE transaction that commits
//! before the chunk's offset does (a crash re-applies the chunk; every
//! step below is idempotent: rows have natural keys, jobs have ids derived
//! from the record):
//! - `local_copy`: the copy joins the index.
//! - `recall_request`: the index gives the copies of that Message-ID sent
//!   by the requester (the requester's own copies left out); each
//!   recipient gets one `execute` doveadm call listing its copies, and a
//!   pending result row. No copy: the request is done at once. doveadm
//!   not configured: nothing can be carried out (counted `unavailable`,
//!   logged; the sender's entry stays `pending`).
//! - `recall_outcome`: the recipient's result row is filled (aggregated
//!   over its copies, `coi_core::recall::exec::aggregate`); removed and
//!   missing copies leave the index. When the last recipient answered, the
//!   `state` call stores the outcome in the sender's entry and a
//!   `message.recalled` notice goes to the webhooks.
//! - `read`: if the reader's copy is in the index and not reported yet, a
//!   `mark` call puts `$CoiRead` on the sender's copies and a
//!   `message.read` notice goes out; otherwise nothing (mail from outside,
//!   or already reported).
//! - `mdn`: a `mark` call for the MDN's recipient (the original sender)
//!   and a `message.read` notice with `via: mdn`.
//!
//! The index is pruned here too, at most once an hour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::json;

use coi_core::recall::exec::{aggregate, CopyOutcome, CopyRef, ExecRequest, EXECUTE_KEY, MAX_COPIES};
use coi_core::recall::read::{ReadMark, ReadVia, READ_MARK_KEY};
use coi_core::recall::request::{Progress, RecallState, RecipientOutcome, RECALL_KEY_PREFIX, REMOTE_NOTE};
use coi_core::wire::{MdnV1, MessageReadV1, Record, RecallOutcomeV1, RecallRequestV1};

use super::index;
use super::jobs::{DoveadmSet, DOVEADM_ENDPOINT};
use super::notice::{self, Notice};
use super::settings::RecallSettings;
use crate::config::Endpoint;
use crate::queue::QueueError;

/// What `apply` needs besides the records.
pub struct Context<'a> {
    /// `[dovecot] doveadm_url` is set: doveadm calls can be made.
    pub doveadm: bool,
    /// The webhook endpoints now.
    pub endpoints: &'a [Arc<Endpoint>],
    /// `[recall]`.
    pub settings: RecallSettings,
}

/// What one `apply` did, for the counters (applied by the caller after
/// the commit).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Queue rows added (doveadm calls and notice deliveries).
    pub deliveries: usize,
    /// Copies newly indexed.
    pub indexed: u64,
    /// Requests by result (`queued`, `no_copies`, `unavailable`).
    pub requests: Vec<&'static str>,
    /// Copy outcomes reported by recipients' accounts.
    pub copies: Vec<CopyOutcome>,
    /// Reads by (via, result): `reported`, `not_indexed`, `unavailable`.
    pub reads: Vec<(&'static str, &'static str)>,
}

/// Whether `record` is one of those `apply` takes.
pub fn is_recall_record(record: &Record) -> bool {
    matches!(
        record,
        Record::LocalCopy(_) | Record::RecallRequest(_) | Record::RecallOutcome(_) | Record::MessageRead(_) | Record::Mdn(_)
    )
}

static LAST_PRUNE_MS: AtomicU64 = AtomicU64::new(0);
const PRUNE_EVERY_MS: u64 = 3_600_000;

/// Applies `records` (those for which [`is_recall_record`] holds) in one
/// transaction.
pub fn apply(conn: &mut Connection, records: &[Record], ctx: &Context<'_>, now_ms: u64) -> Result<Applied, QueueError> {
    let mut done = Applied::default();
    let last = LAST_PRUNE_MS.load(Ordering::Relaxed);
    let prune = now_ms.saturating_sub(last) >= PRUNE_EVERY_MS;
    if records.is_empty() && !prune {
        return Ok(done);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // app.rs creates the tables at start; this keeps a database opened
    // some other way (tests, tools) working. A no-op when they exist.
    super::schema::ensure(&tx)?;
    if prune {
        let n = index::prune(&tx, now_ms, ctx.settings.retention_ms)?;
        if n > 0 {
            tracing::info!(copies = n, "recall index: forgot copies older than the retention");
        }
    }
    for record in records {
        match record {
            Record::LocalCopy(c) => done.indexed += u64::from(index::insert_copy(&tx, c)?),
            Record::RecallRequest(r) => request(&tx, r, ctx, now_ms, &mut done)?,
            Record::RecallOutcome(o) => outcome(&tx, o, ctx, now_ms, &mut done)?,
            Record::MessageRead(m) => read(&tx, m, ctx, now_ms, &mut done)?,
            Record::Mdn(m) => mdn(&tx, m, ctx, now_ms, &mut done)?,
            _ => {}
        }
    }
    tx.commit()?;
    if prune {
        LAST_PRUNE_MS.store(now_ms, Ordering::Relaxed);
    }
    Ok(done)
}

/// Inserts one queue event with a delivery per endpoint (nothing when the
/// id is already queued). Returns the deliveries added.
fn queue(tx: &Transaction<'_>, event_id: &str, payload: &str, endpoints: &[String], now_ms: u64) -> rusqlite::Result<usize> {
    if endpoints.is_empty() {
        return Ok(0);
    }
    let added = tx
        .prepare_cached("INSERT OR IGNORE INTO events (event_id, ts_ms, payload) VALUES (?1, ?2, ?3)")?
        .execute(params![event_id, now_ms as i64, payload])?;
    if added == 0 {
        return Ok(0);
    }
    let seq = tx.last_insert_rowid();
    let mut n = 0;
    for endpoint in endpoints {
        n += tx
            .prepare_cached(
                "INSERT OR IGNORE INTO deliveries (endpoint, event_seq, attempts, next_attempt_ms, enqueued_ms)
                 VALUES (?1, ?2, 0, ?3, ?3)",
            )?
            .execute(params![endpoint, seq, now_ms as i64])?;
    }
    Ok(n)
}

fn doveadm_call(tx: &Transaction<'_>, event_id: &str, job: &DoveadmSet, now_ms: u64) -> rusqlite::Result<usize> {
    queue(tx, event_id, &job.to_json(), &[DOVEADM_ENDPOINT.to_string()], now_ms)
}

fn notify(tx: &Transaction<'_>, ctx: &Context<'_>, kind: &str, n: &Notice, now_ms: u64) -> rusqlite::Result<usize> {
    let wanted: Vec<String> =
        ctx.endpoints.iter().filter(|e| notice::wanted_by(e, kind)).map(|e| e.name.clone()).collect();
    let payload = serde_json::to_string(n).unwrap_or_default();
    queue(tx, &n.id, &payload, &wanted, now_ms)
}

fn request(tx: &Transaction<'_>, r: &RecallRequestV1, ctx: &Context<'_>, now_ms: u64, done: &mut Applied) -> rusqlite::Result<()> {
    let known: Option<i64> =
        tx.prepare_cached("SELECT 1 FROM coi_recalls WHERE request = ?1")?.query_row([&r.id], |row| row.get(0)).optional()?;
    if known.is_some() {
        return Ok(());
    }
    let insert = |state: &str| {
        tx.prepare_cached(
            "INSERT INTO coi_recalls (request, sender, request_id, message_id, requested_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![r.id, r.user, r.request_id, r.message_id, r.ts_ms as i64, state])
    };
    if !ctx.doveadm {
        insert("unavailable")?;
        tracing::warn!(request = %r.id, "a recall was requested but [dovecot] doveadm_url is not set: it cannot be carried out");
        done.requests.push("unavailable");
        return Ok(());
    }
    let recipients = index::copies_of(tx, &r.message_id, &r.user.to_ascii_lowercase())?;
    insert("pending")?;
    if recipients.is_empty() {
        done.requests.push("no_copies");
        return finish(tx, &r.id, ctx, now_ms, done);
    }
    for (user, mut copies) in recipients {
        copies.truncate(MAX_COPIES);
        tx.prepare_cached("INSERT OR IGNORE INTO coi_recall_results (request, user, copies) VALUES (?1, ?2, ?3)")?
            .execute(params![r.id, user, copies.len() as i64])?;
        let exec = ExecRequest {
            request: r.id.clone(),
            sender: r.user.to_ascii_lowercase(),
            message_id: r.message_id.clone(),
            copies,
        };
        let job = DoveadmSet {
            user: user.clone(),
            key: EXECUTE_KEY.to_string(),
            value: serde_json::to_string(&exec).unwrap_or_default(),
            purpose: "execute".into(),
        };
        done.deliveries += doveadm_call(tx, &format!("{}/exec/{user}", r.id), &job, now_ms)?;
    }
    done.requests.push("queued");
    Ok(())
}

fn outcome(tx: &Transaction<'_>, o: &RecallOutcomeV1, ctx: &Context<'_>, now_ms: u64, done: &mut Applied) -> rusqlite::Result<()> {
    let state: Option<String> = tx
        .prepare_cached("SELECT state FROM coi_recalls WHERE request = ?1")?
        .query_row([&o.request], |row| row.get(0))
        .optional()?;
    let Some(state) = state else {
        tracing::info!(request = %o.request, "recall outcome for an unknown (or pruned) request ignored");
        return Ok(());
    };
    let outcomes: Vec<CopyOutcome> = o.copies.iter().map(|c| c.outcome).collect();
    let filled = tx
        .prepare_cached(
            "UPDATE coi_recall_results SET outcome = ?3 WHERE request = ?1 AND user = ?2 AND outcome IS NULL",
        )?
        .execute(params![o.request, o.user, aggregate(&outcomes).name()])?;
    if filled == 0 {
        return Ok(());
    }
    for c in &o.copies {
        done.copies.push(c.outcome);
        if matches!(c.outcome, CopyOutcome::Recalled | CopyOutcome::NotFound) {
            index::forget(tx, &o.user, &CopyRef { folder: c.folder.clone(), uidvalidity: c.uidvalidity, uid: c.uid })?;
        }
    }
    let open: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM coi_recall_results WHERE request = ?1 AND outcome IS NULL")?
        .query_row([&o.request], |row| row.get(0))?;
    if open == 0 && state == "pending" {
        finish(tx, &o.request, ctx, now_ms, done)?;
    }
    Ok(())
}

/// Every recipient answered: the sender's entry and the notice.
fn finish(tx: &Transaction<'_>, request: &str, ctx: &Context<'_>, now_ms: u64, done: &mut Applied) -> rusqlite::Result<()> {
    let (sender, request_id, message_id, requested_ms): (String, String, String, i64) = tx
        .prepare_cached("SELECT sender, request_id, message_id, requested_ms FROM coi_recalls WHERE request = ?1")?
        .query_row([request], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let recipients: Vec<RecipientOutcome> = {
        let mut stmt = tx.prepare_cached(
            "SELECT user, outcome, copies FROM coi_recall_results WHERE request = ?1 ORDER BY user",
        )?;
        let rows = stmt.query_map([request], |r| {
            let outcome: Option<String> = r.get(1)?;
            Ok(RecipientOutcome {
                user: r.get(0)?,
                outcome: outcome
                    .and_then(|o| serde_json::from_value(json!(o)).ok())
                    .unwrap_or(CopyOutcome::Failed),
                copies: r.get::<_, i64>(2)?.max(0) as u32,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.prepare_cached("UPDATE coi_recalls SET state = 'done' WHERE request = ?1")?.execute([request])?;
    let state = RecallState {
        message_id: message_id.clone(),
        state: Progress::Done,
        requested: requested_ms.max(0) as u64,
        recipients: recipients.clone(),
        remote: REMOTE_NOTE.to_string(),
    };
    let job = DoveadmSet {
        user: sender.clone(),
        key: format!("{RECALL_KEY_PREFIX}{request_id}"),
        value: state.to_json(),
        purpose: "state".into(),
    };
    done.deliveries += doveadm_call(tx, &format!("{request}/state"), &job, now_ms)?;
    let n = Notice {
        notice: notice::RECALLED.into(),
        id: format!("{request}/recalled"),
        ts_ms: now_ms,
        data: json!({
            "sender": sender,
            "request_id": request_id,
            "message_id": message_id,
            "state": "done",
            "recipients": recipients,
            "remote": REMOTE_NOTE,
        }),
    };
    done.deliveries += notify(tx, ctx, notice::KIND_RECALL, &n, now_ms)?;
    Ok(())
}

fn read_mark(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    id: &str,
    owner: &str,
    mark: &ReadMark,
    now_ms: u64,
    done: &mut Applied,
) -> rusqlite::Result<()> {
    let job = DoveadmSet {
        user: owner.to_string(),
        key: READ_MARK_KEY.to_string(),
        value: serde_json::to_string(mark).unwrap_or_default(),
        purpose: "mark".into(),
    };
    done.deliveries += doveadm_call(tx, &format!("{id}/mark"), &job, now_ms)?;
    let n = Notice {
        notice: notice::READ.into(),
        id: format!("{id}/read"),
        ts_ms: now_ms,
        data: json!({
            "sender": owner,
            "reader": mark.reader,
            "message_id": mark.message_id,
            "via": mark.via.name(),
        }),
    };
    done.deliveries += notify(tx, ctx, notice::KIND_READ, &n, now_ms)?;
    Ok(())
}

fn read(tx: &Transaction<'_>, m: &MessageReadV1, ctx: &Context<'_>, now_ms: u64, done: &mut Applied) -> rusqlite::Result<()> {
    let Some(sender) = index::mark_read(tx, &m.user, &m.message_id, now_ms)? else {
        done.reads.push(("seen", "not_indexed"));
        return Ok(());
    };
    if sender.eq_ignore_ascii_case(&m.user) {
        return Ok(());
    }
    if !ctx.doveadm {
        done.reads.push(("seen", "unavailable"));
        return Ok(());
    }
    let mark = ReadMark { message_id: m.message_id.clone(), reader: m.user.clone(), via: ReadVia::Seen };
    read_mark(tx, ctx, &m.id, &sender, &mark, now_ms, done)?;
    done.reads.push(("seen", "reported"));
    Ok(())
}

fn mdn(tx: &Transaction<'_>, m: &MdnV1, ctx: &Context<'_>, now_ms: u64, done: &mut Applied) -> rusqlite::Result<()> {
    if !ctx.doveadm {
        done.reads.push(("mdn", "unavailable"));
        return Ok(());
    }
    let mark = ReadMark {
        message_id: m.original_message_id.clone(),
        reader: m.reporter.clone().unwrap_or_default(),
        via: ReadVia::Mdn,
    };
    read_mark(tx, ctx, &m.id, &m.user, &mark, now_ms, done)?;
    done.reads.push(("mdn", "reported"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coi_core::wire::{CopyResultV1, LocalCopyV1};

    fn copy(user: &str, folder: &str, uid: u32, sender: &str) -> Record {
        Record::LocalCopy(LocalCopyV1 {
            id: format!("c-{user}-{folder}-{uid}"),
            ts_ms: 1_000,
            user: user.into(),
            folder: folder.into(),
            uid,
            uidvalidity: 7,
            message_id: "<m@x>".into(),
            sender: sender.into(),
            pid: 1,
            dropped_before: 0,
        })
    }

    fn request(id: &str, user: &str) -> Record {
        Record::RecallRequest(RecallRequestV1 {
            id: id.into(),
            ts_ms: 2_000,
            user: user.into(),
            request_id: "r1".into(),
            message_id: "<m@x>".into(),
            pid: 1,
            dropped_before: 0,
        })
    }

    fn jobs(c: &Connection) -> Vec<(String, String)> {
        let mut stmt = c
            .prepare("SELECT e.event_id, d.endpoint FROM events e JOIN deliveries d ON d.event_seq = e.seq ORDER BY e.event_id, d.endpoint")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    fn ctx(endpoints: &[Arc<Endpoint>]) -> Context<'_> {
        Context { doveadm: true, endpoints, settings: RecallSettings::default() }
    }

    #[test]
    fn a_request_reaches_only_copies_the_requester_sent_and_finishes_when_all_answered() {
        let (_d, mut c) = crate::queue::schema::testing::temp_db();
        let records = [
            copy("bob", "INBOX", 1, "alice@x"),
            copy("bob", "Work", 4, "alice@x"),
            copy("carol", "INBOX", 2, "alice@x"),
            copy("alice@x", "INBOX", 9, "alice@x"),   // her own copy: left alone
            copy("dave", "INBOX", 3, "mallory@x"),    // same Message-ID, other sender
        ];
        let done = apply(&mut c, &records, &ctx(&[]), 10).unwrap();
        assert_eq!(done.indexed, 5);
        // mallory asks: nothing of alice's is touched, done at once
        let done = apply(&mut c, &[request("m1", "mallory@x")], &ctx(&[]), 11).unwrap();
        assert_eq!(done.requests, vec!["queued"]);
        // alice asks (twice: a re-read of the spool)
        apply(&mut c, &[request("a1", "Alice@X")], &ctx(&[]), 12).unwrap();
        apply(&mut c, &[request("a1", "Alice@X")], &ctx(&[]), 13).unwrap();
        let ids: Vec<String> = jobs(&c).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec!["a1/exec/bob", "a1/exec/carol", "m1/exec/dave"], "{ids:?}");
        let outcome = |user: &str, copies: Vec<CopyResultV1>| {
            Record::RecallOutcome(RecallOutcomeV1 {
                id: format!("o-{user}"),
                ts_ms: 3_000,
                user: user.into(),
                request: "a1".into(),
                sender: "alice@x".into(),
                message_id: "<m@x>".into(),
                copies,
                pid: 1,
                dropped_before: 0,
            })
        };
        let r = |folder: &str, uid: u32, outcome: CopyOutcome| CopyResultV1 { folder: folder.into(), uidvalidity: 7, uid, outcome };
        apply(&mut c, &[outcome("bob", vec![r("INBOX", 1, CopyOutcome::Recalled), r("Work", 4, CopyOutcome::AlreadyRead)])], &ctx(&[]), 20).unwrap();
        assert!(!jobs(&c).iter().any(|(id, _)| id == "a1/state"), "carol has not answered");
        let done = apply(&mut c, &[outcome("carol", vec![r("INBOX", 2, CopyOutcome::Recalled)])], &ctx(&[]), 21).unwrap();
        assert_eq!(done.copies, vec![CopyOutcome::Recalled]);
        let payload: String =
            c.query_row("SELECT payload FROM events WHERE event_id = 'a1/state'", [], |row| row.get(0)).unwrap();
        let job: DoveadmSet = serde_json::from_str(&payload).unwrap();
        assert_eq!(job.user, "Alice@X");
        assert_eq!(job.key, "/private/vendor/vendor.dovecot/coi/recall/r1");
        let state = RecallState::parse(job.value.as_bytes()).unwrap();
        assert_eq!(state.state, Progress::Done);
        let got: Vec<(String, CopyOutcome)> = state.recipients.iter().map(|r| (r.user.clone(), r.outcome)).collect();
        assert_eq!(got, vec![("bob".into(), CopyOutcome::AlreadyRead), ("carol".into(), CopyOutcome::Recalled)]);
        // the same outcome again changes nothing
        let again = apply(&mut c, &[outcome("carol", vec![r("INBOX", 2, CopyOutcome::Recalled)])], &ctx(&[]), 22).unwrap();
        assert_eq!(again, Applied::default());
    }

    #[test]
    fn a_read_is_reported_once_and_only_for_indexed_copies() {
        let (_d, mut c) = crate::queue::schema::testing::temp_db();
        apply(&mut c, &[copy("bob", "INBOX", 1, "alice@x")], &ctx(&[]), 10).unwrap();
        let read = |id: &str, user: &str| {
            Record::MessageRead(MessageReadV1 {
                id: id.into(),
                ts_ms: 5,
                user: user.into(),
                folder: "INBOX".into(),
                uid: 1,
                uidvalidity: 7,
                message_id: "<m@x>".into(),
                pid: 1,
                dropped_before: 0,
            })
        };
        let done = apply(&mut c, &[read("r1", "bob"), read("r2", "bob"), read("r3", "carol")], &ctx(&[]), 11).unwrap();
        assert_eq!(done.reads, vec![("seen", "reported"), ("seen", "not_indexed"), ("seen", "not_indexed")]);
        let ids: Vec<String> = jobs(&c).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec!["r1/mark"]);
    }

    #[test]
    fn without_doveadm_nothing_is_carried_out() {
        let (_d, mut c) = crate::queue::schema::testing::temp_db();
        let no = Context { doveadm: false, endpoints: &[], settings: RecallSettings::default() };
        apply(&mut c, &[copy("bob", "INBOX", 1, "alice@x")], &no, 10).unwrap();
        let done = apply(&mut c, &[request("a1", "alice@x")], &no, 11).unwrap();
        assert_eq!(done.requests, vec!["unavailable"]);
        assert!(jobs(&c).is_empty());
    }
}

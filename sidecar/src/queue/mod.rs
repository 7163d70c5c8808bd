//! The durable queue: events accepted from the spool, their pending webhook
//! deliveries and push jobs, dead letters, and the spool read offsets, in one SQLite
//! database (`<state_dir>/queue.sqlite3`). docs/sidecar.md says why SQLite
//! and not redb or a segment log.
//!
//! # Schema (`PRAGMA user_version = 3`, migrations in [`schema`])
//! ```text
//! events        (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, ts_ms, payload TEXT)
//!               one row per accepted message event that some endpoint wants;
//!               payload = the MessageEventV1 JSON.
//! deliveries    (endpoint, event_seq, attempts, next_attempt_ms, enqueued_ms,
//!                last_error) PRIMARY KEY (endpoint, event_seq)
//!               one row per (event, endpoint) still to be delivered: its
//!               status is "pending" by being in this table.
//! dead_letters  (id INTEGER PRIMARY KEY, endpoint, event_seq, attempts,
//!                last_error, enqueued_ms, died_ms)
//!               deliveries that failed permanently, ran out of retries or
//!               passed their deadline; status "dead".
//! spool_offsets (dev, ino, offset, fingerprint) PRIMARY KEY (dev, ino)
//!               how far each spool file has been consumed.
//! dead_targets  (target, user, target_key, fingerprint, died_ms, last_seen_ms)
//!               push targets a push service declared gone (404/410);
//!               intake queues no job for them ([`targets`]).
//! endpoint_health (endpoint, last_success_ms, last_failure_ms,
//!                  consecutive_failures, last_error)
//!               each endpoint's last outcomes, for `coi-sidecar status`
//!               ([`health`]).
//! ```
//!
//! The queue stores opaque payloads under endpoint names and never looks
//! inside them. Its users give the names their meaning: webhook endpoints
//! by their configured name; push jobs (Web Push, validations, Delta Chat,
//! METADATA clean-ups: one `events` row per target, payload a
//! `push::jobs::Job`) under `push:<channel>` (never a valid webhook name);
//! recall work under `recall:doveadm`.
//!
//! # Acknowledge and delete rules
//! - **Ack of a spool record** = the transaction that inserts its event and
//!   deliveries also moves that file's offset past it ([`ingest`]). The
//!   intake connection runs `synchronous=FULL` in WAL mode, so after COMMIT
//!   both are on disk; there is no state in which the offset is ahead of
//!   the events.
//! - **A delivery row is deleted** only after a 2xx ([`deliveries::complete`],
//!   [`deliveries::complete_many`]), or moved to `dead_letters` in the same
//!   transaction that deletes it. The delivery driver batches deletions of
//!   delivered rows (a few ms, see `delivery::driver`); a crash before that
//!   commit (or the connection's `synchronous=NORMAL` losing it on power
//!   loss) only means the row is delivered again (at-least-once).
//! - **An event row is deleted** in the same transaction that removes its
//!   last delivery or dead letter.
//! - **A rotated spool file is deleted** only after it was drained to its end
//!   and that offset committed; its offset row goes afterwards (a crash in
//!   between leaves a stale row, which the fingerprint check below defuses).
//!
//! # Recovery
//! Nothing is "in flight" on disk: in-flight attempts live only in the
//! driver's memory, so after a crash every pending row is simply due again
//! (at-least-once; the webhook-id stays the event id). A crash between
//! reading the spool and committing re-reads the same bytes. Offsets carry
//! a fingerprint (the first bytes of the file, which start with a unique
//! event id): an offset whose file no longer matches (inode reused after a
//! deletion) is ignored and the file read from the start.
//!
//! The intake reaches the queue through [`engine::EventQueue`] (this
//! database, or a NATS JetStream stream in fleet mode: docs/fleet.md).
//!
//! Callers: `intake::pump` (ingest, offsets), `delivery::driver` (through
//! [`store::DeliveryStore`]), the metrics scrape (stats), and the
//! `dead-letters` CLI.

pub mod dead_letters;
pub mod deliveries;
pub mod engine;
pub mod error;
pub mod health;
pub mod ingest;
pub mod schema;
pub mod stats;
pub mod store;
pub mod targets;

pub use error::QueueError;

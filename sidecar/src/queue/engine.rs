//! The queue as the intake sees it: one storage interface, two engines.
//!
//! What this module owns: [`EventQueue`], the one operation the intake needs
//! ("make these events durable, then acknowledge these spool bytes"), and
//! the local engine [`SqliteQueue`]. The other engine, `fleet::publish`,
//! puts the events into a NATS JetStream stream instead.
//!
//! The pipeline reads intake -> queue -> senders: the intake (`intake::*`)
//! turns spool records into [`NewEvent`]s (events with the names of the
//! endpoints that want them) and hands them to an engine; the senders
//! (`delivery`, `push`, `recall`) take work from the local database (local
//! mode) or from the stream (`coi-sidecar dispatch`). The queue stores
//! endpoint names and payloads; it does not know what a webhook or a push
//! channel is.
//!
//! Invariant of every engine: `progress` (the spool offset that
//! acknowledges the records) becomes durable only after the events are. The
//! offsets always live in the local database, next to the spool files they
//! describe, so `offsets` is the intake's own connection in both engines.
//!
//! Callers: `intake::reader` (through `intake::pump`), `app.rs` (choosing
//! the engine from `[queue] engine`).

use rusqlite::Connection;

use super::ingest::{self, Committed, FileProgress, NewEvent};
use super::QueueError;

/// Where the intake puts accepted events.
pub trait EventQueue: Send {
    /// Makes `events` durable, then records `progress` in `offsets`;
    /// an error leaves the offset where it was (the records are read again).
    fn commit(
        &mut self,
        offsets: &mut Connection,
        events: &[NewEvent],
        progress: &FileProgress,
        now_ms: u64,
    ) -> Result<Committed, QueueError>;

    /// Whether committed events are delivered by this process's own drivers
    /// (so the intake wakes them).
    fn delivers_locally(&self) -> bool;
}

/// The local engine: events, deliveries and the offset in one SQLite
/// transaction (`queue::ingest::commit_batch`).
#[derive(Debug, Default)]
pub struct SqliteQueue;

impl EventQueue for SqliteQueue {
    fn commit(
        &mut self,
        offsets: &mut Connection,
        events: &[NewEvent],
        progress: &FileProgress,
        now_ms: u64,
    ) -> Result<Committed, QueueError> {
        ingest::commit_batch(offsets, events, progress, now_ms)
    }

    fn delivers_locally(&self) -> bool {
        true
    }
}

//! Errors of the queue database.
//!
//! Invariant: every SQLite failure surfaces as a [`QueueError`]; callers
//! decide whether to retry (busy/locked) or stop (corruption, full disk).

/// A failed queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite reported an error.
    #[error("queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Filesystem trouble around the database (creating the state dir).
    #[error("queue I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The database is not in the shape this version expects.
    #[error("queue schema: {0}")]
    Schema(String),
    /// The JetStream stream did not store the events (fleet mode): cluster
    /// unreachable, no quorum, timeout. The records stay in the spool.
    #[error("queue stream: {0}")]
    Stream(String),
    /// A blocking task running a queue operation died.
    #[error("queue task failed: {0}")]
    Task(String),
}

impl QueueError {
    /// Bounded metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueueError::Sqlite(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    "queue_busy"
                }
                Some(rusqlite::ErrorCode::DiskFull) => "queue_full",
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                    "queue_corrupt"
                }
                _ => "queue_sqlite",
            },
            QueueError::Io(_) => "queue_io",
            QueueError::Schema(_) => "queue_schema",
            QueueError::Task(_) => "queue_task",
            QueueError::Stream(_) => "queue_stream",
        }
    }

    /// Whether trying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.error_type(),
            "queue_busy" | "queue_full" | "queue_io" | "queue_sqlite" | "queue_stream"
        )
    }
}

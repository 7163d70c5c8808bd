//! Recall while unread and read status, sidecar side (docs/recall.md).
//!
//! The plugin writes what it knows to the spool: `local_copy` (a stored
//! copy of a message an authenticated local user sent), `recall_request`
//! (the sender asked over IMAP), `recall_outcome` (a recipient's account
//! carried a recall out), `read` (a consenting recipient read a message)
//! and `mdn` (an unencrypted read receipt arrived). This module turns them
//! into:
//! - the index of stored copies ([`index`]): who got which Message-ID from
//!   which local sender, in which folder and UID; never a search of
//!   mailboxes;
//! - doveadm calls ([`jobs`], [`sink`]) that run inside Dovecot as the
//!   user concerned: carry a recall out in each recipient's account, store
//!   the outcome in the sender's METADATA, mark the sender's copy read;
//! - webhook notices `message.recalled` and `message.read` ([`notice`]);
//! - counters ([`metrics`]).
//!
//! [`ingest`] applies the records in one transaction per spool chunk,
//! before the chunk's offset is committed (so a crash re-applies them;
//! every insert is idempotent). [`schema`] creates the tables, additively,
//! next to the queue's.
//!
//! Callers: `intake::reader` (ingest), `app.rs` (schema, sink), the
//! webhook sink (notices).

pub mod index;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod notice;
pub mod schema;
pub mod settings;
pub mod sink;

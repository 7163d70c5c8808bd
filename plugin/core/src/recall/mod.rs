//! Recall while unread, and read status, for recipients on the same server
//! (docs/recall.md): the Dovecot-free logic of both features.
//!
//! Pieces:
//! - [`settings`]: `coi_recall`, `coi_sender_trust`, `coi_read_status`,
//!   `coi_default_read_status`, validated once per user;
//! - [`trust`]: whether a delivered message was submitted by the local user
//!   its From and envelope sender name (the trust signal of the operator's
//!   submission path), which decides whether its stored copies are
//!   recallable at all;
//! - [`request`]: the sender's IMAP request (request id, Message-ID) and
//!   the state GETMETADATA shows for it;
//! - [`exec`]: what the sidecar asks a recipient's account to do and the
//!   per-copy outcomes it reports;
//! - [`read`]: the read-status consent value and the request that marks the
//!   sender's own copy read;
//! - [`mdn`]: reading an unencrypted MDN (RFC 8098) for the message it
//!   reports on.
//!
//! Invariants: as for the whole crate (pure, never panics on any bytes,
//! bounded work).
//!
//! Callers: the plugin's recall ops (`plugin/src/recall_ops.rs`) and the
//! sidecar (`sidecar/src/recall/`), which share the JSON shapes here.

pub mod exec;
pub mod mdn;
pub mod read;
pub mod request;
pub mod settings;
pub mod trust;

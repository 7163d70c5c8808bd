//! Push notifications, plugin side: Web Push subscriptions (IMAP WebPush
//! extension, DESIGN §3) and Delta Chat device tokens (DESIGN §4).
//!
//! What this module owns:
//! - [`settings`]: the `coi_webpush_*` and `coi_deltachat_push` settings;
//! - [`subscription`]: validating a client's subscription JSON, what is
//!   stored for it (with the validation secret the client must echo), what
//!   GETMETADATA shows, validation and expiry;
//! - [`devicetoken`]: Delta Chat tokens, several per user, deduplicated;
//! - [`imported`]: the checks for entries that arrive without a client
//!   (dsync, `doveadm coi import`);
//! - [`message`]: choosing the targets of one delivered message and
//!   building the `push` record the sidecar sends from.
//!
//! The sidecar owns the cryptography and the HTTP side (docs/webpush.md).
//! Invariants: no I/O, never panics on any bytes (values come from IMAP
//! clients), stored values are JSON objects this module wrote.

pub mod devicetoken;
pub mod imported;
pub mod message;
pub mod settings;
pub mod subscription;
mod time;

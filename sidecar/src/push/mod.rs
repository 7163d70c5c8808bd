//! Push notifications, sidecar side: Web Push (RFC 8030 delivery, RFC 8291
//! `aes128gcm` encryption, RFC 8292 VAPID) and the Delta Chat notification
//! proxy, plus removing targets that are gone (docs/webpush.md).
//!
//! Pieces:
//! - [`jobs`]: the four push channels, the queued job shapes, and turning
//!   the plugin's `push` / `webpush_validation` records into one job per
//!   target at intake (checks, Delta Chat token de-duplication);
//! - [`payload`]: the JSON a subscriber decrypts (field names, truncation,
//!   the 4096-byte budget); [`ece`]: the encryption; [`vapid`]: the key
//!   pair's files and the `Authorization: vapid` header;
//! - [`settings`]: the `[webpush]`, `[deltachat]` and `[dovecot]` config
//!   sections;
//! - [`limits`]: requests in flight per user and per push-service host,
//!   and validation pushes per user per hour;
//! - [`doveadm`]: the doveadm HTTP API request that unsets a METADATA key
//!   and how its answer is read;
//! - [`sinks`]: the delivery sinks of the four channels (what one attempt
//!   sends and how its answer is recorded), and [`channels`]: starting
//!   them.
//!
//! Invariant: push jobs live in the same durable queue as webhooks, so a
//! push survives restarts and is retried, dead-lettered and replayed like a
//! webhook delivery; a 404/410 ends the job and retires its target
//! (`queue::targets`) instead of retrying.

pub mod channels;
pub mod doveadm;
pub mod ece;
pub mod jobs;
pub mod limits;
pub mod payload;
pub mod settings;
pub mod sinks;
pub mod vapid;

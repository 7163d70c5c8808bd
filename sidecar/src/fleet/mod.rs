//! Fleet mode: events leave the backend at once into a replicated NATS
//! JetStream stream, and shared dispatchers send them (docs/fleet.md).
//!
//! Pieces:
//! - [`settings`]: the `[queue]` and `[jetstream]` config sections;
//! - [`envelope`]: what one stream message carries and its subject (kind
//!   and channel, never a user's address);
//! - [`publish`]: the intake's JetStream engine (`queue::engine::EventQueue`):
//!   the spool offset moves only after the stream acknowledged the events;
//! - [`dispatch`]: `coi-sidecar dispatch`, a durable pull consumer feeding
//!   the ordinary senders and acknowledging a message only once every
//!   delivery of it is settled (delivered, dead-lettered or retired);
//! - [`stream`]: connecting, and the event and dead-letter streams;
//! - [`dead_letters`]: `dead-letters list|replay --stream`;
//! - [`metrics`]: the fleet counters and gauges.
//!
//! Invariant: the stream is a work queue: a message leaves it only when a
//! dispatcher acknowledged it, so a backend or dispatcher that dies at any
//! moment loses nothing (at-least-once; the webhook-id stays the event id).

pub mod dead_letters;
pub mod dispatch;
pub mod envelope;
pub mod metrics;
pub mod publish;
pub mod settings;
pub mod stream;

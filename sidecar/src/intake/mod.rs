//! Intake: from the plugin's spool and doorbells into the durable queue.
//!
//! Pieces, in the order data flows (docs/events.md is the protocol):
//! - [`listener`]: binds the doorbell socket, checks each datagram's peer
//!   credentials ([`peer`]), decodes it and rings the pump;
//! - [`pump`]: the intake thread. On a ring or on its scan timer it drains
//!   rotated spool files, then the active one, rotating it when large;
//!   [`group_commit`] decides when, so a stream of events shares commits;
//! - [`reader`]: reads one spool file from its committed offset and turns
//!   records into queue batches; [`rotate`]: the rename + exclusive-lock
//!   half of the rotation protocol.
//!
//! Invariant: nothing is acknowledged (offset moved) before the events are
//! committed to the queue in the same transaction; doorbells carry no data,
//! so a lost or rejected doorbell only delays a scan until the timer.

pub mod group_commit;
pub mod listener;
pub mod peer;
pub mod pump;
pub mod reader;
pub mod rotate;

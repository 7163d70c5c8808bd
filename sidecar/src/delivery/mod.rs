//! Delivery: from pending queue rows to signed webhook requests.
//!
//! Pieces:
//! - [`supervisor`]: one [`driver`] task per configured endpoint; starts,
//!   restarts and stops them on reload and shutdown; wakes them on new work;
//! - [`driver`]: the per-endpoint loop over a [`driver::Sink`]: fetch due
//!   deliveries, run up to `concurrency` attempts at once (a semaphore in
//!   the form of an in-flight set bounded by the concurrency), delete the
//!   delivered rows; [`webhook`]: the webhook sink (payload, signature,
//!   send, classify); [`settle`]: recording failures (reschedule, dead
//!   letter), shared with the push sinks (`push::sinks`);
//! - [`http`]: the HTTP transport (reqwest, no redirects, per-endpoint
//!   timeout, guarded DNS); [`address`]: which addresses are refused;
//! - [`retry`]: what a status or failure means and when to try again;
//! - [`payload`] and [`signing`]: the request body and its signature.
//!
//! Invariant: at-least-once. A delivery row is removed only after a 2xx or
//! when it is moved to the dead letters; every retry carries the same
//! `webhook-id` (the event id).

pub mod address;
pub mod driver;
pub mod http;
pub mod payload;
pub mod retry;
pub mod settle;
pub mod signing;
pub mod supervisor;
pub mod webhook;

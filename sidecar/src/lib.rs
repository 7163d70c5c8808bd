//! `coi-sidecar`: the daemon beside Dovecot that turns the plugin's events
//! into signed webhooks, durably, and serves Prometheus metrics.
//!
//! Data flow (docs/events.md for the plugin side, docs/sidecar.md for this
//! side):
//! ```text
//! plugin --append--> spool file --(doorbell | timer)--> intake --commit--> queue (SQLite)
//!                                                                             |
//!   endpoint <--signed HTTP-- delivery drivers (one per endpoint) <-----------'
//! ```
//! Fleet mode ([`fleet`], docs/fleet.md) swaps the queue engine: the intake
//! publishes to a NATS JetStream stream, and `coi-sidecar dispatch` feeds
//! the same drivers from it.
//! Modules: [`config`] (the TOML file), [`intake`] (socket, spool reader,
//! rotation), [`queue`] (the durable queue), [`delivery`] (drivers, retry,
//! HTTP, signing, payloads), [`push`] (Web Push, Delta Chat, METADATA
//! clean-up), [`metrics`] and [`server`] (`/metrics`,
//! `/healthz`), [`shutdown`] and [`systemd`] (lifecycle), [`logging`],
//! [`recall`] (recall while unread, read status),
//! [`admin`] (dead-letter commands), [`status`] (the `status` command),
//! [`fleet`] (JetStream publish and dispatch), [`app`] (wiring), [`time`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod config;
pub mod delivery;
pub mod fleet;
pub mod intake;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod queue;
pub mod recall;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod systemd;
pub mod time;

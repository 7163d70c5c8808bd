//! `coi-sidecar status`: the state of the sidecar for a shell on the box,
//! human-readable or as JSON (`--json`).
//!
//! What it reads, never writes:
//! - whether the daemon runs: the holder of the instance lock
//!   (`<state_dir>/coi-sidecar.lock`, found in `/proc/locks`, so the
//!   command never takes the lock itself) and its `/healthz` answer on
//!   `[metrics] listen` ([`daemon`]);
//! - the queue database, opened read-only (`queue::schema::open_read_only`):
//!   queue depth, oldest event, dead letters (`queue::stats`), and per
//!   endpoint (every configured webhook and push channel, plus any name
//!   the queue still holds rows for) the pending, due and retrying
//!   deliveries, next retry, dead letters and the recorded last success,
//!   last failure, consecutive failures and last error (`queue::health`);
//! - the spool: each file's size against the offset the sidecar has
//!   committed for it, i.e. how far intake lags behind the plugin
//!   ([`spool`]).
//!
//! [`report`] holds the result and renders it. Exit status: 0 the daemon
//! runs and `/healthz` answers 200; 3 it does not run; 4 it runs but is
//! unhealthy or `/healthz` does not answer; 1 the queue could not be read
//! (with a running, healthy daemon).
//!
//! Callers: `main.rs`.

pub mod daemon;
pub mod report;
pub mod spool;

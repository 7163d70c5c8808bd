//! `[queue]` and `[jetstream]`: which queue engine the intake uses, and how
//! to reach the JetStream stream and consumer (docs/fleet.md).
//!
//! Invariant: validated once at load; `engine = "sqlite"` (the default)
//! never touches NATS, whatever `[jetstream]` says.
//!
//! Callers: `config.rs` (parsing), `app.rs`, `fleet::publish`,
//! `fleet::dispatch`.

use std::time::Duration;

use serde::Deserialize;

/// The intake's queue engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The local SQLite queue (one server; the default).
    Sqlite,
    /// Publish to a JetStream stream; `coi-sidecar dispatch` sends.
    JetStream,
}

/// `[queue]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    #[serde(default = "default_engine")]
    engine: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue { engine: default_engine() }
    }
}

fn default_engine() -> String {
    "sqlite".into()
}

/// `[jetstream]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJetStream {
    #[serde(default = "default_servers")]
    servers: Vec<String>,
    #[serde(default = "default_stream")]
    stream: String,
    #[serde(default = "default_subject_prefix")]
    subject_prefix: String,
    #[serde(default = "default_replicas")]
    replicas: usize,
    #[serde(default = "default_duplicate_window_secs")]
    duplicate_window_secs: u64,
    #[serde(default = "default_publish_timeout_secs")]
    publish_timeout_secs: u64,
    #[serde(default = "default_consumer")]
    consumer: String,
    #[serde(default = "default_ack_wait_secs")]
    ack_wait_secs: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_dead_letter_stream")]
    dead_letter_stream: String,
}

impl Default for RawJetStream {
    fn default() -> Self {
        RawJetStream {
            servers: default_servers(),
            stream: default_stream(),
            subject_prefix: default_subject_prefix(),
            replicas: default_replicas(),
            duplicate_window_secs: default_duplicate_window_secs(),
            publish_timeout_secs: default_publish_timeout_secs(),
            consumer: default_consumer(),
            ack_wait_secs: default_ack_wait_secs(),
            max_in_flight: default_max_in_flight(),
            dead_letter_stream: default_dead_letter_stream(),
        }
    }
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_stream() -> String {
    "COI_EVENTS".into()
}
fn default_subject_prefix() -> String {
    "coi".into()
}
fn default_replicas() -> usize {
    3
}
fn default_duplicate_window_secs() -> u64 {
    // Long enough to cover a backend's restart after a crash between the
    // stream's ack and the offset commit.
    600
}
fn default_publish_timeout_secs() -> u64 {
    5
}
fn default_consumer() -> String {
    "coi-dispatch".into()
}
fn default_ack_wait_secs() -> u64 {
    30
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_dead_letter_stream() -> String {
    "COI_DEAD".into()
}

/// The validated fleet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// `[queue] engine`.
    pub engine: Engine,
    /// NATS server URLs (any member of the cluster; the client learns the rest).
    pub servers: Vec<String>,
    /// Stream name.
    pub stream: String,
    /// First subject token; the stream takes `<prefix>.ev.>`.
    pub subject_prefix: String,
    /// Stream replicas (3 for a 3-node cluster).
    pub replicas: usize,
    /// The stream's duplicate window (`Nats-Msg-Id` = event id).
    pub duplicate_window: Duration,
    /// How long the intake waits for the stream's acks before it leaves
    /// the records in the spool and tries again.
    pub publish_timeout: Duration,
    /// Durable consumer name shared by every dispatcher.
    pub consumer: String,
    /// Unacknowledged messages are redelivered after this (dispatchers send
    /// progress for the ones they still hold).
    pub ack_wait: Duration,
    /// Messages one dispatcher holds at most.
    pub max_in_flight: usize,
    /// Stream that keeps a copy of every dead letter.
    pub dead_letter_stream: String,
}

impl Default for FleetSettings {
    fn default() -> Self {
        validate(RawQueue::default(), RawJetStream::default()).expect("defaults are valid")
    }
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the two sections; the error is `(key, message)`.
pub fn validate(q: RawQueue, j: RawJetStream) -> Result<FleetSettings, (String, String)> {
    let engine = match q.engine.as_str() {
        "sqlite" => Engine::Sqlite,
        "jetstream" => Engine::JetStream,
        _ => return Err(("queue.engine".into(), "must be \"sqlite\" or \"jetstream\"".into())),
    };
    if j.servers.is_empty() || j.servers.iter().any(|s| s.trim().is_empty()) {
        return Err(("jetstream.servers".into(), "needs at least one nats:// URL".into()));
    }
    for (key, v) in [("stream", &j.stream), ("subject_prefix", &j.subject_prefix), ("consumer", &j.consumer), ("dead_letter_stream", &j.dead_letter_stream)] {
        if !token_ok(v) {
            return Err((format!("jetstream.{key}"), "letters, digits, '_' and '-' only".into()));
        }
    }
    if j.stream == j.dead_letter_stream {
        return Err(("jetstream.dead_letter_stream".into(), "must differ from stream".into()));
    }
    if !(1..=5).contains(&j.replicas) {
        return Err(("jetstream.replicas".into(), "1 to 5".into()));
    }
    if j.duplicate_window_secs == 0 || j.publish_timeout_secs == 0 || j.ack_wait_secs < 3 {
        return Err(("jetstream".into(), "duplicate_window_secs and publish_timeout_secs must be > 0, ack_wait_secs >= 3".into()));
    }
    if j.max_in_flight == 0 {
        return Err(("jetstream.max_in_flight".into(), "must be > 0".into()));
    }
    Ok(FleetSettings {
        engine,
        servers: j.servers,
        stream: j.stream,
        subject_prefix: j.subject_prefix,
        replicas: j.replicas,
        duplicate_window: Duration::from_secs(j.duplicate_window_secs),
        publish_timeout: Duration::from_secs(j.publish_timeout_secs),
        consumer: j.consumer,
        ack_wait: Duration::from_secs(j.ack_wait_secs),
        max_in_flight: j.max_in_flight,
        dead_letter_stream: j.dead_letter_stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_local_and_bad_values_are_named() {
        assert_eq!(FleetSettings::default().engine, Engine::Sqlite);
        let bad = validate(RawQueue { engine: "redis".into() }, RawJetStream::default()).unwrap_err();
        assert_eq!(bad.0, "queue.engine");
        let j = RawJetStream { stream: "a.b".into(), ..RawJetStream::default() };
        assert_eq!(validate(RawQueue::default(), j).unwrap_err().0, "jetstream.stream");
    }
}

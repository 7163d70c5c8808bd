//! Reaching the JetStream cluster: the client connection (with the
//! configured credentials and TLS) and the two streams (events, dead
//! letters), created if missing.
//!
//! Invariants: connecting never blocks startup on an unreachable cluster
//! (after one attempt, whose error is logged with its cause, the client
//! keeps reconnecting in the background; calls made meanwhile fail after
//! their timeout and are retried by the caller). The event stream
//! is a work queue (a message is removed once a dispatcher acknowledged it),
//! file-backed, replicated `replicas` times, with the duplicate window that
//! drops an event published twice (`Nats-Msg-Id` = event id). The
//! dead-letter stream keeps its copies until an operator purges them.
//!
//! Callers: `fleet::publish`, `fleet::dispatch`, the `dead-letters` commands.

use async_nats::jetstream::{self, stream};

use super::envelope::{dead_letter_subjects, stream_subjects};
use super::settings::{FleetSettings, NatsAuth};

/// A failed call to NATS, as text (the caller maps it to its own error).
pub type StreamFailure = String;

/// Connects (or starts connecting) to the cluster.
pub async fn connect(s: &FleetSettings, name: &str) -> Result<jetstream::Context, StreamFailure> {
    let mut addrs = Vec::new();
    for url in &s.servers {
        addrs.push(url.parse::<async_nats::ServerAddr>().map_err(|e| format!("server {url}: {e}"))?);
    }
    let opts = || {
        options(s).name(name).connection_timeout(s.publish_timeout).request_timeout(Some(s.publish_timeout))
    };
    // One plain attempt first: its error names the cause (a refused password,
    // an unknown certificate authority, a missing client certificate), which
    // the background reconnects only report as "IO error". Then the client
    // that keeps trying.
    let client = match opts().connect(addrs.clone()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, servers = ?s.servers, client = name,
                "cannot connect to the NATS servers; trying again in the background");
            opts().retry_on_initial_connect().connect(addrs).await.map_err(|e| format!("connect: {e}"))?
        }
    };
    Ok(jetstream::ContextBuilder::new().timeout(s.publish_timeout).ack_timeout(s.publish_timeout).build(client))
}

/// Credentials and TLS from `[jetstream]`.
fn options(s: &FleetSettings) -> async_nats::ConnectOptions {
    let mut o = match &s.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
    };
    if s.tls.required {
        o = o.require_tls(true);
    }
    if let Some(ca) = &s.tls.ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &s.tls.client_cert {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    o
}

/// The event stream's configuration.
pub fn events_config(s: &FleetSettings) -> stream::Config {
    stream::Config {
        name: s.stream.clone(),
        subjects: vec![stream_subjects(&s.subject_prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: s.duplicate_window,
        ..Default::default()
    }
}

/// The dead-letter stream's configuration.
pub fn dead_letters_config(s: &FleetSettings) -> stream::Config {
    stream::Config {
        name: s.dead_letter_stream.clone(),
        subjects: vec![dead_letter_subjects(&s.subject_prefix)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: s.duplicate_window,
        ..Default::default()
    }
}

/// Gets the event stream, creating it if it does not exist.
pub async fn events(js: &jetstream::Context, s: &FleetSettings) -> Result<stream::Stream, StreamFailure> {
    js.get_or_create_stream(events_config(s)).await.map_err(|e| format!("stream {}: {e}", s.stream))
}

/// Gets the dead-letter stream, creating it if it does not exist.
pub async fn dead_letters(js: &jetstream::Context, s: &FleetSettings) -> Result<stream::Stream, StreamFailure> {
    js.get_or_create_stream(dead_letters_config(s))
        .await
        .map_err(|e| format!("stream {}: {e}", s.dead_letter_stream))
}

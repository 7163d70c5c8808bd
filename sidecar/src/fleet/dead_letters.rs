//! The dead-letter stream as the `dead-letters` commands see it:
//! `dead-letters list --stream` and `dead-letters replay --stream`.
//!
//! What this module owns: reading the copies dispatchers put into
//! `[jetstream] dead_letter_stream` (one message per dead delivery: event
//! id, endpoint, attempts, last error, the original envelope), and
//! replaying them: the envelope, narrowed to the dead endpoint and marked
//! `replay`, goes back into the event stream (message id
//! `<event id>/replay/<dead-letter sequence>`, so one copy replayed twice
//! quickly is dropped by the duplicate window), then the copy is deleted.
//! The dispatcher that receives it moves its own local dead letter back to
//! pending if it has one (same event id, same endpoint), or queues the event
//! afresh; either way the webhook-id stays the event id.
//!
//! Callers: `main.rs`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::envelope::{subject, Envelope};
use super::settings::FleetSettings;
use super::stream;
use crate::queue::dead_letters::Selection;

/// The JSON body of one dead-letter copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterCopy {
    /// Event id (the webhook-id).
    pub event_id: String,
    /// The endpoint that gave up.
    pub endpoint: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    pub last_error: String,
    /// The original envelope's JSON.
    pub envelope: String,
}

/// One copy with its place in the stream.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Stream sequence (the id `replay --stream` takes).
    pub seq: u64,
    /// When the dispatcher stored it (RFC 3339).
    pub died_at: String,
    /// The copy.
    pub copy: DeadLetterCopy,
}

/// Every copy in the dead-letter stream, oldest first.
pub async fn list(s: &FleetSettings) -> Result<Vec<Listed>, String> {
    let js = stream::connect(s, "coi-sidecar dead-letters").await?;
    let mut dead = stream::dead_letters(&js, s).await?;
    let state = dead.info().await.map_err(|e| format!("stream {}: {e}", s.dead_letter_stream))?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        // Deleted (replayed) sequences are gaps.
        let Ok(m) = dead.get_raw_message(seq).await else { continue };
        match serde_json::from_slice::<DeadLetterCopy>(&m.payload) {
            Ok(copy) => out.push(Listed { seq, died_at: m.time.to_string(), copy }),
            Err(e) => tracing::warn!(seq, error = %e, "unreadable dead-letter copy skipped"),
        }
    }
    Ok(out)
}

/// The `dead-letters list --stream` table.
pub fn render(rows: &[Listed]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "SEQ\tENDPOINT\tEVENT_ID\tATTEMPTS\tDIED_AT\tLAST_ERROR");
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.seq,
            r.copy.endpoint,
            r.copy.event_id,
            r.copy.attempts,
            r.died_at,
            r.copy.last_error.replace(['\t', '\n'], " ")
        );
    }
    let _ = writeln!(out, "{} dead letter(s) in the stream", rows.len());
    out
}

/// Replays the selected copies (stream sequences or event ids); returns how many.
pub async fn replay(s: &FleetSettings, which: &Selection) -> Result<usize, String> {
    let rows = list(s).await?;
    let js = stream::connect(s, "coi-sidecar dead-letters").await?;
    stream::events(&js, s).await?;
    let dead = stream::dead_letters(&js, s).await?;
    let mut n = 0;
    for r in rows {
        let chosen = match which {
            Selection::All => true,
            Selection::Ids(ids) => ids.iter().any(|id| *id == r.copy.event_id || *id == r.seq.to_string()),
        };
        if !chosen {
            continue;
        }
        let mut env: Envelope = serde_json::from_str(&r.copy.envelope).map_err(|e| format!("dead letter {}: {e}", r.seq))?;
        env.endpoints = vec![r.copy.endpoint.clone()];
        env.replay = true;
        let body = serde_json::to_vec(&env).map_err(|e| e.to_string())?;
        let event = env.clone().into_event();
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(format!("{}/replay/{}", r.copy.event_id, r.seq));
        js.send_publish(subject(&s.subject_prefix, &event), publish)
            .await
            .map_err(|e| format!("publish: {e}"))?
            .await
            .map_err(|e| format!("publish ack: {e}"))?;
        dead.delete_message(r.seq).await.map_err(|e| format!("deleting dead letter {}: {e}", r.seq))?;
        n += 1;
    }
    Ok(n)
}

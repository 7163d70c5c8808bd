//! One stream message: the queued event with the endpoints that want it,
//! and the subject it is published on.
//!
//! Subjects: `<prefix>.ev.message.<kind>` for message events (kind as the
//! plugin classified it: `chat`, `group-chat`, `read-receipt`, ...) and
//! `<prefix>.ev.push.<channel>` for push jobs (`webpush`, `validation`,
//! `deltachat`, `metadata-unset`): what a consumer filters on. Never a
//! user's address, folder or Message-ID: subjects show up in monitoring,
//! account limits and server logs. The user is inside the payload only.
//!
//! Invariant: [`Envelope::into_event`] gives back exactly the event that
//! [`Envelope::from_event`] was made from (round-trip tested); a target
//! kind the dispatcher does not know drops only the dead-target check.
//!
//! Callers: `fleet::publish` (encode), `fleet::dispatch` (decode).

use serde::{Deserialize, Serialize};

use crate::queue::ingest::{DeadTargetKey, NewEvent};

/// Version of the envelope shape.
pub const ENVELOPE_V1: u8 = 1;

/// Target kinds a dead-target key may carry (`push::jobs::TargetKind`).
const TARGET_KINDS: [&str; 2] = ["webpush", "deltachat"];

/// The wire form of a dead-target key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadKeyV1 {
    /// `webpush` or `deltachat`.
    pub target: String,
    /// Dovecot user.
    pub user: String,
    /// Subscription id or token key.
    pub target_key: String,
    /// Hex SHA-256 of the endpoint or token.
    pub fingerprint: String,
}

/// The JSON body of one stream message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`ENVELOPE_V1`].
    pub v: u8,
    /// Event id (also the `Nats-Msg-Id`).
    pub event_id: String,
    /// Delivery commit time, unix ms.
    pub ts_ms: u64,
    /// Queue endpoint names (webhook names or `push:<channel>`).
    pub endpoints: Vec<String>,
    /// The event or job JSON, as the local queue stores it.
    pub payload: String,
    /// Skip the job if this target is known dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadKeyV1>,
    /// A replay of a dead letter (`dead-letters replay --stream`): a
    /// dispatcher that has the dead letter moves it back to pending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl Envelope {
    /// The envelope of a queue event.
    pub fn from_event(ev: &NewEvent) -> Envelope {
        Envelope {
            v: ENVELOPE_V1,
            event_id: ev.event_id.clone(),
            ts_ms: ev.ts_ms,
            endpoints: ev.endpoints.clone(),
            payload: ev.payload.clone(),
            dead: ev.skip_if_dead.as_ref().map(|d| DeadKeyV1 {
                target: d.target.to_string(),
                user: d.user.clone(),
                target_key: d.target_key.clone(),
                fingerprint: d.fingerprint.clone(),
            }),
            replay: false,
        }
    }

    /// Back to a queue event.
    pub fn into_event(self) -> NewEvent {
        let skip_if_dead = self.dead.and_then(|d| {
            let target = TARGET_KINDS.into_iter().find(|k| *k == d.target)?;
            Some(DeadTargetKey {
                target,
                user: d.user,
                target_key: d.target_key,
                fingerprint: d.fingerprint,
            })
        });
        NewEvent {
            event_id: self.event_id,
            ts_ms: self.ts_ms,
            payload: self.payload,
            endpoints: self.endpoints,
            skip_if_dead,
        }
    }
}

/// A subject token from free text: lower-case letters, digits, `-` and `_`
/// only, else `other` (a token never contains `.`, `*`, `>` or spaces).
fn token(s: &str) -> String {
    let t = s.strip_prefix("push:").unwrap_or(s);
    if !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        t.to_string()
    } else {
        "other".to_string()
    }
}

#[derive(Deserialize)]
struct KindOnly {
    #[serde(default)]
    kind: String,
}

/// The subject of a queue event under `prefix` (see the module docs).
pub fn subject(prefix: &str, ev: &NewEvent) -> String {
    match ev.endpoints.first() {
        Some(e) if e.starts_with("push:") => format!("{prefix}.ev.push.{}", token(e)),
        _ => {
            let kind = serde_json::from_str::<KindOnly>(&ev.payload).map(|k| k.kind).unwrap_or_default();
            format!("{prefix}.ev.message.{}", token(&kind))
        }
    }
}

/// Subjects the event stream takes.
pub fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.ev.>")
}

/// Subject of a dead letter's copy in the dead-letter stream.
pub fn dead_letter_subject(prefix: &str, endpoint: &str) -> String {
    let class = if endpoint.starts_with("push:") { format!("push.{}", token(endpoint)) } else { "webhook".to_string() };
    format!("{prefix}.dead.{class}")
}

/// Subjects the dead-letter stream takes.
pub fn dead_letter_subjects(prefix: &str) -> String {
    format!("{prefix}.dead.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str) -> NewEvent {
        NewEvent {
            event_id: "e1".into(),
            ts_ms: 7,
            payload: format!(r#"{{"id":"e1","user":"alice@example.org","kind":"{kind}","folder":"INBOX"}}"#),
            endpoints: vec!["ops".into(), "audit".into()],
            skip_if_dead: None,
        }
    }

    #[test]
    fn subjects_carry_kind_and_channel_but_never_the_user() {
        assert_eq!(subject("coi", &message("chat")), "coi.ev.message.chat");
        assert_eq!(subject("coi", &message("group-chat")), "coi.ev.message.group-chat");
        assert_eq!(subject("coi", &message("a.b >")), "coi.ev.message.other");
        let mut job = message("chat");
        job.endpoints = vec!["push:webpush".into()];
        job.payload = r#"{"job":"webpush","user":"alice@example.org"}"#.into();
        assert_eq!(subject("x", &job), "x.ev.push.webpush");
        for s in [subject("coi", &message("chat")), subject("coi", &job)] {
            assert!(!s.contains("alice") && !s.contains('@'), "{s}");
        }
        assert_eq!(dead_letter_subject("coi", "push:metadata-unset"), "coi.dead.push.metadata-unset");
        assert_eq!(dead_letter_subject("coi", "ops"), "coi.dead.webhook");
    }

    #[test]
    fn envelopes_round_trip() {
        let mut ev = message("chat");
        ev.skip_if_dead = Some(DeadTargetKey { target: "webpush", user: "u".into(), target_key: "k".into(), fingerprint: "f".into() });
        let json = serde_json::to_string(&Envelope::from_event(&ev)).unwrap();
        let back = serde_json::from_str::<Envelope>(&json).unwrap().into_event();
        assert_eq!(back.event_id, ev.event_id);
        assert_eq!(back.payload, ev.payload);
        assert_eq!(back.endpoints, ev.endpoints);
        assert_eq!(back.skip_if_dead, ev.skip_if_dead);
        let mut odd = Envelope::from_event(&ev);
        odd.dead.as_mut().unwrap().target = "pager".into();
        assert_eq!(odd.into_event().skip_if_dead, None);
    }
}

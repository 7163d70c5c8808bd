//! Webhook request bodies: the `standard` and `ox` formats.
//!
//! What this module owns: turning a queued [`MessageEventV1`] into the bytes
//! and HTTP method an endpoint receives.
//! - `standard` (POST): `{"type":"message.stored","timestamp":"<RFC 3339 of
//!   the delivery commit>","data":{...}}`; `data` holds the event's fields
//!   except the plugin-internal `pid` and `dropped_before`;
//!   `headers_protected` appears only when true.
//! - `ox` (PUT): the JSON of Dovecot's OX push driver, for operators
//!   migrating from it: `user`, `event` = `messageNew`, `folder`,
//!   `imap-uidvalidity`, `imap-uid`, `from`, `subject`, `snippet`, `unseen`.
//!   The plugin does not read message bodies or mailbox counters on the
//!   delivery path, so `snippet` is always `""` and `unseen` always `0`
//!   (documented in docs/sidecar.md); absent `from`/`subject` become `""`.
//!
//! Invariant: pure; the same event always gives the same body (retries carry
//! identical bodies; only `webhook-timestamp` and the signature change).
//!
//! Callers: `delivery::driver`.

use coi_core::wire::MessageEventV1;
use serde::Serialize;

use crate::config::PayloadFormat;
use crate::time::rfc3339_from_ms;

/// The `type` of a standard payload.
pub const EVENT_TYPE: &str = "message.stored";

/// HTTP method and body of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// POST for standard, PUT for ox.
    pub method: reqwest::Method,
    /// JSON bytes.
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct StandardData<'a> {
    id: &'a str,
    ts_ms: u64,
    user: &'a str,
    folder: &'a str,
    uid: u32,
    uidvalidity: u32,
    kind: &'a str,
    group_id: Option<&'a str>,
    chat_keyword: bool,
    routed: bool,
    from: Option<&'a str>,
    message_id: Option<&'a str>,
    subject: Option<&'a str>,
    /// Only present (true) for chats whose headers the server cannot read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    headers_protected: bool,
}

#[derive(Serialize)]
struct Standard<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: StandardData<'a>,
}

#[derive(Serialize)]
struct Ox<'a> {
    user: &'a str,
    event: &'static str,
    folder: &'a str,
    #[serde(rename = "imap-uidvalidity")]
    uidvalidity: u32,
    #[serde(rename = "imap-uid")]
    uid: u32,
    from: &'a str,
    subject: &'a str,
    snippet: &'static str,
    unseen: u32,
}

/// Builds the request for `event` in `format`.
pub fn build(format: PayloadFormat, event: &MessageEventV1) -> Result<Payload, serde_json::Error> {
    match format {
        PayloadFormat::Standard => {
            let body = serde_json::to_vec(&Standard {
                kind: EVENT_TYPE,
                timestamp: rfc3339_from_ms(event.ts_ms),
                data: StandardData {
                    id: &event.id,
                    ts_ms: event.ts_ms,
                    user: &event.user,
                    folder: &event.folder,
                    uid: event.uid,
                    uidvalidity: event.uidvalidity,
                    kind: &event.kind,
                    group_id: event.group_id.as_deref(),
                    chat_keyword: event.chat_keyword,
                    routed: event.routed,
                    from: event.from.as_deref(),
                    message_id: event.message_id.as_deref(),
                    subject: event.subject.as_deref(),
                    headers_protected: event.headers_protected,
                },
            })?;
            Ok(Payload {
                method: reqwest::Method::POST,
                body,
            })
        }
        PayloadFormat::Ox => {
            let body = serde_json::to_vec(&Ox {
                user: &event.user,
                event: "messageNew",
                folder: &event.folder,
                uidvalidity: event.uidvalidity,
                uid: event.uid,
                from: event.from.as_deref().unwrap_or(""),
                subject: event.subject.as_deref().unwrap_or(""),
                snippet: "",
                unseen: 0,
            })?;
            Ok(Payload {
                method: reqwest::Method::PUT,
                body,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> MessageEventV1 {
        MessageEventV1 {
            id: "0190b1d2-0000-7000-8000-000000000001".into(),
            ts_ms: 1_614_265_330_123,
            user: "alice".into(),
            folder: "COI/Chats".into(),
            uid: 9,
            uidvalidity: 77,
            kind: "chat".into(),
            group_id: None,
            chat_keyword: true,
            routed: true,
            from: Some("bob@example.org".into()),
            message_id: Some("<m@x>".into()),
            subject: None,
            pid: 1,
            dropped_before: 0,
        origin: Default::default(),
        headers_protected: false,
        }
    }

    #[test]
    fn standard_payload_shape() {
        let p = build(PayloadFormat::Standard, &event()).unwrap();
        assert_eq!(p.method, reqwest::Method::POST);
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["type"], "message.stored");
        assert_eq!(v["timestamp"], "2021-02-25T15:02:10.123Z");
        assert_eq!(v["data"]["id"], "0190b1d2-0000-7000-8000-000000000001");
        assert_eq!(v["data"]["folder"], "COI/Chats");
        assert_eq!(v["data"]["subject"], serde_json::Value::Null);
        assert!(v["data"].get("pid").is_none());
    }

    #[test]
    fn ox_payload_shape() {
        let p = build(PayloadFormat::Ox, &event()).unwrap();
        assert_eq!(p.method, reqwest::Method::PUT);
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user":"alice","event":"messageNew","folder":"COI/Chats",
                "imap-uidvalidity":77,"imap-uid":9,"from":"bob@example.org","subject":"",
                "snippet":"","unseen":0})
        );
    }
}

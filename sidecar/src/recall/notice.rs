//! Webhook notices of recall and read status (docs/sidecar.md, "Event
//! types"): `message.recalled` and `message.read`.
//!
//! A notice is queued with the payload [`Notice`] (`{"notice": TYPE, "id",
//! "ts_ms", "data"}`) on every `standard`-format webhook endpoint whose
//! `kinds` filter is empty or names [`KIND_RECALL`] / [`KIND_READ`]; `ox`
//! endpoints never get them (Dovecot's OX push driver has no such event).
//! The webhook sink sends `{"type": TYPE, "timestamp": <RFC 3339>, "data":
//! ...}`, signed like every webhook, with `webhook-id` = the notice id.
//!
//! `message.stored` bodies are unchanged: these are new types, never a new
//! shape of an existing one (STYLE §6).

use serde::{Deserialize, Serialize};

use crate::config::{Endpoint, PayloadFormat};
use crate::time::rfc3339_from_ms;

/// The `type` of a finished recall.
pub const RECALLED: &str = "message.recalled";
/// The `type` of a read message.
pub const READ: &str = "message.read";
/// The webhook `kinds` value that selects recall notices.
pub const KIND_RECALL: &str = "recall";
/// The webhook `kinds` value that selects read notices.
pub const KIND_READ: &str = "read";

/// A queued notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// [`RECALLED`] or [`READ`].
    pub notice: String,
    /// The webhook id.
    pub id: String,
    /// When it happened, unix ms.
    pub ts_ms: u64,
    /// The body's `data`.
    pub data: serde_json::Value,
}

impl Notice {
    /// A queued payload, if it is a notice.
    pub fn parse(payload: &str) -> Option<Notice> {
        if !payload.contains("\"notice\"") {
            return None;
        }
        serde_json::from_str(payload).ok()
    }

    /// The webhook body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": self.notice,
            "timestamp": rfc3339_from_ms(self.ts_ms),
            "data": self.data,
        }))
        .unwrap_or_default()
    }
}

/// Whether `endpoint` gets notices of `kind` ([`KIND_RECALL`] or
/// [`KIND_READ`]).
pub fn wanted_by(endpoint: &Endpoint, kind: &str) -> bool {
    endpoint.format == PayloadFormat::Standard && (endpoint.kinds.is_empty() || endpoint.kinds.iter().any(|k| k == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_type_timestamp_and_data() {
        let n = Notice { notice: READ.into(), id: "n1".into(), ts_ms: 1_614_265_330_000, data: serde_json::json!({"reader": "bob"}) };
        let payload = serde_json::to_string(&n).unwrap();
        let back = Notice::parse(&payload).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&back.body()).unwrap();
        assert_eq!(body["type"], "message.read");
        assert_eq!(body["data"]["reader"], "bob");
        assert!(body["timestamp"].as_str().unwrap().starts_with("2021-02-25T"));
        assert!(Notice::parse(r#"{"id":"x","user":"u"}"#).is_none(), "a message event is not a notice");
    }
}

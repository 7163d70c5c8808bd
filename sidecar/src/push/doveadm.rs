//! Dovecot's doveadm HTTP API, as far as the sidecar uses it: reading and
//! unsetting a user's server METADATA key.
//!
//! What this module owns (facts checked against Dovecot 2.3.19's
//! `doveadm/client-connection-http.c` and `doveadm-mail-mailbox-metadata.c`):
//! - the request: `POST <doveadm_url>` (`/doveadm/v1`) with
//!   `Authorization: X-Dovecot-API <base64 of doveadm_api_key>` and the JSON
//!   `[["mailboxMetadataUnset", {"user": U, "mailbox": "", "key": K,
//!   "allowEmptyMailboxName": true}, "<tag>"]]`. Command and parameter names
//!   are the camelCase forms of `mailbox metadata unset` and its
//!   `allow-empty-mailbox-name` flag (`-s`), which an empty mailbox name
//!   (server metadata) requires. doveadm lowercases the key, as IMAP does.
//! - reading first: `mailboxMetadataGet` with the same parameters answers
//!   `[["doveadmResponse", [{"value": V}], "<tag>"]]`, `V` = `""` when the
//!   key is not set ([`classify_get`]). With the plugin loaded, a
//!   subscription key reads as its public JSON (`resource.endpoint`), a
//!   device-token key as the token ([`held_fingerprint`]).
//! - the answer ([`classify`]): HTTP 200 with
//!   `[["doveadmResponse", [], "<tag>"]]` is done; `[["error", {"type":
//!   "exitCode", "exitCode": N}, "<tag>"]]` is a failure of the command:
//!   67 (`EX_NOUSER`) means the user no longer exists, so there is nothing
//!   to remove (done); 64/65 (`EX_USAGE`, `EX_DATAERR`) never heal
//!   (permanent); anything else (75 `EX_TEMPFAIL`, 1, ...) is retried. Error
//!   types `unknownMethod`, `unAuthorized`, `invalidRequest` are
//!   configuration problems (permanent, replayable once fixed).
//!   HTTP 401/403 (wrong key) are permanent too; 5xx and transport
//!   failures are retried.
//!
//! doveadm has no compare-and-delete: the sink reads the key, compares what
//! it holds with the dead target and unsets it only if they match
//! (docs/webpush.md, "Gone targets", says what window is left).
//!
//! Invariant: pure (no I/O); the sink in `push::sinks` does the sending.
//!
//! Callers: `push::sinks`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

/// The tag sent with the command (echoed back by doveadm).
pub const TAG: &str = "coi-unset";

/// `EX_NOUSER`: doveadm's exit code for an unknown user.
pub const EX_NOUSER: i64 = 67;

/// The `Authorization` header value for `api_key`.
pub fn authorization(api_key: &str) -> String {
    format!("X-Dovecot-API {}", STANDARD.encode(api_key.as_bytes()))
}

/// The request body unsetting `key` (`/private/...`) of `user`'s server
/// metadata.
pub fn unset_body(user: &str, key: &str) -> Vec<u8> {
    command_body("mailboxMetadataUnset", user, key)
}

/// The request body reading `key` of `user`'s server metadata.
pub fn get_body(user: &str, key: &str) -> Vec<u8> {
    command_body("mailboxMetadataGet", user, key)
}

fn command_body(command: &str, user: &str, key: &str) -> Vec<u8> {
    let body = json!([[
        command,
        {"user": user, "mailbox": "", "key": key, "allowEmptyMailboxName": true},
        TAG
    ]]);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What a `mailboxMetadataGet` answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetResult {
    /// The value (`""`: not set).
    Value(String),
    /// The user does not exist any more.
    NoUser,
    /// Worth retrying.
    Retry(String),
    /// Will not heal by retrying.
    Permanent(String),
}

/// Reads an HTTP 200 answer body of `mailboxMetadataGet`.
pub fn classify_get(body: &[u8]) -> GetResult {
    match classify(body) {
        UnsetResult::Done => {}
        UnsetResult::NoUser => return GetResult::NoUser,
        UnsetResult::Retry(why) => return GetResult::Retry(why),
        UnsetResult::Permanent(why) => return GetResult::Permanent(why),
    }
    let value = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(0)?.get(1)?.get(0)?.get("value")?.as_str().map(str::to_string));
    match value {
        Some(v) => GetResult::Value(v),
        None => GetResult::Retry("doveadm answer without a value".into()),
    }
}

/// The fingerprint (`push::jobs::fingerprint`) of what a METADATA value
/// read back holds: the endpoint of a subscription's public JSON, or a
/// device token. `None` when the key is not set; `Some("")` when the value
/// is not one this code can read (then it is not the dead target either).
pub fn held_fingerprint(target: super::jobs::TargetKind, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let held = match target {
        super::jobs::TargetKind::Deltachat => Some(value.to_string()),
        super::jobs::TargetKind::Webpush => serde_json::from_str::<Value>(value)
            .ok()
            .and_then(|v| v.get("resource")?.get("endpoint")?.as_str().map(str::to_string)),
    };
    Some(held.map(|h| super::jobs::fingerprint(&h)).unwrap_or_default())
}

/// What doveadm's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsetResult {
    /// The key is gone (or was never there).
    Done,
    /// The user does not exist any more: nothing to remove.
    NoUser,
    /// Worth retrying.
    Retry(String),
    /// Will not heal by retrying.
    Permanent(String),
}

/// Reads an HTTP 200 answer body.
pub fn classify(body: &[u8]) -> UnsetResult {
    let Ok(Value::Array(replies)) = serde_json::from_slice::<Value>(body) else {
        return UnsetResult::Retry(format!("unreadable doveadm answer ({} bytes)", body.len()));
    };
    let Some(Value::Array(reply)) = replies.first() else {
        return UnsetResult::Retry("empty doveadm answer".into());
    };
    match reply.first().and_then(Value::as_str) {
        Some("doveadmResponse") => UnsetResult::Done,
        Some("error") => {
            let detail = reply.get(1).cloned().unwrap_or(Value::Null);
            let kind = detail.get("type").and_then(Value::as_str).unwrap_or("");
            let code = detail.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
            match (kind, code) {
                ("exitCode", EX_NOUSER) => UnsetResult::NoUser,
                ("exitCode", 64 | 65) => UnsetResult::Permanent(format!("doveadm exit code {code}")),
                ("exitCode", _) => UnsetResult::Retry(format!("doveadm exit code {code}")),
                _ => UnsetResult::Permanent(format!("doveadm error {kind} (exit code {code})")),
            }
        }
        _ => UnsetResult::Retry("unexpected doveadm answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uses_the_camel_case_names_and_server_metadata() {
        let body: Value = serde_json::from_slice(&unset_body("alice@example.org", "/private/vendor/x")).unwrap();
        assert_eq!(
            body,
            json!([["mailboxMetadataUnset",
                    {"user": "alice@example.org", "mailbox": "", "key": "/private/vendor/x", "allowEmptyMailboxName": true},
                    "coi-unset"]])
        );
        assert_eq!(authorization("secret"), "X-Dovecot-API c2VjcmV0");
    }

    #[test]
    fn get_answers_give_the_value() {
        let body: Value = serde_json::from_slice(&get_body("a", "/private/k")).unwrap();
        assert_eq!(body[0][0], "mailboxMetadataGet");
        assert_eq!(classify_get(br#"[["doveadmResponse",[{"value":"hello"}],"coi-unset"]]"#), GetResult::Value("hello".into()));
        assert_eq!(classify_get(br#"[["doveadmResponse",[{"value":""}],"coi-unset"]]"#), GetResult::Value(String::new()));
        assert_eq!(classify_get(br#"[["error",{"type":"exitCode","exitCode":67},"t"]]"#), GetResult::NoUser);
        assert!(matches!(classify_get(br#"[["doveadmResponse",[],"coi-unset"]]"#), GetResult::Retry(_)));
    }

    #[test]
    fn held_values_are_fingerprinted_by_endpoint_or_token() {
        use crate::push::jobs::{fingerprint, TargetKind};
        let public = r#"{"msgtype":"chat","resource":{"endpoint":"https://push.example/a","keys":{"p256dh":"x","auth":"y"}},"created":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(held_fingerprint(TargetKind::Webpush, public), Some(fingerprint("https://push.example/a")));
        assert_eq!(held_fingerprint(TargetKind::Deltachat, "tok"), Some(fingerprint("tok")));
        assert_eq!(held_fingerprint(TargetKind::Webpush, ""), None);
        assert_eq!(held_fingerprint(TargetKind::Webpush, "not json"), Some(String::new()));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(br#"[["doveadmResponse",[],"coi-unset"]]"#), UnsetResult::Done);
        assert_eq!(
            classify(br#"[["error",{"type":"exitCode", "exitCode":67},"coi-unset"]]"#),
            UnsetResult::NoUser
        );
        assert!(matches!(classify(br#"[["error",{"type":"exitCode", "exitCode":75},"t"]]"#), UnsetResult::Retry(_)));
        assert!(matches!(classify(br#"[["error",{"type":"exitCode", "exitCode":64},"t"]]"#), UnsetResult::Permanent(_)));
        assert!(matches!(classify(br#"[["error",{"type":"unknownMethod", "exitCode":0},"t"]]"#), UnsetResult::Permanent(_)));
        assert!(matches!(classify(b"<html>"), UnsetResult::Retry(_)));
        assert!(matches!(classify(b"[]"), UnsetResult::Retry(_)));
    }
}

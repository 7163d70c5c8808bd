//! Web Push subscriptions as IMAP clients set them (DESIGN §3):
//! `SETMETADATA "" (/private/vendor/vendor.dovecot/webpush/subscriptions/<id> <json>)`.
//!
//! What this module owns: the id syntax, parsing and limiting the client's
//! JSON (unknown keys dropped, `created` added), the stored form (the
//! public part plus the validation secret and state, which clients never
//! see), validation with the secret, and expiry of unvalidated ones.
//!
//! Invariants: every function is total; a refusal is a message for the
//! client (`NO [CANNOT] ...`) that says what is allowed and never echoes
//! the value.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::time::rfc3339;
use crate::wire::WebPushTargetV1;

/// Longest accepted client JSON, bytes.
pub const MAX_JSON_BYTES: usize = 4096;
/// Longest `client` and `device`, bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// Longest `resource.endpoint`, bytes.
pub const MAX_ENDPOINT_BYTES: usize = 512;

/// Which messages a subscription wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgType {
    /// Chats and group chats.
    Chat,
    /// Everything but chats.
    Mail,
    /// Both.
    All,
}

impl MsgType {
    /// The spec's `chat`, `mail`, `all`, and Dovecot's 2020 spellings
    /// `email` and `any` (clients written against that plugin).
    pub fn parse(value: &str) -> Option<MsgType> {
        match value {
            "chat" => Some(MsgType::Chat),
            "mail" | "email" => Some(MsgType::Mail),
            "all" | "any" => Some(MsgType::All),
            _ => None,
        }
    }

    /// Whether a message of classifier kind `kind` is wanted. Read
    /// receipts never are (DESIGN §3).
    pub fn wants(self, kind: &str) -> bool {
        let chat = matches!(kind, "chat" | "group-chat");
        match kind {
            "read-receipt" => false,
            _ => match self {
                MsgType::Chat => chat,
                MsgType::Mail => !chat,
                MsgType::All => true,
            },
        }
    }
}

/// `resource.keys`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// Client public key, base64url.
    pub p256dh: String,
    /// Auth secret, base64url.
    pub auth: String,
}

/// `resource`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Push service URL.
    pub endpoint: String,
    /// The client's keys.
    pub keys: Keys,
}

/// What GETMETADATA shows: the client's fields that the spec knows, plus
/// `created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicSubscription {
    /// Free text naming the client application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Free text naming the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Which messages are pushed.
    pub msgtype: MsgType,
    /// Where and how to push.
    pub resource: Resource,
    /// When the server accepted it (RFC 3339).
    pub created: String,
}

/// What the plugin stores (in a `pvt` attribute clients cannot read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The client-visible part.
    pub public: PublicSubscription,
    /// Unix seconds of acceptance.
    pub created_unix: i64,
    /// The secret sent in the validation push.
    pub secret: String,
    /// The client echoed the secret in time.
    pub validated: bool,
}

/// `[0-9A-Za-z_-]{10,36}`
pub fn is_valid_id(id: &[u8]) -> bool {
    (10..=36).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn decode_b64url(value: &str) -> Option<Vec<u8>> {
    let trimmed = value.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

fn optional_label(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.len() <= MAX_LABEL_BYTES => Ok(Some(s.clone())),
        Some(serde_json::Value::String(_)) => Err(format!("\"{key}\" is longer than {MAX_LABEL_BYTES} octets")),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

fn required_str<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, key: &str, path: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{path}\" must be a string")),
        None => Err(format!("\"{path}\" is missing")),
    }
}

fn required_obj<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
    path: &str,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, String> {
    match obj.get(key) {
        Some(serde_json::Value::Object(o)) => Ok(o),
        Some(_) => Err(format!("\"{path}\" must be an object")),
        None => Err(format!("\"{path}\" is missing")),
    }
}

fn valid_endpoint(endpoint: &str) -> bool {
    let rest = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    }) && !endpoint.chars().any(|c| c.is_control() || c == ' ')
}

/// Parses and validates the client's JSON; `now_unix` becomes `created`.
/// Returns the client-visible part.
pub fn parse_client_json(json: &[u8], now_unix: i64) -> Result<PublicSubscription, String> {
    const PREFIX: &str = "invalid Web Push subscription: ";
    let fail = |m: String| format!("{PREFIX}{m}");
    if json.len() > MAX_JSON_BYTES {
        return Err(fail(format!("longer than {MAX_JSON_BYTES} octets")));
    }
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|_| fail("not a JSON object".to_string()))?;
    let obj = value.as_object().ok_or_else(|| fail("not a JSON object".to_string()))?;
    let client = optional_label(obj, "client").map_err(fail)?;
    let device = optional_label(obj, "device").map_err(fail)?;
    let msgtype = match obj.get("msgtype") {
        None => return Err(fail("\"msgtype\" is missing (chat, mail or all)".to_string())),
        Some(serde_json::Value::String(s)) => {
            MsgType::parse(s).ok_or_else(|| fail("\"msgtype\" must be chat, mail or all".to_string()))?
        }
        Some(_) => return Err(fail("\"msgtype\" must be chat, mail or all".to_string())),
    };
    let resource = required_obj(obj, "resource", "resource").map_err(fail)?;
    let endpoint = required_str(resource, "endpoint", "resource.endpoint").map_err(fail)?;
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(fail(format!("\"resource.endpoint\" is longer than {MAX_ENDPOINT_BYTES} octets")));
    }
    if !valid_endpoint(endpoint) {
        return Err(fail("\"resource.endpoint\" must be an https:// URL".to_string()));
    }
    let keys = required_obj(resource, "keys", "resource.keys").map_err(fail)?;
    let p256dh = required_str(keys, "p256dh", "resource.keys.p256dh").map_err(fail)?;
    let auth = required_str(keys, "auth", "resource.keys.auth").map_err(fail)?;
    match decode_b64url(p256dh) {
        Some(k) if k.len() == 65 && k[0] == 0x04 => {}
        _ => {
            return Err(fail(
                "\"resource.keys.p256dh\" must be an uncompressed P-256 public key in base64url".to_string(),
            ))
        }
    }
    match decode_b64url(auth) {
        Some(a) if a.len() == 16 => {}
        _ => return Err(fail("\"resource.keys.auth\" must be 16 octets in base64url".to_string())),
    }
    Ok(PublicSubscription {
        client,
        device,
        msgtype,
        resource: Resource {
            endpoint: endpoint.to_string(),
            keys: Keys { p256dh: p256dh.to_string(), auth: auth.to_string() },
        },
        created: rfc3339(now_unix),
    })
}

/// A new random validation secret (122 random bits, hex).
pub fn new_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl StoredSubscription {
    /// A freshly accepted, not yet validated subscription.
    pub fn new(public: PublicSubscription, now_unix: i64, secret: String) -> StoredSubscription {
        StoredSubscription { public, created_unix: now_unix, secret, validated: false }
    }

    /// Reads a stored value; `None` for anything this module did not write.
    pub fn parse(stored: &[u8]) -> Option<StoredSubscription> {
        serde_json::from_slice(stored).ok()
    }

    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Unvalidated for longer than `timeout_secs`: to be discarded.
    pub fn is_expired(&self, now_unix: i64, timeout_secs: u64) -> bool {
        !self.validated && now_unix.saturating_sub(self.created_unix) > i64::try_from(timeout_secs).unwrap_or(i64::MAX)
    }

    /// Accepts the client's answer to the validation push.
    pub fn validate(&mut self, secret: &[u8], now_unix: i64, timeout_secs: u64) -> Result<(), String> {
        if self.is_expired(now_unix, timeout_secs) {
            return Err("Web Push validation came too late: subscribe again".to_string());
        }
        if !constant_time_eq(secret, self.secret.as_bytes()) {
            return Err("Web Push validation failed: wrong secret".to_string());
        }
        self.validated = true;
        Ok(())
    }

    /// What GETMETADATA shows.
    pub fn public_json(&self) -> String {
        serde_json::to_string(&self.public).unwrap_or_default()
    }

    /// The push target of this subscription.
    pub fn target(&self, id: &str) -> WebPushTargetV1 {
        WebPushTargetV1 {
            subscription_id: id.to_string(),
            endpoint: self.public.resource.endpoint.clone(),
            p256dh: self.public.resource.keys.p256dh.clone(),
            auth: self.public.resource.keys.auth.clone(),
        }
    }
}

/// Compares without an early exit, so response timing says nothing about
/// how much of a guessed secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    pub(crate) const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    pub(crate) fn client_json(msgtype: &str, endpoint: &str) -> String {
        format!(
            r#"{{"client":"Delta","device":"phone","msgtype":"{msgtype}","extra":1,
               "resource":{{"endpoint":"{endpoint}","keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}}}"#
        )
    }

    #[test]
    fn ids() {
        assert!(is_valid_id(b"abcdefghij"));
        assert!(is_valid_id(b"A-b_0123456789012345678901234567890Z"));
        assert!(!is_valid_id(b"short"));
        assert!(!is_valid_id(b"abcdefghij/validate"));
        assert!(!is_valid_id(b"../../../../x"));
        assert!(!is_valid_id(&[b'a'; 37]));
    }

    #[test]
    fn good_json_is_accepted_unknown_keys_dropped() {
        let p = parse_client_json(client_json("any", "https://push.example/x").as_bytes(), 1_614_265_330).unwrap();
        assert_eq!(p.msgtype, MsgType::All);
        assert_eq!(p.created, "2021-02-25T15:02:10Z");
        let shown = serde_json::to_string(&p).unwrap();
        assert!(!shown.contains("extra"));
        assert!(shown.contains("\"msgtype\":\"all\""));
    }

    #[test]
    fn bad_json_says_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            ("[]".into(), "not a JSON object"),
            ("{".into(), "not a JSON object"),
            (client_json("sms", "https://p/x"), "msgtype"),
            (client_json("chat", "ftp://p/x"), "https://"),
            (client_json("chat", &format!("https://p/{}", "a".repeat(600))), "512"),
            (client_json("chat", "https://p/x").replace(AUTH, "AAAA"), "16 octets"),
            (client_json("chat", "https://p/x").replace(P256DH, "BCVx"), "P-256"),
            (client_json("chat", "https://p/x").replace("\"Delta\"", &format!("\"{}\"", "c".repeat(129))), "128"),
            (client_json("chat", "https://p/x").replace("\"Delta\"", "7"), "string"),
            (r#"{"msgtype":"chat"}"#.into(), "resource"),
            (" ".repeat(5000), "4096"),
        ];
        for (json, needle) in cases {
            let err = parse_client_json(json.as_bytes(), 0).unwrap_err();
            assert!(err.contains(needle), "{json:.60}: {err}");
        }
    }

    #[test]
    fn validation_and_expiry() {
        let p = parse_client_json(client_json("chat", "https://p/x").as_bytes(), 100).unwrap();
        let mut s = StoredSubscription::new(p, 100, "s3cret".into());
        let round = StoredSubscription::parse(s.to_json().as_bytes()).unwrap();
        assert_eq!(round, s);
        assert!(!s.public_json().contains("s3cret"));
        assert!(s.validate(b"wrong", 150, 300).unwrap_err().contains("wrong secret"));
        assert!(s.validate(b"s3cret", 500, 300).unwrap_err().contains("too late"));
        assert!(s.is_expired(401, 300));
        s.validate(b"s3cret", 399, 300).unwrap();
        assert!(!s.is_expired(1_000_000, 300));
        assert_eq!(s.target("abcdefghij").endpoint, "https://p/x");
        assert!(StoredSubscription::parse(b"{}").is_none());
        assert_ne!(new_secret(), new_secret());
    }

    #[test]
    fn msgtype_matching() {
        assert!(MsgType::Chat.wants("chat") && MsgType::Chat.wants("group-chat"));
        assert!(!MsgType::Chat.wants("not-chat"));
        assert!(MsgType::Mail.wants("not-chat") && !MsgType::Mail.wants("chat"));
        assert!(MsgType::All.wants("chat") && MsgType::All.wants("not-chat"));
        for m in [MsgType::Chat, MsgType::Mail, MsgType::All] {
            assert!(!m.wants("read-receipt"));
        }
    }
}

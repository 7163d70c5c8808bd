//! Target `webpush_subscription`: the Web Push subscription JSON an IMAP
//! client sets with SETMETADATA (`coi_core::push::subscription`), what the
//! plugin stores for it, and the Delta Chat device token values
//! (`coi_core::push::devicetoken`).
//!
//! Input: 8 bytes of clock (`now`, unix seconds, any `i64`), 8 bytes of
//! validation timeout, 4 bytes of token count, then the value.
//!
//! Properties:
//! - nothing panics, whatever the bytes and the clock;
//! - a refusal is a short, fixed message (prefix + what is allowed), never
//!   an echo of the value;
//! - an accepted subscription obeys the limits (endpoint http(s), at most
//!   512 bytes, no control characters or spaces; labels at most 128 bytes;
//!   p256dh a 65-byte uncompressed point, auth 16 bytes) and reads back the
//!   same from its own JSON;
//! - the stored form round-trips, validates with its secret at once and
//!   refuses any other secret; its push target fits a `webpush_validation`
//!   record (`encode_record` never has to give up on one);
//! - any stored value is either refused or usable (expiry, validation,
//!   public JSON) without panicking;
//! - an accepted device token is stored and read back unchanged;
//! - the checks for values from dsync or an import (`push::imported`) and
//!   the import document reader (`transfer::plan_import`) take the same
//!   bytes without panicking, and their refusals stay short.

use arbitrary::Unstructured;
use coi_core::push::devicetoken::{accept_token, parse_stored, token_key};
use coi_core::push::subscription::{
    is_valid_id, parse_client_json, MsgType, StoredSubscription, MAX_ENDPOINT_BYTES,
    MAX_JSON_BYTES, MAX_LABEL_BYTES,
};
use coi_core::wire::{encode_record, scan, Record, ScanItem, WebPushValidationV1};

const REFUSAL_PREFIX: &str = "invalid Web Push subscription: ";
/// Longest refusal: the prefix and the longest fixed reason.
const MAX_REFUSAL_BYTES: usize = 160;

/// Runs the subscription and token readers on `data`.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let now: i64 = u.arbitrary().unwrap_or(0);
    let timeout: u64 = u.arbitrary().unwrap_or(0);
    let others: u32 = u.arbitrary().unwrap_or(0);
    let value = u.take_rest();

    check_imported(value, now, others);
    let _ = is_valid_id(value);
    if let Ok(text) = std::str::from_utf8(value) {
        if let Some(t) = MsgType::parse(text) {
            assert!(!t.wants("read-receipt"));
        }
    }

    match parse_client_json(value, now) {
        Ok(public) => {
            let endpoint = &public.resource.endpoint;
            assert!(endpoint.len() <= MAX_ENDPOINT_BYTES);
            assert!(endpoint.starts_with("https://") || endpoint.starts_with("http://"));
            assert!(!endpoint.chars().any(|c| c.is_control() || c == ' '));
            for label in [&public.client, &public.device].into_iter().flatten() {
                assert!(label.len() <= MAX_LABEL_BYTES);
            }
            assert!(public.created.ends_with('Z'));
            let shown = serde_json::to_vec(&public).expect("public part serialises");
            if shown.len() <= MAX_JSON_BYTES {
                assert_eq!(
                    parse_client_json(&shown, now).as_ref(),
                    Ok(&public),
                    "accepted subscription does not read back from its own JSON"
                );
            }
            check_stored_cycle(public, now, timeout);
        }
        Err(message) => {
            assert!(message.starts_with(REFUSAL_PREFIX), "{message}");
            assert!(message.len() <= MAX_REFUSAL_BYTES, "refusal of {} bytes", message.len());
        }
    }

    if let Some(stored) = StoredSubscription::parse(value) {
        let _ = stored.is_expired(now, timeout);
        let mut s = stored.clone();
        let _ = s.validate(value, now, timeout);
        let _ = serde_json::from_str::<serde_json::Value>(&stored.public_json())
            .expect("public JSON of a stored subscription is JSON");
        let _ = stored.target("abcdefghij");
    }

    match accept_token(value, others, now) {
        Ok((key, stored)) => {
            let text = std::str::from_utf8(value).expect("accepted tokens are UTF-8");
            assert_eq!(key, token_key(text));
            let back = parse_stored(stored.as_bytes()).expect("stored token reads back");
            assert_eq!((back.token.as_str(), back.seen_unix), (text, now));
        }
        Err(message) => assert!(message.len() <= MAX_REFUSAL_BYTES),
    }
    let _ = parse_stored(value);
}

fn check_stored_cycle(public: coi_core::push::subscription::PublicSubscription, now: i64, timeout: u64) {
    let secret = "0123456789abcdef0123456789abcdef".to_string();
    let stored = StoredSubscription::new(public, now, secret.clone());
    let json = stored.to_json();
    let back = StoredSubscription::parse(json.as_bytes()).expect("stored subscription reads back");
    assert_eq!(back, stored);
    assert!(!back.is_expired(now, timeout));
    let mut wrong = back.clone();
    assert!(wrong.validate(b"not-the-secret", now, timeout).is_err());
    assert!(!wrong.validated);
    let mut right = back.clone();
    assert_eq!(right.validate(secret.as_bytes(), now, timeout), Ok(()));
    assert!(right.validated);

    let record = Record::WebPushValidation(WebPushValidationV1 {
        id: "0190b1d2-0000-7000-8000-000000000001".into(),
        ts_ms: 1,
        user: "alice@example.org".into(),
        target: stored.target("abcdefghij0123456789"),
        secret,
        pid: 1,
        dropped_before: 0,
    });
    let frame = encode_record(&record);
    match &scan(&frame).0[..] {
        [ScanItem::Record(r)] => assert_eq!(r, &record),
        other => panic!("validation record of an accepted subscription did not round-trip: {other:?}"),
    }
}

/// The dsync/import checks and the import document reader on the same bytes.
fn check_imported(value: &[u8], now: i64, others: u32) {
    use coi_core::push::imported::{check_stored, endpoint_is_private, ImportRules};
    let rules = ImportRules { subscription_limit: (others % 100).max(1), allow_private_endpoints: others & 1 == 1 };
    for name in ["webpush/abcdefghij12", "devicetokens/0123456789abcdef", "webpush/x", "other"] {
        if let Err(refusal) = check_stored(name, value, others, &rules, now) {
            assert!(refusal.message.len() <= MAX_REFUSAL_BYTES + 40, "refusal of {} bytes", refusal.message.len());
        }
    }
    if let Ok(text) = std::str::from_utf8(value) {
        let _ = endpoint_is_private(text);
    }
    let _ = coi_core::transfer::plan_import(value);
}

//! Choosing who hears about one delivered message, and the `push` record
//! the sidecar sends from (docs/webpush.md).
//!
//! Rules: read receipts are never pushed; a Web Push subscription gets the
//! message when it is validated, not expired and its msgtype matches the
//! message's kind; Delta Chat tokens get every message except those the
//! user sent themself (DESIGN §4), each distinct token once.

use super::devicetoken::parse_stored;
use super::subscription::StoredSubscription;
use crate::wire::{DeltaChatTargetV1, PushEventV1, PushMessageV1, WebPushTargetV1};

/// One stored subscription, as read from the user's METADATA.
#[derive(Debug, Clone, Copy)]
pub struct StoredSubscriptionRef<'a> {
    /// Its id (the METADATA key's last part).
    pub id: &'a str,
    /// Its stored value.
    pub stored: &'a [u8],
}

/// One stored Delta Chat token.
#[derive(Debug, Clone, Copy)]
pub struct StoredTokenRef<'a> {
    /// Its key (below `.../coi/devicetokens/`).
    pub key: &'a str,
    /// Its stored value.
    pub stored: &'a [u8],
}

/// The Web Push targets for a message of `kind`.
pub fn webpush_targets(
    subscriptions: &[StoredSubscriptionRef<'_>],
    kind: &str,
    now_unix: i64,
    validation_timeout_secs: u64,
) -> Vec<WebPushTargetV1> {
    subscriptions
        .iter()
        .filter_map(|s| Some((s.id, StoredSubscription::parse(s.stored)?)))
        .filter(|(_, sub)| sub.validated && !sub.is_expired(now_unix, validation_timeout_secs))
        .filter(|(_, sub)| sub.public.msgtype.wants(kind))
        .map(|(id, sub)| sub.target(id))
        .collect()
}

/// Whether the sender is the recipient (case-insensitive addresses).
pub fn is_self_sent(from_email: Option<&str>, recipient: Option<&str>) -> bool {
    match (from_email, recipient) {
        (Some(f), Some(r)) => !f.is_empty() && f.trim().eq_ignore_ascii_case(r.trim()),
        _ => false,
    }
}

/// The Delta Chat targets: every distinct token, none for self-sent mail
/// or read receipts.
pub fn deltachat_targets(tokens: &[StoredTokenRef<'_>], kind: &str, self_sent: bool) -> Vec<DeltaChatTargetV1> {
    if self_sent || kind == "read-receipt" {
        return Vec::new();
    }
    let mut out: Vec<DeltaChatTargetV1> = Vec::new();
    for t in tokens {
        let Some(stored) = parse_stored(t.stored) else { continue };
        if out.iter().any(|o| o.token == stored.token) {
            continue;
        }
        out.push(DeltaChatTargetV1 { token_key: t.key.to_string(), token: stored.token });
    }
    out
}

/// Builds the push record, or `None` when nobody is to be told.
pub fn build_push(
    id: String,
    ts_ms: u64,
    user: &str,
    message: PushMessageV1,
    webpush: Vec<WebPushTargetV1>,
    deltachat: Vec<DeltaChatTargetV1>,
) -> Option<PushEventV1> {
    if message.kind == "read-receipt" || (webpush.is_empty() && deltachat.is_empty()) {
        return None;
    }
    Some(PushEventV1 { id, ts_ms, user: user.to_string(), message, webpush, deltachat, pid: std::process::id(), dropped_before: 0, targets_dropped: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::devicetoken::accept_token;
    use crate::push::subscription::tests::client_json;
    use crate::push::subscription::{parse_client_json, StoredSubscription};

    fn stored(msgtype: &str, validated: bool, created: i64) -> String {
        let p = parse_client_json(client_json(msgtype, "https://p/x").as_bytes(), created).unwrap();
        let mut s = StoredSubscription::new(p, created, "k".into());
        s.validated = validated;
        s.to_json()
    }

    #[test]
    fn webpush_filters_by_validation_expiry_and_msgtype() {
        let chat = stored("chat", true, 0);
        let mail = stored("mail", true, 0);
        let pending = stored("all", false, 990);
        let stale = stored("all", false, 0);
        let subs = [
            StoredSubscriptionRef { id: "chat0000001", stored: chat.as_bytes() },
            StoredSubscriptionRef { id: "mail0000001", stored: mail.as_bytes() },
            StoredSubscriptionRef { id: "pend0000001", stored: pending.as_bytes() },
            StoredSubscriptionRef { id: "stal0000001", stored: stale.as_bytes() },
            StoredSubscriptionRef { id: "junk0000001", stored: b"junk" },
        ];
        let ids = |kind| webpush_targets(&subs, kind, 1000, 300).into_iter().map(|t| t.subscription_id).collect::<Vec<_>>();
        assert_eq!(ids("chat"), ["chat0000001"]);
        assert_eq!(ids("group-chat"), ["chat0000001"]);
        assert_eq!(ids("not-chat"), ["mail0000001"]);
        assert!(ids("read-receipt").is_empty());
    }

    #[test]
    fn deltachat_dedupes_and_skips_self_sent() {
        let (k1, a) = accept_token(b"tok-a", 0, 1).unwrap();
        let (_, a_again) = accept_token(b"tok-a", 0, 2).unwrap();
        let (k2, b) = accept_token(b"tok-b", 0, 1).unwrap();
        let tokens = [
            StoredTokenRef { key: &k1, stored: a.as_bytes() },
            StoredTokenRef { key: "oldkey", stored: a_again.as_bytes() },
            StoredTokenRef { key: &k2, stored: b.as_bytes() },
            StoredTokenRef { key: "bad", stored: b"{" },
        ];
        let t = deltachat_targets(&tokens, "chat", false);
        assert_eq!(t.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), ["tok-a", "tok-b"]);
        assert!(deltachat_targets(&tokens, "chat", true).is_empty());
        assert!(deltachat_targets(&tokens, "read-receipt", false).is_empty());
        assert!(is_self_sent(Some("Me@Example.org"), Some("me@example.org")));
        assert!(!is_self_sent(Some("you@example.org"), Some("me@example.org")));
        assert!(!is_self_sent(None, Some("me@example.org")));
    }

    #[test]
    fn no_record_without_targets_or_for_receipts() {
        let m = PushMessageV1 { kind: "chat".into(), ..PushMessageV1::default() };
        assert!(build_push("i".into(), 1, "u", m.clone(), vec![], vec![]).is_none());
        let dc = vec![DeltaChatTargetV1 { token_key: "k".into(), token: "t".into() }];
        assert!(build_push("i".into(), 1, "u", m, vec![], dc.clone()).is_some());
        let r = PushMessageV1 { kind: "read-receipt".into(), ..PushMessageV1::default() };
        assert!(build_push("i".into(), 1, "u", r, vec![], dc).is_none());
    }
}

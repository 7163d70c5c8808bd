//! Push jobs: what the queue holds for Web Push, Delta Chat and the
//! METADATA clean-up, and how the plugin's `push` / `webpush_validation`
//! records become jobs at intake.
//!
//! What this module owns:
//! - [`Channel`]: the four push channels. Each is one queue "endpoint"
//!   (`push:webpush`, `push:validation`, `push:deltachat`,
//!   `push:metadata-unset`; a colon can never appear in a webhook name, so
//!   they cannot collide) with its own driver, so retries, dead letters
//!   and `dead-letters replay` work exactly as for webhooks.
//! - [`Job`]: the JSON stored as the queue event's payload, one job per
//!   target (a subscription or a distinct Delta Chat token).
//! - [`route`]: record -> jobs. Every target is checked here, before it is
//!   queued: channel enabled, subscription id and token key syntax (they
//!   become METADATA keys), endpoint URL (https, no credentials; an IP
//!   literal must not be private unless allowed), keys decodable. Identical
//!   Delta Chat tokens of one record become one job carrying every key.
//!
//! Invariants: job event ids are `<record id>/wp/<subscription id>`,
//! `<record id>/val`, `<record id>/dc/<token key>`: unique per target,
//! stable across a re-read of the spool, so a record read twice never
//! queues a job twice; clean-ups are `unset:<user>:<metadata key>`, so one
//! key has at most one clean-up pending. Pure: no
//! I/O, no clock.
//!
//! Callers: `intake::reader` ([`route`]), the push sinks (decode [`Job`]).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use coi_core::wire::{PushEventV1, PushMessageV1, WebPushTargetV1, WebPushValidationV1};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ece::Subscriber;
use super::payload::VALIDATION_MAX_BYTES;
use crate::delivery::address::is_forbidden;
use crate::queue::ingest::{DeadTargetKey, NewEvent};

/// METADATA prefix of Web Push subscriptions (server metadata).
pub const SUBSCRIPTIONS_PREFIX: &str = "/private/vendor/vendor.dovecot/webpush/subscriptions/";
/// METADATA prefix of Delta Chat device tokens (server metadata).
pub const DEVICETOKENS_PREFIX: &str = "/private/vendor/vendor.dovecot/coi/devicetokens/";

/// A push channel: one queue endpoint, one driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// New-message Web Push.
    WebPush,
    /// Subscription validation pushes.
    Validation,
    /// Delta Chat notification proxy.
    DeltaChat,
    /// Removing gone targets from METADATA through doveadm.
    MetadataUnset,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [Channel::WebPush, Channel::Validation, Channel::DeltaChat, Channel::MetadataUnset];

    /// The queue endpoint name.
    pub fn queue_name(self) -> &'static str {
        match self {
            Channel::WebPush => "push:webpush",
            Channel::Validation => "push:validation",
            Channel::DeltaChat => "push:deltachat",
            Channel::MetadataUnset => "push:metadata-unset",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Channel::WebPush => "webpush",
            Channel::Validation => "validation",
            Channel::DeltaChat => "deltachat",
            Channel::MetadataUnset => "metadata_unset",
        }
    }

    /// The channel of a queue endpoint name, if it is one.
    pub fn from_queue_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.queue_name() == name)
    }
}

/// Which kind of target a dead-target record or a clean-up is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A Web Push subscription.
    Webpush,
    /// A Delta Chat device token.
    Deltachat,
}

impl TargetKind {
    /// The metric label / `dead_targets.channel` value.
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Webpush => "webpush",
            TargetKind::Deltachat => "deltachat",
        }
    }
}

/// One queued push job (the queue event's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// Tell a Web Push subscription about a new message.
    Webpush {
        /// Recipient.
        user: String,
        /// The record's time (latency reference), unix ms.
        ts_ms: u64,
        /// The message.
        message: PushMessageV1,
        /// The subscription.
        target: WebPushTargetV1,
    },
    /// Push the validation secret to a new subscription.
    Validation {
        /// Subscriber.
        user: String,
        /// Unix ms.
        ts_ms: u64,
        /// The subscription.
        target: WebPushTargetV1,
        /// What the client must echo.
        secret: String,
    },
    /// POST a token to the Delta Chat notification proxy.
    Deltachat {
        /// Recipient.
        user: String,
        /// Unix ms.
        ts_ms: u64,
        /// The opaque token.
        token: String,
        /// Every METADATA key holding this token (removed on 410).
        token_keys: Vec<String>,
    },
    /// Unset one METADATA key of a user through doveadm, if it still holds
    /// the dead target.
    MetadataUnset {
        /// Whose metadata.
        user: String,
        /// The full key, `/private/...`.
        key: String,
        /// What the key held.
        target: TargetKind,
        /// [`fingerprint`] of the dead endpoint or token: the key is removed
        /// only while it still holds that one (a client may have set a new
        /// subscription under the same id meanwhile). `None` in jobs queued
        /// before this field existed: removed unconditionally, as then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
}

impl Job {
    /// The record time, for latency (clean-ups have none).
    pub fn ts_ms(&self) -> Option<u64> {
        match self {
            Job::Webpush { ts_ms, .. } | Job::Validation { ts_ms, .. } | Job::Deltachat { ts_ms, .. } => Some(*ts_ms),
            Job::MetadataUnset { .. } => None,
        }
    }
}

/// What intake may queue (from the config; fixed until restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// `[webpush] enabled`.
    pub webpush: bool,
    /// `[webpush] allow_private_addresses`.
    pub webpush_allow_private: bool,
    /// `[deltachat] proxy_url` is set.
    pub deltachat: bool,
    /// `[dovecot] doveadm_url` is set: recall and read status can make
    /// their doveadm calls (`recall::ingest`).
    pub recall_doveadm: bool,
    /// `[recall]`.
    pub recall: crate::recall::settings::RecallSettings,
}

/// Why a target was not queued, or that it was: the `result` label of
/// `coi_push_targets_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetResult {
    /// Queued.
    Queued,
    /// A second target with the same Delta Chat token in one record.
    Deduplicated,
    /// The channel is not enabled in the sidecar.
    Disabled,
    /// Id, key or URL malformed.
    InvalidTarget,
    /// An endpoint on a private address while that is not allowed.
    PrivateAddress,
}

impl TargetResult {
    /// Every result, for pre-registering.
    pub const ALL: [TargetResult; 5] = [
        TargetResult::Queued,
        TargetResult::Deduplicated,
        TargetResult::Disabled,
        TargetResult::InvalidTarget,
        TargetResult::PrivateAddress,
    ];

    /// The metric label (`known_dead` is counted by the queue, which owns
    /// the dead-target table).
    pub fn label(self) -> &'static str {
        match self {
            TargetResult::Queued => "queued",
            TargetResult::Deduplicated => "deduplicated",
            TargetResult::Disabled => "disabled",
            TargetResult::InvalidTarget => "invalid_target",
            TargetResult::PrivateAddress => "private_address",
        }
    }
}

/// The jobs of one record and what happened to each target.
#[derive(Debug, Default)]
pub struct Routed {
    /// Jobs to queue.
    pub events: Vec<NewEvent>,
    /// (channel label, result) per target.
    pub results: Vec<(&'static str, TargetResult)>,
}

/// Decodes a key the way clients send them: base64url or standard base64,
/// padded or not.
pub fn decode_key(value: &str) -> Option<Vec<u8>> {
    let trimmed = value.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

/// Hex SHA-256 of what identifies a target beyond its key (the endpoint or
/// the token): a subscription id reused with a new endpoint is a new target.
pub fn fingerprint(value: &str) -> String {
    Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_subscription_id(id: &str) -> bool {
    (10..=36).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_token_key(key: &str) -> bool {
    (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Checks a Web Push target; `Ok` or the reason it is refused.
pub fn check_webpush_target(t: &WebPushTargetV1, allow_private: bool) -> Result<(), TargetResult> {
    if !valid_subscription_id(&t.subscription_id) || t.endpoint.len() > coi_core::wire::PUSH_ENDPOINT_MAX_BYTES {
        return Err(TargetResult::InvalidTarget);
    }
    let url = reqwest::Url::parse(&t.endpoint).map_err(|_| TargetResult::InvalidTarget)?;
    // RFC 8030 push services are https; plain http only in tests, which
    // allow private addresses anyway.
    let scheme_ok = url.scheme() == "https" || (allow_private && url.scheme() == "http");
    if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
        return Err(TargetResult::InvalidTarget);
    }
    match url.host() {
        None => return Err(TargetResult::InvalidTarget),
        Some(url::Host::Ipv4(ip)) if !allow_private && is_forbidden(ip.into()) => {
            return Err(TargetResult::PrivateAddress)
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && is_forbidden(ip.into()) => {
            return Err(TargetResult::PrivateAddress)
        }
        Some(_) => {}
    }
    let (Some(p256dh), Some(auth)) = (decode_key(&t.p256dh), decode_key(&t.auth)) else {
        return Err(TargetResult::InvalidTarget);
    };
    Subscriber::from_bytes(&p256dh, &auth).map_err(|_| TargetResult::InvalidTarget)?;
    Ok(())
}

fn job_event(event_id: String, ts_ms: u64, job: &Job, channel: Channel, dead: Option<DeadTargetKey>) -> Option<NewEvent> {
    // A job is strings and numbers only; serialisation cannot fail.
    let payload = serde_json::to_string(job).ok()?;
    Some(NewEvent {
        event_id,
        ts_ms,
        payload,
        endpoints: vec![channel.queue_name().to_string()],
        skip_if_dead: dead,
    })
}

fn webpush_dead_key(user: &str, t: &WebPushTargetV1) -> DeadTargetKey {
    DeadTargetKey {
        target: TargetKind::Webpush.label(),
        user: user.to_string(),
        target_key: t.subscription_id.clone(),
        fingerprint: fingerprint(&t.endpoint),
    }
}

/// The jobs of a `push` record.
pub fn route_push(p: &PushEventV1, routing: &Routing) -> Routed {
    let mut out = Routed::default();
    for t in &p.webpush {
        let label = Channel::WebPush.label();
        if !routing.webpush {
            out.results.push((label, TargetResult::Disabled));
            continue;
        }
        if let Err(why) = check_webpush_target(t, routing.webpush_allow_private) {
            out.results.push((label, why));
            continue;
        }
        let job = Job::Webpush {
            user: p.user.clone(),
            ts_ms: p.ts_ms,
            message: p.message.clone(),
            target: t.clone(),
        };
        let id = format!("{}/wp/{}", p.id, t.subscription_id);
        if let Some(ev) = job_event(id, p.ts_ms, &job, Channel::WebPush, Some(webpush_dead_key(&p.user, t))) {
            out.events.push(ev);
            out.results.push((label, TargetResult::Queued));
        }
    }
    // Identical tokens (a client that registered one token under two keys)
    // are posted once; a 410 removes every key holding it.
    let mut tokens: Vec<(&str, Vec<String>)> = Vec::new();
    for t in &p.deltachat {
        let label = Channel::DeltaChat.label();
        if !routing.deltachat {
            out.results.push((label, TargetResult::Disabled));
            continue;
        }
        let token_ok = !t.token.is_empty()
            && t.token.len() <= coi_core::wire::PUSH_TOKEN_MAX_BYTES
            && !t.token.chars().any(char::is_control);
        if !token_ok || !valid_token_key(&t.token_key) {
            out.results.push((label, TargetResult::InvalidTarget));
            continue;
        }
        match tokens.iter_mut().find(|(tok, _)| *tok == t.token) {
            Some((_, keys)) => {
                if !keys.contains(&t.token_key) {
                    keys.push(t.token_key.clone());
                }
                out.results.push((label, TargetResult::Deduplicated));
            }
            None => tokens.push((&t.token, vec![t.token_key.clone()])),
        }
    }
    for (token, token_keys) in tokens {
        let first = token_keys[0].clone();
        let dead = DeadTargetKey {
            target: TargetKind::Deltachat.label(),
            user: p.user.clone(),
            target_key: first.clone(),
            fingerprint: fingerprint(token),
        };
        let job = Job::Deltachat {
            user: p.user.clone(),
            ts_ms: p.ts_ms,
            token: token.to_string(),
            token_keys,
        };
        if let Some(ev) = job_event(format!("{}/dc/{first}", p.id), p.ts_ms, &job, Channel::DeltaChat, Some(dead)) {
            out.events.push(ev);
            out.results.push((Channel::DeltaChat.label(), TargetResult::Queued));
        }
    }
    out
}

/// The job of a `webpush_validation` record.
pub fn route_validation(v: &WebPushValidationV1, routing: &Routing) -> Routed {
    let mut out = Routed::default();
    let label = Channel::Validation.label();
    if !routing.webpush {
        out.results.push((label, TargetResult::Disabled));
        return out;
    }
    if v.secret.is_empty() || v.secret.len() > VALIDATION_MAX_BYTES {
        out.results.push((label, TargetResult::InvalidTarget));
        return out;
    }
    if let Err(why) = check_webpush_target(&v.target, routing.webpush_allow_private) {
        out.results.push((label, why));
        return out;
    }
    let job = Job::Validation {
        user: v.user.clone(),
        ts_ms: v.ts_ms,
        target: v.target.clone(),
        secret: v.secret.clone(),
    };
    let dead = webpush_dead_key(&v.user, &v.target);
    if let Some(ev) = job_event(format!("{}/val", v.id), v.ts_ms, &job, Channel::Validation, Some(dead)) {
        out.events.push(ev);
        out.results.push((label, TargetResult::Queued));
    }
    out
}

/// The METADATA clean-up jobs for a gone target (`fingerprint` of its
/// endpoint or token), one per key. Their event id is
/// `unset:<user>:<metadata key>`, so a clean-up already pending for the
/// same key is not queued twice.
pub fn unset_jobs(user: &str, target: TargetKind, keys: &[String], fingerprint: &str, ts_ms: u64) -> Vec<NewEvent> {
    let prefix = match target {
        TargetKind::Webpush => SUBSCRIPTIONS_PREFIX,
        TargetKind::Deltachat => DEVICETOKENS_PREFIX,
    };
    keys.iter()
        .filter_map(|k| {
            let key = format!("{prefix}{k}");
            let job = Job::MetadataUnset {
                user: user.to_string(),
                key: key.clone(),
                target,
                fingerprint: Some(fingerprint.to_string()),
            };
            job_event(format!("unset:{user}:{key}"), ts_ms, &job, Channel::MetadataUnset, None)
        })
        .collect()
}

/// The webpush dead-target key of a queued Web Push or validation job, or
/// the Delta Chat one, with the METADATA keys to unset.
pub fn gone_target(job: &Job) -> Option<(TargetKind, DeadTargetKey, Vec<String>)> {
    match job {
        Job::Webpush { user, target, .. } | Job::Validation { user, target, .. } => {
            Some((TargetKind::Webpush, webpush_dead_key(user, target), vec![target.subscription_id.clone()]))
        }
        Job::Deltachat { user, token, token_keys, .. } => Some((
            TargetKind::Deltachat,
            DeadTargetKey {
                target: TargetKind::Deltachat.label(),
                user: user.clone(),
                target_key: token_keys.first().cloned().unwrap_or_default(),
                fingerprint: fingerprint(token),
            },
            token_keys.clone(),
        )),
        Job::MetadataUnset { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coi_core::wire::DeltaChatTargetV1;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn keys() -> (String, String) {
        let secret = p256::SecretKey::random(&mut aes_gcm::aead::OsRng);
        (
            URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            URL_SAFE_NO_PAD.encode([9u8; 16]),
        )
    }

    fn target(id: &str, endpoint: &str) -> WebPushTargetV1 {
        let (p256dh, auth) = keys();
        WebPushTargetV1 { subscription_id: id.into(), endpoint: endpoint.into(), p256dh, auth }
    }

    fn dc(key: &str, token: &str) -> DeltaChatTargetV1 {
        DeltaChatTargetV1 { token_key: key.into(), token: token.into() }
    }

    fn push(webpush: Vec<WebPushTargetV1>, deltachat: Vec<DeltaChatTargetV1>) -> PushEventV1 {
        PushEventV1 {
            id: "0190-aaaa".into(),
            ts_ms: 5,
            user: "alice".into(),
            message: PushMessageV1 { uid: 1, uidvalidity: 2, folder: "INBOX".into(), kind: "chat".into(), ..Default::default() },
            webpush,
            deltachat,
            pid: 1,
            dropped_before: 0,
            targets_dropped: 0,
        }
    }

    const ALL_ON: Routing = Routing { webpush: true, webpush_allow_private: false, deltachat: true, recall_doveadm: false, recall: crate::recall::settings::RecallSettings { retention_ms: 0 } };

    fn labels(r: &Routed) -> Vec<(&'static str, &'static str)> {
        r.results.iter().map(|(c, r)| (*c, r.label())).collect()
    }

    #[test]
    fn one_job_per_target_with_stable_ids_and_channels() {
        let p = push(
            vec![target("subscription-1", "https://push.example.net/a"), target("subscription-2", "https://push.example.net/b")],
            vec![dc("00000000000000aa", "tok-a")],
        );
        let r = route_push(&p, &ALL_ON);
        let ids: Vec<&str> = r.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, vec!["0190-aaaa/wp/subscription-1", "0190-aaaa/wp/subscription-2", "0190-aaaa/dc/00000000000000aa"]);
        assert_eq!(r.events[0].endpoints, vec!["push:webpush"]);
        assert_eq!(r.events[2].endpoints, vec!["push:deltachat"]);
        let job: Job = serde_json::from_str(&r.events[1].payload).unwrap();
        assert!(matches!(job, Job::Webpush { ref target, .. } if target.subscription_id == "subscription-2"));
        assert!(r.events.iter().all(|e| e.skip_if_dead.is_some()));
        assert_eq!(route_push(&p, &ALL_ON).events[0].payload, r.events[0].payload, "deterministic");
    }

    #[test]
    fn identical_delta_chat_tokens_are_posted_once_with_every_key() {
        let p = push(vec![], vec![dc("k1", "same"), dc("k2", "other"), dc("k3", "same")]);
        let r = route_push(&p, &ALL_ON);
        assert_eq!(r.events.len(), 2);
        let Job::Deltachat { token, token_keys, .. } = serde_json::from_str(&r.events[0].payload).unwrap() else {
            panic!("not a deltachat job")
        };
        assert_eq!(token, "same");
        assert_eq!(token_keys, vec!["k1", "k3"]);
        assert_eq!(labels(&r).iter().filter(|(_, l)| *l == "deduplicated").count(), 1);
    }

    #[test]
    fn bad_targets_and_disabled_channels_are_counted_not_queued() {
        let mut bad_key = target("subscription-3", "https://push.example.net/c");
        bad_key.p256dh = "AAAA".into();
        let p = push(
            vec![
                target("short", "https://push.example.net/a"),
                target("subscription-1", "http://push.example.net/a"),
                target("subscription-2", "https://user:pw@push.example.net/a"),
                bad_key,
                target("subscription-4", "https://10.0.0.1/a"),
                target("subscription-5", "https://[::1]/a"),
                target("subscription/6", "https://push.example.net/a"),
            ],
            vec![dc("k/1", "t"), dc("k2", ""), dc("k3", "a\nb")],
        );
        let r = route_push(&p, &ALL_ON);
        assert!(r.events.is_empty());
        let got = labels(&r);
        assert_eq!(got.iter().filter(|(_, l)| *l == "private_address").count(), 2, "{got:?}");
        assert_eq!(got.iter().filter(|(_, l)| *l == "invalid_target").count(), 8, "{got:?}");
        let off = route_push(&push(vec![target("subscription-1", "https://x.example/")], vec![dc("k", "t")]), &Routing::default());
        assert!(off.events.is_empty());
        assert_eq!(labels(&off), vec![("webpush", "disabled"), ("deltachat", "disabled")]);
        // Tests allow loopback and plain http.
        let lab = Routing { webpush_allow_private: true, ..ALL_ON };
        assert_eq!(route_push(&push(vec![target("subscription-1", "http://127.0.0.1:9/p")], vec![]), &lab).events.len(), 1);
    }

    #[test]
    fn keys_in_standard_base64_with_padding_are_accepted() {
        let mut t = target("subscription-1", "https://push.example.net/a");
        let raw = URL_SAFE_NO_PAD.decode(&t.p256dh).unwrap();
        t.p256dh = base64::engine::general_purpose::STANDARD.encode(raw);
        t.auth = "tBHItJI5svbpez7KI4CCXg==".into();
        assert_eq!(check_webpush_target(&t, false), Ok(()));
    }

    #[test]
    fn validation_job_and_unset_jobs() {
        let v = WebPushValidationV1 {
            id: "v1".into(),
            ts_ms: 9,
            user: "alice".into(),
            target: target("subscription-1", "https://push.example.net/a"),
            secret: "s3cret".into(),
            pid: 1,
            dropped_before: 0,
        };
        let r = route_validation(&v, &ALL_ON);
        assert_eq!(r.events[0].event_id, "v1/val");
        assert_eq!(r.events[0].endpoints, vec!["push:validation"]);
        let mut long = v.clone();
        long.secret = "x".repeat(1025);
        assert_eq!(labels(&route_validation(&long, &ALL_ON)), vec![("validation", "invalid_target")]);

        let jobs = unset_jobs("alice", TargetKind::Deltachat, &["k1".into(), "k3".into()], "f00d", 1);
        assert_eq!(jobs[1].event_id, "unset:alice:/private/vendor/vendor.dovecot/coi/devicetokens/k3");
        assert_eq!(jobs[1].endpoints, vec!["push:metadata-unset"]);
        let job: Job = serde_json::from_str(&jobs[1].payload).unwrap();
        assert_eq!(
            job,
            Job::MetadataUnset {
                user: "alice".into(),
                key: "/private/vendor/vendor.dovecot/coi/devicetokens/k3".into(),
                target: TargetKind::Deltachat,
                fingerprint: Some("f00d".into()),
            }
        );
        // A clean-up queued before the fingerprint existed still reads.
        let old: Job = serde_json::from_str(
            r#"{"job":"metadata_unset","user":"a","key":"/private/k","target":"webpush"}"#,
        )
        .unwrap();
        assert!(matches!(old, Job::MetadataUnset { fingerprint: None, .. }));
        let Job::Validation { .. } = serde_json::from_str(&r.events[0].payload).unwrap() else { panic!() };
        let (_, dead, keys) = gone_target(&serde_json::from_str(&r.events[0].payload).unwrap()).unwrap();
        assert_eq!(keys, vec!["subscription-1"]);
        assert_eq!(dead.fingerprint, fingerprint("https://push.example.net/a"));
    }

    #[test]
    fn channel_names_round_trip_and_cannot_be_webhook_names() {
        for c in Channel::ALL {
            assert_eq!(Channel::from_queue_name(c.queue_name()), Some(c));
            assert!(c.queue_name().contains(':'));
        }
        assert_eq!(Channel::from_queue_name("ops"), None);
    }
}

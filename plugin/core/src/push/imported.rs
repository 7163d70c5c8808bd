//! Push targets that arrive without a client: the raw entries dsync copies
//! from another backend and `doveadm coi import` reads from an export,
//! written below `vendor/vendor.dovecot/pvt/coi/` (`webpush/<id>`,
//! `devicetokens/<key>`).
//!
//! What this module owns: the checks such a value must pass before it is
//! stored. They are the client's SETMETADATA checks ([`super::subscription`],
//! [`super::devicetoken`]) applied to the stored form, plus what the stored
//! form adds: a subscription arrives already validated, so no validation
//! push on this server vouched for its endpoint, and one on a loopback,
//! private or link-local address (or `localhost`) is refused unless the
//! operator allows it (`coi_webpush_allow_private_endpoints`); a token's key
//! must be the hash of its token; the per-user limits hold.
//!
//! Invariants: pure and total (values may come from a hostile backend);
//! a refusal names what is wrong and never echoes the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::devicetoken::{self, token_key, MAX_TOKENS_PER_USER};
use super::subscription::{is_valid_id, parse_client_json, StoredSubscription};

/// Longest stored value accepted, bytes (a subscription is under 2 kB).
pub const MAX_STORED_BYTES: usize = 8192;
/// Longest validation secret accepted (the plugin makes 32 hex digits).
pub const MAX_SECRET_BYTES: usize = 64;

/// Why a value was refused; a closed set (log field, metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// It fails the client's validation, or is no value the plugin writes.
    Invalid,
    /// A Web Push endpoint on a private address.
    PrivateEndpoint,
    /// The user already has as many as allowed.
    Limit,
    /// A key below the prefix that the plugin never writes.
    UnknownKey,
}

impl RefusalReason {
    /// The `enum coi_refusal` code (include/coi-shim.h).
    pub fn code(self) -> i32 {
        match self {
            RefusalReason::Invalid => 1,
            RefusalReason::PrivateEndpoint => 2,
            RefusalReason::Limit => 3,
            RefusalReason::UnknownKey => 4,
        }
    }
}

/// A refused value: why, and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// What is wrong (never the value itself).
    pub message: String,
}

fn refuse(reason: RefusalReason, message: impl Into<String>) -> Refusal {
    Refusal { reason, message: message.into() }
}

/// What the receiving user allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportRules {
    /// `coi_webpush_subscription_limit`.
    pub subscription_limit: u32,
    /// `coi_webpush_allow_private_endpoints`.
    pub allow_private_endpoints: bool,
}

/// Checks one raw entry. `name` is relative to `vendor/vendor.dovecot/pvt/coi/`;
/// `others` is how many other live entries of the same kind the user has.
pub fn check_stored(name: &str, value: &[u8], others: u32, rules: &ImportRules, now_unix: i64) -> Result<(), Refusal> {
    if value.len() > MAX_STORED_BYTES {
        return Err(refuse(RefusalReason::Invalid, format!("longer than {MAX_STORED_BYTES} octets")));
    }
    if let Some(id) = name.strip_prefix("webpush/") {
        check_subscription(id, value, others, rules, now_unix)
    } else if let Some(key) = name.strip_prefix("devicetokens/") {
        check_token(key, value, others)
    } else {
        Err(refuse(RefusalReason::UnknownKey, "not an entry the COI plugin writes"))
    }
}

fn check_subscription(id: &str, value: &[u8], others: u32, rules: &ImportRules, now_unix: i64) -> Result<(), Refusal> {
    let invalid = |m: &str| refuse(RefusalReason::Invalid, format!("Web Push subscription: {m}"));
    if !is_valid_id(id.as_bytes()) {
        return Err(invalid("the id is not 10 to 36 characters of A-Z, a-z, 0-9, '-' and '_'"));
    }
    let stored = StoredSubscription::parse(value).ok_or_else(|| invalid("not a stored subscription"))?;
    // The client-visible part passes exactly what a client's JSON must.
    let public = serde_json::to_vec(&stored.public).map_err(|_| invalid("not a stored subscription"))?;
    parse_client_json(&public, now_unix).map_err(|m| refuse(RefusalReason::Invalid, m))?;
    let created_ok = stored.public.created.len() <= 40 && stored.public.created.chars().all(|c| c.is_ascii_graphic());
    if !created_ok || stored.created_unix < 0 {
        return Err(invalid("\"created\" is not a time"));
    }
    let secret_ok = !stored.secret.is_empty()
        && stored.secret.len() <= MAX_SECRET_BYTES
        && stored.secret.bytes().all(|b| b.is_ascii_alphanumeric());
    if !secret_ok {
        return Err(invalid("the validation secret is malformed"));
    }
    if !rules.allow_private_endpoints && endpoint_is_private(&stored.public.resource.endpoint) {
        return Err(refuse(
            RefusalReason::PrivateEndpoint,
            "Web Push subscription: the endpoint is a loopback, private or link-local address",
        ));
    }
    if others >= rules.subscription_limit {
        return Err(refuse(
            RefusalReason::Limit,
            format!("too many Web Push subscriptions (at most {})", rules.subscription_limit),
        ));
    }
    Ok(())
}

fn check_token(key: &str, value: &[u8], others: u32) -> Result<(), Refusal> {
    let stored = devicetoken::parse_stored(value)
        .ok_or_else(|| refuse(RefusalReason::Invalid, "device token: not a stored token"))?;
    if others >= MAX_TOKENS_PER_USER {
        return Err(refuse(RefusalReason::Limit, format!("too many device tokens (at most {MAX_TOKENS_PER_USER})")));
    }
    devicetoken::accept_token(stored.token.as_bytes(), 0, stored.seen_unix)
        .map_err(|m| refuse(RefusalReason::Invalid, format!("device token: {m}")))?;
    if token_key(&stored.token) != key {
        return Err(refuse(RefusalReason::Invalid, "device token: the key is not the token's"));
    }
    Ok(())
}

/// The host of an `http(s)://` URL, lowercased, without port or brackets.
fn url_host(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether a Web Push endpoint points at this machine or a private network:
/// `localhost`, or an IP literal that is loopback, private (RFC 1918),
/// shared (RFC 6598), link-local, unique-local, unspecified or multicast
/// (also in IPv4-mapped form). Numeric hosts that are no plain IPv4 address
/// (`127.1`, `2130706433`, `0x7f.1`) count as private: HTTP clients read
/// them as IPv4. Names are not resolved here; the sidecar checks every
/// resolution before it connects.
pub fn endpoint_is_private(endpoint: &str) -> bool {
    let Some(host) = url_host(endpoint) else {
        return true;
    };
    if host.is_empty() || host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => private_v4(v4),
        Ok(IpAddr::V6(v6)) => private_v6(v6),
        Err(_) => host.split('.').all(|label| {
            let hex = label.strip_prefix("0x");
            !label.is_empty()
                && (label.bytes().all(|b| b.is_ascii_digit()) || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
        }),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let seg = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00
        || (seg[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::devicetoken::accept_token;
    use crate::push::subscription::tests::client_json;
    use crate::push::subscription::StoredSubscription;

    const RULES: ImportRules = ImportRules { subscription_limit: 3, allow_private_endpoints: false };

    fn stored(endpoint: &str) -> String {
        let public = parse_client_json(client_json("chat", endpoint).as_bytes(), 1000).unwrap();
        let mut s = StoredSubscription::new(public, 1000, "0123456789abcdef0123456789abcdef".to_string());
        s.validated = true;
        s.to_json()
    }

    #[test]
    fn a_subscription_the_plugin_stored_passes() {
        let v = stored("https://push.example.net/s/1");
        assert_eq!(check_stored("webpush/abcdefghij12", v.as_bytes(), 0, &RULES, 2000), Ok(()));
    }

    #[test]
    fn hostile_subscriptions_are_refused() {
        let good = stored("https://push.example.net/s/1");
        let reason = |name: &str, v: &str, others: u32| check_stored(name, v.as_bytes(), others, &RULES, 2000).unwrap_err().reason;
        assert_eq!(reason("webpush/short", &good, 0), RefusalReason::Invalid);
        assert_eq!(reason("webpush/abcdefghij12", "junk", 0), RefusalReason::Invalid);
        assert_eq!(reason("webpush/abcdefghij12", &good, 3), RefusalReason::Limit);
        assert_eq!(reason("webpush/abcdefghij12", &good.replace("push.example.net", "127.0.0.1:8080"), 0), RefusalReason::PrivateEndpoint);
        assert_eq!(reason("webpush/abcdefghij12", &good.replace("\"auth\":\"BTBZMqHH6r4Tts7J_aSIgg\"", "\"auth\":\"AAAA\""), 0), RefusalReason::Invalid);
        assert_eq!(reason("webpush/abcdefghij12", &good.replace("https://push.example.net", "ftp://push.example.net"), 0), RefusalReason::Invalid);
        assert_eq!(reason("webpush/abcdefghij12", &good.replace("0123456789abcdef0123456789abcdef", "a b"), 0), RefusalReason::Invalid);
        assert_eq!(reason("other/x", &good, 0), RefusalReason::UnknownKey);
        let huge = format!("{}{}", good, " ".repeat(MAX_STORED_BYTES));
        assert_eq!(reason("webpush/abcdefghij12", &huge, 0), RefusalReason::Invalid);
        let message = check_stored("webpush/abcdefghij12", good.replace("push.example.net", "10.1.2.3").as_bytes(), 0, &RULES, 2000)
            .unwrap_err()
            .message;
        assert!(!message.contains("10.1.2.3"), "{message}");
    }

    #[test]
    fn private_endpoints_pass_when_allowed() {
        let rules = ImportRules { allow_private_endpoints: true, ..RULES };
        let v = stored("http://127.0.0.1:9/push/x");
        assert_eq!(check_stored("webpush/abcdefghij12", v.as_bytes(), 0, &rules, 2000), Ok(()));
    }

    #[test]
    fn private_hosts() {
        for url in [
            "http://127.0.0.1/",
            "https://localhost:8443/x",
            "https://a.localhost/",
            "https://10.0.0.1/",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]:443/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://user@10.0.0.1/",
            "nonsense",
        ] {
            assert!(endpoint_is_private(url), "{url}");
        }
        for url in ["https://cafe.de/x", "https://push.example.net/x", "https://8.8.8.8/", "https://[2001:4860::1]/", "https://fcm.googleapis.com/fcm/send/x"] {
            assert!(!endpoint_is_private(url), "{url}");
        }
    }

    #[test]
    fn tokens() {
        let (key, v) = accept_token(b"openpgp:abc", 0, 5).unwrap();
        assert_eq!(check_stored(&format!("devicetokens/{key}"), v.as_bytes(), 0, &RULES, 0), Ok(()));
        let reason = |name: &str, v: &str, others: u32| check_stored(name, v.as_bytes(), others, &RULES, 0).unwrap_err().reason;
        assert_eq!(reason("devicetokens/0000000000000000", &v, 0), RefusalReason::Invalid);
        assert_eq!(reason(&format!("devicetokens/{key}"), &v, MAX_TOKENS_PER_USER), RefusalReason::Limit);
        assert_eq!(reason(&format!("devicetokens/{key}"), "{\"token\":\"a\\nb\",\"seen_unix\":1}", 0), RefusalReason::Invalid);
        assert_eq!(reason(&format!("devicetokens/{key}"), "[]", 0), RefusalReason::Invalid);
    }
}

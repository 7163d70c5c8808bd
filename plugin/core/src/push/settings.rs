//! The push settings of a user, validated once (STYLE §7):
//! - `coi_webpush_vapid_key`: absolute path of the sidecar's VAPID public
//!   key (PEM). WEBPUSH is offered while that file is readable. Default
//!   `/var/lib/coi-sidecar/webpush/vapid-public.pem`.
//! - `coi_webpush_subscription_limit`: live subscriptions per user, 1..=100,
//!   default 10.
//! - `coi_webpush_validation_timeout`: how long a new subscription waits
//!   for its validation answer: seconds, or a number with `s`, `m` or `h`;
//!   10 s ..= 24 h, default 5 min (the spec's "about 5 minutes").
//! - `coi_deltachat_push`: boolean; `yes` advertises XDELTAPUSH and keeps
//!   the user's Delta Chat device tokens. Default `no`.
//! - `coi_webpush_allow_private_endpoints`: boolean; `yes` lets dsync and
//!   `doveadm coi import` bring in subscriptions whose endpoint is a
//!   loopback, private or link-local address (tests). Default `no`.
//! - `coi_deltachat_max_smtp_recipients`: 1..=100000, unset by default;
//!   served as `/shared/vendor/deltachat/maxsmtprecipients` (Delta Chat
//!   splits a message to more recipients into several SMTP transactions, and
//!   the entry alone also makes it register push tokens).
//!
//! Invariants: unset or blank means the default; a bad value is an error
//! naming the setting (the FFI layer then disables push for the user and
//! logs it), never silently replaced.

use std::path::PathBuf;

use crate::settings::parse_bool;

/// Default `coi_webpush_vapid_key`.
pub const DEFAULT_VAPID_KEY: &str = "/var/lib/coi-sidecar/webpush/vapid-public.pem";
/// Default `coi_webpush_subscription_limit`.
pub const DEFAULT_SUBSCRIPTION_LIMIT: u32 = 10;
/// Default `coi_webpush_validation_timeout`, seconds.
pub const DEFAULT_VALIDATION_TIMEOUT_SECS: u64 = 300;

/// Validated push settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Path of the VAPID public key PEM.
    pub vapid_key: PathBuf,
    /// Live Web Push subscriptions per user.
    pub subscription_limit: u32,
    /// Seconds a subscription may stay unvalidated.
    pub validation_timeout_secs: u64,
    /// Delta Chat push on.
    pub deltachat: bool,
    /// Subscriptions from dsync or an import may point at private addresses.
    pub allow_private_endpoints: bool,
    /// The SMTP recipient limit Delta Chat is told about, if any.
    pub deltachat_max_smtp_recipients: Option<u32>,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            vapid_key: PathBuf::from(DEFAULT_VAPID_KEY),
            subscription_limit: DEFAULT_SUBSCRIPTION_LIMIT,
            validation_timeout_secs: DEFAULT_VALIDATION_TIMEOUT_SECS,
            deltachat: false,
            allow_private_endpoints: false,
            deltachat_max_smtp_recipients: None,
        }
    }
}

/// A refused push setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: invalid value {value:?}: {allowed}")]
pub struct PushSettingsError {
    /// The setting's name.
    pub setting: &'static str,
    /// The value, lossy UTF-8, at most 64 characters.
    pub value: String,
    /// What is allowed.
    pub allowed: &'static str,
}

fn blank_to_none(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty())
}

fn refuse(setting: &'static str, raw: &[u8], allowed: &'static str) -> PushSettingsError {
    PushSettingsError { setting, value: String::from_utf8_lossy(raw).chars().take(64).collect(), allowed }
}

fn parse_duration_secs(raw: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 = text.get(..split)?.parse().ok()?;
    let scale = match text[split..].trim() {
        "" | "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        _ => return None,
    };
    number.checked_mul(scale)
}

impl PushSettings {
    /// Validates the raw values (`None` = unset).
    pub fn from_raw(
        vapid_key: Option<&[u8]>,
        subscription_limit: Option<&[u8]>,
        validation_timeout: Option<&[u8]>,
        deltachat: Option<&[u8]>,
        allow_private_endpoints: Option<&[u8]>,
    ) -> Result<PushSettings, PushSettingsError> {
        let mut s = PushSettings::default();
        if let Some(raw) = blank_to_none(vapid_key) {
            match std::str::from_utf8(raw) {
                Ok(p) if p.starts_with('/') && !p.contains('\0') => s.vapid_key = PathBuf::from(p),
                _ => return Err(refuse("coi_webpush_vapid_key", raw, "an absolute path")),
            }
        }
        if let Some(raw) = blank_to_none(subscription_limit) {
            s.subscription_limit = std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| refuse("coi_webpush_subscription_limit", raw, "a number from 1 to 100"))?;
        }
        if let Some(raw) = blank_to_none(validation_timeout) {
            s.validation_timeout_secs = parse_duration_secs(raw)
                .filter(|n| (10..=86_400).contains(n))
                .ok_or_else(|| {
                    refuse("coi_webpush_validation_timeout", raw, "10 s to 24 h, e.g. 300, 5m or 1h")
                })?;
        }
        if let Some(raw) = blank_to_none(deltachat) {
            s.deltachat = parse_bool(raw).ok_or_else(|| refuse("coi_deltachat_push", raw, "yes or no"))?;
        }
        if let Some(raw) = blank_to_none(allow_private_endpoints) {
            s.allow_private_endpoints = parse_bool(raw)
                .ok_or_else(|| refuse("coi_webpush_allow_private_endpoints", raw, "yes or no"))?;
        }
        Ok(s)
    }

    /// Adds `coi_deltachat_max_smtp_recipients` (`None` or blank = not served).
    pub fn with_max_smtp_recipients(mut self, raw: Option<&[u8]>) -> Result<PushSettings, PushSettingsError> {
        if let Some(raw) = blank_to_none(raw) {
            self.deltachat_max_smtp_recipients = Some(
                std::str::from_utf8(raw)
                    .ok()
                    .and_then(|t| t.parse::<u32>().ok())
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| refuse("coi_deltachat_max_smtp_recipients", raw, "a number from 1 to 100000"))?,
            );
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_unset_or_blank() {
        assert_eq!(PushSettings::from_raw(None, None, None, None, None), Ok(PushSettings::default()));
        assert_eq!(PushSettings::from_raw(Some(b" "), Some(b""), None, Some(b""), None), Ok(PushSettings::default()));
    }

    #[test]
    fn max_smtp_recipients() {
        let base = PushSettings::default;
        assert_eq!(base().with_max_smtp_recipients(None).unwrap().deltachat_max_smtp_recipients, None);
        assert_eq!(base().with_max_smtp_recipients(Some(b" ")).unwrap().deltachat_max_smtp_recipients, None);
        assert_eq!(base().with_max_smtp_recipients(Some(b"50")).unwrap().deltachat_max_smtp_recipients, Some(50));
        assert_eq!(base().with_max_smtp_recipients(Some(b"100000")).unwrap().deltachat_max_smtp_recipients, Some(100_000));
        for bad in [&b"0"[..], b"100001", b"-1", b"ten", b"5 "] {
            let err = base().with_max_smtp_recipients(Some(bad));
            if bad == b"5 " {
                assert_eq!(err.unwrap().deltachat_max_smtp_recipients, Some(5));
            } else {
                assert_eq!(err.unwrap_err().setting, "coi_deltachat_max_smtp_recipients", "{bad:?}");
            }
        }
    }

    #[test]
    fn values_parse() {
        let s = PushSettings::from_raw(Some(b"/k.pem"), Some(b"3"), Some(b"2m"), Some(b"yes"), None).unwrap();
        assert_eq!(s.vapid_key, PathBuf::from("/k.pem"));
        assert_eq!(s.subscription_limit, 3);
        assert_eq!(s.validation_timeout_secs, 120);
        assert!(s.deltachat);
        assert_eq!(PushSettings::from_raw(None, None, Some(b"600"), None, None).unwrap().validation_timeout_secs, 600);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = PushSettings::from_raw(Some(b"rel.pem"), None, None, None, None).unwrap_err();
        assert_eq!(e.setting, "coi_webpush_vapid_key");
        assert_eq!(PushSettings::from_raw(None, Some(b"0"), None, None, None).unwrap_err().setting, "coi_webpush_subscription_limit");
        assert_eq!(PushSettings::from_raw(None, Some(b"101"), None, None, None).unwrap_err().setting, "coi_webpush_subscription_limit");
        assert_eq!(PushSettings::from_raw(None, None, Some(b"5"), None, None).unwrap_err().setting, "coi_webpush_validation_timeout");
        assert_eq!(PushSettings::from_raw(None, None, Some(b"5 days"), None, None).unwrap_err().setting, "coi_webpush_validation_timeout");
        assert_eq!(PushSettings::from_raw(None, None, None, Some(b"maybe"), None).unwrap_err().setting, "coi_deltachat_push");
        let e = PushSettings::from_raw(None, None, None, None, Some(b"sometimes")).unwrap_err();
        assert_eq!(e.setting, "coi_webpush_allow_private_endpoints");
        assert!(PushSettings::from_raw(None, None, None, None, Some(b"yes")).unwrap().allow_private_endpoints);
    }
}

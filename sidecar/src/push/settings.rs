//! The push sections of the config file: `[webpush]`, `[deltachat]` and
//! `[dovecot]`, parsed and validated once at load (STYLE §7).
//!
//! What this module owns: the raw TOML shapes (unknown keys are errors)
//! and their validated forms; `config.rs` calls [`validate`] and turns a
//! refusal into its `ConfigError::Invalid` with the key named.
//!
//! Rules:
//! - `[webpush] enabled = true` needs `vapid_subject` (`mailto:` or
//!   `https:`, RFC 8292 §2.1 `sub`); the key files default to
//!   `<state_dir>/webpush/vapid-private.pem` and
//!   `/var/lib/coi-sidecar/webpush/vapid-public.pem` (the plugin's default
//!   `coi_webpush_vapid_key`).
//! - `[deltachat] proxy_url` unset = Delta Chat push off. It is checked
//!   against the private-address guard unless
//!   `[deltachat] allow_private_addresses = true`.
//! - `[dovecot] doveadm_url` unset = gone targets are only recorded in the
//!   sidecar's own table. When set, `doveadm_api_key_file` is required and
//!   read now (a missing or empty file is a config error); loopback and
//!   private addresses are allowed (doveadm runs next to us).
//! - every channel has `timeout_secs`, `concurrency`, `retry_schedule_secs`
//!   and `deadline_secs` with the webhook limits;
//! - `[webpush]` also limits requests in flight per user and per push
//!   service (`requests_in_flight_per_user`, default 4, and
//!   `requests_in_flight_per_host`, default 16; 1 to `concurrency`, an
//!   unset one never above it) and validation pushes per user
//!   (`validations_per_user_per_hour`, default 20, 1 to 3600).
//!
//! Callers: `config.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

// Timeouts, concurrency and retries default as for webhooks.
use crate::config::{default_concurrency, default_deadline_secs, default_retry_schedule_secs, default_timeout_secs};

/// Default public key path (the plugin's `coi_webpush_vapid_key` default).
pub const DEFAULT_VAPID_PUBLIC_KEY: &str = "/var/lib/coi-sidecar/webpush/vapid-public.pem";

/// A refusal: the key (relative to the section) and what is wrong.
pub type Refusal = (String, String);

fn refuse(key: &str, message: impl Into<String>) -> Refusal {
    (key.to_string(), message.into())
}

/// `[webpush]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebPush {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    vapid_private_key: Option<PathBuf>,
    #[serde(default)]
    vapid_public_key: Option<PathBuf>,
    #[serde(default)]
    vapid_subject: Option<String>,
    #[serde(default = "default_ttl_secs")]
    ttl_secs: u64,
    #[serde(default = "default_urgency")]
    urgency: String,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_retry_schedule_secs")]
    retry_schedule_secs: Vec<u64>,
    #[serde(default = "default_deadline_secs")]
    deadline_secs: u64,
    #[serde(default = "default_validation_deadline_secs")]
    validation_deadline_secs: u64,
    #[serde(default)]
    requests_in_flight_per_user: Option<usize>,
    #[serde(default)]
    requests_in_flight_per_host: Option<usize>,
    #[serde(default = "default_validations_per_user_per_hour")]
    validations_per_user_per_hour: usize,
    #[serde(default)]
    allow_private_addresses: bool,
}

impl Default for RawWebPush {
    fn default() -> Self {
        // An empty table and no table mean the same.
        toml::from_str("").unwrap_or_else(|_| unreachable_default())
    }
}

/// `[deltachat]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeltaChat {
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_retry_schedule_secs")]
    retry_schedule_secs: Vec<u64>,
    #[serde(default = "default_deadline_secs")]
    deadline_secs: u64,
    #[serde(default)]
    allow_private_addresses: bool,
}

impl Default for RawDeltaChat {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable_default())
    }
}

/// `[dovecot]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDovecot {
    #[serde(default)]
    doveadm_url: Option<String>,
    #[serde(default)]
    doveadm_api_key_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_doveadm_concurrency")]
    concurrency: usize,
    #[serde(default = "default_retry_schedule_secs")]
    retry_schedule_secs: Vec<u64>,
    #[serde(default = "default_doveadm_deadline_secs")]
    deadline_secs: u64,
}

impl Default for RawDovecot {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable_default())
    }
}

#[cold]
fn unreachable_default<T>() -> T {
    // Every field has a serde default, so "" always parses.
    unreachable!("push settings defaults failed to parse")
}

/// A day: push services keep a message this long for an offline device.
/// (The 2020 Dovecot plugin used 30 s, which loses pushes to any phone
/// that is briefly offline.)
fn default_ttl_secs() -> u64 {
    86_400
}
fn default_urgency() -> String {
    "normal".into()
}
fn default_doveadm_concurrency() -> usize {
    4
}
/// The client's answer is accepted for about 5 minutes (the COI spec's
/// recommendation), so a validation push arriving later is useless.
fn default_validation_deadline_secs() -> u64 {
    300
}
/// One user's requests in flight: a few devices are pushed at once, and
/// never-answering endpoints of one user hold at most this many of the
/// shared slots.
pub const DEFAULT_REQUESTS_IN_FLIGHT_PER_USER: usize = 4;
/// One push service's requests in flight: at most half of the default 32
/// slots, so one host that stops answering (or a host a few users point
/// at on purpose) leaves the other half to everyone else.
pub const DEFAULT_REQUESTS_IN_FLIGHT_PER_HOST: usize = 16;
/// Enough for a user setting up all of the plugin's default 10
/// subscriptions, and more, within an hour.
fn default_validations_per_user_per_hour() -> usize {
    20
}
/// A week: a doveadm outage of a weekend must not lose clean-ups.
fn default_doveadm_deadline_secs() -> u64 {
    7 * 86_400
}

/// Timeouts, concurrency and retries of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Delay before retry n.
    pub retry_schedule: Vec<Duration>,
    /// After this long in the queue a job goes to the dead letters.
    pub deadline: Duration,
}

/// Validated `[webpush]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPushSettings {
    /// Send Web Push at all.
    pub enabled: bool,
    /// PKCS#8 PEM private key (mode 0600).
    pub vapid_private_key: PathBuf,
    /// SubjectPublicKeyInfo PEM public key (mode 0644).
    pub vapid_public_key: PathBuf,
    /// The JWT `sub` (operator contact).
    pub vapid_subject: String,
    /// The `TTL` header.
    pub ttl: Duration,
    /// The `Urgency` header.
    pub urgency: &'static str,
    /// Message pushes.
    pub tuning: Tuning,
    /// Validation pushes: the same, with this deadline.
    pub validation_deadline: Duration,
    /// Requests in flight per user (each channel).
    pub requests_in_flight_per_user: usize,
    /// Requests in flight per push-service origin (each channel).
    pub requests_in_flight_per_host: usize,
    /// Validation pushes per user in any hour.
    pub validations_per_user_per_hour: usize,
    /// Allow endpoints on loopback/private addresses (and plain http).
    pub allow_private_addresses: bool,
}

/// Validated `[deltachat]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaChatSettings {
    /// The notification proxy; `None` = Delta Chat push off.
    pub proxy_url: Option<reqwest::Url>,
    /// Requests.
    pub tuning: Tuning,
    /// Allow a proxy on a loopback/private address.
    pub allow_private_addresses: bool,
}

/// Validated `[dovecot]`.
#[derive(Clone, PartialEq, Eq)]
pub struct DovecotSettings {
    /// doveadm HTTP API, e.g. `http://127.0.0.1:8080/doveadm/v1`; `None` =
    /// gone targets are only recorded locally.
    pub doveadm_url: Option<reqwest::Url>,
    /// The `doveadm_api_key` (file contents, trailing newline removed).
    pub doveadm_api_key: Option<String>,
    /// Requests.
    pub tuning: Tuning,
}

impl std::fmt::Debug for DovecotSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DovecotSettings")
            .field("doveadm_url", &self.doveadm_url)
            .field("doveadm_api_key", &self.doveadm_api_key.as_ref().map(|_| "<redacted>"))
            .field("tuning", &self.tuning)
            .finish()
    }
}

/// All three sections, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// `[webpush]`.
    pub webpush: WebPushSettings,
    /// `[deltachat]`.
    pub deltachat: DeltaChatSettings,
    /// `[dovecot]`.
    pub dovecot: DovecotSettings,
}

fn tuning(
    section: &str,
    timeout_secs: u64,
    concurrency: usize,
    schedule: &[u64],
    deadline_secs: u64,
) -> Result<Tuning, Refusal> {
    let key = |k: &str| format!("{section}.{k}");
    if !(1..=300).contains(&timeout_secs) {
        return Err(refuse(&key("timeout_secs"), "must be between 1 and 300"));
    }
    if !(1..=256).contains(&concurrency) {
        return Err(refuse(&key("concurrency"), "must be between 1 and 256"));
    }
    if schedule.is_empty() || schedule.len() > 100 {
        return Err(refuse(&key("retry_schedule_secs"), "1 to 100 delays"));
    }
    if schedule.iter().any(|d| !(1..=7 * 86_400).contains(d)) {
        return Err(refuse(&key("retry_schedule_secs"), "every delay must be between 1 and 604800 seconds"));
    }
    if !(1..=30 * 86_400).contains(&deadline_secs) {
        return Err(refuse(&key("deadline_secs"), "must be between 1 and 2592000"));
    }
    Ok(Tuning {
        timeout: Duration::from_secs(timeout_secs),
        concurrency,
        retry_schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
        deadline: Duration::from_secs(deadline_secs),
    })
}

/// Checks a URL's scheme and credentials (the address guard is the
/// caller's, with its resolver).
fn http_url(key: &str, text: &str) -> Result<reqwest::Url, Refusal> {
    let url = reqwest::Url::parse(text).map_err(|e| refuse(key, format!("not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(refuse(key, "scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(key, "credentials in the URL are not supported"));
    }
    if url.host().is_none() {
        return Err(refuse(key, "URL has no host"));
    }
    Ok(url)
}

/// Validates the three sections. `check_address(key, url, allow_private)`
/// is the config's private-address guard (it may add warnings).
pub fn validate(
    webpush: RawWebPush,
    deltachat: RawDeltaChat,
    dovecot: RawDovecot,
    state_dir: &Path,
    check_address: &mut dyn FnMut(&str, &reqwest::Url, bool) -> Result<(), Refusal>,
) -> Result<PushSettings, Refusal> {
    let w = webpush;
    let subject = w.vapid_subject.clone().unwrap_or_default();
    if w.enabled {
        let ok = subject
            .strip_prefix("mailto:")
            .map(|addr| addr.contains('@') && !addr.contains(char::is_whitespace))
            .unwrap_or(false)
            || subject.starts_with("https://");
        if !ok {
            return Err(refuse(
                "webpush.vapid_subject",
                "required when webpush is enabled: the operator's contact, \"mailto:postmaster@example.org\" or an https: URL",
            ));
        }
    }
    let private = w
        .vapid_private_key
        .clone()
        .unwrap_or_else(|| state_dir.join("webpush/vapid-private.pem"));
    let public = w
        .vapid_public_key
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VAPID_PUBLIC_KEY));
    if !private.is_absolute() || !public.is_absolute() {
        return Err(refuse("webpush.vapid_private_key", "key paths must be absolute"));
    }
    if private == public {
        return Err(refuse("webpush.vapid_public_key", "must differ from vapid_private_key"));
    }
    if !(1..=28 * 86_400).contains(&w.ttl_secs) {
        return Err(refuse("webpush.ttl_secs", "must be between 1 and 2419200 (4 weeks)"));
    }
    let urgency = match w.urgency.as_str() {
        "very-low" => "very-low",
        "low" => "low",
        "normal" => "normal",
        "high" => "high",
        _ => return Err(refuse("webpush.urgency", "must be very-low, low, normal or high")),
    };
    if !(1..=86_400).contains(&w.validation_deadline_secs) {
        return Err(refuse("webpush.validation_deadline_secs", "must be between 1 and 86400"));
    }
    let webpush_tuning = tuning("webpush", w.timeout_secs, w.concurrency, &w.retry_schedule_secs, w.deadline_secs)?;
    // Unset: the default, but never more than the channel's concurrency.
    let slots = webpush_tuning.concurrency;
    let per_key = |key: &str, value: Option<usize>, default: usize| match value {
        None => Ok(default.min(slots)),
        Some(n) if (1..=slots).contains(&n) => Ok(n),
        Some(_) => Err(refuse(key, "must be between 1 and webpush.concurrency")),
    };
    let per_user = per_key("webpush.requests_in_flight_per_user", w.requests_in_flight_per_user, DEFAULT_REQUESTS_IN_FLIGHT_PER_USER)?;
    let per_host = per_key("webpush.requests_in_flight_per_host", w.requests_in_flight_per_host, DEFAULT_REQUESTS_IN_FLIGHT_PER_HOST)?;
    if !(1..=3600).contains(&w.validations_per_user_per_hour) {
        return Err(refuse("webpush.validations_per_user_per_hour", "must be between 1 and 3600"));
    }
    let webpush = WebPushSettings {
        enabled: w.enabled,
        vapid_private_key: private,
        vapid_public_key: public,
        vapid_subject: subject,
        ttl: Duration::from_secs(w.ttl_secs),
        urgency,
        tuning: webpush_tuning,
        validation_deadline: Duration::from_secs(w.validation_deadline_secs),
        requests_in_flight_per_user: per_user,
        requests_in_flight_per_host: per_host,
        validations_per_user_per_hour: w.validations_per_user_per_hour,
        allow_private_addresses: w.allow_private_addresses,
    };

    let d = deltachat;
    let proxy_url = match d.proxy_url.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let url = http_url("deltachat.proxy_url", text)?;
            check_address("deltachat.proxy_url", &url, d.allow_private_addresses)?;
            Some(url)
        }
    };
    let deltachat = DeltaChatSettings {
        proxy_url,
        tuning: tuning("deltachat", d.timeout_secs, d.concurrency, &d.retry_schedule_secs, d.deadline_secs)?,
        allow_private_addresses: d.allow_private_addresses,
    };

    let v = dovecot;
    let (doveadm_url, doveadm_api_key) = match v.doveadm_url.as_deref() {
        None | Some("") => (None, None),
        Some(text) => {
            let url = http_url("dovecot.doveadm_url", text)?;
            let Some(file) = v.doveadm_api_key_file.as_ref() else {
                return Err(refuse(
                    "dovecot.doveadm_api_key_file",
                    "required with doveadm_url: a file holding Dovecot's doveadm_api_key",
                ));
            };
            let text = std::fs::read_to_string(file)
                .map_err(|e| refuse("dovecot.doveadm_api_key_file", format!("cannot read {}: {e}", file.display())))?;
            let key = text.trim_end_matches(['\n', '\r']).to_string();
            if key.is_empty() || key.contains(['\n', '\r']) {
                return Err(refuse("dovecot.doveadm_api_key_file", format!("{} must hold the key on one line", file.display())));
            }
            (Some(url), Some(key))
        }
    };
    let dovecot = DovecotSettings {
        doveadm_url,
        doveadm_api_key,
        tuning: tuning("dovecot", v.timeout_secs, v.concurrency, &v.retry_schedule_secs, v.deadline_secs)?,
    };
    Ok(PushSettings { webpush, deltachat, dovecot })
}

//! The sidecar's configuration file (TOML): parsing, validation, defaults.
//!
//! What this module owns: turning `/etc/coi/sidecar.toml` into a [`Config`]
//! whose every value is already checked and converted to the type the code
//! uses (`Duration`, `Url`, decoded secrets). Nothing else in the daemon
//! parses or validates settings (STYLE §7: validate once, at load).
//!
//! Invariants:
//! - unknown keys are errors (`deny_unknown_fields`), so a typo never falls
//!   back silently to a default;
//! - every duration or size key names its unit (`timeout_secs`, `_bytes`);
//! - an endpoint whose host is, or resolves only to, a loopback, private,
//!   link-local or unique-local address is refused unless
//!   `delivery.allow_private_addresses = true` (the HTTP client re-checks
//!   every resolution at request time, see `delivery::address`);
//! - endpoint names are unique and label-safe: they are the only
//!   operator-chosen metric label.
//!
//! Callers: `main.rs` (startup, `check-config`, `dead-letters`) and the
//! SIGHUP reload in `app.rs`. `packaging/` documents every key for operators
//! (docs/sidecar.md lists them too).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::delivery::address::is_forbidden;
use crate::push::settings::{self as push_settings, PushSettings, RawDeltaChat, RawDovecot, RawWebPush};

/// The current endpoint list, shared between the intake (which decides who
/// gets a delivery) and the reload (which replaces it).
pub type SharedEndpoints = Arc<std::sync::RwLock<Arc<Vec<Arc<Endpoint>>>>>;

/// Default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/coi/sidecar.toml";

/// Kinds a webhook `kinds` filter may name (the plugin's classifier output).
pub const KNOWN_KINDS: [&str; 4] = ["not-chat", "chat", "group-chat", "read-receipt"];

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The offending key, e.g. `webhook[0].url`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    /// Bounded label for logs and metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config_read",
            ConfigError::Parse { .. } => "config_parse",
            ConfigError::Invalid { .. } => "config_invalid",
        }
    }

    /// Only a read error can go away without editing the file.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ConfigError::Read { .. })
    }
}

// ---------------------------------------------------------------- raw file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_spool_dir")]
    spool_dir: PathBuf,
    #[serde(default = "default_rotate_bytes")]
    spool_rotate_bytes: u64,
    #[serde(default = "default_scan_interval_ms")]
    spool_scan_interval_ms: u64,
    #[serde(default = "default_commit_window_ms")]
    spool_commit_window_ms: u64,
    #[serde(default = "default_commit_window_max_ms")]
    spool_commit_window_max_ms: u64,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    socket: RawSocket,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default, rename = "webhook")]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    webpush: RawWebPush,
    #[serde(default)]
    deltachat: RawDeltaChat,
    #[serde(default)]
    dovecot: RawDovecot,
    #[serde(default)]
    recall: crate::recall::settings::RawRecall,
    #[serde(default)]
    queue: crate::fleet::settings::RawQueue,
    #[serde(default)]
    jetstream: crate::fleet::settings::RawJetStream,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSocket {
    #[serde(default = "default_socket_path")]
    path: PathBuf,
    #[serde(default = "default_socket_mode")]
    mode: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    allowed_uids: Vec<u32>,
    #[serde(default)]
    allowed_gids: Vec<u32>,
}

impl Default for RawSocket {
    fn default() -> Self {
        RawSocket {
            path: default_socket_path(),
            mode: default_socket_mode(),
            group: None,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default = "default_metrics_listen")]
    listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: default_metrics_listen(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default = "default_log_format")]
    format: String,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default)]
    allow_private_addresses: bool,
    #[serde(default = "default_shutdown_grace_secs")]
    shutdown_grace_secs: u64,
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery {
            allow_private_addresses: false,
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    secrets: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    folders: Vec<String>,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_retry_schedule_secs")]
    retry_schedule_secs: Vec<u64>,
    #[serde(default = "default_deadline_secs")]
    deadline_secs: u64,
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/spool/coi")
}
fn default_rotate_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_scan_interval_ms() -> u64 {
    1000
}
fn default_commit_window_ms() -> u64 {
    10
}
fn default_commit_window_max_ms() -> u64 {
    50
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/coi-sidecar")
}
fn default_socket_path() -> PathBuf {
    PathBuf::from("/run/coi-sidecar/events.sock")
}
fn default_socket_mode() -> String {
    "0660".into()
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9854".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_shutdown_grace_secs() -> u64 {
    10
}
fn default_format() -> String {
    "standard".into()
}
pub(crate) fn default_timeout_secs() -> u64 {
    10
}
/// Requests in flight per endpoint. Little's law: with 10 ms per request,
/// 32 in flight carry about 3,000 events/s; 4 (the first default) capped an
/// endpoint at a few hundred per second and made latency queue up at 500/s.
pub(crate) fn default_concurrency() -> usize {
    32
}
/// About 3 days of retries in all, before the 24 h deadline usually wins.
pub(crate) fn default_retry_schedule_secs() -> Vec<u64> {
    vec![5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200]
}
pub(crate) fn default_deadline_secs() -> u64 {
    86_400
}

// ---------------------------------------------------------------- validated

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from (reloads read it again).
    pub path: PathBuf,
    /// Event spool.
    pub spool: SpoolConfig,
    /// Doorbell socket.
    pub socket: SocketConfig,
    /// Directory of the queue database and the instance lock.
    pub state_dir: PathBuf,
    /// Metrics/healthz listener.
    pub metrics_listen: MetricsListen,
    /// Logging.
    pub logging: LoggingConfig,
    /// Delivery-wide settings.
    pub delivery: DeliveryConfig,
    /// Webhook endpoints, in file order.
    pub webhooks: Vec<Arc<Endpoint>>,
    /// `[webpush]`, `[deltachat]`, `[dovecot]` (fixed until restart).
    pub push: PushSettings,
    /// `[recall]`.
    pub recall: crate::recall::settings::RecallSettings,
    /// `[queue]` and `[jetstream]` (fleet mode, docs/fleet.md; fixed until
    /// restart).
    pub fleet: crate::fleet::settings::FleetSettings,
    /// Things worth a warning that do not make the file invalid.
    pub warnings: Vec<String>,
}

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The spool directory (`spool_dir`).
    pub dir: PathBuf,
    /// Rotate `events.log` once it is at least this large.
    pub rotate_bytes: u64,
    /// Scan the spool at least this often, doorbell or not.
    pub scan_interval: Duration,
    /// While events keep coming, commit at most once per this window
    /// (`intake::group_commit`; zero: off). The window at low rates.
    pub commit_window: Duration,
    /// How far the window may grow with the arrival rate.
    pub commit_window_max: Duration,
}

/// Doorbell socket settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Socket path.
    pub path: PathBuf,
    /// File mode of the socket.
    pub mode: u32,
    /// Group to give the socket (name or number), if any.
    pub group: Option<String>,
    /// Peer uids allowed to ring (with `allowed_gids`: both empty = anyone).
    pub allowed_uids: Vec<u32>,
    /// Peer gids allowed to ring.
    pub allowed_gids: Vec<u32>,
}

/// Where `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// TCP address.
    Tcp(SocketAddr),
    /// Unix stream socket path (`unix:/path`).
    Unix(PathBuf),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Line format (fixed at start).
    pub format: LogFormat,
    /// Level (reloadable).
    pub level: tracing::Level,
}

/// Delivery-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Allow endpoints on loopback/private/link-local addresses.
    pub allow_private_addresses: bool,
    /// How long shutdown waits for in-flight requests before abandoning them.
    pub shutdown_grace: Duration,
}

/// Payload shape of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Standard Webhooks JSON, POST.
    Standard,
    /// Dovecot OX push driver JSON, PUT.
    Ox,
}

/// One webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Unique, label-safe name.
    pub name: String,
    /// Target URL (http or https).
    pub url: reqwest::Url,
    /// Decoded signing keys (the part after `whsec_`).
    pub secrets: Vec<Vec<u8>>,
    /// Kinds delivered (empty = all).
    pub kinds: Vec<String>,
    /// Folders delivered (empty = all).
    pub folders: Vec<String>,
    /// Payload shape.
    pub format: PayloadFormat,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Delay before retry n (1-based: entry 0 follows the first failure).
    pub retry_schedule: Vec<Duration>,
    /// After this long in the queue an event goes to the dead letters.
    pub deadline: Duration,
    /// Copied from `delivery.allow_private_addresses`.
    pub allow_private_addresses: bool,
}

impl Endpoint {
    /// Whether an event of `kind` stored in `folder` goes to this endpoint.
    pub fn wants(&self, kind: &str, folder: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && (self.folders.is_empty() || self.folders.iter().any(|f| f == folder))
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(text, &e),
        })?;
        Validator {
            path: path.to_path_buf(),
            warnings: Vec::new(),
        }
        .validate(raw)
    }

    /// The queue database file.
    pub fn queue_db_path(&self) -> PathBuf {
        self.state_dir.join("queue.sqlite3")
    }
}

struct Validator {
    path: PathBuf,
    warnings: Vec<String>,
}

impl Validator {
    fn bad(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn validate(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let spool = self.spool(&raw)?;
        let socket = self.socket(raw.socket)?;
        let metrics_listen = self.metrics(&raw.metrics.listen)?;
        let logging = self.logging(&raw.logging)?;
        if !raw.state_dir.is_absolute() {
            return Err(self.bad("state_dir", "must be an absolute path"));
        }
        if raw.delivery.shutdown_grace_secs > 300 {
            return Err(self.bad("delivery.shutdown_grace_secs", "must be at most 300"));
        }
        let delivery = DeliveryConfig {
            allow_private_addresses: raw.delivery.allow_private_addresses,
            shutdown_grace: Duration::from_secs(raw.delivery.shutdown_grace_secs),
        };
        let mut webhooks = Vec::with_capacity(raw.webhooks.len());
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let endpoint = self.webhook(i, w, delivery.allow_private_addresses)?;
            if webhooks.iter().any(|e: &Arc<Endpoint>| e.name == endpoint.name) {
                return Err(self.bad(
                    format!("webhook[{i}].name"),
                    format!("duplicate endpoint name {:?}", endpoint.name),
                ));
            }
            webhooks.push(Arc::new(endpoint));
        }
        let push = {
            let path = self.path.clone();
            let mut warnings = Vec::new();
            let mut guard = |key: &str, url: &reqwest::Url, allow: bool| {
                check_url_address(key, url, allow, &mut warnings)
            };
            let push = push_settings::validate(raw.webpush, raw.deltachat, raw.dovecot, &raw.state_dir, &mut guard)
                .map_err(|(key, message)| ConfigError::Invalid { path, key, message })?;
            self.warnings.extend(warnings);
            push
        };
        let recall = raw.recall.validate().map_err(|m| self.bad("recall.index_retention_days", m))?;
        let fleet = crate::fleet::settings::validate(raw.queue, raw.jetstream).map_err(|(k, m)| self.bad(k, m))?;
        Ok(Config {
            path: self.path.clone(),
            spool,
            socket,
            state_dir: raw.state_dir,
            metrics_listen,
            logging,
            delivery,
            webhooks,
            push,
            recall,
            fleet,
            warnings: self.warnings,
        })
    }

    fn spool(&self, raw: &RawConfig) -> Result<SpoolConfig, ConfigError> {
        if !raw.spool_dir.is_absolute() {
            return Err(self.bad("spool_dir", "must be an absolute path"));
        }
        if raw.spool_rotate_bytes < 64 * 1024 {
            return Err(self.bad("spool_rotate_bytes", "must be at least 65536"));
        }
        if !(10..=60_000).contains(&raw.spool_scan_interval_ms) {
            return Err(self.bad("spool_scan_interval_ms", "must be between 10 and 60000"));
        }
        if raw.spool_commit_window_ms > 1000 {
            return Err(self.bad("spool_commit_window_ms", "must be between 0 and 1000"));
        }
        if raw.spool_commit_window_max_ms > 1000 {
            return Err(self.bad("spool_commit_window_max_ms", "must be between 0 and 1000"));
        }
        // An explicit window larger than the default maximum means "this
        // window, fixed", not an error.
        let window_max = raw.spool_commit_window_max_ms.max(raw.spool_commit_window_ms);
        Ok(SpoolConfig {
            dir: raw.spool_dir.clone(),
            rotate_bytes: raw.spool_rotate_bytes,
            scan_interval: Duration::from_millis(raw.spool_scan_interval_ms),
            commit_window: Duration::from_millis(raw.spool_commit_window_ms),
            commit_window_max: Duration::from_millis(window_max),
        })
    }

    fn socket(&self, raw: RawSocket) -> Result<SocketConfig, ConfigError> {
        if !raw.path.is_absolute() {
            return Err(self.bad("socket.path", "must be an absolute path"));
        }
        let digits = raw.mode.strip_prefix("0o").unwrap_or(&raw.mode);
        let mode = u32::from_str_radix(digits, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                self.bad("socket.mode", "must be an octal string such as \"0660\"")
            })?;
        if let Some(group) = &raw.group {
            if group.is_empty() {
                return Err(self.bad("socket.group", "must not be empty (omit it instead)"));
            }
        }
        Ok(SocketConfig {
            path: raw.path,
            mode,
            group: raw.group,
            allowed_uids: raw.allowed_uids,
            allowed_gids: raw.allowed_gids,
        })
    }

    fn metrics(&self, listen: &str) -> Result<MetricsListen, ConfigError> {
        if let Some(path) = listen.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(self.bad("metrics.listen", "unix: needs an absolute path"));
            }
            return Ok(MetricsListen::Unix(path));
        }
        listen.parse::<SocketAddr>().map(MetricsListen::Tcp).map_err(|_| {
            self.bad(
                "metrics.listen",
                "must be IP:PORT (e.g. \"127.0.0.1:9854\") or unix:/absolute/path",
            )
        })
    }

    fn logging(&self, raw: &RawLogging) -> Result<LoggingConfig, ConfigError> {
        let format = match raw.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(self.bad("logging.format", "must be \"text\" or \"json\"")),
        };
        let level = match raw.level.as_str() {
            "error" => tracing::Level::ERROR,
            "warn" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            _ => {
                return Err(self.bad(
                    "logging.level",
                    "must be one of error, warn, info, debug, trace",
                ))
            }
        };
        Ok(LoggingConfig { format, level })
    }

    fn webhook(
        &mut self,
        i: usize,
        raw: RawWebhook,
        allow_private: bool,
    ) -> Result<Endpoint, ConfigError> {
        let key = |k: &str| format!("webhook[{i}].{k}");
        let name_ok = !raw.name.is_empty()
            && raw.name.len() <= 64
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(self.bad(key("name"), "1 to 64 characters of [A-Za-z0-9_-]"));
        }
        let url = reqwest::Url::parse(&raw.url)
            .map_err(|e| self.bad(key("url"), format!("not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(self.bad(key("url"), "scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.bad(key("url"), "credentials in the URL are not supported"));
        }
        self.check_address(&key("url"), &url, allow_private)?;
        if raw.secrets.is_empty() {
            return Err(self.bad(key("secrets"), "at least one whsec_ secret is required"));
        }
        let mut secrets = Vec::with_capacity(raw.secrets.len());
        for (j, s) in raw.secrets.iter().enumerate() {
            secrets.push(decode_secret(s).map_err(|m| self.bad(format!("{}[{j}]", key("secrets")), m))?);
        }
        for k in &raw.kinds {
            let notice_kind = k == crate::recall::notice::KIND_RECALL || k == crate::recall::notice::KIND_READ;
            if !KNOWN_KINDS.contains(&k.as_str()) && !notice_kind {
                return Err(self.bad(
                    key("kinds"),
                    format!("unknown kind {k:?}; known: {}, recall, read", KNOWN_KINDS.join(", ")),
                ));
            }
        }
        let format = match raw.format.as_str() {
            "standard" => PayloadFormat::Standard,
            "ox" => PayloadFormat::Ox,
            _ => return Err(self.bad(key("format"), "must be \"standard\" or \"ox\"")),
        };
        if !(1..=300).contains(&raw.timeout_secs) {
            return Err(self.bad(key("timeout_secs"), "must be between 1 and 300"));
        }
        if !(1..=256).contains(&raw.concurrency) {
            return Err(self.bad(key("concurrency"), "must be between 1 and 256"));
        }
        if raw.retry_schedule_secs.is_empty() || raw.retry_schedule_secs.len() > 100 {
            return Err(self.bad(key("retry_schedule_secs"), "1 to 100 delays"));
        }
        if raw
            .retry_schedule_secs
            .iter()
            .any(|d| !(1..=7 * 86_400).contains(d))
        {
            return Err(self.bad(
                key("retry_schedule_secs"),
                "every delay must be between 1 and 604800 seconds",
            ));
        }
        if !(1..=30 * 86_400).contains(&raw.deadline_secs) {
            return Err(self.bad(key("deadline_secs"), "must be between 1 and 2592000"));
        }
        Ok(Endpoint {
            name: raw.name,
            url,
            secrets,
            kinds: raw.kinds,
            folders: raw.folders,
            format,
            timeout: Duration::from_secs(raw.timeout_secs),
            concurrency: raw.concurrency,
            retry_schedule: raw
                .retry_schedule_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            deadline: Duration::from_secs(raw.deadline_secs),
            allow_private_addresses: allow_private,
        })
    }

    /// Refuses endpoints on private addresses (SSRF guard, STYLE §4); see
    /// [`check_url_address`].
    fn check_address(
        &mut self,
        key: &str,
        url: &reqwest::Url,
        allow_private: bool,
    ) -> Result<(), ConfigError> {
        check_url_address(key, url, allow_private, &mut self.warnings)
            .map_err(|(key, message)| self.bad(key, message))
    }
}

/// Refuses a URL on a private address unless allowed. An IP literal is
/// checked directly; a host name is resolved now, and refused when every
/// address it has is private. A name that does not resolve today is only a
/// warning: DNS may be down at boot, and the request-time resolver applies
/// the same rule anyway.
pub(crate) fn check_url_address(
    key: &str,
    url: &reqwest::Url,
    allow_private: bool,
    warnings: &mut Vec<String>,
) -> Result<(), (String, String)> {
    if allow_private {
        return Ok(());
    }
    // The opt-out lives in the section of the key: [delivery] for webhooks,
    // [deltachat] for the proxy.
    let section = if key.starts_with("webhook") { "delivery" } else { key.split('.').next().unwrap_or("delivery") };
    let refuse = |ip: std::net::IpAddr| {
        (
            key.to_string(),
            format!(
                "{ip} is a loopback, private, link-local or otherwise internal address; \
                 set {section}.allow_private_addresses = true to allow it"
            ),
        )
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) if is_forbidden(ip.into()) => Err(refuse(ip.into())),
        Some(url::Host::Ipv6(ip)) if is_forbidden(ip.into()) => Err(refuse(ip.into())),
        Some(url::Host::Domain(name)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            match (name, port).to_socket_addrs() {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if let Some(first) = addrs.first() {
                        if addrs.iter().all(|a| is_forbidden(a.ip())) {
                            return Err(refuse(first.ip()));
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    warnings.push(format!("{key}: {name} does not resolve now ({e})"));
                    Ok(())
                }
            }
        }
        Some(_) => Ok(()),
        None => Err((key.to_string(), "URL has no host".into())),
    }
}

/// The parser's message with its line and column, without the quoted
/// source line toml's `Display` adds: that line may hold a webhook URL
/// with a secret in its path, or a `whsec_` secret, and the message goes to
/// stderr, the journal and the reload log.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let Some(before) = text.get(..span.start) else {
        return message.to_string();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

/// Decodes `whsec_<base64>` into the HMAC key.
fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    let b64 = s
        .strip_prefix("whsec_")
        .ok_or_else(|| "must start with whsec_".to_string())?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64 after whsec_: {e}"))?;
    if !(16..=128).contains(&key.len()) {
        return Err(format!(
            "key must decode to 16..128 bytes, got {}",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/t.toml"), text)
    }

    fn webhook(extra: &str) -> String {
        format!(
            "[delivery]\nallow_private_addresses = true\n[[webhook]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/x\"\nsecrets = [\"{SECRET}\"]\n{extra}\n"
        )
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../sidecar.example.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.webhooks.len(), 1);
        // The example's host is a name (documentation addresses are refused
        // like every special-purpose block): offline, or where it has no
        // record, it only earns the "does not resolve now" warning.
        assert!(
            c.warnings.iter().all(|w| w.contains("hooks.example.org does not resolve now")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.spool.dir, PathBuf::from("/var/spool/coi"));
        assert_eq!(c.socket.path, PathBuf::from("/run/coi-sidecar/events.sock"));
        assert_eq!(c.socket.mode, 0o660);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/coi-sidecar"));
        assert_eq!(
            c.metrics_listen,
            MetricsListen::Tcp("127.0.0.1:9854".parse().unwrap())
        );
        assert_eq!(c.logging.format, LogFormat::Text);
        assert!(!c.delivery.allow_private_addresses);
        assert!(c.webhooks.is_empty());
    }

    #[test]
    fn the_commit_window_adapts_by_default_and_an_explicit_window_alone_is_fixed() {
        let c = parse("").unwrap();
        assert_eq!(c.spool.commit_window, Duration::from_millis(10));
        assert_eq!(c.spool.commit_window_max, Duration::from_millis(50));
        // Larger than the default maximum: that window, fixed.
        let c = parse("spool_commit_window_ms = 200").unwrap();
        assert_eq!(c.spool.commit_window_max, Duration::from_millis(200));
        let c = parse("spool_commit_window_ms = 5\nspool_commit_window_max_ms = 5").unwrap();
        assert_eq!((c.spool.commit_window, c.spool.commit_window_max), (Duration::from_millis(5), Duration::from_millis(5)));
    }

    #[test]
    fn webhook_is_validated_and_converted() {
        let c = parse(&webhook("kinds = [\"chat\"]\nformat = \"ox\"\ntimeout_secs = 3\nretry_schedule_secs = [1, 2]")).unwrap();
        let e = &c.webhooks[0];
        assert_eq!(e.format, PayloadFormat::Ox);
        assert_eq!(e.timeout, Duration::from_secs(3));
        assert_eq!(e.retry_schedule, vec![Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(e.secrets[0].len(), 24);
        assert!(e.wants("chat", "INBOX"));
        assert!(!e.wants("not-chat", "INBOX"));
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let cases = [
            ("spool_dir = \"relative\"", "spool_dir"),
            ("spool_typo = 1", "unknown field"),
            ("[socket]\nmode = \"999\"", "socket.mode"),
            ("[metrics]\nlisten = \"nowhere\"", "metrics.listen"),
            ("[logging]\nlevel = \"loud\"", "logging.level"),
            ("spool_commit_window_max_ms = 1001", "spool_commit_window_max_ms"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?} -> {err}");
        }
        let hooks = [
            ("kinds = [\"spam\"]", "kinds"),
            ("format = \"xml\"", "format"),
            ("timeout_secs = 0", "timeout_secs"),
            ("concurrency = 0", "concurrency"),
            ("retry_schedule_secs = []", "retry_schedule_secs"),
            ("deadline_secs = 0", "deadline_secs"),
            ("colour = \"red\"", "unknown field"),
        ];
        for (extra, want) in hooks {
            let err = parse(&webhook(extra)).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?} -> {err}");
        }
        let err = parse(&format!("{}\n[[webhook]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\nsecrets = [\"{SECRET}\"]", webhook(""))).unwrap_err();
        assert!(err.to_string().contains("duplicate"));
        let err = parse(&webhook("").replace(SECRET, "whsec_!!")).unwrap_err();
        assert!(err.to_string().contains("base64"));
        let err = parse(&webhook("").replace(SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap_err();
        assert!(err.to_string().contains("whsec_"));
    }

    #[test]
    fn push_sections_default_to_off_with_the_documented_values() {
        let c = parse("").unwrap();
        let p = &c.push;
        assert!(!p.webpush.enabled);
        assert_eq!(p.webpush.ttl, Duration::from_secs(86_400), "a day, not the 2020 plugin's 30 s");
        assert_eq!(p.webpush.urgency, "normal");
        assert_eq!(p.webpush.vapid_private_key, PathBuf::from("/var/lib/coi-sidecar/webpush/vapid-private.pem"));
        assert_eq!(p.webpush.vapid_public_key, PathBuf::from("/var/lib/coi-sidecar/webpush/vapid-public.pem"));
        assert_eq!(p.webpush.validation_deadline, Duration::from_secs(300));
        assert_eq!(
            (p.webpush.requests_in_flight_per_user, p.webpush.requests_in_flight_per_host, p.webpush.validations_per_user_per_hour),
            (4, 16, 20)
        );
        assert!(p.deltachat.proxy_url.is_none());
        assert!(p.dovecot.doveadm_url.is_none());
        assert_eq!(p.dovecot.tuning.deadline, Duration::from_secs(7 * 86_400));
        let moved = parse("state_dir = \"/srv/coi\"\n[webpush]\nenabled = true\nvapid_subject = \"mailto:ops@example.org\"").unwrap();
        assert_eq!(moved.push.webpush.vapid_private_key, PathBuf::from("/srv/coi/webpush/vapid-private.pem"));
        assert_eq!(
            moved.push.webpush.vapid_public_key,
            PathBuf::from("/var/lib/coi-sidecar/webpush/vapid-public.pem"),
            "the public key stays where the plugin looks by default"
        );
    }

    #[test]
    fn push_settings_are_validated_with_the_key_named() {
        let cases = [
            ("[webpush]\nenabled = true", "webpush.vapid_subject"),
            ("[webpush]\nenabled = true\nvapid_subject = \"postmaster@example.org\"", "webpush.vapid_subject"),
            ("[webpush]\nurgency = \"urgent\"", "webpush.urgency"),
            ("[webpush]\nttl_secs = 0", "webpush.ttl_secs"),
            ("[webpush]\nretry_schedule_secs = []", "webpush.retry_schedule_secs"),
            ("[webpush]\nvapid_private_key = \"relative.pem\"", "webpush.vapid_private_key"),
            ("[webpush]\ncolour = 1", "unknown field"),
            ("[webpush]\nrequests_in_flight_per_user = 0", "webpush.requests_in_flight_per_user"),
            ("[webpush]\nconcurrency = 8\nrequests_in_flight_per_user = 9", "webpush.requests_in_flight_per_user"),
            ("[webpush]\nrequests_in_flight_per_host = 33", "webpush.requests_in_flight_per_host"),
            ("[webpush]\nvalidations_per_user_per_hour = 0", "webpush.validations_per_user_per_hour"),
            ("[deltachat]\nproxy_url = \"ftp://x.example/\"", "deltachat.proxy_url"),
            ("[deltachat]\nproxy_url = \"http://127.0.0.1:9/notify\"", "deltachat.allow_private_addresses"),
            ("[deltachat]\nconcurrency = 0", "deltachat.concurrency"),
            ("[dovecot]\ndoveadm_url = \"http://127.0.0.1:8080/doveadm/v1\"", "dovecot.doveadm_api_key_file"),
            (
                "[dovecot]\ndoveadm_url = \"http://127.0.0.1:8080/doveadm/v1\"\ndoveadm_api_key_file = \"/nonexistent/key\"",
                "dovecot.doveadm_api_key_file",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?} -> {err}");
        }
        let ok = parse("[webpush]\nenabled = true\nvapid_subject = \"https://example.org/contact\"\nurgency = \"high\"").unwrap();
        assert_eq!(ok.push.webpush.urgency, "high");
        // Unset per-key limits never exceed a smaller concurrency.
        let small = parse("[webpush]\nconcurrency = 2").unwrap();
        assert_eq!((small.push.webpush.requests_in_flight_per_user, small.push.webpush.requests_in_flight_per_host), (2, 2));
        let dc = parse("[deltachat]\nproxy_url = \"http://127.0.0.1:9/notify\"\nallow_private_addresses = true").unwrap();
        assert_eq!(dc.push.deltachat.proxy_url.unwrap().as_str(), "http://127.0.0.1:9/notify");
    }

    #[test]
    fn doveadm_key_is_read_from_its_file_at_load() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("key");
        std::fs::write(&key, "s3cret\n").unwrap();
        let text = format!("[dovecot]\ndoveadm_url = \"http://127.0.0.1:8080/doveadm/v1\"\ndoveadm_api_key_file = {key:?}\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.push.dovecot.doveadm_api_key.as_deref(), Some("s3cret"));
        assert!(!format!("{:?}", c.push.dovecot).contains("s3cret"), "the key is not printed");
        std::fs::write(&key, "\n").unwrap();
        assert!(parse(&text).unwrap_err().to_string().contains("one line"));
    }

    #[test]
    fn parse_errors_name_the_line_but_never_quote_it() {
        let text = "spool_dir = \"/x\"\n[[webhook]]\nname = \"a\"\nurl = https://hooks.example.org/Path-Secret-4e\n\
                    secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("Path-Secret") && !err.contains("whsec_"), "{err}");
        let err = parse("spool_dir = \"/x\"\nunknown_key = 1\n").unwrap_err().to_string();
        assert!(err.contains("unknown_key") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn private_endpoints_need_explicit_permission() {
        for url in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://localhost:8080/",
        ] {
            let text = format!("[[webhook]]\nname = \"a\"\nurl = \"{url}\"\nsecrets = [\"{SECRET}\"]\n");
            let err = parse(&text).unwrap_err();
            assert!(
                err.to_string().contains("allow_private_addresses"),
                "{url}: {err}"
            );
            let allowed = format!("[delivery]\nallow_private_addresses = true\n{text}");
            parse(&allowed).unwrap();
        }
        let public = format!("[[webhook]]\nname = \"a\"\nurl = \"https://93.184.215.14/\"\nsecrets = [\"{SECRET}\"]\n");
        parse(&public).unwrap();
    }
}

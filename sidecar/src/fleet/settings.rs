//! `[queue]` and `[jetstream]`: which queue engine the intake uses, and how
//! to reach the JetStream stream and consumer (docs/fleet.md).
//!
//! Invariants: validated once at load; `engine = "sqlite"` (the default)
//! never touches NATS, whatever `[jetstream]` says. Secrets (the password,
//! the token) are read from files at load, never written in the config
//! itself, and never shown by `Debug`. Any TLS setting makes TLS required:
//! a CA or client certificate that is configured is never silently unused.
//!
//! Callers: `config.rs` (parsing), `app.rs`, `fleet::publish`,
//! `fleet::dispatch`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The intake's queue engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The local SQLite queue (one server; the default).
    Sqlite,
    /// Publish to a JetStream stream; `coi-sidecar dispatch` sends.
    JetStream,
}

/// `[queue]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    #[serde(default = "default_engine")]
    engine: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue { engine: default_engine() }
    }
}

fn default_engine() -> String {
    "sqlite".into()
}

/// `[jetstream]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJetStream {
    #[serde(default = "default_servers")]
    servers: Vec<String>,
    #[serde(default = "default_stream")]
    stream: String,
    #[serde(default = "default_subject_prefix")]
    subject_prefix: String,
    #[serde(default = "default_replicas")]
    replicas: usize,
    #[serde(default = "default_duplicate_window_secs")]
    duplicate_window_secs: u64,
    #[serde(default = "default_publish_timeout_secs")]
    publish_timeout_secs: u64,
    #[serde(default = "default_consumer")]
    consumer: String,
    #[serde(default = "default_ack_wait_secs")]
    ack_wait_secs: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_dead_letter_stream")]
    dead_letter_stream: String,
    #[serde(default)]
    tls_required: bool,
    #[serde(default)]
    tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_client_cert_file: Option<PathBuf>,
    #[serde(default)]
    tls_client_key_file: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

impl Default for RawJetStream {
    fn default() -> Self {
        RawJetStream {
            servers: default_servers(),
            stream: default_stream(),
            subject_prefix: default_subject_prefix(),
            replicas: default_replicas(),
            duplicate_window_secs: default_duplicate_window_secs(),
            publish_timeout_secs: default_publish_timeout_secs(),
            consumer: default_consumer(),
            ack_wait_secs: default_ack_wait_secs(),
            max_in_flight: default_max_in_flight(),
            dead_letter_stream: default_dead_letter_stream(),
            tls_required: false,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            user: None,
            password_file: None,
            token_file: None,
        }
    }
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_stream() -> String {
    "COI_EVENTS".into()
}
fn default_subject_prefix() -> String {
    "coi".into()
}
fn default_replicas() -> usize {
    3
}
fn default_duplicate_window_secs() -> u64 {
    // Long enough to cover a backend's restart after a crash between the
    // stream's ack and the offset commit.
    600
}
fn default_publish_timeout_secs() -> u64 {
    5
}
fn default_consumer() -> String {
    "coi-dispatch".into()
}
fn default_ack_wait_secs() -> u64 {
    30
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_dead_letter_stream() -> String {
    "COI_DEAD".into()
}

/// How the client proves who it is to the NATS servers (their
/// `authorization` / `accounts` blocks).
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// Nothing (a server without authorization).
    None,
    /// `user` and the password from `password_file`.
    UserPassword {
        /// The NATS user.
        user: String,
        /// Its password (file contents, trailing newline removed).
        password: String,
    },
    /// The token from `token_file`.
    Token(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => {
                f.debug_struct("UserPassword").field("user", user).field("password", &"<redacted>").finish()
            }
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// TLS to the NATS servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Refuse a connection without TLS (set by `tls_required` or by any
    /// other TLS setting, and by `tls://` server URLs in the client itself).
    pub required: bool,
    /// A CA for the servers' certificates besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Certificate and key for mutual TLS (`verify: true` on the server).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The validated fleet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// `[queue] engine`.
    pub engine: Engine,
    /// NATS server URLs (any member of the cluster; the client learns the rest).
    pub servers: Vec<String>,
    /// Stream name.
    pub stream: String,
    /// First subject token; the stream takes `<prefix>.ev.>`.
    pub subject_prefix: String,
    /// Stream replicas (3 for a 3-node cluster).
    pub replicas: usize,
    /// The stream's duplicate window (`Nats-Msg-Id` = event id).
    pub duplicate_window: Duration,
    /// How long the intake waits for the stream's acks before it leaves
    /// the records in the spool and tries again.
    pub publish_timeout: Duration,
    /// Durable consumer name shared by every dispatcher.
    pub consumer: String,
    /// Unacknowledged messages are redelivered after this (dispatchers send
    /// progress for the ones they still hold).
    pub ack_wait: Duration,
    /// Messages one dispatcher holds at most.
    pub max_in_flight: usize,
    /// Stream that keeps a copy of every dead letter.
    pub dead_letter_stream: String,
    /// Credentials for the servers.
    pub auth: NatsAuth,
    /// TLS to the servers.
    pub tls: NatsTls,
}

impl Default for FleetSettings {
    fn default() -> Self {
        validate(RawQueue::default(), RawJetStream::default()).expect("defaults are valid")
    }
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the two sections; the error is `(key, message)`.
pub fn validate(q: RawQueue, j: RawJetStream) -> Result<FleetSettings, (String, String)> {
    let engine = match q.engine.as_str() {
        "sqlite" => Engine::Sqlite,
        "jetstream" => Engine::JetStream,
        _ => return Err(("queue.engine".into(), "must be \"sqlite\" or \"jetstream\"".into())),
    };
    if j.servers.is_empty() || j.servers.iter().any(|s| s.trim().is_empty()) {
        return Err(("jetstream.servers".into(), "needs at least one nats:// URL".into()));
    }
    for (key, v) in [("stream", &j.stream), ("subject_prefix", &j.subject_prefix), ("consumer", &j.consumer), ("dead_letter_stream", &j.dead_letter_stream)] {
        if !token_ok(v) {
            return Err((format!("jetstream.{key}"), "letters, digits, '_' and '-' only".into()));
        }
    }
    if j.stream == j.dead_letter_stream {
        return Err(("jetstream.dead_letter_stream".into(), "must differ from stream".into()));
    }
    if !(1..=5).contains(&j.replicas) {
        return Err(("jetstream.replicas".into(), "1 to 5".into()));
    }
    if j.duplicate_window_secs == 0 || j.publish_timeout_secs == 0 || j.ack_wait_secs < 3 {
        return Err(("jetstream".into(), "duplicate_window_secs and publish_timeout_secs must be > 0, ack_wait_secs >= 3".into()));
    }
    if j.max_in_flight == 0 {
        return Err(("jetstream.max_in_flight".into(), "must be > 0".into()));
    }
    let auth = auth(j.user, j.password_file, j.token_file)?;
    let tls = tls(j.tls_required, j.tls_ca_file, j.tls_client_cert_file, j.tls_client_key_file)?;
    Ok(FleetSettings {
        engine,
        servers: j.servers,
        stream: j.stream,
        subject_prefix: j.subject_prefix,
        replicas: j.replicas,
        duplicate_window: Duration::from_secs(j.duplicate_window_secs),
        publish_timeout: Duration::from_secs(j.publish_timeout_secs),
        consumer: j.consumer,
        ack_wait: Duration::from_secs(j.ack_wait_secs),
        max_in_flight: j.max_in_flight,
        dead_letter_stream: j.dead_letter_stream,
        auth,
        tls,
    })
}

type Refusal = (String, String);

fn refuse(key: &str, message: impl Into<String>) -> Refusal {
    (format!("jetstream.{key}"), message.into())
}

/// One line of secret from `path` (a trailing newline is allowed).
fn secret_file(key: &str, path: &Path) -> Result<String, Refusal> {
    let text = std::fs::read_to_string(path).map_err(|e| refuse(key, format!("cannot read {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(refuse(key, format!("{} must hold the secret on one line", path.display())));
    }
    Ok(secret.to_string())
}

fn auth(user: Option<String>, password_file: Option<PathBuf>, token_file: Option<PathBuf>) -> Result<NatsAuth, Refusal> {
    match (user, password_file, token_file) {
        (None, None, None) => Ok(NatsAuth::None),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err(refuse("token_file", "either user and password_file, or token_file, not both"))
        }
        (Some(user), Some(file), None) => {
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(refuse("user", "must be a non-empty name without spaces"));
            }
            Ok(NatsAuth::UserPassword { user, password: secret_file("password_file", &file)? })
        }
        (Some(_), None, None) => Err(refuse("password_file", "required with user")),
        (None, Some(_), None) => Err(refuse("user", "required with password_file")),
        (None, None, Some(file)) => Ok(NatsAuth::Token(secret_file("token_file", &file)?)),
    }
}

/// A PEM file that holds at least one `label` block (read now, so that
/// check-config names a wrong path instead of the first connection).
fn pem_file(key: &str, path: PathBuf, labels: &[&str]) -> Result<PathBuf, Refusal> {
    let text = std::fs::read_to_string(&path).map_err(|e| refuse(key, format!("cannot read {}: {e}", path.display())))?;
    if !labels.iter().any(|l| text.contains(&format!("-----BEGIN {l}-----"))) {
        return Err(refuse(key, format!("{} holds no PEM {}", path.display(), labels.join(" or "))));
    }
    Ok(path)
}

fn tls(
    required: bool,
    ca_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<NatsTls, Refusal> {
    let ca_file = ca_file.map(|p| pem_file("tls_ca_file", p, &["CERTIFICATE"])).transpose()?;
    let client_cert = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            pem_file("tls_client_cert_file", cert, &["CERTIFICATE"])?,
            pem_file("tls_client_key_file", key, &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"])?,
        )),
        (Some(_), None) => return Err(refuse("tls_client_key_file", "required with tls_client_cert_file")),
        (None, Some(_)) => return Err(refuse("tls_client_cert_file", "required with tls_client_key_file")),
    };
    let required = required || ca_file.is_some() || client_cert.is_some();
    Ok(NatsTls { required, ca_file, client_cert })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_local_and_bad_values_are_named() {
        assert_eq!(FleetSettings::default().engine, Engine::Sqlite);
        let bad = validate(RawQueue { engine: "redis".into() }, RawJetStream::default()).unwrap_err();
        assert_eq!(bad.0, "queue.engine");
        let j = RawJetStream { stream: "a.b".into(), ..RawJetStream::default() };
        assert_eq!(validate(RawQueue::default(), j).unwrap_err().0, "jetstream.stream");
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn check(j: RawJetStream) -> Result<FleetSettings, String> {
        validate(RawQueue::default(), j).map_err(|(k, m)| format!("{k}: {m}"))
    }

    #[test]
    fn credentials_come_from_files_and_debug_never_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let pw = file(&dir, "pw", "s3cret-pw\n");
        let s = check(RawJetStream { user: Some("coi-pub".into()), password_file: Some(pw), ..Default::default() }).unwrap();
        assert_eq!(s.auth, NatsAuth::UserPassword { user: "coi-pub".into(), password: "s3cret-pw".into() });
        let shown = format!("{s:?}");
        assert!(shown.contains("coi-pub") && !shown.contains("s3cret-pw"), "{shown}");

        let tok = file(&dir, "tok", "t0ken-value");
        let s = check(RawJetStream { token_file: Some(tok), ..Default::default() }).unwrap();
        assert_eq!(s.auth, NatsAuth::Token("t0ken-value".into()));
        assert!(!format!("{s:?}").contains("t0ken-value"));
        assert_eq!(FleetSettings::default().auth, NatsAuth::None);
    }

    #[test]
    fn incomplete_or_conflicting_credentials_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pw = file(&dir, "pw", "x");
        let two_lines = file(&dir, "two", "a\nb\n");
        let empty = file(&dir, "empty", "\n");
        let cases = [
            (RawJetStream { user: Some("u".into()), ..Default::default() }, "jetstream.password_file: required with user"),
            (RawJetStream { password_file: Some(pw.clone()), ..Default::default() }, "jetstream.user: required with password_file"),
            (
                RawJetStream { user: Some("u".into()), password_file: Some(pw.clone()), token_file: Some(pw.clone()), ..Default::default() },
                "jetstream.token_file: either",
            ),
            (RawJetStream { user: Some("a b".into()), password_file: Some(pw.clone()), ..Default::default() }, "jetstream.user: must be"),
            (RawJetStream { token_file: Some(two_lines), ..Default::default() }, "on one line"),
            (RawJetStream { token_file: Some(empty), ..Default::default() }, "on one line"),
            (RawJetStream { token_file: Some(dir.path().join("missing")), ..Default::default() }, "jetstream.token_file: cannot read"),
        ];
        for (raw, want) in cases {
            let err = check(raw).unwrap_err();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn any_tls_setting_makes_tls_required_and_files_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = file(&dir, "ca.pem", CERT);
        let cert = file(&dir, "cert.pem", CERT);
        let key = file(&dir, "key.pem", KEY);
        let not_pem = file(&dir, "junk", "hello");
        assert!(!FleetSettings::default().tls.required);
        assert!(check(RawJetStream { tls_required: true, ..Default::default() }).unwrap().tls.required);
        let s = check(RawJetStream { tls_ca_file: Some(ca.clone()), ..Default::default() }).unwrap();
        assert!(s.tls.required && s.tls.ca_file == Some(ca.clone()) && s.tls.client_cert.is_none());
        let s = check(RawJetStream { tls_client_cert_file: Some(cert.clone()), tls_client_key_file: Some(key.clone()), ..Default::default() })
            .unwrap();
        assert!(s.tls.required);
        assert_eq!(s.tls.client_cert, Some((cert.clone(), key.clone())));
        let cases = [
            (RawJetStream { tls_client_cert_file: Some(cert.clone()), ..Default::default() }, "jetstream.tls_client_key_file: required"),
            (RawJetStream { tls_client_key_file: Some(key.clone()), ..Default::default() }, "jetstream.tls_client_cert_file: required"),
            (RawJetStream { tls_ca_file: Some(not_pem.clone()), ..Default::default() }, "jetstream.tls_ca_file: ") ,
            (RawJetStream { tls_ca_file: Some(key.clone()), ..Default::default() }, "holds no PEM CERTIFICATE"),
            (
                RawJetStream { tls_client_cert_file: Some(cert), tls_client_key_file: Some(ca), ..Default::default() },
                "jetstream.tls_client_key_file: ",
            ),
            (RawJetStream { tls_ca_file: Some(dir.path().join("missing")), ..Default::default() }, "cannot read"),
        ];
        for (raw, want) in cases {
            let err = check(raw).unwrap_err();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }
}

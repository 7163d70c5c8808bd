//! Collecting the status ([`collect`]) and rendering it for people
//! ([`Report::render_text`]) or scripts (JSON through `serde`).
//!
//! Every timestamp appears as RFC 3339 (`*_at`) and as seconds relative to
//! now (`*_age_secs` in the past, `*_in_secs` in the future), so neither
//! reader has to do date arithmetic. The JSON keys are always present
//! (`null` when unknown), so scripts can rely on them.
//!
//! Endpoint `state`, a one-word summary:
//! `failing` (the last outcome was a failure: `consecutive_failures` > 0),
//! `ok` (the last outcome was a success), `waiting` (pending deliveries,
//! no outcome recorded yet), `idle` (nothing recorded, nothing pending).
//!
//! Callers: `main.rs` (`status` command).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::daemon::{self, Healthz, LockHolder};
use super::spool::{self, SpoolState};
use crate::config::Config;
use crate::push::jobs::Channel;
use crate::queue::health::{self, EndpointFigures};
use crate::queue::schema::{self, SCHEMA_VERSION};
use crate::queue::stats;
use crate::queue::QueueError;
use crate::time::{now_ms, rfc3339_from_ms};

/// Exit status: running and healthy.
pub const EXIT_OK: u8 = 0;
/// Exit status: the queue could not be read.
pub const EXIT_UNREADABLE: u8 = 1;
/// Exit status: the daemon is not running.
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit status: running, but `/healthz` is not 200.
pub const EXIT_UNHEALTHY: u8 = 4;

/// A point in time, both ways.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moment {
    /// RFC 3339, UTC.
    pub at: String,
    /// Seconds from now: negative in the past, positive in the future.
    pub from_now_secs: f64,
}

impl Moment {
    fn new(ms: u64, now: u64) -> Moment {
        Moment { at: rfc3339_from_ms(ms), from_now_secs: (ms as f64 - now as f64) / 1000.0 }
    }
}

/// The daemon part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonStatus {
    /// A process holds the instance lock.
    pub running: bool,
    /// Its pid.
    pub pid: Option<u32>,
    /// The lock file looked at.
    pub lock_file: String,
    /// `/healthz` (asked only while running).
    pub healthz: Option<Healthz>,
    /// Why the lock could not be checked.
    pub error: Option<String>,
}

/// The queue totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    /// The database file.
    pub database: String,
    /// Its schema version.
    pub schema_version: i64,
    /// Events (message events and push jobs) with a pending delivery.
    pub depth_events: u64,
    /// Pending deliveries (one event may have several endpoints).
    pub pending_deliveries: u64,
    /// The oldest of those events (its delivery commit).
    pub oldest_event: Option<Moment>,
    /// Age of the oldest event, seconds (0 when the queue is empty).
    pub oldest_event_age_secs: f64,
    /// Dead letters waiting for an operator.
    pub dead_letters: u64,
}

/// One endpoint (webhook or push channel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointStatus {
    /// Queue name: the webhook's `name`, or `push:<channel>`.
    pub name: String,
    /// `webhook` or `push`.
    pub kind: &'static str,
    /// Where it goes: scheme, host and port only (a URL's path or query can
    /// carry a secret), or what the channel is.
    pub target: Option<String>,
    /// In the current configuration (otherwise only rows are left).
    pub configured: bool,
    /// See the module docs.
    pub state: &'static str,
    /// Pending deliveries.
    pub pending: u64,
    /// Of those, due now.
    pub due: u64,
    /// Of those, failed at least once.
    pub retrying: u64,
    /// Most failed attempts of one pending delivery.
    pub max_attempts: u64,
    /// The earliest next retry.
    pub next_retry: Option<Moment>,
    /// The oldest pending delivery's event.
    pub oldest_pending: Option<Moment>,
    /// Dead letters.
    pub dead_letters: u64,
    /// When the newest dead letter died.
    pub last_dead_letter: Option<Moment>,
    /// Last answered delivery.
    pub last_success: Option<Moment>,
    /// Last failure.
    pub last_failure: Option<Moment>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// The last failure's error.
    pub last_error: Option<String>,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// This binary's version.
    pub version: &'static str,
    /// The configuration file read.
    pub config: String,
    /// When this was taken.
    pub now: String,
    /// The daemon.
    pub daemon: DaemonStatus,
    /// The queue (`null` when it could not be read; see `queue_error`).
    pub queue: Option<QueueStatus>,
    /// Why the queue could not be read.
    pub queue_error: Option<String>,
    /// Configured endpoints first (file order; push channels after), then
    /// names only the queue knows.
    pub endpoints: Vec<EndpointStatus>,
    /// The spool.
    pub spool: SpoolState,
}

/// `scheme://host[:port]` of a URL, nothing else.
fn origin(url: &reqwest::Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        let _ = write!(s, ":{port}");
    }
    s
}

/// (name, kind, target) of every endpoint the configuration runs.
fn configured(config: &Config) -> Vec<(String, &'static str, Option<String>)> {
    let mut out: Vec<(String, &'static str, Option<String>)> = config
        .webhooks
        .iter()
        .map(|e| (e.name.clone(), "webhook", Some(origin(&e.url))))
        .collect();
    let p = &config.push;
    if p.webpush.enabled {
        out.push((Channel::WebPush.queue_name().into(), "push", Some("Web Push services of the subscriptions".into())));
        out.push((Channel::Validation.queue_name().into(), "push", Some("Web Push subscription validations".into())));
    }
    if let Some(url) = &p.deltachat.proxy_url {
        out.push((Channel::DeltaChat.queue_name().into(), "push", Some(origin(url))));
    }
    if let (Some(url), Some(_)) = (&p.dovecot.doveadm_url, &p.dovecot.doveadm_api_key) {
        out.push((Channel::MetadataUnset.queue_name().into(), "push", Some(origin(url))));
        // recall and read status make their doveadm calls here too
        out.push((crate::recall::jobs::DOVEADM_ENDPOINT.into(), "recall", Some(origin(url))));
    }
    out
}

fn state_of(f: &EndpointFigures) -> &'static str {
    if f.consecutive_failures > 0 {
        "failing"
    } else if f.last_success_ms.is_some() {
        "ok"
    } else if f.pending > 0 {
        "waiting"
    } else {
        "idle"
    }
}

fn endpoint(name: String, kind: &'static str, target: Option<String>, configured: bool, f: &EndpointFigures, now: u64) -> EndpointStatus {
    let at = |ms: Option<u64>| ms.map(|ms| Moment::new(ms, now));
    EndpointStatus {
        name,
        kind,
        target,
        configured,
        state: state_of(f),
        pending: f.pending,
        due: f.due,
        retrying: f.retrying,
        max_attempts: f.max_attempts,
        next_retry: at(f.next_retry_ms),
        oldest_pending: at(f.oldest_enqueued_ms),
        dead_letters: f.dead_letters,
        last_dead_letter: at(f.last_dead_ms),
        last_success: at(f.last_success_ms),
        last_failure: at(f.last_failure_ms),
        consecutive_failures: f.consecutive_failures,
        last_error: f.last_error.clone(),
    }
}

fn daemon_status(config: &Config) -> DaemonStatus {
    let lock = config.state_dir.join("coi-sidecar.lock");
    let (holder, error) = match daemon::lock_holder(&lock) {
        Ok(h) => (h, None),
        Err(e) => (LockHolder { running: false, pid: None }, Some(format!("cannot check {}: {e}", lock.display()))),
    };
    DaemonStatus {
        running: holder.running,
        pid: holder.pid,
        lock_file: lock.display().to_string(),
        healthz: holder.running.then(|| daemon::healthz(&config.metrics_listen)),
        error,
    }
}

struct QueueRead {
    status: QueueStatus,
    figures: BTreeMap<String, EndpointFigures>,
    conn: rusqlite::Connection,
}

/// Reads the queue; the error is what the operator is shown.
fn read_queue(config: &Config, now: u64) -> Result<QueueRead, String> {
    let path = config.queue_db_path();
    if !path.exists() {
        return Err(format!(
            "no queue database at {} (the sidecar has not run with this state_dir)",
            path.display()
        ));
    }
    read_database(&path, now).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_database(path: &std::path::Path, now: u64) -> Result<QueueRead, QueueError> {
    let conn = schema::open_read_only(path)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let s = stats::read(&conn)?;
    let figures = health::endpoint_figures(&conn, now)?;
    let oldest_age = s.oldest_ts_ms.map_or(0.0, |ts| now.saturating_sub(ts) as f64 / 1000.0);
    let status = QueueStatus {
        database: path.display().to_string(),
        schema_version: version.min(SCHEMA_VERSION),
        depth_events: s.depth_events,
        pending_deliveries: s.deliveries_by_endpoint.iter().map(|(_, n)| n).sum(),
        oldest_event: s.oldest_ts_ms.map(|ms| Moment::new(ms, now)),
        oldest_event_age_secs: oldest_age,
        dead_letters: s.dead_letters,
    };
    Ok(QueueRead { status, figures, conn })
}

/// Takes the status. Never writes anything.
pub fn collect(config: &Config) -> Report {
    let now = now_ms();
    let daemon = daemon_status(config);
    let (queue, queue_error, mut figures, conn) = match read_queue(config, now) {
        Ok(q) => (Some(q.status), None, q.figures, Some(q.conn)),
        Err(e) => (None, Some(e), BTreeMap::new(), None),
    };
    let mut endpoints = Vec::new();
    for (name, kind, target) in configured(config) {
        let f = figures.remove(&name).unwrap_or_default();
        endpoints.push(endpoint(name, kind, target, true, &f, now));
    }
    for (name, f) in figures {
        let kind = if Channel::from_queue_name(&name).is_some() {
            "push"
        } else if name == crate::recall::jobs::DOVEADM_ENDPOINT {
            "recall"
        } else {
            "webhook"
        };
        endpoints.push(endpoint(name, kind, None, false, &f, now));
    }
    let spool = spool::read(conn.as_ref(), &config.spool.dir).unwrap_or_else(|e| SpoolState {
        dir: config.spool.dir.display().to_string(),
        files: Vec::new(),
        lag_bytes: 0,
        error: Some(e.to_string()),
    });
    Report {
        version: env!("CARGO_PKG_VERSION"),
        config: config.path.display().to_string(),
        now: rfc3339_from_ms(now),
        daemon,
        queue,
        queue_error,
        endpoints,
        spool,
    }
}

/// `3s`, `4m 10s`, `2h 5m`, `3d 4h`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.abs().round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn ago(m: &Moment) -> String {
    if m.from_now_secs <= 0.0 {
        format!("{} ago ({})", human_duration(m.from_now_secs), m.at)
    } else {
        format!("in {} ({})", human_duration(m.from_now_secs), m.at)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Report {
    /// The exit status (see the module docs of `status`).
    pub fn exit_code(&self) -> u8 {
        if !self.daemon.running {
            EXIT_NOT_RUNNING
        } else if !self.daemon.healthz.as_ref().is_some_and(Healthz::healthy) {
            EXIT_UNHEALTHY
        } else if self.queue.is_none() {
            EXIT_UNREADABLE
        } else {
            EXIT_OK
        }
    }

    /// The human-readable form.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "coi-sidecar {} status, config {}", self.version, self.config);
        let d = &self.daemon;
        let daemon = match (d.running, d.pid) {
            (true, Some(pid)) => format!("running, pid {pid}"),
            (true, None) => "running".to_string(),
            (false, _) => format!("NOT RUNNING (nobody holds {})", d.lock_file),
        };
        let _ = write!(o, "daemon:    {daemon}");
        if let Some(h) = &d.healthz {
            match h.status {
                Some(200) => { let _ = write!(o, "; healthy (/healthz at {}: {})", h.address, h.detail); }
                Some(code) => { let _ = write!(o, "; UNHEALTHY (/healthz at {}: {code} {})", h.address, h.detail); }
                None => { let _ = write!(o, "; /healthz at {} does not answer: {}", h.address, h.detail); }
            }
        }
        if let Some(e) = &d.error {
            let _ = write!(o, " ({e})");
        }
        o.push('\n');
        match (&self.queue, &self.queue_error) {
            (Some(q), _) => {
                let _ = write!(
                    o,
                    "queue:     {} pending ({}), ",
                    plural(q.depth_events, "event", "events"),
                    plural(q.pending_deliveries, "delivery", "deliveries")
                );
                match &q.oldest_event {
                    Some(m) => { let _ = write!(o, "oldest {}", ago(m)); }
                    None => o.push_str("nothing waiting"),
                }
                let _ = writeln!(o, "; {}", plural(q.dead_letters, "dead letter", "dead letters"));
            }
            (None, Some(e)) => { let _ = writeln!(o, "queue:     cannot be read: {e}"); }
            (None, None) => {}
        }
        let s = &self.spool;
        match &s.error {
            Some(e) => { let _ = writeln!(o, "spool:     {}: cannot be read: {e}", s.dir); }
            None => {
                let size: u64 = s.files.iter().map(|f| f.size).sum();
                let _ = writeln!(
                    o,
                    "spool:     {}: {}, {} bytes, {} bytes not yet taken in (lag)",
                    s.dir,
                    plural(s.files.len() as u64, "file", "files"),
                    size,
                    s.lag_bytes
                );
                for f in &s.files {
                    match &f.problem {
                        Some(p) => { let _ = writeln!(o, "           {}: {p}", f.name); }
                        None => {
                            let _ = writeln!(o, "           {}: size {}, read to {}, lag {}", f.name, f.size, f.offset, f.lag_bytes);
                        }
                    }
                }
            }
        }
        if self.endpoints.is_empty() {
            o.push_str("endpoints: none configured\n");
        } else {
            o.push_str("endpoints:\n");
        }
        for e in &self.endpoints {
            let target = e.target.as_deref().map(|t| format!(" -> {t}")).unwrap_or_default();
            let configured = if e.configured { "" } else { " (not in the configuration; rows left in the queue)" };
            let _ = writeln!(o, "  {} [{}]{target}: {}{configured}", e.name, e.kind, e.state.to_uppercase());
            let _ = write!(o, "      pending {}", e.pending);
            if e.pending > 0 {
                let _ = write!(o, " ({} due now, {} retrying", e.due, e.retrying);
                if e.retrying > 0 {
                    let _ = write!(o, ", up to {}", plural(e.max_attempts, "failed attempt", "failed attempts"));
                }
                o.push(')');
            }
            if let Some(m) = &e.next_retry {
                let _ = write!(o, "; next retry {}", if m.from_now_secs <= 0.0 { "due now".to_string() } else { ago(m) });
            }
            let _ = write!(o, "; {}", plural(e.dead_letters, "dead letter", "dead letters"));
            if let Some(m) = &e.last_dead_letter {
                let _ = write!(o, ", newest {}", ago(m));
            }
            o.push('\n');
            let _ = write!(o, "      last success: {}", e.last_success.as_ref().map_or("never recorded".into(), ago));
            let _ = write!(o, "; last failure: {}", e.last_failure.as_ref().map_or("never recorded".into(), ago));
            if e.consecutive_failures > 0 {
                let _ = write!(o, "; {} in a row", plural(e.consecutive_failures, "failure", "failures"));
            }
            o.push('\n');
            if let (Some(err), true) = (&e.last_error, e.consecutive_failures > 0) {
                let _ = writeln!(o, "      last error: {}", err.replace(['\n', '\t'], " "));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(0.4), "0s");
        assert_eq!(human_duration(-59.0), "59s");
        assert_eq!(human_duration(250.0), "4m 10s");
        assert_eq!(human_duration(7500.0), "2h 5m");
        assert_eq!(human_duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
    }

    #[test]
    fn the_state_word_follows_the_last_outcome() {
        let mut f = EndpointFigures::default();
        assert_eq!(state_of(&f), "idle");
        f.pending = 2;
        assert_eq!(state_of(&f), "waiting");
        f.last_success_ms = Some(1);
        assert_eq!(state_of(&f), "ok");
        f.consecutive_failures = 1;
        assert_eq!(state_of(&f), "failing");
    }

    #[test]
    fn a_target_shows_no_path_or_query() {
        let url = reqwest::Url::parse("https://user:pw@hooks.example.org:8443/t/SECRET?k=SECRET").unwrap();
        assert_eq!(origin(&url), "https://hooks.example.org:8443");
    }
}

//! Emitting delivery events from inside a Dovecot process (docs/events.md).
//!
//! One event = one record appended to the spool with a single write, then a
//! non-blocking datagram to the sidecar. Nothing here waits on the sidecar:
//! the doorbell is fire-and-forget, and the spool append touches only a
//! local file. Events that cannot be appended (spool full, spool directory
//! unwritable) are dropped, counted per process and reported to the sidecar
//! exactly once, in the next record's `dropped_before` or in a doorbell's
//! `dropped`; the warning about them is rate-limited. A record too large
//! for the spool never loses its identity fields (`coi_core::wire::encode`):
//! push targets that do not fit are left out and counted in the record's
//! `targets_dropped` (the sidecar's `coi_plugin_push_targets_dropped_total`)
//! with a rate-limited warning, and a record whose identity alone does not
//! fit is dropped and counted like any other dropped event.
//!
//! Process-global state (this module's statics) is touched only from
//! Dovecot's single ioloop thread; atomics and a mutex keep it sound anyway.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coi_core::event_settings::EventSettings;
use coi_core::spool::SpoolWriter;
use coi_core::wire::{encode, encode_doorbell, Doorbell, Record};

use crate::log::LogEvent;

/// Drops not yet reported to the sidecar.
static UNREPORTED_DROPS: AtomicU64 = AtomicU64::new(0);
/// One unbound datagram socket per process, created on first use.
static DOORBELL: Mutex<Option<UnixDatagram>> = Mutex::new(None);
/// The doorbell socket of the latest emit, for the report at exit.
static LAST_SOCKET: Mutex<Option<PathBuf>> = Mutex::new(None);
/// When a drop warning was last logged.
static LAST_DROP_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
/// When a "push targets left out" warning was last logged.
static LAST_TARGETS_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Where one user's events go.
pub(crate) struct EventSink {
    writer: SpoolWriter,
    spool_dir: PathBuf,
    socket: PathBuf,
}

impl EventSink {
    /// A sink for these settings, or `None` when the spool directory does
    /// not exist: then no sidecar is installed and events are off (an
    /// operator who installs the sidecar package gets the directory).
    pub(crate) fn open(settings: &EventSettings) -> Option<EventSink> {
        if !settings.spool_dir.is_dir() {
            return None;
        }
        Some(EventSink {
            writer: SpoolWriter::new(settings.spool_dir.clone(), settings.spool_max_bytes),
            spool_dir: settings.spool_dir.clone(),
            socket: settings.sidecar_socket.clone(),
        })
    }

    /// Appends `record` (whose `dropped_before` this fills in) and rings
    /// the sidecar. Returns false when the event was dropped.
    pub(crate) fn emit(&self, log: LogEvent, mut record: Record) -> bool {
        if let Ok(mut last) = LAST_SOCKET.lock() {
            if last.as_deref() != Some(self.socket.as_path()) {
                *last = Some(self.socket.clone());
            }
        }
        let reported = UNREPORTED_DROPS.swap(0, Ordering::Relaxed);
        set_dropped_before(&mut record, reported);
        let encoded = match encode(&record) {
            Ok(e) => e,
            Err(err) => {
                UNREPORTED_DROPS.fetch_add(reported + 1, Ordering::Relaxed);
                warn_rate_limited(&LAST_DROP_WARNING, log, format_args!(
                    "event dropped: {err} ({} not yet reported)",
                    UNREPORTED_DROPS.load(Ordering::Relaxed)
                ));
                return false;
            }
        };
        if encoded.targets_dropped > 0 {
            warn_rate_limited(&LAST_TARGETS_WARNING, log, format_args!(
                "push record over {} bytes: {} push target(s) left out of this push \
                 (the user has many or very large device tokens / subscriptions)",
                coi_core::wire::MAX_RECORD_BYTES,
                encoded.targets_dropped
            ));
        }
        match self.writer.append(&encoded.bytes) {
            Ok(()) => {
                ring(&self.socket, 0);
                true
            }
            Err(err) => {
                UNREPORTED_DROPS.fetch_add(reported + 1, Ordering::Relaxed);
                warn_rate_limited(&LAST_DROP_WARNING, log, format_args!(
                    "event dropped: cannot append to the spool in {}: {err} ({} not yet reported)",
                    self.spool_dir.display(),
                    UNREPORTED_DROPS.load(Ordering::Relaxed)
                ));
                // The doorbell carries drops the spool could not.
                let pending = UNREPORTED_DROPS.swap(0, Ordering::Relaxed);
                if !ring(&self.socket, pending) {
                    UNREPORTED_DROPS.fetch_add(pending, Ordering::Relaxed);
                }
                false
            }
        }
    }
}

fn set_dropped_before(record: &mut Record, dropped: u64) {
    match record {
        Record::Message(event) => event.dropped_before = dropped,
        Record::Fallback(event) => event.dropped_before = dropped,
        Record::Push(event) => event.dropped_before = dropped,
        Record::WebPushValidation(event) => event.dropped_before = dropped,
        Record::LocalCopy(event) => event.dropped_before = dropped,
        Record::RecallRequest(event) => event.dropped_before = dropped,
        Record::RecallOutcome(event) => event.dropped_before = dropped,
        Record::MessageRead(event) => event.dropped_before = dropped,
        Record::Mdn(event) => event.dropped_before = dropped,
    }
}

/// At plugin deinit (the process is exiting or unloading the plugin):
/// drops not reported yet get one last doorbell; if the sidecar cannot take
/// it either, the count goes to the log as an error, the only record left
/// (a spool that refused the events would refuse a count too).
pub(crate) fn report_drops_at_exit() {
    let pending = UNREPORTED_DROPS.swap(0, Ordering::Relaxed);
    if pending == 0 {
        return;
    }
    let socket = LAST_SOCKET.lock().ok().and_then(|s| s.clone());
    if socket.as_deref().is_some_and(|path| ring(path, pending)) {
        return;
    }
    LogEvent::process().error(format_args!(
        "{pending} dropped event(s) could not be reported to coi-sidecar before exit \
         (sidecar unreachable); its dropped-events counter misses them"
    ));
}

/// Sends one doorbell without blocking. True if the kernel took it.
fn ring(socket: &Path, dropped: u64) -> bool {
    let Ok(mut slot) = DOORBELL.lock() else {
        return false;
    };
    if slot.is_none() {
        let Ok(sock) = UnixDatagram::unbound() else {
            return false;
        };
        if sock.set_nonblocking(true).is_err() {
            return false;
        }
        *slot = Some(sock);
    }
    let datagram = encode_doorbell(&Doorbell { dropped });
    slot.as_ref().is_some_and(|sock| sock.send_to(&datagram, socket).is_ok())
}

fn warn_rate_limited(slot: &Mutex<Option<Instant>>, log: LogEvent, args: std::fmt::Arguments<'_>) {
    let Ok(mut last) = slot.lock() else {
        return;
    };
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < DROP_WARNING_INTERVAL) {
        return;
    }
    *last = Some(now);
    log.warning(args);
}

/// Milliseconds since the epoch, for `ts_ms`.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

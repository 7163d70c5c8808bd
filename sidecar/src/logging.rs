//! Logging setup: `tracing` to stderr, text or JSON, with a level that a
//! SIGHUP reload can change.
//!
//! Invariant: set up once per process, before anything logs; the format is
//! fixed for the process's lifetime (changing it needs a restart), the level
//! is not. Log lines carry structured fields, never user data interpolated
//! into the message text.
//!
//! Callers: `main.rs` (init), `app.rs` (reload).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

use crate::config::LogFormat;

/// Changes the level of the installed subscriber.
#[derive(Clone)]
pub struct LogHandle(reload::Handle<LevelFilter, Registry>);

impl LogHandle {
    /// Sets the maximum level logged.
    pub fn set_level(&self, level: tracing::Level) {
        if let Err(e) = self.0.modify(|f| *f = LevelFilter::from_level(level)) {
            tracing::error!(error = %e, "could not change the log level");
        }
    }
}

/// Installs the global subscriber. Returns `None` if one was already
/// installed (tests).
pub fn init(format: LogFormat, level: tracing::Level) -> Option<LogHandle> {
    let (filter, handle) = reload::Layer::new(LevelFilter::from_level(level));
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .ok()?;
    Some(LogHandle(handle))
}

//! The panic guard around every callback Dovecot reaches.
//!
//! A panic must never unwind into C. Each callback runs in [`call`]: a panic
//! is caught, its message and location (recorded by our panic hook instead
//! of being printed to stderr) are logged through Dovecot, and the plugin is
//! poisoned for the rest of this process: every later callback returns its
//! fallback at once, which the shim treats as "leave delivery alone". Mail
//! is then delivered as if the plugin were absent until the process is
//! replaced.
//!
//! Callbacks must come from the thread that initialised the plugin
//! (Dovecot is single-threaded per process); a call from elsewhere is
//! refused the same way.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, ThreadId};

use crate::log::LogEvent;

static POISONED: AtomicBool = AtomicBool::new(false);
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static OWNER_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Installs the panic hook and records the owning thread. Called once from
/// `coi_plugin_init`.
pub(crate) fn install() {
    let _ = OWNER_THREAD.set(thread::current().id());
    POISONED.store(false, Ordering::Relaxed);
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown location".to_string());
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        if let Ok(mut slot) = LAST_PANIC.lock() {
            *slot = Some(format!("{message} at {location}"));
        }
    }));
}

/// Restores the default panic hook. Called from `coi_plugin_deinit`, before
/// Dovecot unloads the module.
pub(crate) fn uninstall() {
    let _ = panic::take_hook();
}

/// Runs `body`, returning `fallback` if the plugin is poisoned, if the call
/// comes from a foreign thread, or if `body` panics.
pub(crate) fn call<R>(what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    if POISONED.load(Ordering::Relaxed) {
        return fallback;
    }
    if OWNER_THREAD.get().is_some_and(|owner| *owner != thread::current().id()) {
        LogEvent::process().error(format_args!(
            "{what} called from a foreign thread; refused (Dovecot calls plugins from one thread only)"
        ));
        return fallback;
    }
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(_) => {
            POISONED.store(true, Ordering::Relaxed);
            let detail = LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .unwrap_or_else(|| "no detail".to_string());
            LogEvent::process().error(format_args!(
                "internal error in {what} ({detail}); the plugin is disabled in this process, \
                 mail is delivered as without it"
            ));
            fallback
        }
    }
}

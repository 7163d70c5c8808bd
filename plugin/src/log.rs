//! Rust -> Dovecot logging.
//!
//! Text is formatted in Rust and passed as bytes; the shim logs it with a
//! constant `"%.*s"` format on the given Dovecot event, so lines carry the
//! session prefix (`lmtp(alice)<sid>:`) and obey `mail_debug`. Every line
//! starts with `coi: ` so operators can grep for the plugin.

use std::ffi::c_void;
use std::fmt;

use crate::ffi;

/// A borrowed Dovecot `struct event *` (or NULL for the process logger).
#[derive(Clone, Copy)]
pub(crate) struct LogEvent(*mut c_void);

impl LogEvent {
    /// Wraps an event pointer received from the shim in a callback.
    pub(crate) fn from_raw(event: *mut c_void) -> LogEvent {
        LogEvent(event)
    }

    /// The process-wide logger (no session prefix).
    pub(crate) fn process() -> LogEvent {
        LogEvent(std::ptr::null_mut())
    }

    /// True when a debug line on this event would be written.
    pub(crate) fn debug_enabled(self) -> bool {
        // SAFETY: the pointer is NULL or an event the shim passed to the
        // current callback, alive for its duration.
        unsafe { ffi::coi_shim_debug_enabled(self.0) != 0 }
    }

    pub(crate) fn debug(self, args: fmt::Arguments<'_>) {
        if self.debug_enabled() {
            self.write(ffi::COI_LOG_DEBUG, args);
        }
    }

    pub(crate) fn info(self, args: fmt::Arguments<'_>) {
        self.write(ffi::COI_LOG_INFO, args);
    }

    pub(crate) fn warning(self, args: fmt::Arguments<'_>) {
        self.write(ffi::COI_LOG_WARNING, args);
    }

    pub(crate) fn error(self, args: fmt::Arguments<'_>) {
        self.write(ffi::COI_LOG_ERROR, args);
    }

    fn write(self, level: ffi::coi_log_level, args: fmt::Arguments<'_>) {
        let text = format!("coi: {args}");
        // SAFETY: `text` outlives the call; the shim copies what it logs.
        // The event pointer is valid as described in `debug_enabled`.
        unsafe { ffi::coi_shim_log(self.0, level as i32, text.as_ptr(), text.len()) }
    }
}

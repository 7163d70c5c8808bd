//! systemd notification protocol (sd_notify), without libsystemd.
//!
//! What this module owns: sending `READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=...` and `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET` (a path, or
//! an abstract socket when it starts with `@`), and reading the watchdog
//! interval from `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`).
//!
//! Invariant: without `NOTIFY_SOCKET` every call is a no-op; a failed send
//! is returned to the caller, which logs it; it never stops the daemon.
//!
//! Callers: `app.rs` (ready/reloading/stopping and the watchdog task).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `"READY=1"`) if running under systemd. Returns
/// whether a message was sent.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let addr = if let Some(name) = target.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else {
        SocketAddr::from_pathname(&target)?
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(true)
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog
/// is enabled for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

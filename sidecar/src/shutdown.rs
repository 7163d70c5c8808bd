//! Process lifecycle signals: shutdown propagation and the Unix signals that
//! drive it.
//!
//! What this module owns: [`Shutdown`] (the one trigger) and
//! [`ShutdownWatch`] (what tasks await), and [`Signals`]: SIGTERM and SIGINT
//! mean "stop gracefully", SIGHUP means "reload the config".
//!
//! Invariant: triggering is idempotent and sticky: a task that starts
//! waiting after the trigger returns at once.
//!
//! Callers: `app.rs` owns the trigger and the signals; the listener, the
//! metrics server and the watchdog hold watches.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// The shutdown trigger.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// A handle that resolves once shutdown was triggered.
#[derive(Debug, Clone)]
pub struct ShutdownWatch(watch::Receiver<bool>);

impl Shutdown {
    /// A new, untriggered shutdown.
    pub fn new() -> (Shutdown, ShutdownWatch) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), ShutdownWatch(rx))
    }

    /// Triggers shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl ShutdownWatch {
    /// Waits until shutdown is triggered (or the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signal streams the daemon reacts to.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (must run inside the runtime).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal request.
    pub async fn next(&mut self) -> SignalRequest {
        tokio::select! {
            _ = self.term.recv() => SignalRequest::Stop,
            _ = self.int.recv() => SignalRequest::Stop,
            _ = self.hup.recv() => SignalRequest::Reload,
        }
    }
}

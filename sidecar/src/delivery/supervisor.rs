//! Keeps one delivery driver running per configured endpoint, and one per
//! push channel.
//!
//! What this module owns: the set of running drivers, keyed by endpoint
//! name; push channel drivers ([`Supervisor::start_fixed`]) run from start
//! to shutdown and are not touched by reloads. [`Supervisor::apply`] (start and SIGHUP reload) starts drivers for
//! new endpoints, restarts those whose settings changed and stops removed
//! ones; [`Supervisor::waker`] gives the intake a function that wakes the
//! drivers of the endpoints that got new rows (or every driver); [`Supervisor::shutdown`] stops them all, each with the
//! grace period for its attempts in flight.
//!
//! Invariants: deliveries belong to endpoint names, not drivers: rows of a
//! removed endpoint stay pending in the queue (and are picked up if the name
//! comes back); a restarted driver may briefly overlap with its predecessor's
//! last attempts, which can only duplicate a delivery (at-least-once).
//!
//! Callers: `app.rs`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::driver::{Driver, Sink};
use super::http::HttpSender;
use super::settle::Ledger;
use super::webhook::WebhookSink;
use crate::config::Endpoint;
use crate::metrics::Metrics;
use crate::queue::store::DeliveryStore;

struct Running {
    /// The queue endpoint name (webhook name or `push:<channel>`).
    name: String,
    /// The webhook endpoint (`None` for a push channel).
    endpoint: Option<Arc<Endpoint>>,
    notify: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running drivers.
pub struct Supervisor {
    store: DeliveryStore,
    metrics: Metrics,
    grace: Duration,
    running: HashMap<String, Running>,
    fixed: Vec<Running>,
    /// Queue endpoint name -> its driver's wake-up.
    wakers: Arc<RwLock<Vec<(String, Arc<Notify>)>>>,
}

impl Supervisor {
    /// No drivers yet.
    pub fn new(store: DeliveryStore, metrics: Metrics, grace: Duration) -> Supervisor {
        Supervisor {
            store,
            metrics,
            grace,
            running: HashMap::new(),
            fixed: Vec::new(),
            wakers: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// Sets the grace period for later stops (reload).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Wakes the drivers of the queue endpoints named, or every current
    /// driver (`None`); called by the intake after a commit. Waking only
    /// the endpoints that got rows spares the others a queue query per
    /// commit.
    pub fn waker(&self) -> Arc<dyn Fn(Option<&[&str]>) + Send + Sync> {
        let wakers = self.wakers.clone();
        Arc::new(move |names: Option<&[&str]>| {
            let list = match wakers.read() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            for (name, n) in list.iter() {
                if names.is_none_or(|names| names.contains(&name.as_str())) {
                    // notify_one keeps a permit if the driver is busy, so a
                    // wake-up between its query and its select is not lost.
                    n.notify_one();
                }
            }
        })
    }

    /// Makes the running drivers match `endpoints`. Returns the names of
    /// endpoints whose client could not be built (their drivers are not
    /// running; the error is logged and counted).
    pub fn apply(&mut self, endpoints: &[Arc<Endpoint>]) -> Vec<String> {
        let mut failed = Vec::new();
        let wanted: HashMap<&str, &Arc<Endpoint>> =
            endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|e| self.running[&name].endpoint.as_deref() == Some(&***e));
            if !keep {
                if let Some(r) = self.running.remove(&name) {
                    let _ = r.stop.send(true);
                    tracing::info!(endpoint = %name, "stopping delivery driver (removed or changed)");
                }
            }
        }
        for e in endpoints {
            if self.running.contains_key(&e.name) {
                continue;
            }
            self.metrics.register_endpoint(&e.name);
            let sender = match HttpSender::new(e) {
                Ok(s) => s,
                Err(err) => {
                    self.metrics.error("delivery_client", err.error_type());
                    tracing::error!(endpoint = %e.name, error = %err, "cannot build the HTTP client; endpoint disabled");
                    failed.push(e.name.clone());
                    continue;
                }
            };
            let notify = Arc::new(Notify::new());
            let (stop_tx, stop_rx) = watch::channel(false);
            let ledger = Ledger {
                name: e.name.clone(),
                store: self.store.clone(),
                metrics: self.metrics.clone(),
            };
            let sink = Arc::new(WebhookSink::new(e.clone(), sender, ledger));
            let driver = Driver::new(
                sink,
                self.store.clone(),
                self.metrics.clone(),
                notify.clone(),
                stop_rx,
                self.grace,
            );
            let task = tokio::spawn(driver.run());
            self.running.insert(
                e.name.clone(),
                Running {
                    name: e.name.clone(),
                    endpoint: Some(e.clone()),
                    notify,
                    stop: stop_tx,
                    task,
                },
            );
        }
        self.publish_wakers();
        failed
    }

    fn publish_wakers(&self) {
        let list: Vec<(String, Arc<Notify>)> = self
            .running
            .values()
            .chain(&self.fixed)
            .map(|r| (r.name.clone(), r.notify.clone()))
            .collect();
        match self.wakers.write() {
            Ok(mut w) => *w = list,
            Err(p) => *p.into_inner() = list,
        }
    }

    /// Starts a driver that runs until shutdown (a push channel); `notify`
    /// wakes it (the intake wakes it too, like every driver).
    pub fn start_fixed<S: Sink>(&mut self, sink: Arc<S>, notify: Arc<Notify>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let name = sink.name().to_string();
        let driver = Driver::new(sink, self.store.clone(), self.metrics.clone(), notify.clone(), stop_rx, self.grace);
        let task = tokio::spawn(driver.run());
        self.fixed.push(Running {
            name,
            endpoint: None,
            notify,
            stop: stop_tx,
            task,
        });
        self.publish_wakers();
    }

    /// Whether every driver task is still running.
    pub fn all_alive(&self) -> bool {
        self.running.values().chain(&self.fixed).all(|r| !r.task.is_finished())
    }

    /// Stops every driver and waits for them (each bounded by the grace).
    pub async fn shutdown(mut self) {
        let mut running: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        running.append(&mut self.fixed);
        for r in &running {
            let _ = r.stop.send(true);
        }
        for r in running {
            if let Err(e) = r.task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

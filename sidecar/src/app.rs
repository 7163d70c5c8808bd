//! The daemon: wiring every piece together, the main loop, reload and
//! shutdown.
//!
//! What this module owns, in start order:
//! 1. directories and the instance lock (`<state_dir>/coi-sidecar.lock`,
//!    an exclusive flock: two daemons on one queue would double-deliver);
//! 2. the VAPID key pair when Web Push is enabled (made on first start,
//!    never replaced; a bad key file stops the start), the queue (intake
//!    connection + delivery store), metrics, webhook drivers and the push
//!    channel drivers;
//! 3. the intake thread (which drains what accumulated while we were down
//!    before the socket even exists), the doorbell socket, the metrics
//!    server;
//! 4. `READY=1`, then the watchdog and the signal loop.
//!
//! Reload (SIGHUP): the config is read and validated again; if invalid the
//! old one stays (logged, counted). Webhooks and the log level apply at
//! once; socket, spool, state, metrics and push settings need a restart
//! (logged).
//! Shutdown (SIGTERM/SIGINT): stop the doorbell socket and metrics server,
//! let the intake finish its cycle, give attempts in flight the grace
//! period, then exit 0. Anything unfinished is still pending in the queue.
//! A core task ending on its own is an error: the daemon exits non-zero and
//! systemd restarts it (panics exit through the panic hook in `main.rs`).
//!
//! `coi-sidecar dispatch` ([`Role::Dispatch`]) starts the same senders but,
//! instead of the intake thread and the doorbell socket, the fleet
//! dispatcher (`fleet::dispatch`). With `[queue] engine = "jetstream"` the
//! intake publishes to the stream (`fleet::publish`) instead of the local
//! queue.
//!
//! Callers: `main.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use crate::config::{Config, SharedEndpoints};
use crate::delivery::supervisor::Supervisor;
use crate::fleet::dispatch::Dispatcher;
use crate::fleet::publish::JetStreamQueue;
use crate::fleet::settings::Engine;
use crate::queue::engine::{EventQueue, SqliteQueue};
use crate::intake::peer::PeerPolicy;
use crate::intake::pump::{Pump, Trigger};
use crate::intake::{listener, reader::IntakeError};
use crate::logging::LogHandle;
use crate::metrics::Metrics;
use crate::push::channels as push_channels;
use crate::push::vapid::VapidKeys;
use crate::queue::schema::{self, Durability};
use crate::queue::store::DeliveryStore;
use crate::server::{self, ServerState};
use crate::shutdown::{Shutdown, SignalRequest, Signals};
use crate::systemd;
use crate::time::now_ms;

/// Why the daemon stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Start-up failed.
    #[error("{0}")]
    Startup(String),
    /// A core task ended while the daemon was running.
    #[error("core task {0} ended unexpectedly")]
    TaskEnded(&'static str),
    /// The intake thread failed.
    #[error("intake: {0}")]
    Intake(#[from] IntakeError),
}

impl AppError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            AppError::Startup(_) => "startup",
            AppError::TaskEnded(_) => "task_ended",
            AppError::Intake(e) => e.error_type(),
        }
    }

    /// A restart (by systemd) may help.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, AppError::Startup(_))
    }
}

fn startup(what: &str) -> impl Fn(String) -> AppError + '_ {
    move |e| AppError::Startup(format!("{what}: {e}"))
}

/// What this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `coi-sidecar run`: intake from the spool into the configured queue
    /// engine, plus the senders for the local queue.
    Local,
    /// `coi-sidecar dispatch`: no spool, no socket; the senders are fed
    /// from the JetStream stream (`fleet::dispatch`).
    Dispatch,
}

/// Runs the daemon until a stop signal. `log` changes the level on reload.
pub async fn run(config: Config, log: Option<LogHandle>) -> Result<(), AppError> {
    run_as(config, log, Role::Local).await
}

/// Runs the daemon as `role` until a stop signal.
pub async fn run_as(config: Config, log: Option<LogHandle>, role: Role) -> Result<(), AppError> {
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config");
    }
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| startup("creating state_dir")(e.to_string()))?;
    if role == Role::Local {
        std::fs::create_dir_all(&config.spool.dir)
            .map_err(|e| startup("creating spool_dir")(e.to_string()))?;
    }
    let lock_path = config.state_dir.join("coi-sidecar.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| startup("opening the instance lock")(e.to_string()))?;
    lock.try_lock().map_err(|e| {
        startup("instance lock")(format!(
            "{} is held ({e}): another coi-sidecar uses this state_dir",
            lock_path.display()
        ))
    })?;

    let vapid = if config.push.webpush.enabled {
        let w = &config.push.webpush;
        let (keys, origin) = VapidKeys::load_or_create(&w.vapid_private_key, &w.vapid_public_key)
            .map_err(|e| startup("webpush")(e.to_string()))?;
        tracing::info!(
            origin = ?origin,
            private_key = %w.vapid_private_key.display(),
            public_key = %w.vapid_public_key.display(),
            k = keys.public_b64(),
            "VAPID key pair ready"
        );
        Some(Arc::new(keys))
    } else {
        None
    };

    let metrics = Metrics::new().map_err(|e| startup("metrics")(e.to_string()))?;
    let db = config.queue_db_path();
    let intake_conn =
        schema::open(&db, Durability::Full).map_err(|e| startup("queue")(e.to_string()))?;
    crate::recall::schema::ensure(&intake_conn).map_err(|e| startup("queue")(e.to_string()))?;
    let store = DeliveryStore::open(&db).map_err(|e| startup("queue")(e.to_string()))?;
    schema::count_commits(&intake_conn, metrics.queue_commits.with_label_values(&["intake"]));
    store.count_commits(metrics.queue_commits.with_label_values(&["delivery"]));

    let endpoints: SharedEndpoints = Arc::new(RwLock::new(Arc::new(config.webhooks.clone())));
    let mut supervisor = Supervisor::new(store.clone(), metrics.clone(), config.delivery.shutdown_grace);
    supervisor.apply(&config.webhooks);
    let channels = push_channels::start(&config.push, vapid, &mut supervisor, &store, &metrics)
        .map_err(|e| startup("push channels")(e.to_string()))?;
    crate::recall::sink::start(&config.push.dovecot, &mut supervisor, &store, &metrics)
        .map_err(|e| startup("recall")(e.to_string()))?;
    let doveadm_missing = config.push.dovecot.doveadm_url.is_none()
        && (config.push.webpush.enabled || config.push.deltachat.proxy_url.is_some());
    if doveadm_missing {
        tracing::warn!("[dovecot] doveadm_url is not set: push targets that are gone are only recorded by the sidecar, not removed from METADATA");
    }

    let (shutdown, shutdown_watch) = Shutdown::new();
    let heartbeat = Arc::new(AtomicU64::new(now_ms()));
    let (ring_tx, ring_rx) = mpsc::sync_channel::<Trigger>(1);
    let (pump_done_tx, mut pump_done_rx) = tokio::sync::oneshot::channel::<Result<(), IntakeError>>();
    let mut pump_done_tx = Some(pump_done_tx);
    let mut pump_thread = None;
    let (mut listener_task, listener_name) = match role {
        Role::Local => {
            // Intake thread.
            let queue: Box<dyn EventQueue> = match config.fleet.engine {
                Engine::Sqlite => Box::new(SqliteQueue),
                Engine::JetStream => Box::new(JetStreamQueue::new(
                    config.fleet.clone(),
                    tokio::runtime::Handle::current(),
                    metrics.fleet.clone(),
                )),
            };
            let pump = Pump {
                conn: intake_conn,
                queue,
                spool: config.spool.clone(),
                endpoints: endpoints.clone(),
                routing: crate::push::jobs::Routing { recall: config.recall, ..push_channels::routing(&config.push) },
                metrics: metrics.clone(),
                wake: supervisor.waker(),
                heartbeat: heartbeat.clone(),
            };
            let done_tx = pump_done_tx.take().expect("set above");
            pump_thread = Some(
                std::thread::Builder::new()
                    .name("coi-intake".into())
                    .spawn(move || {
                        let result = pump.run(ring_rx);
                        let _ = done_tx.send(result);
                    })
                    .map_err(|e| startup("intake thread")(e.to_string()))?,
            );
            let sock = listener::bind(&config.socket).map_err(|e| startup("doorbell socket")(e.to_string()))?;
            let policy = PeerPolicy {
                uids: config.socket.allowed_uids.clone(),
                gids: config.socket.allowed_gids.clone(),
            };
            let task = tokio::spawn(listener::serve(
                sock,
                policy,
                metrics.clone(),
                ring_tx.clone(),
                config.spool.commit_window,
                shutdown_watch.clone(),
            ));
            (task, "doorbell listener")
        }
        Role::Dispatch => {
            // No intake: the stop request at shutdown must not wait for a reader.
            drop(ring_rx);
            drop(intake_conn);
            let dispatcher = Dispatcher {
                settings: config.fleet.clone(),
                db: Arc::new(std::sync::Mutex::new(
                    schema::open(&db, Durability::Normal).map_err(|e| startup("queue")(e.to_string()))?,
                )),
                wake: supervisor.waker(),
                metrics: metrics.clone(),
                heartbeat: heartbeat.clone(),
            };
            let watch = shutdown_watch.clone();
            (tokio::spawn(async move { dispatcher.run(watch).await }), "dispatcher")
        }
    };

    let bound = server::bind(&config.metrics_listen)
        .await
        .map_err(|e| startup("metrics listener")(e.to_string()))?;
    let drivers_alive = Arc::new(AtomicBool::new(true));
    let state = Arc::new(ServerState {
        metrics: metrics.clone(),
        store: store.clone(),
        intake_heartbeat: heartbeat.clone(),
        intake_staleness: (config.spool.scan_interval * 5).max(Duration::from_secs(30)),
        drivers_alive: drivers_alive.clone(),
    });
    tracing::info!(
        metrics = %bound.describe(),
        socket = %config.socket.path.display(),
        spool = %config.spool.dir.display(),
        endpoints = config.webhooks.len(),
        push_channels = ?channels,
        version = env!("CARGO_PKG_VERSION"),
        "coi-sidecar started"
    );
    let mut server_task = tokio::spawn(server::serve(bound, state.clone(), shutdown_watch.clone()));

    let mut signals = Signals::install().map_err(|e| startup("signals")(e.to_string()))?;
    if let Err(e) = systemd::notify("READY=1") {
        tracing::warn!(error = %e, "sd_notify READY failed");
    }
    let watchdog = systemd::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut liveness_tick = tokio::time::interval(Duration::from_secs(5));

    let mut config = config;
    let outcome: Result<(), AppError> = loop {
        tokio::select! {
            req = signals.next() => match req {
                SignalRequest::Stop => break Ok(()),
                SignalRequest::Reload => {
                    let _ = systemd::notify("RELOADING=1");
                    reload(&mut config, &endpoints, &mut supervisor, log.as_ref(), &metrics);
                    let _ = systemd::notify("READY=1");
                }
            },
            r = &mut pump_done_rx => break Err(match r {
                Ok(Err(e)) => AppError::Intake(e),
                _ => AppError::TaskEnded("intake"),
            }),
            _ = &mut listener_task => break Err(AppError::TaskEnded(listener_name)),
            _ = &mut server_task => break Err(AppError::TaskEnded("metrics server")),
            _ = liveness_tick.tick() => {
                drivers_alive.store(supervisor.all_alive(), Ordering::Relaxed);
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                match state.health().await {
                    Ok(()) => { let _ = systemd::notify("WATCHDOG=1"); }
                    Err(why) => tracing::warn!(reason = %why, "unhealthy: withholding the watchdog ping"),
                }
            }
        }
    };

    tracing::info!("shutting down");
    let _ = systemd::notify("STOPPING=1");
    shutdown.trigger();
    let _ = ring_tx.try_send(Trigger::Stop);
    // The channel may hold a pending ring; Stop must still arrive.
    let stop_sender = ring_tx.clone();
    let stopper = tokio::task::spawn_blocking(move || {
        let _ = stop_sender.send(Trigger::Stop);
    });
    supervisor.shutdown().await;
    let _ = stopper.await;
    drop(ring_tx);
    if let Some(thread) = pump_thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    // Held by a dispatcher until here: its dropping would read as the end of the intake.
    drop(pump_done_tx);
    if role == Role::Dispatch {
        let _ = tokio::time::timeout(Duration::from_secs(2), listener_task).await;
    }
    if let Bound::Unix(path) = bound_path(&config) {
        let _ = std::fs::remove_file(path);
    }
    if role == Role::Local {
        let _ = std::fs::remove_file(&config.socket.path);
    }
    drop(lock);
    if let Err(e) = &outcome {
        metrics.error("app", e.error_type());
    }
    outcome
}

enum Bound {
    Unix(std::path::PathBuf),
    Other,
}

fn bound_path(config: &Config) -> Bound {
    match &config.metrics_listen {
        crate::config::MetricsListen::Unix(p) => Bound::Unix(p.clone()),
        crate::config::MetricsListen::Tcp(_) => Bound::Other,
    }
}

fn reload(
    current: &mut Config,
    endpoints: &SharedEndpoints,
    supervisor: &mut Supervisor,
    log: Option<&LogHandle>,
    metrics: &Metrics,
) {
    let new = match Config::load(&current.path) {
        Ok(c) => c,
        Err(e) => {
            metrics.error("reload", e.error_type());
            tracing::error!(error = %e, "reload refused: keeping the running configuration");
            return;
        }
    };
    for w in &new.warnings {
        tracing::warn!(warning = %w, "config");
    }
    if new.socket != current.socket
        || new.spool != current.spool
        || new.state_dir != current.state_dir
        || new.metrics_listen != current.metrics_listen
        || new.logging.format != current.logging.format
    {
        tracing::warn!("socket, spool, state_dir, metrics or log format changes take effect after a restart");
    }
    if new.push != current.push {
        tracing::warn!("[webpush], [deltachat] and [dovecot] changes take effect after a restart");
    }
    if let Some(log) = log {
        log.set_level(new.logging.level);
    }
    supervisor.set_grace(new.delivery.shutdown_grace);
    let failed = supervisor.apply(&new.webhooks);
    match endpoints.write() {
        Ok(mut e) => *e = Arc::new(new.webhooks.clone()),
        Err(p) => *p.into_inner() = Arc::new(new.webhooks.clone()),
    }
    tracing::info!(endpoints = new.webhooks.len(), disabled = failed.len(), "configuration reloaded");
    current.webhooks = new.webhooks;
    current.logging.level = new.logging.level;
    current.delivery = new.delivery;
}

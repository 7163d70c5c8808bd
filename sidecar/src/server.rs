//! The metrics/health HTTP server: `GET /metrics` and `GET /healthz`.
//!
//! What this module owns: binding `metrics.listen` (TCP, or a Unix stream
//! socket for `unix:/path`), serving HTTP/1.1 with hyper, refreshing the
//! queue gauges from the database at each scrape, and the health rule:
//! `/healthz` answers 200 when the queue database answers a query, the
//! intake thread finished a cycle recently, and every delivery driver task
//! is alive; 503 with the reason otherwise.
//!
//! Invariant: the server never touches the queue except through read-only
//! queries; a failing scrape of the queue gauges is counted and the rest of
//! the metrics are still served.
//!
//! Callers: `app.rs` spawns [`serve`] as a core task.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};

use crate::config::MetricsListen;
use crate::metrics::Metrics;
use crate::queue::store::DeliveryStore;
use crate::shutdown::ShutdownWatch;
use crate::time::now_ms;

/// What the handlers read.
pub struct ServerState {
    /// Metrics to encode.
    pub metrics: Metrics,
    /// Queue handle for gauges and the health query.
    pub store: DeliveryStore,
    /// Unix ms of the intake's last cycle.
    pub intake_heartbeat: Arc<AtomicU64>,
    /// How old the heartbeat may get before the intake counts as stuck.
    pub intake_staleness: Duration,
    /// Set by `app.rs` while every driver task runs.
    pub drivers_alive: Arc<AtomicBool>,
}

impl ServerState {
    /// `Ok` when healthy, else the reason.
    pub async fn health(&self) -> Result<(), String> {
        self.store
            .ping()
            .await
            .map_err(|e| format!("queue database: {e}"))?;
        let age = now_ms().saturating_sub(self.intake_heartbeat.load(Ordering::Relaxed));
        if age > self.intake_staleness.as_millis() as u64 {
            return Err(format!("intake has not finished a scan for {age} ms"));
        }
        if !self.drivers_alive.load(Ordering::Relaxed) {
            return Err("a delivery driver stopped".into());
        }
        Ok(())
    }
}

/// A bound listener.
pub enum Bound {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream socket (removed again on drop of the process, not here).
    Unix(UnixListener, PathBuf),
}

impl Bound {
    /// The address for logs.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Bound::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

/// Binds `listen`; a stale Unix socket file is replaced, any other file is
/// an error.
pub async fn bind(listen: &MetricsListen) -> std::io::Result<Bound> {
    match listen {
        MetricsListen::Tcp(addr) => Ok(Bound::Tcp(TcpListener::bind(addr).await?)),
        MetricsListen::Unix(path) => {
            use std::os::unix::fs::FileTypeExt;
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
                Ok(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ))
                }
                Err(_) => {}
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Ok(Bound::Unix(UnixListener::bind(path)?, path.clone()))
        }
    }
}

/// The `coi_queue_depth_deliveries{kind}` label of a queue endpoint name.
fn delivery_kind(endpoint: &str) -> &'static str {
    match crate::push::jobs::Channel::from_queue_name(endpoint) {
        Some(c) => c.label(),
        None if endpoint == crate::recall::jobs::DOVEADM_ENDPOINT => crate::recall::jobs::DEPTH_KIND,
        None => "webhook",
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<ServerState>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            match state.store.stats().await {
                Ok(s) => {
                    let m = &state.metrics;
                    m.queue_depth.set(s.depth_events as i64);
                    // Kinds with nothing pending are absent from the query.
                    m.queue_depth_deliveries.reset();
                    for kind in ["webhook", "webpush", "validation", "deltachat", "metadata_unset"] {
                        m.queue_depth_deliveries.with_label_values(&[kind]).set(0);
                    }
                    let mut by_kind: Vec<(&'static str, u64)> = Vec::new();
                    for (endpoint, n) in &s.deliveries_by_endpoint {
                        let kind = delivery_kind(endpoint);
                        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                            Some((_, total)) => *total += n,
                            None => by_kind.push((kind, *n)),
                        }
                    }
                    for (kind, n) in &by_kind {
                        m.queue_depth_deliveries.with_label_values(&[kind]).set(*n as i64);
                    }
                    m.dead_letters_pending.set(s.dead_letters as i64);
                    m.queue_oldest_age.set(
                        s.oldest_ts_ms
                            .map_or(0.0, |ts| now_ms().saturating_sub(ts) as f64 / 1000.0),
                    );
                }
                Err(e) => {
                    state.metrics.error("metrics", e.error_type());
                    tracing::warn!(error = %e, "queue gauges unavailable for this scrape");
                }
            }
            match state.metrics.encode() {
                Ok(body) => text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{e}\n")),
            }
        }
        "/healthz" => match state.health().await {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{why}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

fn spawn_conn<S>(stream: S, state: Arc<ServerState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        // Idle scrapers must not pin a connection forever.
        let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
    });
}

/// Serves until shutdown.
pub async fn serve(bound: Bound, state: Arc<ServerState>, mut shutdown: ShutdownWatch) {
    loop {
        let accepted = match &bound {
            Bound::Tcp(l) => tokio::select! {
                r = l.accept() => r.map(|(s, _)| spawn_conn(s, state.clone())),
                _ = shutdown.wait() => return,
            },
            Bound::Unix(l, _) => tokio::select! {
                r = l.accept() => r.map(|(s, _)| spawn_conn(s, state.clone())),
                _ = shutdown.wait() => return,
            },
        };
        if let Err(e) = accepted {
            state.metrics.error("metrics_server", "accept");
            tracing::warn!(error = %e, "metrics listener accept failed");
            // EMFILE and friends: give the system a moment instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

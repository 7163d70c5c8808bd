//! The HTTP transport for webhooks and push channels.
//!
//! What this module owns: one `reqwest::Client` per endpoint or channel, built with
//! redirects disabled (a redirect is answered as a permanent failure, never
//! followed: it could lead the request to an internal address), no proxy
//! from the environment, the endpoint's timeout for the whole request, and
//! the [`GuardedResolver`]; and [`HttpSender::execute`] (any request) and
//! [`HttpSender::send`] (a signed webhook), which report what happened as
//! a [`Response`] without judging it (`retry.rs` and the push sinks judge).
//! An IP-literal URL on a forbidden address is refused before any
//! connection when private addresses are not allowed: resolvers never see
//! literals, and push endpoints come from users, not from the config.
//!
//! Invariants: `send` never panics and never returns early without a
//! [`Response`]; the response body is read up to [`MAX_BODY_BYTES`] (so the
//! connection can be reused) and then ignored. A failure's `detail` (which
//! goes to logs and dead letters) names the URL by its [`origin`] only:
//! reqwest's error text carries the whole URL, and a Web Push endpoint's
//! path is the device's push token, a webhook's may hold a secret. The URL
//! is stripped from the error ([`reqwest::Error::without_url`]) and any
//! copy of it (or of its path and query) left in a cause is replaced by the
//! origin.
//!
//! Callers: `delivery::driver`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::address::{is_forbidden, GuardedResolver, RefusedAddress};
use super::payload::Payload;
use super::retry::{parse_retry_after, TransportFailure};
use crate::config::Endpoint;

/// Most response body bytes read (webhooks discard them; doveadm answers
/// are parsed).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl ClientError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        "http_client"
    }

    /// Building fails for configuration reasons (TLS setup); not retriable.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// What an attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The endpoint answered with a status.
    Status {
        /// HTTP status code.
        code: u16,
        /// Parsed `Retry-After`, if present and valid.
        retry_after: Option<Duration>,
    },
    /// No status: the request failed.
    Failure {
        /// The kind of failure.
        failure: TransportFailure,
        /// Human-readable detail for the log and the dead letter.
        detail: String,
    },
}

/// Sends requests to one endpoint.
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl HttpSender {
    /// A client configured for `endpoint`.
    pub fn new(endpoint: &Endpoint) -> Result<HttpSender, ClientError> {
        HttpSender::build(endpoint.timeout, endpoint.concurrency, endpoint.allow_private_addresses)
    }

    /// A client with this whole-request `timeout`, up to `idle` pooled
    /// connections per host, and the private-address rule.
    pub fn build(timeout: Duration, idle: usize, allow_private: bool) -> Result<HttpSender, ClientError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(idle)
            .user_agent(concat!("coi-sidecar/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()?;
        Ok(HttpSender { client, allow_private })
    }

    /// A request builder on this client.
    pub fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends `request` and reports the status (and `Retry-After`) or the
    /// failure; the body is drained (bounded) and returned.
    pub async fn execute(&self, request: reqwest::RequestBuilder) -> (Response, Vec<u8>) {
        let request = match request.build() {
            Ok(r) => r,
            Err(e) => {
                let url = e.url().cloned();
                return (
                    Response::Failure {
                        failure: TransportFailure::InvalidRequest,
                        detail: describe(e, url.as_ref()),
                    },
                    Vec::new(),
                );
            }
        };
        let url = request.url().clone();
        if !self.allow_private {
            let refused = match request.url().host() {
                Some(url::Host::Ipv4(ip)) => is_forbidden(ip.into()),
                Some(url::Host::Ipv6(ip)) => is_forbidden(ip.into()),
                _ => false,
            };
            if refused {
                return (
                    Response::Failure {
                        failure: TransportFailure::RefusedAddress,
                        detail: "the URL's IP address is private or internal (refused)".into(),
                    },
                    Vec::new(),
                );
            }
        }
        match self.client.execute(request).await {
            Ok(mut resp) => {
                let code = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let mut body = Vec::new();
                // Drain a bounded body so the connection can be reused; a
                // body error after the status does not change the verdict.
                while body.len() < MAX_BODY_BYTES {
                    match resp.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_BODY_BYTES - body.len())]),
                        _ => break,
                    }
                }
                (Response::Status { code, retry_after }, body)
            }
            Err(e) => (
                Response::Failure {
                    failure: classify(&e),
                    detail: describe(e, Some(&url)),
                },
                Vec::new(),
            ),
        }
    }

    /// Sends one signed request.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        payload: &Payload,
        webhook_id: &str,
        timestamp: u64,
        signature: &str,
    ) -> Response {
        let request = self
            .client
            .request(payload.method.clone(), endpoint.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.body.clone());
        self.execute(request).await.0
    }
}

fn classify(e: &reqwest::Error) -> TransportFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<RefusedAddress>().is_some() {
            return TransportFailure::RefusedAddress;
        }
        source = s.source();
    }
    if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_builder() {
        TransportFailure::InvalidRequest
    } else {
        TransportFailure::Connection
    }
}

/// `scheme://host[:port]` of `url`: all of a URL that logs, metrics and
/// dead letters may show.
pub fn origin(url: &reqwest::Url) -> String {
    match url.origin() {
        url::Origin::Tuple(..) => url.origin().ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    }
}

/// The error with its causes, one line, after the URL's origin (the only
/// part of the URL it names, see the module docs).
fn describe(e: reqwest::Error, url: Option<&reqwest::Url>) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match url {
        Some(url) => format!("{}: {}", origin(url), scrub_url(text, url)),
        None => text,
    }
}

/// Replaces `url`, and its path and query, in `text` by the origin.
fn scrub_url(text: String, url: &reqwest::Url) -> String {
    let origin = origin(url);
    let mut text = text.replace(url.as_str(), &origin);
    let tail = &url[url::Position::BeforePath..];
    if tail.len() > 1 {
        text = text.replace(tail, "/...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 2] = ["Path-Token-8c1f", "Query-Key-77aa"];

    fn secret_url(addr: std::net::SocketAddr) -> reqwest::Url {
        format!("http://{addr}/push/{}?key={}", SECRETS[0], SECRETS[1]).parse().unwrap()
    }

    fn assert_origin_only(detail: &str, addr: std::net::SocketAddr) {
        for s in SECRETS {
            assert!(!detail.contains(s), "{s:?} leaked into {detail:?}");
        }
        assert!(!detail.contains("/push"), "path leaked into {detail:?}");
        assert!(detail.contains(&format!("http://{addr}")), "origin missing from {detail:?}");
    }

    async fn failure(sender: &HttpSender, request: reqwest::RequestBuilder) -> (TransportFailure, String) {
        match sender.execute(request).await.0 {
            Response::Failure { failure, detail } => (failure, detail),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn connection_errors_name_the_origin_only() {
        // A port nobody listens on: bind, note the address, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let sender = HttpSender::build(Duration::from_secs(5), 1, true).unwrap();
        let url = secret_url(addr);
        let (kind, detail) = failure(&sender, sender.request(reqwest::Method::POST, url)).await;
        assert_eq!(kind, TransportFailure::Connection);
        assert_origin_only(&detail, addr);
    }

    #[tokio::test]
    async fn timeouts_name_the_origin_only() {
        // Accepts and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = HttpSender::build(Duration::from_millis(300), 1, true).unwrap();
        let (kind, detail) = failure(&sender, sender.request(reqwest::Method::POST, secret_url(addr))).await;
        drop(listener);
        assert_eq!(kind, TransportFailure::Timeout);
        assert_origin_only(&detail, addr);
    }

    #[tokio::test]
    async fn unbuildable_requests_name_the_origin_only() {
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let sender = HttpSender::build(Duration::from_secs(1), 1, true).unwrap();
        let request = sender.request(reqwest::Method::POST, secret_url(addr)).header("x-bad", "a\nb");
        let (kind, detail) = failure(&sender, request).await;
        assert_eq!(kind, TransportFailure::InvalidRequest);
        for s in SECRETS {
            assert!(!detail.contains(s), "{s:?} leaked into {detail:?}");
        }
    }

    #[test]
    fn scrub_replaces_the_url_and_its_path() {
        let url: reqwest::Url = "https://push.example.net:8443/wpush/v2/AbC?x=1".parse().unwrap();
        assert_eq!(origin(&url), "https://push.example.net:8443");
        let text = "error for url (https://push.example.net:8443/wpush/v2/AbC?x=1): also /wpush/v2/AbC?x=1".to_string();
        assert_eq!(scrub_url(text, &url), "error for url (https://push.example.net:8443): also /...");
        let plain: reqwest::Url = "https://hooks.example.org/".parse().unwrap();
        assert_eq!(scrub_url("a / b".into(), &plain), "a / b", "a bare / is not replaced");
    }
}

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
//! Invariant: `send` never panics and never returns early without a
//! [`Response`]; the response body is read up to [`MAX_BODY_BYTES`] (so the
//! connection can be reused) and then ignored.
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
                return (
                    Response::Failure { failure: TransportFailure::InvalidRequest, detail: describe(&e) },
                    Vec::new(),
                )
            }
        };
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
                    detail: describe(&e),
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

/// The error with its causes, one line.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

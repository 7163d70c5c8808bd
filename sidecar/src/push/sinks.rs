//! The delivery sinks of the push channels: what one attempt sends and how
//! its answer is recorded.
//!
//! What this module owns:
//! - [`WebPushSink`] (channels `webpush` and `validation`): builds the
//!   payload (`push::payload`), encrypts it for the subscription
//!   (`push::ece`), and POSTs it with `Content-Encoding: aes128gcm`,
//!   `TTL`, `Urgency` and `Authorization: vapid t=..., k=...`; validation
//!   pushes also carry an empty `WebPush-Validation` header (the COI
//!   WebPush spec: "the additional HTTP header `WebPush-Validation` without
//!   any value") and a TTL no longer than their deadline. Answers: 2xx
//!   done; 404/410 gone; 408, 429, 5xx (not 501) retried; other statuses
//!   dead letters.
//! - [`DeltaChatSink`]: POSTs the raw token (no content type, as chatmail's
//!   notifier does) to the proxy: 2xx done; 410 gone; any other status or
//!   failure retried (a refused address or an unbuildable request is a dead
//!   letter).
//! - [`UnsetSink`]: removes a gone target's METADATA key through doveadm
//!   (`push::doveadm` reads the answer).
//! - [`Retirer`]: a 404/410 ends the job without a dead letter and records
//!   the target (`queue::targets::retire`, one transaction); the first time,
//!   the clean-up jobs are queued when doveadm is configured, or, when it
//!   is not, counted as `not_configured` with one warning per process.
//!
//! Invariants: every attempt is counted in `coi_push_requests_total
//! {channel,outcome}`; failures go through `delivery::settle` (schedule,
//! jitter, `Retry-After` clamp, deadline, dead letters) exactly like
//! webhooks; nothing here logs a token, an endpoint or a secret (users and
//! subscription ids only at debug level).
//!
//! Callers: `push::channels` starts one driver per sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::doveadm::{self, GetResult, UnsetResult};
use super::ece::{self, Subscriber};
use super::jobs::{decode_key, gone_target, unset_jobs, Channel, Job, TargetKind};
use super::limits::{limit_keys, InFlightLimits, ValidationRate};
use super::payload;
use super::settings::{DeltaChatSettings, DovecotSettings, WebPushSettings};
use super::vapid::VapidKeys;
use crate::delivery::driver::{Admission, Permit, Sink};
use crate::delivery::http::{HttpSender, Response};
use crate::delivery::retry::{Outcome, RetryLogic, StandardRetryLogic, Verdict};
use crate::delivery::settle::{AttemptError, Attempted, Ledger};
use crate::queue::deliveries::DueDelivery;
use crate::time::{now_ms, now_secs};

/// `coi_push_requests_total{outcome}` of a validation push not sent
/// because its user reached `validations_per_user_per_hour`.
pub const USER_RATE_LIMITED: &str = "user_rate_limited";

/// What an answer means for a push job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushVerdict {
    /// Delivered.
    Done,
    /// The target no longer exists (404/410).
    Gone,
    /// A delivery verdict (retry or permanent).
    Other(Verdict),
}

/// Web Push answers (RFC 8030 §5, the COI WebPush spec).
pub fn classify_webpush(response: &Response) -> PushVerdict {
    match response {
        Response::Status { code: 200..=299, .. } => PushVerdict::Done,
        Response::Status { code: 404 | 410, .. } => PushVerdict::Gone,
        Response::Status { code, retry_after } => PushVerdict::Other(StandardRetryLogic.classify_status(*code, *retry_after)),
        Response::Failure { failure, .. } => PushVerdict::Other(StandardRetryLogic.classify_failure(*failure)),
    }
}

/// Delta Chat proxy answers (chatmail's notifier: 200 done, 410 token
/// gone, anything else retried).
pub fn classify_deltachat(response: &Response) -> PushVerdict {
    match response {
        Response::Status { code: 200..=299, .. } => PushVerdict::Done,
        Response::Status { code: 410, .. } => PushVerdict::Gone,
        Response::Status { code: 429, retry_after } => PushVerdict::Other(Verdict::Retry {
            outcome: Outcome::RateLimited,
            retry_after: *retry_after,
        }),
        Response::Status { retry_after, .. } => PushVerdict::Other(Verdict::Retry {
            outcome: Outcome::RetriableStatus,
            retry_after: *retry_after,
        }),
        Response::Failure { failure, .. } => PushVerdict::Other(StandardRetryLogic.classify_failure(*failure)),
    }
}

fn detail(response: &Response) -> String {
    match response {
        Response::Status { code, .. } => format!("HTTP {code}"),
        Response::Failure { detail, .. } => detail.clone(),
    }
}

/// Ends jobs whose target is gone (see the module docs).
pub struct Retirer {
    /// doveadm is configured: queue clean-ups.
    pub doveadm: bool,
    /// Wakes the clean-up driver.
    pub unset_notify: Arc<Notify>,
    /// The "not configured" warning was logged.
    pub warned: AtomicBool,
}

impl Retirer {
    async fn retire(&self, ledger: &Ledger, d: &DueDelivery, job: &Job) -> Result<(), AttemptError> {
        let Some((target, dead, keys)) = gone_target(job) else {
            ledger.bury(d, d.attempts + 1, "gone answer for a job without a target".into()).await?;
            return Ok(());
        };
        let user = dead.user.clone();
        let unset = if self.doveadm {
            unset_jobs(&user, target, &keys, &dead.fingerprint, now_ms())
        } else {
            Vec::new()
        };
        let done = ledger.store.retire(&ledger.name, d.event_seq, dead, unset, now_ms()).await?;
        if done.newly_dead {
            ledger.metrics.push_targets_gone.with_label_values(&[target.label()]).inc();
            if !self.doveadm {
                ledger
                    .metrics
                    .push_metadata_removals
                    .with_label_values(&[target.label(), "not_configured"])
                    .inc_by(keys.len() as u64);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target_kind = target.label(),
                        "a push target is gone, but [dovecot] doveadm_url is not set: it is only recorded in the sidecar's queue (no more pushes to it); the plugin keeps it in METADATA (logged once)"
                    );
                }
            }
            tracing::info!(channel = %ledger.name, target_kind = target.label(), unset_jobs = done.unset_jobs, "push target gone");
        }
        if done.unset_jobs > 0 {
            self.unset_notify.notify_one();
        }
        Ok(())
    }
}

/// Records a push answer: counts it, then done / gone / retry / dead letter.
/// Returns whether the row was delivered.
// One call site per sink; a parameter struct would only rename the list.
#[allow(clippy::too_many_arguments)]
async fn settle(
    channel: Channel,
    ledger: &Ledger,
    retirer: &Retirer,
    d: &DueDelivery,
    job: &Job,
    response: &Response,
    verdict: PushVerdict,
    schedule: &[Duration],
    deadline_ms: u64,
) -> Result<bool, AttemptError> {
    let m = &ledger.metrics;
    let attempts = d.attempts.saturating_add(1);
    match verdict {
        PushVerdict::Done => {
            m.push_requests.with_label_values(&[channel.label(), Outcome::Success.label()]).inc();
            if let Some(ts) = job.ts_ms() {
                m.push_latency
                    .with_label_values(&[channel.label()])
                    .observe(now_ms().saturating_sub(ts) as f64 / 1000.0);
            }
            Ok(true)
        }
        PushVerdict::Gone => {
            m.push_requests.with_label_values(&[channel.label(), "gone"]).inc();
            retirer.retire(ledger, d, job).await?;
            Ok(false)
        }
        PushVerdict::Other(Verdict::Delivered) => Ok(true),
        PushVerdict::Other(Verdict::Retry { outcome, retry_after }) => {
            m.push_requests.with_label_values(&[channel.label(), outcome.label()]).inc();
            ledger
                .retry_later(d, attempts, outcome, retry_after, detail(response), schedule, deadline_ms)
                .await?;
            Ok(false)
        }
        PushVerdict::Other(Verdict::Permanent { outcome }) => {
            m.push_requests.with_label_values(&[channel.label(), outcome.label()]).inc();
            ledger.bury(d, attempts, format!("{} (permanent)", detail(response))).await?;
            Ok(false)
        }
    }
}

/// The common start of a push attempt: a row whose job cannot be read or
/// that is past its deadline is buried (`None`); otherwise its job and
/// deadline. The deadline counts from the row's enqueue time, except for
/// validations: the client's answer is accepted for a while after the
/// subscription was made (the plugin's `coi_webpush_validation_timeout`,
/// from the subscription's `created`), so their deadline counts from the
/// record's time, which the plugin takes at that moment. Counting from the
/// enqueue time sent validations after a backlog that the plugin would
/// refuse to accept.
async fn open_job(ledger: &Ledger, d: &DueDelivery, deadline: Duration) -> Result<Option<(Job, u64)>, AttemptError> {
    let job: Job = match serde_json::from_str(&d.payload) {
        Ok(job) => job,
        Err(e) => {
            ledger.bury(d, d.attempts, format!("unreadable queued job: {e}")).await?;
            return Ok(None);
        }
    };
    let deadline_ms = match &job {
        Job::Validation { ts_ms, .. } => ts_ms.saturating_add(deadline.as_millis() as u64),
        _ => Ledger::deadline_ms(d, deadline),
    };
    if now_ms() >= deadline_ms {
        let why = match job {
            Job::Validation { .. } => "the subscription's validation window closed before the next attempt",
            _ => "deadline passed before the next attempt",
        };
        ledger.bury(d, d.attempts, why.into()).await?;
        return Ok(None);
    }
    Ok(Some((job, deadline_ms)))
}

/// Web Push: new-message pushes or validation pushes.
pub struct WebPushSink {
    /// `WebPush` or `Validation`.
    pub channel: Channel,
    /// The VAPID key pair.
    pub keys: Arc<VapidKeys>,
    /// `[webpush]`.
    pub settings: Arc<WebPushSettings>,
    /// HTTP client (guarded unless private addresses are allowed).
    pub sender: HttpSender,
    /// Queue and metrics of this channel.
    pub ledger: Ledger,
    /// Gone targets.
    pub retirer: Arc<Retirer>,
    /// Requests in flight per user and per push service (this channel's).
    pub in_flight: Arc<InFlightLimits>,
    /// Validation pushes per user per hour (the validation channel only).
    pub validation_rate: Option<ValidationRate>,
}

impl Sink for WebPushSink {
    fn name(&self) -> &str {
        &self.ledger.name
    }

    fn concurrency(&self) -> usize {
        self.settings.tuning.concurrency
    }

    async fn attempt(self: Arc<Self>, d: DueDelivery) -> Attempted {
        self.ledger.settled(&d, self.attempt_inner(&d)).await
    }

    fn admit(&self, d: &DueDelivery) -> Admission {
        // A row that is no job of ours starts (and is buried by the attempt).
        let Some((user, host)) = limit_keys(&d.payload) else {
            return Admission::Start(Permit::default());
        };
        match self.in_flight.try_acquire(&user, &host) {
            Ok(guard) => Admission::Start(Permit::new(guard)),
            Err(limit) => Admission::Wait(limit),
        }
    }
}

impl WebPushSink {
    fn deadline(&self) -> Duration {
        match self.channel {
            Channel::Validation => self.settings.validation_deadline,
            _ => self.settings.tuning.deadline,
        }
    }

    async fn attempt_inner(&self, d: &DueDelivery) -> Result<bool, AttemptError> {
        let Some((job, deadline_ms)) = open_job(&self.ledger, d, self.deadline()).await? else {
            return Ok(false);
        };
        let (target, plaintext, validation) = match (&job, self.channel) {
            (Job::Webpush { message, target, .. }, Channel::WebPush) => match payload::message(message) {
                Ok(p) => (target, p.bytes, false),
                Err(e) => {
                    self.ledger.bury(d, d.attempts, e.to_string()).await?;
                    return Ok(false);
                }
            },
            (Job::Validation { target, secret, user, .. }, Channel::Validation) => {
                // Counted once per job, at its first attempt.
                let over = d.attempts == 0
                    && self.validation_rate.as_ref().is_some_and(|rate| !rate.allow(user, now_ms()));
                if over {
                    self.ledger
                        .metrics
                        .push_requests
                        .with_label_values(&[Channel::Validation.label(), USER_RATE_LIMITED])
                        .inc();
                    tracing::debug!(subscription = %target.subscription_id, "validation push not sent: the user's hourly limit is reached");
                    // Done with it: nothing was sent, nothing to retry.
                    return Ok(true);
                }
                (target, payload::validation(secret), true)
            }
            _ => {
                self.ledger.bury(d, d.attempts, "job of another channel".into()).await?;
                return Ok(false);
            }
        };
        let keys = decode_key(&target.p256dh).zip(decode_key(&target.auth));
        let subscriber = match keys.map(|(p, a)| Subscriber::from_bytes(&p, &a)) {
            Some(Ok(s)) => s,
            _ => {
                self.ledger.bury(d, d.attempts, "subscription keys are invalid".into()).await?;
                return Ok(false);
            }
        };
        let Ok(url) = reqwest::Url::parse(&target.endpoint) else {
            self.ledger.bury(d, d.attempts, "endpoint is not a URL".into()).await?;
            return Ok(false);
        };
        let body = match ece::encrypt(&plaintext, &subscriber) {
            Ok(b) => b,
            Err(e) => {
                self.ledger.bury(d, d.attempts, format!("cannot encrypt: {e}")).await?;
                return Ok(false);
            }
        };
        let s = &self.settings;
        // A validation the push service delivers after the window closed
        // is useless: its TTL is what is left of the window.
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let ttl = if validation { s.ttl.min(left).max(Duration::from_secs(1)) } else { s.ttl };
        let mut request = self
            .sender
            .request(reqwest::Method::POST, url.clone())
            .header("TTL", ttl.as_secs().to_string())
            .header("Urgency", s.urgency)
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::AUTHORIZATION, self.keys.authorization(&url, &s.vapid_subject, now_secs()))
            .body(body);
        if validation {
            request = request.header("WebPush-Validation", "");
        }
        let (response, _) = self.sender.execute(request).await;
        tracing::debug!(channel = self.channel.label(), subscription = %target.subscription_id, answer = %detail(&response), "web push attempt");
        let verdict = classify_webpush(&response);
        settle(
            self.channel,
            &self.ledger,
            &self.retirer,
            d,
            &job,
            &response,
            verdict,
            &s.tuning.retry_schedule,
            deadline_ms,
        )
        .await
    }
}

/// The Delta Chat notification proxy.
pub struct DeltaChatSink {
    /// `[deltachat]` (its `proxy_url` is set).
    pub settings: Arc<DeltaChatSettings>,
    /// The proxy URL.
    pub url: reqwest::Url,
    /// HTTP client.
    pub sender: HttpSender,
    /// Queue and metrics of this channel.
    pub ledger: Ledger,
    /// Gone targets.
    pub retirer: Arc<Retirer>,
}

impl Sink for DeltaChatSink {
    fn name(&self) -> &str {
        &self.ledger.name
    }

    fn concurrency(&self) -> usize {
        self.settings.tuning.concurrency
    }

    async fn attempt(self: Arc<Self>, d: DueDelivery) -> Attempted {
        self.ledger.settled(&d, self.attempt_inner(&d)).await
    }
}

impl DeltaChatSink {
    async fn attempt_inner(&self, d: &DueDelivery) -> Result<bool, AttemptError> {
        let Some((job, deadline_ms)) = open_job(&self.ledger, d, self.settings.tuning.deadline).await? else {
            return Ok(false);
        };
        let Job::Deltachat { token, .. } = &job else {
            self.ledger.bury(d, d.attempts, "job of another channel".into()).await?;
            return Ok(false);
        };
        // The raw token is the whole body; chatmail's notifier sends it
        // without a content type, and so do we.
        let request = self
            .sender
            .request(reqwest::Method::POST, self.url.clone())
            .body(token.clone());
        let (response, _) = self.sender.execute(request).await;
        let verdict = classify_deltachat(&response);
        settle(
            Channel::DeltaChat,
            &self.ledger,
            &self.retirer,
            d,
            &job,
            &response,
            verdict,
            &self.settings.tuning.retry_schedule,
            deadline_ms,
        )
        .await
    }
}

/// Removes METADATA keys through doveadm.
pub struct UnsetSink {
    /// `[dovecot]` (its `doveadm_url` and key are set).
    pub settings: Arc<DovecotSettings>,
    /// The doveadm URL.
    pub url: reqwest::Url,
    /// `Authorization` value.
    pub authorization: String,
    /// HTTP client (private addresses allowed: doveadm runs next to us).
    pub sender: HttpSender,
    /// Queue and metrics of this channel.
    pub ledger: Ledger,
}

impl Sink for UnsetSink {
    fn name(&self) -> &str {
        &self.ledger.name
    }

    fn concurrency(&self) -> usize {
        self.settings.tuning.concurrency
    }

    async fn attempt(self: Arc<Self>, d: DueDelivery) -> Attempted {
        self.ledger.settled(&d, self.attempt_inner(&d)).await
    }
}

/// What one doveadm request came to, short of a 200 answer body.
type Refused = (Verdict, String);

impl UnsetSink {
    /// POSTs one doveadm command; the 200 answer's body, or how the failure
    /// is to be judged.
    async fn call(&self, body: Vec<u8>) -> Result<Vec<u8>, Refused> {
        let request = self
            .sender
            .request(reqwest::Method::POST, self.url.clone())
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (response, body) = self.sender.execute(request).await;
        match &response {
            Response::Status { code: 200, .. } => Ok(body),
            // A wrong API key is a configuration error: a dead letter an
            // operator replays after fixing it, not a day of retries.
            Response::Status { code: 401 | 403, .. } => {
                Err((Verdict::Permanent { outcome: Outcome::PermanentStatus }, detail(&response)))
            }
            Response::Status { code, retry_after } => {
                match StandardRetryLogic.classify_status(*code, *retry_after) {
                    // Another 2xx: no body to read.
                    Verdict::Delivered => Err((
                        Verdict::Retry { outcome: Outcome::RetriableStatus, retry_after: None },
                        detail(&response),
                    )),
                    v => Err((v, detail(&response))),
                }
            }
            Response::Failure { failure, .. } => Err((StandardRetryLogic.classify_failure(*failure), detail(&response))),
        }
    }

    /// Compare, then delete: reads the key and unsets it only while it
    /// still holds the dead target (`fingerprint`; `None` = an old job,
    /// unset unconditionally). The result label, or why not.
    async fn remove_if_dead(&self, user: &str, key: &str, target: TargetKind, fingerprint: Option<&str>) -> Result<&'static str, Refused> {
        let retry = |why| (Verdict::Retry { outcome: Outcome::RetriableStatus, retry_after: None }, why);
        let permanent = |why| (Verdict::Permanent { outcome: Outcome::PermanentStatus }, why);
        if let Some(dead) = fingerprint {
            match doveadm::classify_get(&self.call(doveadm::get_body(user, key)).await?) {
                GetResult::NoUser => return Ok("no_user"),
                GetResult::Retry(why) => return Err(retry(why)),
                GetResult::Permanent(why) => return Err(permanent(why)),
                GetResult::Value(value) => match doveadm::held_fingerprint(target, &value) {
                    None => return Ok("absent"),
                    Some(held) if held != dead => return Ok("changed"),
                    Some(_) => {}
                },
            }
        }
        match doveadm::classify(&self.call(doveadm::unset_body(user, key)).await?) {
            UnsetResult::Done => Ok("removed"),
            UnsetResult::NoUser => Ok("no_user"),
            UnsetResult::Retry(why) => Err(retry(why)),
            UnsetResult::Permanent(why) => Err(permanent(why)),
        }
    }

    async fn attempt_inner(&self, d: &DueDelivery) -> Result<bool, AttemptError> {
        let m = &self.ledger.metrics;
        let channel = Channel::MetadataUnset.label();
        let deadline_ms = Ledger::deadline_ms(d, self.settings.tuning.deadline);
        let (user, key, target, fingerprint) = match serde_json::from_str::<Job>(&d.payload) {
            Ok(Job::MetadataUnset { user, key, target, fingerprint }) => (user, key, target, fingerprint),
            _ => {
                self.ledger.bury(d, d.attempts, "unreadable or foreign clean-up job".into()).await?;
                return Ok(false);
            }
        };
        let buried = |target: TargetKind| {
            m.push_metadata_removals.with_label_values(&[target.label(), "dead_letter"]).inc();
        };
        if now_ms() >= deadline_ms {
            self.ledger.bury(d, d.attempts, "deadline passed before the next attempt".into()).await?;
            buried(target);
            return Ok(false);
        }
        let attempts = d.attempts.saturating_add(1);
        match self.remove_if_dead(&user, &key, target, fingerprint.as_deref()).await {
            Ok(how) => {
                let outcome = if how == "no_user" { "no_user" } else { Outcome::Success.label() };
                m.push_requests.with_label_values(&[channel, outcome]).inc();
                m.push_metadata_removals.with_label_values(&[target.label(), how]).inc();
                match how {
                    "changed" => tracing::info!(target_kind = target.label(),
                        "a gone push target's METADATA key holds a new target now: kept"),
                    _ => tracing::info!(result = how, target_kind = target.label(), "removed a gone push target from METADATA"),
                }
                Ok(true)
            }
            Err((Verdict::Retry { outcome, retry_after }, why)) => {
                m.push_requests.with_label_values(&[channel, outcome.label()]).inc();
                let dead = self
                    .ledger
                    .retry_later(d, attempts, outcome, retry_after, why, &self.settings.tuning.retry_schedule, deadline_ms)
                    .await?;
                if dead {
                    buried(target);
                }
                Ok(false)
            }
            Err((verdict, why)) => {
                let outcome = match verdict {
                    Verdict::Permanent { outcome } => outcome,
                    _ => Outcome::PermanentStatus,
                };
                m.push_requests.with_label_values(&[channel, outcome.label()]).inc();
                self.ledger.bury(d, attempts, format!("{why} (permanent)")).await?;
                buried(target);
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::retry::TransportFailure;

    fn status(code: u16) -> Response {
        Response::Status { code, retry_after: None }
    }

    fn kind(v: &PushVerdict) -> &'static str {
        match v {
            PushVerdict::Done => "done",
            PushVerdict::Gone => "gone",
            PushVerdict::Other(Verdict::Retry { .. }) => "retry",
            PushVerdict::Other(Verdict::Permanent { .. }) => "permanent",
            PushVerdict::Other(Verdict::Delivered) => "done",
        }
    }

    #[test]
    fn web_push_status_table() {
        for (code, want) in [
            (201, "done"),
            (200, "done"),
            (404, "gone"),
            (410, "gone"),
            (429, "retry"),
            (500, "retry"),
            (503, "retry"),
            (408, "retry"),
            (400, "permanent"),
            (401, "permanent"),
            (403, "permanent"),
            (413, "permanent"),
            (501, "permanent"),
            (301, "permanent"),
        ] {
            assert_eq!(kind(&classify_webpush(&status(code))), want, "{code}");
        }
        let refused = Response::Failure { failure: TransportFailure::RefusedAddress, detail: String::new() };
        assert_eq!(kind(&classify_webpush(&refused)), "permanent");
        let timeout = Response::Failure { failure: TransportFailure::Timeout, detail: String::new() };
        assert_eq!(kind(&classify_webpush(&timeout)), "retry");
    }

    #[test]
    fn delta_chat_status_table() {
        for (code, want) in [(200, "done"), (410, "gone"), (404, "retry"), (400, "retry"), (429, "retry"), (500, "retry")] {
            assert_eq!(kind(&classify_deltachat(&status(code))), want, "{code}");
        }
        let ra = Response::Status { code: 429, retry_after: Some(Duration::from_secs(9)) };
        assert_eq!(
            classify_deltachat(&ra),
            PushVerdict::Other(Verdict::Retry { outcome: Outcome::RateLimited, retry_after: Some(Duration::from_secs(9)) })
        );
    }
}

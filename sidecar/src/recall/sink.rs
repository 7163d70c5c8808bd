//! The delivery sink of doveadm calls (queue endpoint `recall:doveadm`):
//! one `mailboxMetadataSet` per job, through the doveadm HTTP API the
//! METADATA clean-ups already use (`[dovecot] doveadm_url`, its key and
//! tuning).
//!
//! Answers (`push::doveadm::classify`): `doveadmResponse` done; exit code
//! 67 (no such user) done, nothing to do; 64/65 and configuration errors
//! (also HTTP 401/403) dead letters; anything else, 5xx and transport
//! failures retried by the `[dovecot]` schedule until its deadline, then a
//! dead letter an operator can replay.
//!
//! Callers: `app.rs` starts it with the push channels ([`start`]).

use std::sync::Arc;

use tokio::sync::Notify;

use super::jobs::{request_body, DoveadmSet, DOVEADM_ENDPOINT};
use super::metrics::RecallMetrics;
use crate::delivery::driver::Sink;
use crate::delivery::http::{ClientError, HttpSender, Response};
use crate::delivery::retry::{Outcome, RetryLogic, StandardRetryLogic, Verdict};
use crate::delivery::settle::{AttemptError, Attempted, Ledger};
use crate::delivery::supervisor::Supervisor;
use crate::metrics::Metrics;
use crate::push::doveadm::{self, UnsetResult};
use crate::push::settings::DovecotSettings;
use crate::queue::deliveries::DueDelivery;
use crate::queue::store::DeliveryStore;
use crate::time::now_ms;

/// The tag of our doveadm commands.
pub const TAG: &str = "coi-recall";

/// Makes the doveadm calls of recall and read status.
pub struct DoveadmSetSink {
    settings: Arc<DovecotSettings>,
    url: reqwest::Url,
    authorization: String,
    sender: HttpSender,
    ledger: Ledger,
    counters: RecallMetrics,
}

/// Starts the sink when doveadm is configured. Returns whether it runs.
pub fn start(
    settings: &DovecotSettings,
    supervisor: &mut Supervisor,
    store: &DeliveryStore,
    metrics: &Metrics,
) -> Result<bool, ClientError> {
    let (Some(url), Some(key)) = (settings.doveadm_url.clone(), settings.doveadm_api_key.as_deref()) else {
        return Ok(false);
    };
    let settings = Arc::new(settings.clone());
    let sink = DoveadmSetSink {
        sender: HttpSender::build(settings.tuning.timeout, settings.tuning.concurrency, true)?,
        authorization: doveadm::authorization(key),
        url,
        ledger: Ledger { name: DOVEADM_ENDPOINT.to_string(), store: store.clone(), metrics: metrics.clone() },
        counters: metrics.recall.clone(),
        settings,
    };
    supervisor.start_fixed(Arc::new(sink), Arc::new(Notify::new()));
    Ok(true)
}

impl Sink for DoveadmSetSink {
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

fn detail(response: &Response) -> String {
    match response {
        Response::Status { code, .. } => format!("HTTP {code}"),
        Response::Failure { detail, .. } => detail.clone(),
    }
}

impl DoveadmSetSink {
    async fn attempt_inner(&self, d: &DueDelivery) -> Result<bool, AttemptError> {
        let Ok(job) = serde_json::from_str::<DoveadmSet>(&d.payload) else {
            self.counters.call("execute", "unreadable");
            self.ledger.bury(d, d.attempts, "unreadable doveadm job".into()).await?;
            return Ok(false);
        };
        let deadline_ms = Ledger::deadline_ms(d, self.settings.tuning.deadline);
        if now_ms() >= deadline_ms {
            self.counters.call(&job.purpose, "dead_letter");
            self.ledger.bury(d, d.attempts, "deadline passed before the next attempt".into()).await?;
            return Ok(false);
        }
        let request = self
            .sender
            .request(reqwest::Method::POST, self.url.clone())
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request_body(&job, TAG));
        let (response, body) = self.sender.execute(request).await;
        let attempts = d.attempts.saturating_add(1);
        let result: Result<&'static str, (Verdict, String)> = match &response {
            Response::Status { code: 200, .. } => match doveadm::classify(&body) {
                UnsetResult::Done => Ok("success"),
                UnsetResult::NoUser => Ok("no_user"),
                UnsetResult::Retry(why) => {
                    Err((Verdict::Retry { outcome: Outcome::RetriableStatus, retry_after: None }, why))
                }
                UnsetResult::Permanent(why) => Err((Verdict::Permanent { outcome: Outcome::PermanentStatus }, why)),
            },
            Response::Status { code: 401 | 403, .. } => {
                Err((Verdict::Permanent { outcome: Outcome::PermanentStatus }, detail(&response)))
            }
            other => {
                let verdict = match other {
                    Response::Status { code, retry_after } => StandardRetryLogic.classify_status(*code, *retry_after),
                    Response::Failure { failure, .. } => StandardRetryLogic.classify_failure(*failure),
                };
                match verdict {
                    Verdict::Delivered => Ok("success"),
                    v => Err((v, detail(other))),
                }
            }
        };
        match result {
            Ok(how) => {
                self.counters.call(&job.purpose, how);
                tracing::debug!(purpose = %job.purpose, result = how, "doveadm call done");
                Ok(true)
            }
            Err((Verdict::Retry { outcome, retry_after }, why)) => {
                self.counters.call(&job.purpose, "retry");
                let dead = self
                    .ledger
                    .retry_later(d, attempts, outcome, retry_after, why, &self.settings.tuning.retry_schedule, deadline_ms)
                    .await?;
                if dead {
                    self.counters.call(&job.purpose, "dead_letter");
                }
                Ok(false)
            }
            Err((_, why)) => {
                self.counters.call(&job.purpose, "permanent");
                tracing::warn!(purpose = %job.purpose, error = %why, "doveadm call refused; moved to the dead letters");
                self.ledger.bury(d, attempts, format!("{why} (permanent)")).await?;
                Ok(false)
            }
        }
    }
}

//! Starting the push channels: which sinks run, with which clients.
//!
//! What this module owns: [`routing`] (what intake may queue, from the
//! config) and [`start`], which builds one HTTP client and one sink per
//! enabled channel and hands them to the supervisor as drivers that run
//! until shutdown:
//! - `[webpush] enabled`: `push:webpush` and `push:validation` (needs the
//!   VAPID keys, loaded by `app.rs` first);
//! - `[deltachat] proxy_url`: `push:deltachat`;
//! - `[dovecot] doveadm_url`: `push:metadata-unset` (private addresses
//!   allowed: doveadm listens next to Dovecot, usually on loopback).
//!
//! Invariant: push settings are fixed until restart (a reload keeps the
//! running channels; `app.rs` logs that changes need a restart). Jobs of a
//! channel that is off stay pending in the queue until it is on again.
//!
//! Callers: `app.rs`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Notify;

use super::doveadm;
use super::jobs::{Channel, Routing};
use super::limits::{InFlightLimits, ValidationRate};
use super::settings::PushSettings;
use super::sinks::{DeltaChatSink, Retirer, UnsetSink, WebPushSink};
use super::vapid::VapidKeys;
use crate::delivery::http::{ClientError, HttpSender};
use crate::delivery::settle::Ledger;
use crate::delivery::supervisor::Supervisor;
use crate::metrics::Metrics;
use crate::queue::store::DeliveryStore;

/// What intake may queue.
pub fn routing(settings: &PushSettings) -> Routing {
    Routing {
        webpush: settings.webpush.enabled,
        webpush_allow_private: settings.webpush.allow_private_addresses,
        deltachat: settings.deltachat.proxy_url.is_some(),
        recall_doveadm: settings.dovecot.doveadm_url.is_some() && settings.dovecot.doveadm_api_key.is_some(),
        recall: Default::default(),
    }
}

/// Starts the enabled channels; `keys` must be present when Web Push is
/// enabled. Returns the names of the channels started.
pub fn start(
    settings: &PushSettings,
    keys: Option<Arc<VapidKeys>>,
    supervisor: &mut Supervisor,
    store: &DeliveryStore,
    metrics: &Metrics,
) -> Result<Vec<&'static str>, ClientError> {
    let ledger = |c: Channel| Ledger {
        name: c.queue_name().to_string(),
        store: store.clone(),
        metrics: metrics.clone(),
    };
    let unset_notify = Arc::new(Notify::new());
    let retirer = Arc::new(Retirer {
        doveadm: settings.dovecot.doveadm_url.is_some(),
        unset_notify: unset_notify.clone(),
        warned: AtomicBool::new(false),
    });
    let mut started = Vec::new();
    if let (true, Some(keys)) = (settings.webpush.enabled, keys) {
        let w = Arc::new(settings.webpush.clone());
        let sender = HttpSender::build(w.tuning.timeout, w.tuning.concurrency, w.allow_private_addresses)?;
        for channel in [Channel::WebPush, Channel::Validation] {
            let sink = WebPushSink {
                channel,
                keys: keys.clone(),
                settings: w.clone(),
                sender: sender.clone(),
                ledger: ledger(channel),
                retirer: retirer.clone(),
                // Per channel: each channel's driver releases its own permits.
                in_flight: InFlightLimits::new(w.requests_in_flight_per_user, w.requests_in_flight_per_host),
                validation_rate: (channel == Channel::Validation)
                    .then(|| ValidationRate::new(w.validations_per_user_per_hour)),
            };
            supervisor.start_fixed(Arc::new(sink), Arc::new(Notify::new()));
            started.push(channel.queue_name());
        }
    }
    if let Some(url) = settings.deltachat.proxy_url.clone() {
        let d = Arc::new(settings.deltachat.clone());
        let sink = DeltaChatSink {
            sender: HttpSender::build(d.tuning.timeout, d.tuning.concurrency, d.allow_private_addresses)?,
            settings: d,
            url,
            ledger: ledger(Channel::DeltaChat),
            retirer: retirer.clone(),
        };
        supervisor.start_fixed(Arc::new(sink), Arc::new(Notify::new()));
        started.push(Channel::DeltaChat.queue_name());
    }
    if let (Some(url), Some(key)) = (settings.dovecot.doveadm_url.clone(), settings.dovecot.doveadm_api_key.as_deref()) {
        let v = Arc::new(settings.dovecot.clone());
        let sink = UnsetSink {
            sender: HttpSender::build(v.tuning.timeout, v.tuning.concurrency, true)?,
            authorization: doveadm::authorization(key),
            settings: v,
            url,
            ledger: ledger(Channel::MetadataUnset),
        };
        supervisor.start_fixed(Arc::new(sink), unset_notify);
        started.push(Channel::MetadataUnset.queue_name());
    }
    Ok(started)
}

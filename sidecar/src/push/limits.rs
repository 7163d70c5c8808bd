//! Per-user and per-host limits of the Web Push channels, so one user
//! cannot starve Web Push for everyone (docs/webpush.md, "Limits").
//!
//! What this module owns:
//! - [`InFlightLimits`]: requests in flight per user and per push-service
//!   origin (scheme, host, port), on top of the channel's `concurrency`.
//!   Ten subscriptions of one user on a server that accepts and never
//!   answers used to hold ten of the 32 shared slots for the whole timeout,
//!   on every message and retry. A permit ([`InFlightGuard`]) is taken
//!   when the driver admits a row (`delivery::driver::Sink::admit`) and
//!   released when the attempt ends.
//! - [`ValidationRate`]: validation pushes per user per hour (a sliding
//!   window over the first attempt of each job). Every SETMETADATA of a
//!   subscription, even of the same id, queues a validation POST to a URL
//!   the user chose; past the limit the job ends without a request.
//!
//! Invariants: counts never go below zero and entries at zero are removed,
//! so memory follows the users with requests in flight (or validations in
//! the last hour); both live in memory only (a restart starts afresh).
//!
//! Callers: `push::sinks` (the Web Push sink), `push::channels` (built
//! from `[webpush]`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::delivery::http::origin;

/// The fields of a queued Web Push or validation job the limits look at.
#[derive(Deserialize)]
struct LimitFields {
    user: String,
    target: LimitTarget,
}

#[derive(Deserialize)]
struct LimitTarget {
    endpoint: String,
}

/// The (user, push-service origin) a queued Web Push or validation job
/// counts against; `None` for a payload that is not one (the attempt buries
/// it).
pub fn limit_keys(payload: &str) -> Option<(String, String)> {
    let f: LimitFields = serde_json::from_str(payload).ok()?;
    let url = reqwest::Url::parse(&f.target.endpoint).ok()?;
    Some((f.user, origin(&url)))
}

#[derive(Default)]
struct Counts {
    users: HashMap<String, usize>,
    hosts: HashMap<String, usize>,
}

/// Requests in flight per user and per push-service origin.
pub struct InFlightLimits {
    per_user: usize,
    per_host: usize,
    counts: Mutex<Counts>,
}

/// One admitted request; dropping it frees its user's and host's count.
pub struct InFlightGuard {
    limits: Arc<InFlightLimits>,
    user: String,
    host: String,
}

impl InFlightLimits {
    /// Limits of `per_user` and `per_host` requests in flight.
    pub fn new(per_user: usize, per_host: usize) -> Arc<InFlightLimits> {
        Arc::new(InFlightLimits { per_user, per_host, counts: Mutex::new(Counts::default()) })
    }

    /// A permit for one request of `user` to `host`, or the limit that is
    /// reached (`"user"` or `"host"`, a metric label).
    pub fn try_acquire(self: &Arc<Self>, user: &str, host: &str) -> Result<InFlightGuard, &'static str> {
        // A poisoned lock means a panic, which ends the process anyway.
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.users.get(user).copied().unwrap_or(0) >= self.per_user {
            return Err("user");
        }
        if c.hosts.get(host).copied().unwrap_or(0) >= self.per_host {
            return Err("host");
        }
        *c.users.entry(user.to_string()).or_insert(0) += 1;
        *c.hosts.entry(host.to_string()).or_insert(0) += 1;
        Ok(InFlightGuard { limits: self.clone(), user: user.to_string(), host: host.to_string() })
    }

    /// Requests in flight of `user` (tests).
    pub fn user_count(&self, user: &str) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).users.get(user).copied().unwrap_or(0)
    }
}

fn release(map: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        release(&mut c.users, &self.user);
        release(&mut c.hosts, &self.host);
    }
}

/// The sliding window of [`ValidationRate`].
pub const VALIDATION_WINDOW_MS: u64 = 3_600_000;

/// Validation pushes per user in the last hour.
pub struct ValidationRate {
    per_hour: usize,
    sent: Mutex<Sent>,
}

#[derive(Default)]
struct Sent {
    by_user: HashMap<String, VecDeque<u64>>,
    /// Checks since the last sweep of users whose window emptied.
    since_sweep: usize,
}

/// Checks between sweeps of the per-user windows.
const SWEEP_EVERY: usize = 1024;

impl ValidationRate {
    /// At most `per_hour` validation pushes per user in any hour.
    pub fn new(per_hour: usize) -> ValidationRate {
        ValidationRate { per_hour, sent: Mutex::new(Sent::default()) }
    }

    /// Whether `user` may have one more validation push at `now_ms`; if so
    /// it is counted.
    pub fn allow(&self, user: &str, now_ms: u64) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let since = now_ms.saturating_sub(VALIDATION_WINDOW_MS);
        // Forget users whose window emptied, now and then, so the map holds
        // only users with validations in the last hour.
        sent.since_sweep += 1;
        if sent.since_sweep >= SWEEP_EVERY {
            sent.since_sweep = 0;
            sent.by_user.retain(|_, times| times.back().is_some_and(|t| *t > since));
        }
        let times = sent.by_user.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        if times.len() >= self.per_hour {
            return false;
        }
        times.push_back(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_per_host_limits_hold_and_release() {
        let l = InFlightLimits::new(2, 3);
        let a1 = l.try_acquire("alice", "https://evil.example").unwrap();
        let _a2 = l.try_acquire("alice", "https://push.example").unwrap();
        assert_eq!(l.try_acquire("alice", "https://other.example").err(), Some("user"));
        let _b1 = l.try_acquire("bob", "https://evil.example").unwrap();
        let _c1 = l.try_acquire("carol", "https://evil.example").unwrap();
        assert_eq!(l.try_acquire("dave", "https://evil.example").err(), Some("host"));
        assert!(l.try_acquire("dave", "https://push.example").is_ok(), "another host is fine");
        drop(a1);
        assert_eq!(l.user_count("alice"), 1);
        assert!(l.try_acquire("dave", "https://evil.example").is_ok(), "a freed host slot is reused");
    }

    #[test]
    fn counts_at_zero_are_forgotten() {
        let l = InFlightLimits::new(1, 1);
        drop(l.try_acquire("alice", "h").unwrap());
        let c = l.counts.lock().unwrap();
        assert!(c.users.is_empty() && c.hosts.is_empty());
    }

    #[test]
    fn validations_are_limited_per_user_per_hour() {
        let r = ValidationRate::new(3);
        let t0 = 10 * VALIDATION_WINDOW_MS;
        for i in 0..3 {
            assert!(r.allow("alice", t0 + i));
        }
        assert!(!r.allow("alice", t0 + 10), "a fourth within the hour");
        assert!(r.allow("bob", t0 + 10), "per user");
        assert!(!r.allow("alice", t0 + VALIDATION_WINDOW_MS - 1));
        assert!(r.allow("alice", t0 + VALIDATION_WINDOW_MS + 1), "the first one left the window");
    }

    #[test]
    fn limit_keys_are_user_and_origin() {
        let job = r#"{"job":"validation","user":"alice","ts_ms":1,"secret":"s",
            "target":{"subscription_id":"s-123456789","endpoint":"https://push.example:8443/wpush/TOKEN","p256dh":"x","auth":"y"}}"#;
        assert_eq!(limit_keys(job), Some(("alice".into(), "https://push.example:8443".into())));
        assert_eq!(limit_keys("{}"), None);
    }
}

//! Retry policy: which outcomes are retried, and when.
//!
//! What this module owns (STYLE §4, kept apart from the HTTP transport):
//! - [`RetryLogic`]: classifies an HTTP status or a transport failure into a
//!   [`Verdict`]. [`StandardRetryLogic`]: 2xx delivered; 408, 429 and 5xx
//!   except 501 retried; connection errors and timeouts retried; every other
//!   status (other 4xx, 501, 1xx, 3xx since redirects are never followed)
//!   permanent.
//! - [`next_delay`]: the configured schedule of delays, ±20 % jitter,
//!   `Retry-After` honoured but clamped between the jittered scheduled delay
//!   and twice that (so a hostile or buggy endpoint can neither make us
//!   hammer it nor park an event for a year). 429s and timeouts get a
//!   minimum penalty: their jitter never goes below the scheduled delay.
//! - [`parse_retry_after`]: delay-seconds or an HTTP date.
//!
//! Invariant: a schedule of n delays allows n + 1 attempts; [`next_delay`]
//! returns `None` once they are used up (the caller dead-letters). The
//! deadline is checked by the caller, which knows the enqueue time.
//!
//! Callers: `delivery::driver`.

use std::time::{Duration, SystemTime};

/// What an attempt's outcome means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Try again later.
    Retry {
        /// Bounded label for metrics.
        outcome: Outcome,
        /// The endpoint's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Will never succeed: dead-letter now.
    Permanent {
        /// Bounded label for metrics.
        outcome: Outcome,
    },
}

/// Attempt outcomes: the closed label set of
/// `coi_delivery_attempts_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx.
    Success,
    /// 408, 5xx (but 501): retried.
    RetriableStatus,
    /// 429: retried with a minimum penalty.
    RateLimited,
    /// Other statuses: permanent.
    PermanentStatus,
    /// The request timed out: retried with a minimum penalty.
    Timeout,
    /// Could not connect or the connection broke: retried.
    Connection,
    /// The host resolved only to refused addresses: permanent.
    RefusedAddress,
    /// A request could not even be built: permanent.
    InvalidRequest,
}

impl Outcome {
    /// Every outcome, for pre-registering label values.
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::RetriableStatus,
        Outcome::RateLimited,
        Outcome::PermanentStatus,
        Outcome::Timeout,
        Outcome::Connection,
        Outcome::RefusedAddress,
        Outcome::InvalidRequest,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RetriableStatus => "retriable_status",
            Outcome::RateLimited => "rate_limited",
            Outcome::PermanentStatus => "permanent_status",
            Outcome::Timeout => "timeout",
            Outcome::Connection => "connection",
            Outcome::RefusedAddress => "refused_address",
            Outcome::InvalidRequest => "invalid_request",
        }
    }

    fn has_minimum_penalty(self) -> bool {
        matches!(self, Outcome::RateLimited | Outcome::Timeout)
    }
}

/// A transport-level failure, as seen by the retry logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer within the endpoint's timeout.
    Timeout,
    /// Connect/TLS/IO failure.
    Connection,
    /// Every resolved address was refused by the private-address guard.
    RefusedAddress,
    /// The request could not be built.
    InvalidRequest,
}

/// Classifies attempt results (Vector's `RetryLogic` idea: the transport
/// reports, this decides).
pub trait RetryLogic {
    /// Verdict for a received HTTP status with its `Retry-After` value.
    fn classify_status(&self, status: u16, retry_after: Option<Duration>) -> Verdict;
    /// Verdict for a request that got no HTTP status.
    fn classify_failure(&self, failure: TransportFailure) -> Verdict;
}

/// The policy of STYLE §4.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardRetryLogic;

impl RetryLogic for StandardRetryLogic {
    fn classify_status(&self, status: u16, retry_after: Option<Duration>) -> Verdict {
        match status {
            200..=299 => Verdict::Delivered,
            429 => Verdict::Retry {
                outcome: Outcome::RateLimited,
                retry_after,
            },
            408 => Verdict::Retry {
                outcome: Outcome::RetriableStatus,
                retry_after,
            },
            501 => Verdict::Permanent {
                outcome: Outcome::PermanentStatus,
            },
            500..=599 => Verdict::Retry {
                outcome: Outcome::RetriableStatus,
                retry_after,
            },
            _ => Verdict::Permanent {
                outcome: Outcome::PermanentStatus,
            },
        }
    }

    fn classify_failure(&self, failure: TransportFailure) -> Verdict {
        match failure {
            TransportFailure::Timeout => Verdict::Retry {
                outcome: Outcome::Timeout,
                retry_after: None,
            },
            TransportFailure::Connection => Verdict::Retry {
                outcome: Outcome::Connection,
                retry_after: None,
            },
            TransportFailure::RefusedAddress => Verdict::Permanent {
                outcome: Outcome::RefusedAddress,
            },
            TransportFailure::InvalidRequest => Verdict::Permanent {
                outcome: Outcome::InvalidRequest,
            },
        }
    }
}

/// Jitter as a fraction of the scheduled delay.
pub const JITTER: f64 = 0.2;

/// Delay before the next attempt after `attempts_done` failed attempts, or
/// `None` when the schedule is used up. `unit` is a uniform random number in
/// [0, 1) (injected so tests are deterministic).
pub fn next_delay(
    schedule: &[Duration],
    attempts_done: u32,
    outcome: Outcome,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let index = usize::try_from(attempts_done.checked_sub(1)?).ok()?;
    let scheduled = *schedule.get(index)?;
    let low = if outcome.has_minimum_penalty() { 1.0 } else { 1.0 - JITTER };
    let factor = low + (1.0 + JITTER - low) * unit.clamp(0.0, 1.0);
    let jittered = scheduled.mul_f64(factor);
    Some(match retry_after {
        Some(ra) => ra.clamp(jittered, jittered * 2),
        None => jittered,
    })
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date (relative to `now`;
/// a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let l = StandardRetryLogic;
        let cases: &[(u16, &str)] = &[
            (200, "delivered"),
            (204, "delivered"),
            (299, "delivered"),
            (301, "permanent"),
            (400, "permanent"),
            (401, "permanent"),
            (404, "permanent"),
            (408, "retry"),
            (410, "permanent"),
            (429, "retry"),
            (500, "retry"),
            (501, "permanent"),
            (502, "retry"),
            (503, "retry"),
            (599, "retry"),
            (100, "permanent"),
        ];
        for (status, want) in cases {
            let got = match l.classify_status(*status, None) {
                Verdict::Delivered => "delivered",
                Verdict::Retry { .. } => "retry",
                Verdict::Permanent { .. } => "permanent",
            };
            assert_eq!(got, *want, "status {status}");
        }
        assert!(matches!(
            l.classify_status(429, None),
            Verdict::Retry { outcome: Outcome::RateLimited, .. }
        ));
    }

    #[test]
    fn failures_table() {
        let l = StandardRetryLogic;
        assert!(matches!(l.classify_failure(TransportFailure::Timeout), Verdict::Retry { .. }));
        assert!(matches!(l.classify_failure(TransportFailure::Connection), Verdict::Retry { .. }));
        assert!(matches!(
            l.classify_failure(TransportFailure::RefusedAddress),
            Verdict::Permanent { .. }
        ));
    }

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn schedule_with_jitter_bounds_and_exhaustion() {
        let sched = secs(&[10, 100]);
        let o = Outcome::RetriableStatus;
        assert_eq!(next_delay(&sched, 1, o, None, 0.0), Some(Duration::from_secs(8)));
        assert_eq!(next_delay(&sched, 1, o, None, 1.0), Some(Duration::from_secs(12)));
        assert_eq!(next_delay(&sched, 2, o, None, 0.5), Some(Duration::from_secs(100)));
        assert_eq!(next_delay(&sched, 3, o, None, 0.5), None);
        assert_eq!(next_delay(&sched, 0, o, None, 0.5), None);
    }

    #[test]
    fn rate_limits_and_timeouts_never_jitter_below_schedule() {
        let sched = secs(&[10]);
        for o in [Outcome::RateLimited, Outcome::Timeout] {
            assert_eq!(next_delay(&sched, 1, o, None, 0.0), Some(Duration::from_secs(10)));
            assert_eq!(next_delay(&sched, 1, o, None, 1.0), Some(Duration::from_secs(12)));
        }
    }

    #[test]
    fn retry_after_is_clamped_to_schedule_and_twice() {
        let sched = secs(&[10]);
        let o = Outcome::RateLimited;
        let d = |ra: u64| next_delay(&sched, 1, o, Some(Duration::from_secs(ra)), 0.0).unwrap();
        assert_eq!(d(1), Duration::from_secs(10));
        assert_eq!(d(15), Duration::from_secs(15));
        assert_eq!(d(3600), Duration::from_secs(20));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}

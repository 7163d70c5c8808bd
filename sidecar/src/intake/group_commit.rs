//! Group commit: when the intake may start its next commit.
//!
//! What this module owns: the rule that turns a stream of doorbells into
//! few commits without delaying a lone event. Every intake commit is
//! `synchronous=FULL`, one fsync on the disk Dovecot itself fsyncs to, and
//! every commit wakes the delivery drivers, which query, send and record
//! per batch; so under a steady stream one commit per delivered message
//! costs the mail server a share of its delivery rate (measured in
//! bench/README.md, issue 18). The rule: **at most one cycle per `window`**.
//! A doorbell that arrives `window` or more after the previous cycle
//! started (a lone event, or the first of a burst) starts a cycle at once;
//! one that arrives sooner waits until `window` after that start, and the
//! cycle then takes every record present in one transaction. Doorbells
//! arriving meanwhile are absorbed (the doorbell listener paces itself the
//! same way, `intake::listener`).
//!
//! So while events keep coming there is at most one commit per `window`,
//! every event waits at most `window` longer than it would have, and events
//! more than `window` apart are not delayed at all. A `window` of zero
//! turns the rule off.
//!
//! Invariant: this decides *when* to scan, never *what* is acknowledged:
//! each cycle still commits events and the spool offset in one transaction
//! (`queue::ingest`), so nothing about durability changes.
//!
//! Callers: `intake::pump` (its thread only), `intake::listener`.

use std::time::{Duration, Instant};

/// The pacing state: when the last cycle started.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    window: Duration,
    last_start: Option<Instant>,
}

impl GroupCommit {
    /// Pacing with this `window` (zero: never hold).
    pub fn new(window: Duration) -> GroupCommit {
        GroupCommit { window, last_start: None }
    }

    /// When a doorbell arriving at `now` may start its cycle: `None` = at
    /// once, else the instant to wait for (absorbing other doorbells).
    pub fn hold_until(&self, now: Instant) -> Option<Instant> {
        if self.window.is_zero() {
            return None;
        }
        let until = self.last_start? + self.window;
        (until > now).then_some(until)
    }

    /// A cycle started at `started`.
    pub fn started(&mut self, started: Instant) {
        self.last_start = Some(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(10);

    #[test]
    fn events_further_apart_than_the_window_are_never_held() {
        let mut g = GroupCommit::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(g.hold_until(t0), None, "nothing committed yet");
        g.started(t0);
        assert_eq!(g.hold_until(t0 + WINDOW), None);
        assert_eq!(g.hold_until(t0 + Duration::from_millis(25)), None);
    }

    #[test]
    fn a_stream_gets_one_cycle_per_window() {
        let mut g = GroupCommit::new(WINDOW);
        let t0 = Instant::now();
        g.started(t0);
        assert_eq!(g.hold_until(t0 + Duration::from_millis(1)), Some(t0 + WINDOW));
        assert_eq!(g.hold_until(t0 + Duration::from_millis(9)), Some(t0 + WINDOW));
        g.started(t0 + WINDOW);
        assert_eq!(g.hold_until(t0 + Duration::from_millis(12)), Some(t0 + WINDOW * 2));
    }

    #[test]
    fn a_zero_window_never_holds() {
        let mut g = GroupCommit::new(Duration::ZERO);
        let t0 = Instant::now();
        g.started(t0);
        assert_eq!(g.hold_until(t0), None);
    }
}

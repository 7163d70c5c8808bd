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
//! The window follows the load. Most of what a cycle costs does not depend
//! on how many events it carries: the fsync, the wake-ups of the intake
//! thread, of the drivers and of the runtime threads their queries and
//! requests run on (measured: 7.8 context switches per event at 300
//! events/s with a 10 ms window, about half the sidecar's CPU). At low
//! rates that cost is small in absolute terms and latency is what a user
//! notices; at high rates the cores are scarce and the mail server needs
//! them. So the window is the arrival rate times [`WINDOW_PER_EVENT_RATE`]
//! (1 ms per 8 events/s), kept between `min` (`spool_commit_window_ms`) and
//! `max` (`spool_commit_window_max_ms`): 10 ms up to 80 events/s, 25 ms at
//! 200, 50 ms from 400. The rate is measured from what the cycles take
//! (events committed / time since the previous cycle started), smoothed
//! over a few cycles so one burst does not swing it.
//!
//! So while events keep coming there is at most one commit per `window`,
//! every event waits at most `window` longer than it would have, and events
//! more than `window` apart are not delayed at all (whatever the window
//! grew to). A `min` of zero turns the rule off.
//!
//! Invariant: this decides *when* to scan, never *what* is acknowledged:
//! each cycle still commits events and the spool offset in one transaction
//! (`queue::ingest`), so nothing about durability changes.
//!
//! Callers: `intake::pump` (its thread only, adaptive), `intake::listener`
//! (fixed at `min`: it only paces rings, the pump absorbs the rest).

use std::time::{Duration, Instant};

/// How much window one event per second of arrival rate buys.
pub const WINDOW_PER_EVENT_RATE: Duration = Duration::from_micros(125);

/// Weight of the newest cycle's rate in the smoothed rate.
const RATE_SMOOTHING: f64 = 0.5;

/// The pacing state: when the last cycle started, and the window now.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    min: Duration,
    max: Duration,
    window: Duration,
    last_start: Option<Instant>,
    /// Start of the cycle before `last_start` (the interval whose arrivals
    /// the last cycle took).
    previous_start: Option<Instant>,
    /// Smoothed arrival rate, events per second.
    rate: f64,
}

impl GroupCommit {
    /// Pacing with a fixed `window` (zero: never hold).
    pub fn new(window: Duration) -> GroupCommit {
        GroupCommit::adaptive(window, window)
    }

    /// Pacing whose window follows the arrival rate between `min` and
    /// `max` (see the module docs); `min` zero: never hold.
    pub fn adaptive(min: Duration, max: Duration) -> GroupCommit {
        GroupCommit {
            min,
            max: max.max(min),
            window: min,
            last_start: None,
            previous_start: None,
            rate: 0.0,
        }
    }

    /// The window in force now.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// When a doorbell arriving at `now` may start its cycle: `None` = at
    /// once, else the instant to wait for (absorbing other doorbells).
    pub fn hold_until(&self, now: Instant) -> Option<Instant> {
        if self.min.is_zero() {
            return None;
        }
        let until = self.last_start? + self.window;
        (until > now).then_some(until)
    }

    /// A cycle started at `started`.
    pub fn started(&mut self, started: Instant) {
        self.previous_start = self.last_start;
        self.last_start = Some(started);
    }

    /// The cycle that started last took `events` records: they arrived
    /// since the cycle before it started. Adjusts the window.
    pub fn took(&mut self, events: usize) {
        if self.max == self.min {
            return;
        }
        let (Some(prev), Some(last)) = (self.previous_start, self.last_start) else {
            return;
        };
        // A cycle after a quiet spell measures the spell: the rate falls,
        // as it should. Floor the interval so two cycles in the same
        // instant do not divide by zero.
        let secs = last.saturating_duration_since(prev).as_secs_f64().max(1e-3);
        let now_rate = events as f64 / secs;
        self.rate = RATE_SMOOTHING * now_rate + (1.0 - RATE_SMOOTHING) * self.rate;
        let wanted = WINDOW_PER_EVENT_RATE.as_secs_f64() * self.rate;
        self.window = Duration::from_secs_f64(wanted.clamp(self.min.as_secs_f64(), self.max.as_secs_f64()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(50);

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
        let mut g = GroupCommit::adaptive(Duration::ZERO, MAX);
        let t0 = Instant::now();
        g.started(t0);
        g.took(100);
        assert_eq!(g.hold_until(t0), None);
    }

    /// Feeds `n` events arriving every `1/rate` s from `t0` through the
    /// pacing as the pump would: a cycle starts when an event is pending
    /// and the window allows, and takes every event arrived by then.
    /// Returns when the last cycle started.
    fn stream(g: &mut GroupCommit, t0: Instant, rate: f64, n: usize) -> Instant {
        let gap = Duration::from_secs_f64(1.0 / rate);
        let mut next = 0; // first event not yet taken
        let mut last = t0;
        while next < n {
            let arrives = t0 + gap * next as u32;
            let start = g.hold_until(arrives).unwrap_or(arrives);
            let taken = (next..n).take_while(|&i| t0 + gap * i as u32 <= start).count();
            g.started(start);
            g.took(taken);
            next += taken;
            last = start;
        }
        last
    }

    #[test]
    fn the_window_grows_with_the_rate_up_to_max() {
        let t0 = Instant::now();
        let mut low = GroupCommit::adaptive(WINDOW, MAX);
        stream(&mut low, t0, 50.0, 200);
        assert_eq!(low.window(), WINDOW, "50 events/s stays at the minimum");

        let mut mid = GroupCommit::adaptive(WINDOW, MAX);
        stream(&mut mid, t0, 200.0, 1000);
        let w = mid.window().as_secs_f64() * 1000.0;
        assert!((20.0..=30.0).contains(&w), "200 events/s: {w} ms");

        let mut high = GroupCommit::adaptive(WINDOW, MAX);
        stream(&mut high, t0, 2000.0, 4000);
        assert_eq!(high.window(), MAX, "never past the maximum");
    }

    #[test]
    fn a_lone_event_after_a_stream_is_not_held_and_the_window_shrinks_again() {
        let t0 = Instant::now();
        let mut g = GroupCommit::adaptive(WINDOW, MAX);
        let end = stream(&mut g, t0, 800.0, 2000);
        assert_eq!(g.window(), MAX);
        let later = end + Duration::from_secs(2);
        assert_eq!(g.hold_until(later), None, "a doorbell after a quiet spell starts at once");
        g.started(later);
        g.took(1);
        g.started(later + Duration::from_secs(1));
        g.took(1);
        g.started(later + Duration::from_secs(2));
        g.took(1);
        assert!(g.window() < Duration::from_millis(20), "{:?}", g.window());
    }

    #[test]
    fn a_fixed_window_never_adapts() {
        let t0 = Instant::now();
        let mut g = GroupCommit::new(WINDOW);
        stream(&mut g, t0, 5000.0, 2000);
        assert_eq!(g.window(), WINDOW);
    }
}

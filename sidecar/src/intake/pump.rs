//! The intake thread: when to scan the spool, in which order, and rotation.
//!
//! What this module owns: one OS thread with its own queue connection
//! (`synchronous=FULL`). It waits for a [`Trigger`] (a doorbell) or its scan
//! interval, then runs a cycle:
//! 1. every rotated file `events.log.<n>`, oldest first: seal (exclusive
//!    lock), drain to the end, delete, forget its offset;
//! 2. the active `events.log` up to its last complete record;
//! 3. if the active file reached `spool_rotate_bytes`: rename it, then
//!    handle it as in step 1 right away;
//! 4. if another connection changed the database (a `dead-letters replay`
//!    from the CLI), wake the delivery drivers.
//!
//! Invariants: on start, step 1 runs before anything else (the docs'
//! "startup drains rotated files first"), and offset rows of files that no
//! longer exist are pruned, and so are dead push targets unseen for 30
//! days (`queue::targets`). A failed cycle is counted
//! (`coi_errors_total{stage="intake"}`) and logged, and the next trigger
//! retries it. Spool entries that are not regular files (a symlink, a
//! FIFO: `intake::reader::open_spool_file`) are skipped, the rest of the
//! cycle runs, and then it fails naming them (at start too, where other
//! errors are fatal: any mail process could plant one). The thread ends
//! only on [`Trigger::Stop`] or when every
//! sender is gone. The heartbeat (unix ms of the last successful cycle) feeds
//! `/healthz` and the systemd watchdog.
//!
//! Callers: `app.rs` starts [`Pump::run`] on a dedicated thread.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use coi_core::spool::ACTIVE_FILE;
use rusqlite::Connection;

use super::group_commit::GroupCommit;
use super::reader::{drain_file, io_at, open_spool_file, DrainMode, IntakeError};
use super::rotate::{rotate_active, rotated_files, seal};
use crate::config::{SharedEndpoints, SpoolConfig};
use crate::metrics::Metrics;
use crate::push::jobs::Routing;
use crate::queue::engine::EventQueue;
use crate::queue::{ingest, targets, QueueError};
use crate::time::now_ms;

/// What wakes the intake thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A doorbell: scan now.
    Ring,
    /// Finish the current cycle and end the thread.
    Stop,
}

/// The intake thread's state.
pub struct Pump {
    /// Intake connection (`synchronous=FULL`): offsets, recall, and the
    /// local queue.
    pub conn: Connection,
    /// Where accepted events go (`queue::engine`).
    pub queue: Box<dyn EventQueue>,
    /// Spool settings.
    pub spool: SpoolConfig,
    /// Current endpoints (replaced on reload).
    pub endpoints: SharedEndpoints,
    /// Which push channels take jobs (fixed until restart).
    pub routing: Routing,
    /// Metrics.
    pub metrics: Metrics,
    /// Wakes delivery drivers: those of the endpoints named, or all.
    pub wake: crate::delivery::supervisor::WakeDrivers,
    /// Unix ms of the last finished cycle.
    pub heartbeat: Arc<AtomicU64>,
}

/// Waits until `until`, then takes the doorbells that came meanwhile (they
/// only say "scan", which the cycle after the wait does). Sleeping, not
/// receiving: the channel holds one ring, so the doorbells of a stream
/// find it full and wake nobody until the window is over. False if the
/// thread must stop (a stop waits at most the window).
fn absorb_until(triggers: &Receiver<Trigger>, until: Instant) -> bool {
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    loop {
        match triggers.try_recv() {
            Ok(Trigger::Ring) => {}
            Err(TryRecvError::Empty) => return true,
            Ok(Trigger::Stop) | Err(TryRecvError::Disconnected) => return false,
        }
    }
}

impl Pump {
    /// Runs until [`Trigger::Stop`]. Returns the first error of the startup
    /// pass only; later errors are counted and retried.
    pub fn run(mut self, triggers: Receiver<Trigger>) -> Result<(), IntakeError> {
        self.prune_offsets()?;
        let mut data_version = ingest::data_version(&self.conn)?;
        let mut version_checked = Instant::now();
        let mut pacing = GroupCommit::adaptive(self.spool.commit_window, self.spool.commit_window_max);
        match self.cycle() {
            Ok(_) => {}
            // A FIFO or symlink any mail process can plant must not stop
            // the sidecar: it is counted and logged at every scan instead.
            Err(e @ IntakeError::NotRegular(_)) => self.scan_failed(&e),
            // A JetStream cluster that is down at start: the records wait
            // in the spool like later ones would (docs/fleet.md).
            Err(e @ IntakeError::Queue(QueueError::Stream(_))) => self.scan_failed(&e),
            Err(e) => return Err(e),
        }
        loop {
            // The heartbeat moves only when a cycle succeeds (end of
            // cycle()): a scan that keeps failing (queue disk full) must
            // turn /healthz red, not just prove the thread is alive.
            match triggers.recv_timeout(self.spool.scan_interval) {
                Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(Trigger::Ring) | Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(until) = pacing.hold_until(Instant::now()) {
                if !absorb_until(&triggers, until) {
                    return Ok(());
                }
            }
            pacing.started(Instant::now());
            match self.cycle() {
                Ok(records) => pacing.took(records),
                Err(e) => self.scan_failed(&e),
            }
            // Another connection committed (a `dead-letters replay` from the
            // CLI, but also every batch of the delivery store): wake every
            // driver, at most once per scan interval, so a busy stream does
            // not wake drivers that got nothing on every cycle.
            if version_checked.elapsed() >= self.spool.scan_interval {
                version_checked = Instant::now();
                match ingest::data_version(&self.conn) {
                    Ok(v) if v != data_version => {
                        data_version = v;
                        (self.wake)(None);
                    }
                    Ok(_) => {}
                    Err(e) => self.metrics.error("intake", e.error_type()),
                }
            }
        }
    }

    fn scan_failed(&self, e: &IntakeError) {
        self.metrics.error("intake", e.error_type());
        tracing::error!(error = %e, retriable = e.is_retriable(), "spool scan failed; retrying on the next trigger");
    }

    fn endpoints(&self) -> Arc<Vec<Arc<crate::config::Endpoint>>> {
        match self.endpoints.read() {
            Ok(g) => g.clone(),
            // Only a panic poisons it, and panics are fatal; keep going.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn prune_offsets(&mut self) -> Result<(), IntakeError> {
        let dir = &self.spool.dir;
        let mut live = Vec::new();
        let mut paths: Vec<_> = rotated_files(dir)
            .map_err(io_at(dir))?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        paths.push(dir.join(ACTIVE_FILE));
        for p in paths {
            if let Ok(meta) = std::fs::metadata(&p) {
                live.push((meta.dev(), meta.ino()));
            }
        }
        let pruned = ingest::prune_offsets(&mut self.conn, &live)?;
        if pruned > 0 {
            tracing::info!(pruned, "forgot offsets of spool files that no longer exist");
        }
        let forgotten = targets::prune(&self.conn, now_ms())?;
        if forgotten > 0 {
            tracing::info!(forgotten, "forgot dead push targets not seen for 30 days");
        }
        Ok(())
    }

    /// One scan of the spool directory (see the module docs). Entries
    /// that are not regular files are skipped, the rest is scanned, and
    /// then the cycle fails naming them (so the heartbeat does not move and
    /// `/healthz` turns red until someone removes them). Returns how many
    /// records it read (the group commit's measure of the arrival rate).
    pub fn cycle(&mut self) -> Result<usize, IntakeError> {
        let dir = self.spool.dir.clone();
        let mut refused = Vec::new();
        let mut records = 0u64;
        for (_, path) in rotated_files(&dir).map_err(io_at(&dir))? {
            match self.finish_rotated(&path) {
                Ok(n) => records += n,
                Err(IntakeError::NotRegular(files)) => refused.extend(files),
                Err(e) => return Err(e),
            }
        }
        let endpoints = self.endpoints();
        let wake = self.wake.clone();
        let active = dir.join(ACTIVE_FILE);
        let drained = match drain_file(
            &mut self.conn,
            &mut *self.queue,
            &active,
            DrainMode::Active,
            &endpoints,
            &self.routing,
            &self.metrics,
            &*wake,
        ) {
            Err(IntakeError::NotRegular(files)) => {
                refused.extend(files);
                None
            }
            other => other?,
        };
        records += drained.as_ref().map_or(0, |d| d.records);
        if drained.is_some_and(|d| d.size >= self.spool.rotate_bytes) {
            if let Some(rotated) = rotate_active(&dir).map_err(io_at(&dir))? {
                self.metrics.spool_rotations.inc();
                tracing::info!(file = %rotated.display(), "rotated the spool file");
                records += self.finish_rotated(&rotated)?;
            }
        }
        if !refused.is_empty() {
            return Err(IntakeError::NotRegular(refused));
        }
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
        Ok(usize::try_from(records).unwrap_or(usize::MAX))
    }

    /// Seal, drain to the end, delete, forget. Returns the records read.
    fn finish_rotated(&mut self, path: &std::path::Path) -> Result<u64, IntakeError> {
        let Some(file) = open_spool_file(path)? else {
            return Ok(0);
        };
        seal(&file).map_err(io_at(path))?;
        drop(file);
        let endpoints = self.endpoints();
        let wake = self.wake.clone();
        let Some(d) = drain_file(
            &mut self.conn,
            &mut *self.queue,
            path,
            DrainMode::Final,
            &endpoints,
            &self.routing,
            &self.metrics,
            &*wake,
        )?
        else {
            return Ok(0);
        };
        std::fs::remove_file(path).map_err(io_at(path))?;
        ingest::forget_offset(&self.conn, d.dev, d.ino)?;
        tracing::debug!(file = %path.display(), "drained and deleted a rotated spool file");
        Ok(d.records)
    }
}

//! The doorbell socket: bind it, receive datagrams, check and decode them.
//!
//! What this module owns: the Unix datagram socket of docs/events.md
//! (`socket.path`): removing a stale socket file, binding, file mode and
//! group, `SO_PASSCRED`; then, per datagram: peer check ([`PeerPolicy`]),
//! size and JSON check ([`decode_doorbell`]), counting by outcome
//! (`accepted`, `peer`, `oversized`, `garbage`, `version`), adding the
//! doorbell's `dropped` to the plugin's dropped counter, and ringing the
//! pump.
//!
//! Invariants: a bad datagram is counted and logged at debug level, never
//! fatal; the loop only ends on shutdown. Rings coalesce: the pump's channel
//! holds one pending ring, so a burst of 10,000 doorbells costs one scan,
//! not 10,000. The listener paces itself like the intake's group commit
//! (`intake::group_commit`): after ringing the pump it reads the socket
//! again only `window` later, so a stream of doorbells wakes this task once
//! per window, not once per delivered message; the datagrams wait in the
//! socket's queue meanwhile and are all checked and counted then. A
//! datagram lost to a full queue only delays a scan, like any lost ring. A file at the socket path that is not a socket is never
//! removed (startup fails instead).
//!
//! Callers: `app.rs` spawns [`serve`] as a core task.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError};

use coi_core::wire::{decode_doorbell, MAX_DOORBELL_BYTES};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::group_commit::GroupCommit;
use super::peer::{PeerCred, PeerPolicy};
use super::pump::Trigger;
use crate::config::SocketConfig;
use crate::metrics::Metrics;
use crate::shutdown::ShutdownWatch;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Something other than a socket sits at the path.
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(String),
    /// Creating, binding or configuring the socket failed.
    #[error("doorbell socket {path}: {source}")]
    Io {
        /// Socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// `socket.group` names no group.
    #[error("socket.group {0:?}: no such group")]
    UnknownGroup(String),
}

impl ListenerError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            ListenerError::NotASocket(_) => "socket_path_occupied",
            ListenerError::Io { .. } => "socket_io",
            ListenerError::UnknownGroup(_) => "socket_group",
        }
    }

    /// Whether a restart could fix it without a config or filesystem change.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ListenerError::Io { .. })
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ListenerError + '_ {
    move |source| ListenerError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn resolve_group(group: &str) -> Result<u32, ListenerError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(ListenerError::UnknownGroup(group.to_string())),
    }
}

/// Binds the doorbell socket as configured. Must run inside the runtime.
pub fn bind(cfg: &SocketConfig) -> Result<UnixDatagram, ListenerError> {
    let path = cfg.path.as_path();
    let err = io_err(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(&err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(&err)?,
        Ok(_) => return Err(ListenerError::NotASocket(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let gid = cfg.group.as_deref().map(resolve_group).transpose()?;
    let sock = std::os::unix::net::UnixDatagram::bind(path).map_err(&err)?;
    sock.set_nonblocking(true).map_err(&err)?;
    setsockopt(&sock, sockopt::PassCred, &true).map_err(|e| err(e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.mode)).map_err(&err)?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(&err)?;
    }
    UnixDatagram::from_std(sock).map_err(&err)
}

/// One received datagram.
struct Received {
    len: usize,
    truncated: bool,
    peer: Option<PeerCred>,
}

// nix's recvmsg takes the control buffer as `&mut Vec<u8>`.
#[allow(clippy::ptr_arg)]
fn recv_one(fd: RawFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> std::io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut peer = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmCredentials(uc) = c {
            peer = Some(PeerCred {
                pid: uc.pid(),
                uid: uc.uid(),
                gid: uc.gid(),
            });
        }
    }
    Ok(Received {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        peer,
    })
}

/// Serves the socket until shutdown; `window` is the group-commit window
/// (zero: no pacing).
pub async fn serve(
    sock: UnixDatagram,
    policy: PeerPolicy,
    metrics: Metrics,
    ring: SyncSender<Trigger>,
    window: std::time::Duration,
    mut shutdown: ShutdownWatch,
) {
    // One byte more than allowed, so an oversized datagram is visible even
    // if MSG_TRUNC were not reported.
    let mut buf = vec![0u8; MAX_DOORBELL_BYTES + 1];
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let fd = sock.as_raw_fd();
    let mut pacing = GroupCommit::new(window);
    loop {
        if let Some(until) = pacing.hold_until(std::time::Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = shutdown.wait() => return,
            }
        }
        let received = tokio::select! {
            r = sock.async_io(Interest::READABLE, || recv_one(fd, &mut buf, &mut cmsg)) => r,
            _ = shutdown.wait() => return,
        };
        let r = match received {
            Ok(r) => r,
            Err(e) => {
                metrics.error("intake_socket", "recv");
                tracing::warn!(error = %e, "doorbell socket receive failed");
                continue;
            }
        };
        let outcome = if !policy.allows(r.peer) {
            tracing::debug!(peer = ?r.peer, "doorbell from a peer that is not allowed");
            "peer"
        } else if r.truncated || r.len > MAX_DOORBELL_BYTES {
            "oversized"
        } else {
            match decode_doorbell(&buf[..r.len]) {
                Ok(doorbell) => {
                    metrics.plugin_dropped.inc_by(doorbell.dropped);
                    match ring.try_send(Trigger::Ring) {
                        Ok(()) => pacing.started(std::time::Instant::now()),
                        // Full: a scan is already pending, which covers us.
                        Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                    "accepted"
                }
                Err(e) => {
                    tracing::debug!(error = %e, "doorbell rejected");
                    e.error_type()
                }
            }
        };
        metrics.intake_datagrams.with_label_values(&[outcome]).inc();
    }
}

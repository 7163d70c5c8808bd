//! Is the daemon running, which pid, and what does its `/healthz` say.
//!
//! Running means: some process holds the flock on
//! `<state_dir>/coi-sidecar.lock` (the daemon takes it exclusively for its
//! whole life, `app.rs`). The holder is looked up in `/proc/locks` by the
//! lock file's device and inode; trying the lock ourselves could make a
//! daemon that starts at that moment fail its own attempt.
//!
//! `/healthz` is fetched with one HTTP/1.1 GET (3 s timeout) over the
//! configured `[metrics] listen`, TCP or Unix socket; a wildcard address
//! is reached on loopback.
//!
//! Callers: `status::report`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::MetricsListen;

/// Timeout of each step of the `/healthz` request.
pub const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(3);

/// The lock holder, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// A process holds the instance lock.
    pub running: bool,
    /// Its pid as `/proc/locks` shows it (in our pid namespace).
    pub pid: Option<u32>,
}

/// What `/healthz` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthz {
    /// Where it was asked (`127.0.0.1:9854`, `unix:/path`).
    pub address: String,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The body (`ok`, or the reason it is unhealthy), or the connection error.
    pub detail: String,
}

impl Healthz {
    /// 200.
    pub fn healthy(&self) -> bool {
        self.status == Some(200)
    }
}

/// Linux `dev_t` split the way glibc's `major()`/`minor()` do.
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major, minor)
}

/// The pid holding a FLOCK on (`dev`, `ino`) in `/proc/locks` text.
/// Lines look like `1: FLOCK  ADVISORY  WRITE 1234 00:28:10018146 0 EOF`
/// (device major and minor in hex); waiters (`1: -> FLOCK ...`) are skipped.
pub fn flock_holder(proc_locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = major_minor(dev);
    proc_locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let maj = u64::from_str_radix(id.next()?, 16).ok()?;
        let min = u64::from_str_radix(id.next()?, 16).ok()?;
        let i: u64 = id.next()?.parse().ok()?;
        (maj == major && min == minor && i == ino).then_some(pid)
    })
}

/// Who holds `lock_path`. A missing lock file means the daemon never ran
/// with this `state_dir`.
pub fn lock_holder(lock_path: &Path) -> std::io::Result<LockHolder> {
    let meta = match std::fs::metadata(lock_path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockHolder { running: false, pid: None })
        }
        Err(e) => return Err(e),
    };
    let locks = std::fs::read_to_string("/proc/locks")?;
    let pid = flock_holder(&locks, meta.dev(), meta.ino());
    Ok(LockHolder { running: pid.is_some(), pid })
}

fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

fn get<S: Read + Write>(mut stream: S, path: &str) -> std::io::Result<(u16, String)> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    // The server's answers are a few bytes; cap what we read anyway.
    stream.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim().to_string();
    Ok((status, body))
}

/// Asks `/healthz` on `listen`.
pub fn healthz(listen: &MetricsListen) -> Healthz {
    let (address, answer) = match listen {
        MetricsListen::Tcp(addr) => {
            let addr = loopback_for(*addr);
            let answer = TcpStream::connect_timeout(&addr, HEALTHZ_TIMEOUT).and_then(|s| {
                s.set_read_timeout(Some(HEALTHZ_TIMEOUT))?;
                s.set_write_timeout(Some(HEALTHZ_TIMEOUT))?;
                get(s, "/healthz")
            });
            (addr.to_string(), answer)
        }
        MetricsListen::Unix(path) => {
            let answer = UnixStream::connect(path).and_then(|s| {
                s.set_read_timeout(Some(HEALTHZ_TIMEOUT))?;
                s.set_write_timeout(Some(HEALTHZ_TIMEOUT))?;
                get(s, "/healthz")
            });
            (format!("unix:{}", path.display()), answer)
        }
    };
    match answer {
        Ok((status, body)) => Healthz { address, status: Some(status), detail: body },
        Err(e) => Healthz { address, status: None, detail: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_flock_holder_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 00:28:777 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 22845 00:28:10018146 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 00:28:10018146 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 5 fd:01:10018146 0 EOF\n";
        assert_eq!(flock_holder(locks, 0x28, 10018146), Some(22845));
        assert_eq!(flock_holder(locks, (0xfd << 8) | 1, 10018146), Some(5), "major fd, minor 01");
        assert_eq!(flock_holder(locks, 0x28, 777), None, "a POSIX lock is not the daemon's");
        assert_eq!(flock_holder(locks, 0x29, 10018146), None);
        assert_eq!(flock_holder("", 0x28, 1), None);
    }

    #[test]
    fn large_device_numbers_split_like_glibc() {
        // makedev(0x1234, 0x56789) per glibc's encoding.
        let (major, minor) = (0x1234_u64, 0x56789_u64);
        let dev = ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(major_minor(dev), (major, minor));
    }

    #[test]
    fn a_real_flock_is_found_in_proc_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coi-sidecar.lock");
        assert_eq!(lock_holder(&path).unwrap(), LockHolder { running: false, pid: None });
        let f = std::fs::File::create(&path).unwrap();
        assert!(!lock_holder(&path).unwrap().running, "an unlocked file");
        f.lock().unwrap();
        assert_eq!(
            lock_holder(&path).unwrap(),
            LockHolder { running: true, pid: Some(std::process::id()) }
        );
        f.unlock().unwrap();
        assert!(!lock_holder(&path).unwrap().running);
    }

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9854".parse().unwrap();
        assert_eq!(loopback_for(a).to_string(), "127.0.0.1:9854");
        let a: SocketAddr = "[::]:9854".parse().unwrap();
        assert_eq!(loopback_for(a).to_string(), "[::1]:9854");
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(loopback_for(a), a);
    }

    #[test]
    fn healthz_of_nothing_listening_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let h = healthz(&MetricsListen::Unix(dir.path().join("none.sock")));
        assert!(!h.healthy());
        assert_eq!(h.status, None);
        assert!(h.address.starts_with("unix:"));
    }
}

//! Test harness: a temp environment, the real `coi-sidecar` binary as a
//! child process (always killed on drop), the plugin's side of the protocol
//! (SpoolWriter appends + doorbells), and a metrics scraper.

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use coi_core::spool::SpoolWriter;
use coi_core::wire::{encode_doorbell, encode_record, new_event_id, Doorbell, MessageEventV1, Record};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const BIN: &str = env!("CARGO_BIN_EXE_coi-sidecar");

/// One webhook endpoint in a test config.
pub struct Hook {
    pub name: String,
    pub url: String,
    pub extra: String,
}

impl Hook {
    pub fn new(name: &str, url: &str) -> Hook {
        Hook {
            name: name.into(),
            url: url.into(),
            extra: "retry_schedule_secs = [1, 1, 1, 1, 1]\ntimeout_secs = 5\n".into(),
        }
    }

    pub fn extra(mut self, extra: &str) -> Hook {
        self.extra = extra.into();
        self
    }
}

/// Temp dirs and paths of one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub spool: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub metrics_socket: PathBuf,
    pub config: PathBuf,
    pub writer: SpoolWriter,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("coi-it-").tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        Env {
            spool: spool.clone(),
            state: dir.path().join("state"),
            socket: dir.path().join("run/events.sock"),
            metrics_socket: dir.path().join("run/metrics.sock"),
            config: dir.path().join("sidecar.toml"),
            writer: SpoolWriter::new(spool, 1 << 30),
            dir,
        }
    }

    /// The config text with `hooks` and `extra` top-level sections.
    pub fn config_text(&self, hooks: &[Hook], extra_socket: &str) -> String {
        let mut t = format!(
            "spool_dir = {:?}\nstate_dir = {:?}\nspool_scan_interval_ms = 200\nspool_rotate_bytes = 65536\n\n\
             [socket]\npath = {:?}\n{extra_socket}\n\n[metrics]\nlisten = \"unix:{}\"\n\n\
             [logging]\nlevel = \"debug\"\n\n[delivery]\nallow_private_addresses = true\nshutdown_grace_secs = 2\n",
            self.spool,
            self.state,
            self.socket,
            self.metrics_socket.display()
        );
        for h in hooks {
            t.push_str(&format!(
                "\n[[webhook]]\nname = {:?}\nurl = {:?}\nsecrets = [{SECRET:?}]\n{}\n",
                h.name, h.url, h.extra
            ));
        }
        t
    }

    pub fn write_config(&self, hooks: &[Hook]) {
        std::fs::write(&self.config, self.config_text(hooks, "")).unwrap();
    }

    /// The config with `sections` (e.g. `[webpush]`) appended.
    pub fn write_config_with(&self, hooks: &[Hook], sections: &str) {
        std::fs::write(&self.config, format!("{}\n{sections}\n", self.config_text(hooks, ""))).unwrap();
    }

    pub fn start(&self) -> Sidecar {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sidecar.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Sidecar {
            child,
            metrics_socket: self.metrics_socket.clone(),
            log: self.dir.path().join("sidecar.log"),
        };
        s.wait_healthy();
        s
    }

    /// Runs the binary with `args` (plus `--config`) to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// Appends a message event exactly as the plugin does; returns its id.
    pub fn append(&self, kind: &str, folder: &str) -> String {
        let m = message(kind, folder);
        let id = m.id.clone();
        self.writer.append(&encode_record(&Record::Message(m))).unwrap();
        id
    }

    pub fn append_record(&self, r: &Record) {
        self.writer.append(&encode_record(r)).unwrap();
    }

    /// Rings the doorbell; errors are ignored like the plugin does.
    pub fn ring(&self) {
        self.send_datagram(&encode_doorbell(&Doorbell { dropped: 0 }));
    }

    pub fn send_datagram(&self, bytes: &[u8]) {
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(bytes, &self.socket);
        }
    }
}

pub fn message(kind: &str, folder: &str) -> MessageEventV1 {
    MessageEventV1 {
        id: new_event_id(),
        ts_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        user: "alice@example.org".into(),
        folder: folder.into(),
        uid: 42,
        uidvalidity: 1_700_000_000,
        kind: kind.into(),
        group_id: None,
        chat_keyword: kind != "not-chat",
        routed: kind != "not-chat",
        from: Some("bob@example.org".into()),
        message_id: Some("<chat$abc@example.org>".into()),
        subject: Some("hello".into()),
        pid: std::process::id(),
        dropped_before: 0,
    origin: Default::default(),
    headers_protected: false,
    }
}

/// A running sidecar; killed on drop.
pub struct Sidecar {
    pub child: Child,
    metrics_socket: PathBuf,
    log: PathBuf,
}

impl Sidecar {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "sidecar did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get_unix(&self.metrics_socket, path)
    }

    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = self.get("/healthz") {
                return;
            }
            assert!(Instant::now() < deadline, "sidecar never became healthy; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn healthz(&self) -> (u16, String) {
        self.get("/healthz").unwrap()
    }

    pub fn metrics_text(&self) -> String {
        let (code, body) = self.get("/metrics").unwrap();
        assert_eq!(code, 200);
        body
    }

    pub fn scrape(&self) -> Scrape {
        parse_metrics(&self.metrics_text())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 GET over a Unix socket.
pub fn http_get_unix(socket: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    split_response(&raw)
}

pub fn http_get_tcp(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    split_response(&raw)
}

fn split_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A parsed scrape with lookups by name and labels.
pub struct Scrape(pub prometheus_parse::Scrape);

pub fn parse_metrics(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape(prometheus_parse::Scrape::parse(lines).unwrap())
}

impl Scrape {
    /// The value of `name` whose labels include all of `labels`; 0 if absent
    /// (histograms: the count).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }
}

/// Polls `cond` until true or `timeout`; panics with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

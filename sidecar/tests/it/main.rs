//! Integration tests of the real `coi-sidecar` binary: real processes, real
//! Unix and TCP sockets, a real HTTP receiver, events appended with the
//! plugin's own `SpoolWriter`.

mod harness;
mod push;
mod receiver;
mod status;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use coi_core::wire::{FallbackEventV1, FallbackReason, Record};
use harness::{message, wait_for, Env, Hook, SECRET};
use hmac::{Hmac, Mac};
use nix::sys::signal::Signal;
use receiver::Receiver;

const LONG: Duration = Duration::from_secs(30);

fn verify_signature(req: &receiver::Request) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = req.header("webhook-id");
    let ts = req.header("webhook-timestamp");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let sigs: Vec<&str> = req.header("webhook-signature").split(' ').collect();
    assert!(sigs.contains(&want.as_str()), "signature {sigs:?} != {want}");
    let ts: u64 = ts.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60, "webhook-timestamp is the attempt time");
}

#[test]
fn signed_webhook_arrives_and_signature_verifies() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/hook"))]);
    let sc = env.start();
    let id = env.append("chat", "COI/Chats");
    env.ring();
    wait_for("the webhook", LONG, || rx.count() >= 1);
    let req = &rx.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook");
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("webhook-id"), id);
    verify_signature(req);
    let body = req.json();
    assert_eq!(body["type"], "message.stored");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["folder"], "COI/Chats");
    assert_eq!(body["data"]["kind"], "chat");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    wait_for("success counted", LONG, || {
        sc.scrape().value("coi_delivery_attempts_total", &[("endpoint", "ops"), ("outcome", "success")]) == 1.0
    });
    // The delivered row is deleted (and the depth gauge updated) after the
    // attempt is counted: under load the scrape can fall between the two.
    wait_for("the delivered event leaves the queue", LONG, || {
        sc.scrape().value("coi_queue_depth_events", &[]) == 0.0
    });
    let m = sc.scrape();
    assert_eq!(m.value("coi_intake_events_total", &[("kind", "chat")]), 1.0);
    assert_eq!(m.value("coi_delivery_latency_seconds_count", &[]), 1.0);
    assert_eq!(sc.healthz().0, 200);
    assert_eq!(sc.terminate().code(), Some(0), "graceful stop exits 0");
}

#[test]
fn ox_format_is_a_signed_put_with_the_ox_payload() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ox", &rx.url("/ox")).extra("format = \"ox\"\nkinds = [\"chat\"]\nfolders = [\"INBOX\"]")]);
    let _sc = env.start();
    env.append("not-chat", "INBOX"); // filtered out by kind
    env.append("chat", "Archive"); // filtered out by folder
    let id = env.append("chat", "INBOX");
    env.ring();
    wait_for("the webhook", LONG, || rx.count() >= 1);
    std::thread::sleep(Duration::from_millis(500));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "filters let only one event through");
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].header("webhook-id"), id);
    verify_signature(&reqs[0]);
    let b = reqs[0].json();
    assert_eq!(b["event"], "messageNew");
    assert_eq!(b["user"], "alice@example.org");
    assert_eq!(b["imap-uid"], 42);
    assert_eq!(b["snippet"], "");
    assert_eq!(b["unseen"], 0);
}

#[test]
fn events_appended_while_down_are_all_delivered_after_start() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/")).extra("concurrency = 8")]);
    // Nobody listens: the doorbells go nowhere, the records wait in the spool.
    let ids: HashSet<String> = (0..500)
        .map(|_| {
            let id = env.append("chat", "INBOX");
            env.ring();
            id
        })
        .collect();
    let _sc = env.start();
    wait_for("all 500 webhooks", LONG, || rx.ids().is_superset(&ids));
}

#[test]
fn retries_on_503_then_delivers_with_the_same_webhook_id() {
    let env = Env::new();
    let rx = Receiver::with(|_, n| (if n <= 2 { 503 } else { 200 }, vec![]));
    env.write_config(&[Hook::new("ops", &rx.url("/"))]);
    let sc = env.start();
    let id = env.append("chat", "INBOX");
    env.ring();
    wait_for("three attempts", LONG, || rx.count() >= 3);
    let reqs = rx.requests();
    assert!(reqs.iter().all(|r| r.header("webhook-id") == id));
    for r in &reqs {
        verify_signature(r);
    }
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(700), "retry waited the (jittered) 1 s");
    wait_for("metrics", LONG, || {
        let m = sc.scrape();
        m.value("coi_delivery_attempts_total", &[("endpoint", "ops"), ("outcome", "retriable_status")]) == 2.0
            && m.value("coi_delivery_attempts_total", &[("endpoint", "ops"), ("outcome", "success")]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.count(), 3, "no attempt after the 2xx");
}

#[test]
fn retry_after_is_respected() {
    let env = Env::new();
    let rx = Receiver::with(|_, n| {
        if n == 1 {
            (429, vec![("retry-after".into(), "3".into())])
        } else {
            (200, vec![])
        }
    });
    env.write_config(&[Hook::new("ops", &rx.url("/")).extra("retry_schedule_secs = [2]")]);
    let sc = env.start();
    env.append("chat", "INBOX");
    env.ring();
    wait_for("the retry", LONG, || rx.count() >= 2);
    let reqs = rx.requests();
    let waited = reqs[1].at - reqs[0].at;
    assert!(waited >= Duration::from_secs(3), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(6), "waited {waited:?}, more than 2x the schedule");
    assert_eq!(
        sc.scrape().value("coi_delivery_attempts_total", &[("endpoint", "ops"), ("outcome", "rate_limited")]),
        1.0
    );
}

#[test]
fn permanent_4xx_goes_to_dead_letters_and_replay_delivers_it() {
    let env = Env::new();
    let rx = Receiver::with(|_, _| (404, vec![]));
    env.write_config(&[Hook::new("ops", &rx.url("/"))]);
    let sc = env.start();
    let id = env.append("group-chat", "INBOX");
    env.ring();
    wait_for("dead letter", LONG, || {
        sc.scrape().value("coi_dead_letters_total", &[("endpoint", "ops")]) == 1.0
    });
    assert_eq!(rx.count(), 1, "a 404 is not retried");
    assert_eq!(sc.scrape().value("coi_dead_letters_pending", &[]), 1.0);
    let out = env.cli(&["dead-letters", "list"]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("HTTP 404"), "{listing}");
    rx.set_policy(|_, _| (200, vec![]));
    let out = env.cli(&["dead-letters", "replay", "--all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 "));
    wait_for("replayed delivery", LONG, || rx.count() >= 2);
    assert_eq!(rx.requests()[1].header("webhook-id"), id);
    wait_for("no dead letters left", LONG, || sc.scrape().value("coi_dead_letters_pending", &[]) == 0.0);
    let out = env.cli(&["dead-letters", "replay"]);
    assert!(!out.status.success(), "replay needs --all or ids");
}

#[test]
fn every_event_survives_repeated_sigkill_mid_stream() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/")).extra("concurrency = 8")]);
    let total = 2000;
    let mut ids = HashSet::new();
    let mut sc = Some(env.start());
    let started = Instant::now();
    for i in 0..total {
        ids.insert(env.append("chat", "INBOX"));
        env.ring();
        if i % 400 == 399 {
            // SIGKILL at an arbitrary point of ingest/delivery, restart.
            if let Some(s) = sc.take() {
                s.kill();
            }
            if i + 1 < total {
                sc = Some(env.start());
            }
        }
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _sc = env.start();
    wait_for("every id delivered", Duration::from_secs(60), || rx.ids().is_superset(&ids));
    let received = rx.count();
    eprintln!(
        "{total} events, {received} requests ({} duplicates) in {:?}",
        received - ids.len(),
        started.elapsed()
    );
}

#[test]
fn bad_datagrams_are_counted_by_reason_and_service_continues() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/"))]);
    let sc = env.start();
    env.send_datagram(b"hello, not json");
    env.send_datagram(&vec![b'{'; 600]);
    env.send_datagram(br#"{"v":2,"type":"ring","dropped":0}"#);
    env.send_datagram(br#"{"v":1,"type":"ring","dropped":3}"#);
    wait_for("datagrams counted", LONG, || {
        let m = sc.scrape();
        ["garbage", "oversized", "version", "accepted"]
            .iter()
            .all(|o| m.value("coi_intake_datagrams_total", &[("outcome", o)]) == 1.0)
    });
    assert_eq!(sc.scrape().value("coi_plugin_events_dropped_total", &[]), 3.0);
    let id = env.append("chat", "INBOX");
    env.ring();
    wait_for("delivery after bad datagrams", LONG, || rx.ids().contains(&id));
    assert_eq!(sc.healthz().0, 200);
}

#[test]
fn doorbells_from_peers_not_allowed_are_refused_and_the_timer_still_scans() {
    let env = Env::new();
    let rx = Receiver::ok();
    let other_uid = nix::unistd::getuid().as_raw() + 1;
    let text = env.config_text(
        &[Hook::new("ops", &rx.url("/"))],
        &format!("allowed_uids = [{other_uid}]\nmode = \"0600\""),
    );
    std::fs::write(&env.config, text).unwrap();
    let sc = env.start();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let id = env.append("chat", "INBOX");
    env.ring();
    wait_for("peer rejection counted", LONG, || {
        sc.scrape().value("coi_intake_datagrams_total", &[("outcome", "peer")]) == 1.0
    });
    wait_for("timer scan delivers anyway", LONG, || rx.ids().contains(&id));
}

#[test]
fn plugin_counters_and_rejected_records_reach_the_metrics() {
    let env = Env::new();
    env.write_config(&[]);
    let sc = env.start();
    env.append("chat", "COI/Chats");
    env.append("read-receipt", "COI/Chats");
    env.append("not-chat", "INBOX");
    let mut m = message("group-chat", "INBOX");
    m.routed = false;
    m.dropped_before = 4;
    env.append_record(&Record::Message(m));
    for reason in [FallbackReason::MetadataUnreadable, FallbackReason::MetadataUnreadable, FallbackReason::InternalError] {
        env.append_record(&Record::Fallback(FallbackEventV1 {
            id: coi_core::wire::new_event_id(),
            ts_ms: 1,
            reason,
            pid: 1,
            dropped_before: 1,
        }));
    }
    // A torn record (a writer that died mid-write), garbage, a future version.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(env.writer.path()).unwrap();
    f.write_all(b"\x1e{\"v\":1,\"type\":\"mess").unwrap();
    f.write_all(b"junk\n").unwrap();
    f.write_all(b"\x1e{\"v\":9,\"type\":\"message\"}\n").unwrap();
    drop(f);
    env.append("chat", "INBOX");
    env.ring();
    wait_for("all counted", LONG, || {
        sc.scrape().value("coi_intake_events_total", &[("kind", "chat")]) == 2.0
    });
    let s = sc.scrape();
    let v = |n: &str, l: &[(&str, &str)]| s.value(n, l);
    assert_eq!(v("coi_plugin_messages_classified_total", &[("kind", "chat")]), 2.0);
    assert_eq!(v("coi_plugin_messages_classified_total", &[("kind", "read-receipt")]), 1.0);
    assert_eq!(v("coi_plugin_messages_classified_total", &[("kind", "not-chat")]), 1.0);
    assert_eq!(v("coi_plugin_messages_classified_total", &[("kind", "group-chat")]), 1.0);
    assert_eq!(v("coi_plugin_messages_routed_total", &[]), 3.0);
    assert_eq!(v("coi_plugin_messages_tagged_total", &[]), 4.0);
    assert_eq!(v("coi_plugin_fallbacks_total", &[("reason", "metadata_unreadable")]), 2.0);
    assert_eq!(v("coi_plugin_fallbacks_total", &[("reason", "internal_error")]), 1.0);
    assert_eq!(v("coi_plugin_events_dropped_total", &[]), 7.0);
    assert_eq!(v("coi_intake_events_total", &[("kind", "fallback")]), 3.0);
    // The torn record's bytes up to "junk\n" form one torn record (RS came
    // again only after the LF... so it is read as one bad record).
    let rejected: f64 = ["torn", "garbage", "json", "version"]
        .iter()
        .map(|e| v("coi_spool_records_rejected_total", &[("error_type", e)]))
        .sum();
    assert_eq!(rejected, 2.0);
    assert_eq!(v("coi_spool_records_rejected_total", &[("error_type", "version")]), 1.0);
    assert_eq!(v("coi_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(v("process_resident_memory_bytes", &[]) > 0.0);
    let text = sc.metrics_text();
    assert!(!text.contains("alice"), "no user in any label");
    assert!(!text.contains("127.0.0.1"), "no URL in any label");
}

#[test]
fn spool_rotation_under_load_loses_nothing() {
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/")).extra("concurrency = 16")]);
    let sc = env.start();
    // 64 KiB rotation threshold in the test config: ~150 records per file.
    let ids: HashSet<String> = (0..1500)
        .map(|_| {
            let id = env.append("chat", "INBOX");
            env.ring();
            id
        })
        .collect();
    wait_for("all delivered", LONG, || rx.ids().is_superset(&ids));
    assert!(sc.scrape().value("coi_spool_rotations_total", &[]) >= 1.0);
    wait_for("rotated files deleted", LONG, || {
        std::fs::read_dir(&env.spool).unwrap().filter_map(Result::ok).all(|e| e.file_name() == "events.log")
    });
}

#[test]
fn check_config_accepts_good_and_rejects_bad_files() {
    let env = Env::new();
    env.write_config(&[Hook::new("ops", "http://127.0.0.1:9/")]);
    let ok = env.cli(&["check-config"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (1 webhook"));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("queue: local SQLite"), "local mode is the default");

    let fleet = env.config_text(&[Hook::new("ops", "http://127.0.0.1:9/")], "") + "\n[queue]\nengine = \"jetstream\"\n";
    std::fs::write(&env.config, fleet).unwrap();
    let ok = env.cli(&["check-config"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("queue: JetStream stream COI_EVENTS (replicas 3)"));
    let typo = env.config_text(&[Hook::new("ops", "http://127.0.0.1:9/")], "") + "\n[queue]\nengine = \"kafka\"\n";
    std::fs::write(&env.config, typo).unwrap();
    let refused = env.cli(&["check-config"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("queue.engine"));

    let private = env.config_text(&[Hook::new("ops", "http://127.0.0.1:9/")], "")
        .replace("allow_private_addresses = true", "allow_private_addresses = false");
    std::fs::write(&env.config, private).unwrap();
    let refused = env.cli(&["check-config"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("webhook[0].url") && err.contains("allow_private_addresses"), "{err}");

    std::fs::write(&env.config, "spool_dir = \"/x\"\nunknown_key = 1\n").unwrap();
    let bad = env.cli(&["check-config"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown_key"));

    let missing = std::process::Command::new(harness::BIN)
        .args(["check-config", "--config", "/nonexistent/sidecar.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());

    let version = std::process::Command::new(harness::BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = std::process::Command::new(harness::BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("dead-letters"));
}

#[test]
fn sighup_reload_picks_up_a_new_endpoint_and_keeps_config_on_error() {
    let env = Env::new();
    let a = Receiver::ok();
    let b = Receiver::ok();
    env.write_config(&[Hook::new("a", &a.url("/"))]);
    let sc = env.start();
    let first = env.append("chat", "INBOX");
    env.ring();
    wait_for("a gets the first", LONG, || a.ids().contains(&first));

    // An invalid file is refused; the running config stays.
    std::fs::write(&env.config, "this is not toml").unwrap();
    sc.signal(Signal::SIGHUP);
    wait_for("reload error counted", LONG, || {
        sc.scrape().value("coi_errors_total", &[("stage", "reload")]) == 1.0
    });
    let second = env.append("chat", "INBOX");
    env.ring();
    wait_for("a still delivers", LONG, || a.ids().contains(&second));

    env.write_config(&[Hook::new("a", &a.url("/")), Hook::new("b", &b.url("/"))]);
    sc.signal(Signal::SIGHUP);
    wait_for("b registered", LONG, || sc.metrics_text().contains("endpoint=\"b\""));
    let third = env.append("chat", "INBOX");
    env.ring();
    wait_for("both get the third", LONG, || a.ids().contains(&third) && b.ids().contains(&third));
    assert!(!b.ids().contains(&first), "only events after the reload go to b");
}

#[test]
fn metrics_over_tcp_and_healthz() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = env.config_text(&[], "").replace(
        &format!("listen = \"unix:{}\"", env.metrics_socket.display()),
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&env.config, text).unwrap();
    let log = std::fs::File::create(env.dir.path().join("tcp.log")).unwrap();
    let mut child = std::process::Command::new(harness::BIN)
        .args(["--config"])
        .arg(&env.config)
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("healthz over tcp", LONG, || matches!(harness::http_get_tcp(addr, "/healthz"), Ok((200, _))));
    let (code, body) = harness::http_get_tcp(addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let m = harness::parse_metrics(&body);
    assert_eq!(m.value("coi_queue_depth_events", &[]), 0.0);
    let (code, _) = harness::http_get_tcp(addr, "/nope").unwrap();
    assert_eq!(code, 404);
}

#[test]
fn systemd_gets_ready_and_watchdog_pings() {
    let env = Env::new();
    env.write_config(&[]);
    let notify_path = env.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut child = std::process::Command::new(harness::BIN)
        .arg("--config")
        .arg(&env.config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !(seen.iter().any(|m| m == "READY=1") && seen.iter().any(|m| m == "WATCHDOG=1")) {
        if let Ok(n) = notify.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(seen.iter().any(|m| m == "READY=1"), "{seen:?}");
    assert!(seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");
    assert!(status.success());
    while let Ok(n) = notify.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if seen.last().is_some_and(|m| m == "STOPPING=1") {
            break;
        }
    }
    assert!(seen.iter().any(|m| m == "STOPPING=1"), "{seen:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let env = Env::new();
    let text = env.config_text(&[], "").replace("[logging]\n", "[logging]\nformat = \"json\"\n");
    std::fs::write(&env.config, text).unwrap();
    let sc = env.start();
    let status = sc.terminate();
    assert!(status.success());
    let log = std::fs::read_to_string(env.dir.path().join("sidecar.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
}

/// User + system CPU time of `pid` so far, in clock ticks (/proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn spool_symlinks_and_fifos_are_refused_without_spinning_or_hanging() {
    // Issue 12 item 9: every mail process can write the spool directory.
    // events.log -> /dev/zero made the intake spin, a FIFO made it hang.
    let env = Env::new();
    let rx = Receiver::ok();
    env.write_config(&[Hook::new("ops", &rx.url("/hook"))]);
    let first = message("chat", "INBOX");
    std::fs::write(env.spool.join("events.log.5"), coi_core::wire::encode_record(&Record::Message(first.clone()))).unwrap();
    nix::unistd::mkfifo(&env.spool.join("events.log.3"), nix::sys::stat::Mode::from_bits_truncate(0o660)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.spool.join("events.log")).unwrap();
    let sc = env.start();
    wait_for("the event of the regular rotated file", LONG, || rx.count() >= 1);
    assert_eq!(rx.requests()[0].header("webhook-id"), first.id);
    wait_for("the refusal counted", LONG, || {
        sc.scrape().value("coi_errors_total", &[("stage", "intake"), ("error_type", "spool_not_regular")]) >= 2.0
    });
    let pid = sc.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used < 50, "the sidecar used {used} ticks of CPU in 2 s (spinning?)");
    let log = sc.log();
    assert!(log.contains("events.log is a symbolic link") && log.contains("events.log.3 is a FIFO"), "{log}");
    assert!(env.spool.join("events.log.3").exists(), "the FIFO is left for the operator");
    // The operator removes them; the intake goes on where it was.
    std::fs::remove_file(env.spool.join("events.log")).unwrap();
    std::fs::remove_file(env.spool.join("events.log.3")).unwrap();
    let second = env.append("chat", "INBOX");
    env.ring();
    wait_for("the next event", LONG, || rx.count() >= 2);
    assert_eq!(rx.requests()[1].header("webhook-id"), second);
    assert_eq!(sc.healthz().0, 200);
}

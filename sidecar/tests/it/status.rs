//! `coi-sidecar status` against the real binary: a running daemon with a
//! healthy and a failing endpoint, the same state read with the daemon
//! stopped, spool lag, a daemon that hangs (SIGSTOP), and a state_dir the
//! daemon never used.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::{wait_for, Env, Hook};
use crate::receiver::Receiver;

const LONG: Duration = Duration::from_secs(30);

fn status_json(env: &Env) -> (Option<i32>, Value) {
    let out = env.cli(&["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn endpoint<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {v:#}"))
}

fn spool_size(env: &Env) -> u64 {
    std::fs::read_dir(&env.spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn status_shows_pid_health_queue_and_each_endpoints_last_outcomes() {
    let env = Env::new();
    let good = Receiver::ok();
    let bad = Receiver::with(|_, _| (503, vec![]));
    env.write_config(&[
        Hook::new("good", &good.url("/hook")),
        Hook::new("bad", &bad.url("/secret-path?token=s3cr3t")).extra("retry_schedule_secs = [60, 60]\ntimeout_secs = 5\n"),
    ]);
    let sc = env.start();
    for _ in 0..3 {
        env.append("chat", "COI/Chats");
    }
    env.ring();
    wait_for("3 deliveries to good, 3 first attempts at bad", LONG, || good.count() >= 3 && bad.count() >= 3);
    wait_for("the failures recorded", LONG, || {
        endpoint(&status_json(&env).1, "bad")["consecutive_failures"] == 3
    });

    let (code, v) = status_json(&env);
    assert_eq!(code, Some(0), "running and healthy: {v:#}");
    assert_eq!(v["daemon"]["running"], true);
    assert_eq!(v["daemon"]["pid"], sc.child.id());
    assert_eq!(v["daemon"]["healthz"]["status"], 200);
    let q = &v["queue"];
    assert_eq!(q["depth_events"], 3, "the 3 events still wait for bad: {q:#}");
    assert_eq!(q["pending_deliveries"], 3);
    assert!(q["oldest_event_age_secs"].as_f64().unwrap() >= 0.0);
    assert!(q["oldest_event"]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(q["dead_letters"], 0);

    let g = endpoint(&v, "good");
    assert_eq!((g["state"].as_str(), g["kind"].as_str(), g["configured"].as_bool()), (Some("ok"), Some("webhook"), Some(true)));
    assert_eq!((g["pending"].as_u64(), g["consecutive_failures"].as_u64()), (Some(0), Some(0)));
    assert!(g["last_success"]["from_now_secs"].as_f64().unwrap() <= 0.0);
    assert!(g["last_failure"].is_null());

    let b = endpoint(&v, "bad");
    assert_eq!(b["state"], "failing");
    assert_eq!((b["pending"].as_u64(), b["retrying"].as_u64(), b["max_attempts"].as_u64()), (Some(3), Some(3), Some(1)));
    assert!(b["last_success"].is_null());
    assert!(b["last_error"].as_str().unwrap().contains("503"), "{b:#}");
    let next = b["next_retry"]["from_now_secs"].as_f64().unwrap();
    assert!((30.0..=75.0).contains(&next), "next retry after the 60 s (±20 %) schedule step: {next}");
    let target = b["target"].as_str().unwrap();
    assert!(target.starts_with("http://127.0.0.1:") && !target.contains("secret") && !target.contains("s3cr3t"), "{target}");
    assert_eq!(v["spool"]["lag_bytes"], 0, "everything appended was taken in");

    let out = env.cli(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("running, pid {}", sc.child.id())), "{text}");
    assert!(text.contains("healthy (/healthz at unix:"), "{text}");
    assert!(text.contains("3 events pending (3 deliveries)"), "{text}");
    assert!(text.contains("bad [webhook]") && text.contains("FAILING") && text.contains("3 failures in a row"), "{text}");
    assert!(text.contains("good [webhook]") && text.contains(": OK"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    drop(sc);
}

#[test]
fn status_reads_the_queue_with_the_daemon_stopped_and_shows_spool_lag() {
    let env = Env::new();
    let bad = Receiver::with(|_, _| (404, vec![]));
    env.write_config(&[Hook::new("ops", &bad.url("/"))]);
    let sc = env.start();
    env.append("chat", "INBOX");
    env.ring();
    wait_for("the dead letter", LONG, || sc.scrape().value("coi_dead_letters_total", &[("endpoint", "ops")]) == 1.0);
    assert_eq!(sc.terminate().code(), Some(0));

    let before = spool_size(&env);
    env.append("chat", "INBOX");
    env.append("chat", "INBOX");
    let appended = spool_size(&env) - before;
    assert!(appended > 0);

    let (code, v) = status_json(&env);
    assert_eq!(code, Some(3), "not running: {v:#}");
    assert_eq!(v["daemon"]["running"], false);
    assert!(v["daemon"]["pid"].is_null() && v["daemon"]["healthz"].is_null());
    assert_eq!(v["queue"]["dead_letters"], 1);
    let e = endpoint(&v, "ops");
    assert_eq!((e["state"].as_str(), e["dead_letters"].as_u64(), e["consecutive_failures"].as_u64()), (Some("failing"), Some(1), Some(1)));
    assert!(e["last_error"].as_str().unwrap().contains("404"), "{e:#}");
    assert_eq!(v["spool"]["lag_bytes"], appended, "what the plugin appended while the daemon was down: {:#}", v["spool"]);

    let text = String::from_utf8_lossy(&env.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("NOT RUNNING"), "{text}");
    assert!(text.contains(&format!("{appended} bytes not yet taken in")), "{text}");

    // Reading never changed anything the daemon needs: it starts, takes
    // the two events in, and the lag is gone.
    let sc = env.start();
    wait_for("the lag taken in", LONG, || status_json(&env).1["spool"]["lag_bytes"] == 0);
    wait_for("two more dead letters", LONG, || sc.scrape().value("coi_dead_letters_total", &[("endpoint", "ops")]) == 2.0);
    let (code, v) = status_json(&env);
    assert_eq!(code, Some(0));
    assert_eq!(endpoint(&v, "ops")["dead_letters"], 3);
}

#[test]
fn a_hung_daemon_is_reported_unhealthy_within_the_timeout() {
    let env = Env::new();
    env.write_config(&[]);
    let sc = env.start();
    sc.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let (code, v) = status_json(&env);
    let took = started.elapsed();
    sc.signal(Signal::SIGCONT);
    assert_eq!(code, Some(4), "{v:#}");
    assert_eq!(v["daemon"]["running"], true);
    assert!(v["daemon"]["healthz"]["status"].is_null(), "{v:#}");
    assert!(took < Duration::from_secs(10), "status took {took:?}");
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 0);
    drop(sc);
}

#[test]
fn status_of_a_state_dir_never_used_says_so() {
    let env = Env::new();
    env.write_config(&[Hook::new("ops", "http://127.0.0.1:9/")]);
    let (code, v) = status_json(&env);
    assert_eq!(code, Some(3));
    assert!(v["queue"].is_null());
    assert!(v["queue_error"].as_str().unwrap().contains("no queue database"), "{v:#}");
    let e = endpoint(&v, "ops");
    assert_eq!((e["state"].as_str(), e["pending"].as_u64()), (Some("idle"), Some(0)));
    assert!(!env.state.join("queue.sqlite3").exists(), "status created no database");
    let out = env.cli(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("queue:     cannot be read: ") && text.contains("no queue database at "), "{text}");
}

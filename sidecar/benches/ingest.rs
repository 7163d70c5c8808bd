//! Ingest and delivery benchmark of the real `coi-sidecar` binary.
//!
//! Run: `cargo bench -p coi-sidecar --bench ingest` (N defaults to 50,000;
//! `COI_BENCH_EVENTS=n` overrides).
//!
//! 1. ingest: N records appended with the plugin's `SpoolWriter` while the
//!    sidecar is down; the sidecar starts with one endpoint that is a black
//!    hole (a listener that never answers), so every event becomes a durable
//!    queue row and stays there. Measured: from process start to the moment
//!    `coi_intake_events_total` (incremented only after each commit) reaches
//!    N; printed as events/s.
//! 2. ingest + delivery: the same with a healthy local receiver (200 at
//!    once); measured until every event id arrived.
//!
//! 3. paced: 500 events/s (record + doorbell each, `COI_BENCH_PACED_EVENTS`
//!    of them, default 5,000) into a running sidecar, delivered to a healthy
//!    receiver: the steady-state cost per event, when nothing batches by
//!    itself.
//!
//! All print the sidecar's peak RSS (VmHWM from /proc/<pid>/status) and
//! its CPU time (utime + stime from /proc/<pid>/stat) per event.

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../tests/it/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::time::{Duration, Instant};

use harness::{wait_for, Env, Hook};

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of `pid` in seconds (from /proc/<pid>/stat; clock ticks
/// assumed to be 100/s, the Linux USER_HZ).
fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the ")" of comm: state is field 3; utime/stime are 14/15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn prepare(env: &Env, hooks: &[Hook], n: usize) -> Duration {
    let text = env
        .config_text(hooks, "")
        .replace("spool_rotate_bytes = 65536", "spool_rotate_bytes = 67108864")
        .replace("level = \"debug\"", "level = \"info\"");
    std::fs::write(&env.config, text).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        env.append("chat", "INBOX");
    }
    t.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list
    }
    let n: usize = std::env::var("COI_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);

    // 1. Ingest into the durable queue, endpoint black-holed.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = Env::new();
    let appended = prepare(
        &env,
        &[Hook::new("blackhole", &format!("http://{}/", hole.local_addr().unwrap())).extra("timeout_secs = 30\nconcurrency = 4")],
        n,
    );
    println!(
        "append: {n} records with SpoolWriter in {:.3} s ({:.0} appends/s)",
        appended.as_secs_f64(),
        n as f64 / appended.as_secs_f64()
    );
    let t = Instant::now();
    let sc = env.start();
    let committed = |sc: &harness::Sidecar| -> f64 {
        let m = sc.scrape();
        ["chat", "not-chat", "group-chat", "read-receipt", "other"]
            .iter()
            .map(|k| m.value("coi_intake_events_total", &[("kind", k)]))
            .sum()
    };
    wait_for("ingest", Duration::from_secs(300), || committed(&sc) >= n as f64);
    let took = t.elapsed();
    let depth = sc.scrape().value("coi_queue_depth_events", &[]);
    let hwm = vm_hwm_kib(sc.child.id());
    let cpu = cpu_secs(sc.child.id());
    println!(
        "ingest: {n} events into the durable queue in {:.3} s = {:.0} events/s (queue depth {depth}, includes process start)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!("ingest: peak RSS {:.1} MiB", hwm as f64 / 1024.0);
    println!("ingest: sidecar CPU (utime+stime) {cpu:.2} s = {:.1} us/event", cpu * 1e6 / n as f64);
    drop(sc);
    drop(hole);

    // 2. Ingest and deliver to a healthy receiver.
    let rx = receiver::Receiver::ok();
    let env = Env::new();
    prepare(&env, &[Hook::new("healthy", &rx.url("/")).extra("concurrency = 32")], n);
    let t = Instant::now();
    let sc = env.start();
    let mut peak = 0;
    wait_for("delivery", Duration::from_secs(600), || {
        peak = peak.max(vm_hwm_kib(sc.child.id()));
        rx.count() >= n
    });
    let took = t.elapsed();
    peak = peak.max(vm_hwm_kib(sc.child.id()));
    let cpu = cpu_secs(sc.child.id());
    println!(
        "deliver: {n} events ingested and delivered (signed POST, 2xx) in {:.3} s = {:.0} events/s; distinct ids {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        rx.ids().len()
    );
    println!("deliver: peak RSS {:.1} MiB", peak as f64 / 1024.0);
    println!("deliver: sidecar CPU (utime+stime) {cpu:.2} s = {:.1} us/event", cpu * 1e6 / n as f64);
    drop(sc);

    // 3. Paced: the sidecar already running, one record plus a doorbell
    //    every 2 ms (500 events/s, like the plugin under steady load), each
    //    delivered to a healthy receiver. CPU counted from the first append
    //    to the last delivery.
    let paced: usize = std::env::var("COI_BENCH_PACED_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let rx = receiver::Receiver::ok();
    let env = Env::new();
    prepare(&env, &[Hook::new("healthy", &rx.url("/")).extra("concurrency = 32")], 0);
    let sc = env.start();
    sc.wait_healthy();
    let cpu0 = cpu_secs(sc.child.id());
    let t = Instant::now();
    for i in 0..paced {
        env.append("chat", "INBOX");
        env.ring();
        let next = Duration::from_micros(2_000 * (i as u64 + 1));
        if let Some(wait) = next.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    wait_for("paced delivery", Duration::from_secs(120), || rx.count() >= paced);
    let took = t.elapsed();
    let cpu = cpu_secs(sc.child.id()) - cpu0;
    println!(
        "paced: {paced} events at 500/s ingested and delivered in {:.3} s; sidecar CPU {cpu:.2} s = {:.1} us/event",
        took.as_secs_f64(),
        cpu * 1e6 / paced as f64
    );
}

#!/usr/bin/python3
"""Event pipeline benchmark, end to end: real Dovecot + coi plugin -> coi-sidecar -> HTTP receiver.

One command, one run, four figures (the event-pipeline issue's benchmarks):

  (i)   latency from the delivery commit (the event's ``ts_ms``, taken in the
        lmtp process) to the webhook's 2xx (the receiver's answer), p50/p99,
        at a steady rate (default 500 msgs/s) over LMTP for ~20 s; the
        sidecar's own ``coi_delivery_latency_seconds`` histogram is shown beside;
  (ii)  LMTP throughput with the webhook endpoint black-holed (accepts, never
        answers) against healthy, interleaved rounds on the same Dovecot and
        sidecar; ratio (target >= 0.95: delivery never waits on the sidecar);
  (iii) the sidecar's peak RSS (VmHWM of /proc/<pid>/status) over the whole
        run (target < 50 MiB);
  (iv)  LMTP throughput with events on against events off (the same plugin,
        ``coi_spool_path`` pointing nowhere), interleaved rounds on two
        otherwise identical Dovecot instances: the cost of event emission;
        a third variant runs "on" with the sidecar SIGSTOPped for the round,
        so the figure separates the plugin's own cost (append + doorbell) from
        the sidecar and receiver competing for the same CPUs.

The receiver runs in its own process (``ReceiverProcess``), so the load
generator's threads cannot starve it. Every figure is verified: every message delivered in (i), (ii) and (iv,
"on") must reach the receiver as a 2xx-answered webhook (distinct event ids =
messages), and the "off" instance must produce no events. The message stream
is half plain mail, half COI chats to a COI-enabled user (chats are routed to
COI/Chats); every round delivers to a fresh user.

Usage: /usr/bin/python3 bench/events_e2e.py [--rate 500] [--seconds 20]
       [--rounds 5] [--messages 1500] [--connections 4] [--latency-only]
Exit status: 0 ran and verified (targets may still be missed: see the table),
1 verification failed (events lost), 2 setup failure.
Needs target/release/libcoi_plugin.so and target/release/coi-sidecar
(``cargo build --release``), Debian's dovecot packages and python3-prometheus-client.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402
from tests.harness.paths import find_binary  # noqa: E402
from tests.harness.receiver import ReceiverProcess  # noqa: E402
from tests.harness.sidecar import Metrics, SidecarProcess, Webhook  # noqa: E402

CHATS = "COI/Chats"
ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
#: A spool directory that does not exist: the plugin then emits no events.
NO_SPOOL = "/nonexistent/coi-bench-spool"
LATENCY_P99_TARGET_MS = 50.0
BLACKHOLE_RATIO_TARGET = 0.95
RSS_TARGET_MIB = 50.0


class VerificationError(AssertionError):
    pass


# --------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def build_stream(dc: DovecotInstance, user: str, n: int) -> list[M.TestMessage]:
    to = dc.address(user)
    return [M.plain_mail(to=to) if i % 2 == 0 else M.coi_chat(to=to) for i in range(n)]


def burst(dc: DovecotInstance, user: str, n: int, connections: int) -> float:
    """Deliver n messages to ``user`` as fast as ``connections`` sessions go; msgs/s."""
    rcpt = dc.address(user)
    jobs = [(m.raw, rcpt) for m in build_stream(dc, user, n)]
    results, elapsed = dc.lmtp_deliver_timed(jobs, connections)
    errors = [f"{r.code} {r.message}" for r in results if not r.ok]
    if errors or len(results) != n:
        raise VerificationError(f"{len(errors)} LMTP deliveries to {user} failed: {errors[:3]}")
    return n / elapsed


def paced(dc: DovecotInstance, users: list[str], rate: float, seconds: float,
          connections: int) -> dict:
    """Deliver rate x seconds messages on a fixed schedule (message i at t0 + i/rate)."""
    n = int(rate * seconds)
    msgs = []
    for i in range(n):
        u = users[i % len(users)]
        msgs.append((M.plain_mail(to=dc.address(u)) if i % 2 == 0
                     else M.coi_chat(to=dc.address(u)), dc.address(u)))
    sessions = [dc.lmtp_session() for _ in range(connections)]
    lock = threading.Lock()
    nxt = [0]
    lag: list[float] = [0.0] * n
    txn: list[float] = [0.0] * n
    errors: list[str] = []
    t0 = time.perf_counter() + 0.2

    def worker(c: int) -> None:
        s = sessions[c]
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            target = t0 + i / rate
            now = time.perf_counter()
            if target > now:
                time.sleep(target - now)
            start = time.perf_counter()
            lag[i] = start - target
            try:
                res = s.deliver(msgs[i][0].raw, [msgs[i][1]])[0]
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
                return
            txn[i] = time.perf_counter() - start
            if not res.ok:
                errors.append(f"{res.code} {res.message}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for s in sessions:
        s.close()
    if errors:
        raise VerificationError(f"{len(errors)} paced LMTP deliveries failed: {errors[:3]}")
    return {"n": n, "elapsed": elapsed, "rate": n / elapsed,
            "message_ids": {f"<{m.message_id}>" for m, _ in msgs},
            "lag_p99_ms": pct(lag, 99) * 1000, "txn_p50_ms": pct(txn, 50) * 1000,
            "txn_p99_ms": pct(txn, 99) * 1000}


def wait_drained(sc: SidecarProcess, rx: ReceiverProcess, want_ids: int,
                 timeout: float = 120.0) -> None:
    """Until the receiver has ``want_ids`` distinct delivered ids and the queue is empty."""
    deadline = time.monotonic() + timeout
    while True:
        have = rx.delivered_count()
        depth = sc.metrics().value("coi_queue_depth_events")
        if have >= want_ids and depth == 0:
            return
        if time.monotonic() > deadline:
            raise VerificationError(f"events lost or stuck: {have} of {want_ids} delivered, "
                                    f"queue depth {depth}\n{rx.log_tail(5)}\n{sc.log_tail(20)}")
        time.sleep(0.1)


class RssSampler(threading.Thread):
    """Samples the sidecar's VmRSS every 0.25 s (VmHWM is read at the end too)."""

    def __init__(self, sc: SidecarProcess):
        super().__init__(daemon=True)
        self.sc = sc
        self.max_kib = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.25):
            self.max_kib = max(self.max_kib, self.sc.rss_kib("VmRSS"))


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(vals) - idle) / tck, sum(vals) / tck


class CpuMeter:
    """CPU use of the machine and of named processes between start() and stop()."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def start(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.m0 = machine_busy_seconds()
        self.p0 = {k: proc_cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        """Shares of one core (1.0 = one core busy), 'machine' = all cores together."""
        wall = time.perf_counter() - self.t0
        m1 = machine_busy_seconds()
        out = {k: (proc_cpu_seconds(p) - self.p0[k]) / wall for k, p in self.pids.items()}
        out["machine"] = (m1[0] - self.m0[0]) / wall
        out["rest"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
        return out


def histogram_delta(before: Metrics, after: Metrics, name: str) -> Metrics:
    """A Metrics holding only ``name``'s histogram, as after - before."""
    b = {s.labels.get("le"): s.value for s in before.samples if s.name == name + "_bucket"}
    lines = []
    for s in after.samples:
        if s.name == name + "_bucket":
            le = s.labels["le"]
            lines.append(f'{name}_bucket{{le="{le}"}} {s.value - b.get(le, 0.0)}')
    lines.append(f"{name}_count {after.value(name + '_count') - before.value(name + '_count')}")
    lines.append(f"{name}_sum {after.value(name + '_sum') - before.value(name + '_sum')}")
    return Metrics.parse(f"# TYPE {name} histogram\n" + "\n".join(lines) + "\n")


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        dv = subprocess.run([find_binary("dovecot"), "--version"], capture_output=True,
                            text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        dv = "?"
    return (f"{os.cpu_count()} CPU(s) {cpu}; {platform.system()} {platform.release()}; "
            f"Dovecot {dv}; Python {platform.python_version()}")


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=500.0, help="paced msgs/s for (i)")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of (i)")
    ap.add_argument("--paced-connections", type=int, default=8,
                    help="LMTP sessions used to hold the pace in (i)")
    ap.add_argument("--latency-users", type=int, default=40,
                    help="recipients in (i), round-robin (keeps folders small)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per variant in (ii), (iv)")
    ap.add_argument("--messages", type=int, default=1500,
                    help="messages per round in (ii), (iv)")
    ap.add_argument("--connections", type=int, default=4, help="LMTP sessions in (ii), (iv)")
    ap.add_argument("--webhook-concurrency", type=int, default=32,
                    help="the endpoint's `concurrency` (requests in flight; default 32 as shipped)")
    ap.add_argument("--dump", metavar="CSV",
                    help="write (i)'s per-event ts_ms, arrival and 2xx times (ms) to CSV")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--latency-only", action="store_true",
                    help="run (i) and the RSS only (the latency figures at --rate)")
    args = ap.parse_args(argv)

    lat_users = [f"lat_{i}" for i in range(args.latency_users)]
    ii_users = [f"{m}_{r}" for r in range(args.rounds) for m in ("healthy", "blackhole")]
    on_users = [f"{v}_{r}" for r in range(args.rounds) for v in ("on", "paused")]
    off_users = [f"off_{r}" for r in range(args.rounds)]
    users_on = {u: ACTIVE for u in ["warm", *lat_users, *ii_users, *on_users]}
    users_off = {u: ACTIVE for u in ["warm", *off_users]}

    rx = ReceiverProcess()  # own process: not starved by the LMTP client threads
    sc = dc_on = dc_off = None
    try:
        sc = SidecarProcess([Webhook("bench", rx.url("/hook"), timeout_secs=10,
                                     concurrency=args.webhook_concurrency,
                                     retry_schedule_secs=(1, 2, 5, 10, 30, 60))],
                            scan_interval_ms=1000, rotate_bytes=64 << 20, keep_tmp=args.keep)
        dc_on = DovecotInstance(plugin=True, users=users_on, keep_tmp=args.keep,
                                plugin_settings=sc.plugin_settings())
        dc_off = DovecotInstance(plugin=True, users=users_off, keep_tmp=args.keep,
                                 plugin_settings={"coi_spool_path": NO_SPOOL,
                                                  "coi_sidecar_socket": str(sc.socket_path)})
        dc_on.start()
        dc_off.start()
        sc.start()
        for dc, users in ((dc_on, users_on), (dc_off, users_off)):
            for u in users:  # no folder creation inside timed parts
                dc.doveadm.run("mailbox", "create", "-s", "-u", u, CHATS)
    except Exception as exc:  # noqa: BLE001
        print(f"setup failed: {exc}", file=sys.stderr)
        for x in (sc, dc_on, dc_off):
            if x is not None:
                x.failed = True
                x.close() if isinstance(x, SidecarProcess) else x.stop()
        rx.close()
        return 2

    rss = RssSampler(sc)
    rss.start()
    status = 0
    res: dict = {}
    expected_ids = 0
    try:
        print(f"machine: {machine()}")
        print(f"sidecar pid {sc.pid}, tree {sc.root}; Dovecot on {dc_on.tmpdir}, "
              f"off {dc_off.tmpdir}", flush=True)
        # warm-up: spawn lmtp processes, open the queue, connect the HTTP client
        for dc in (dc_on, dc_off):
            burst(dc, "warm", 200, args.connections)
        expected_ids += 200
        wait_drained(sc, rx, expected_ids)

        # (i) latency at a steady rate
        print(f"(i) {args.rate:.0f} msgs/s for {args.seconds:.0f}s over "
              f"{args.paced_connections} LMTP sessions ...", flush=True)
        before = sc.metrics()
        mark = rx.count()
        cpu = CpuMeter({"sidecar": sc.pid, "receiver": rx.pid, "load generator": os.getpid()})
        cpu.start()
        p = paced(dc_on, lat_users, args.rate, args.seconds, args.paced_connections)
        shares = cpu.stop()
        expected_ids += p["n"]
        wait_drained(sc, rx, expected_ids)
        after = sc.metrics()
        first_ok: dict[str, dict] = {}
        for r in rx.summaries(mark):
            if r["status"] is not None and 200 <= r["status"] < 300 \
                    and r["webhook_id"] not in first_ok:
                first_ok[r["webhook_id"]] = r
        lat_2xx, lat_arrival, seen = [], [], set()
        for r in first_ok.values():
            seen.add(r["message_id"])
            lat_2xx.append(r["answered_at"] * 1000 - r["ts_ms"])
            lat_arrival.append(r["at"] * 1000 - r["ts_ms"])
        if args.dump:
            with open(args.dump, "w") as f:
                f.write("ts_ms,arrival_ms,answered_ms\n")
                for r in sorted(first_ok.values(), key=lambda r: r["ts_ms"]):
                    f.write(f"{r['ts_ms']},{r['at'] * 1000:.1f},{r['answered_at'] * 1000:.1f}\n")
        missing = p["message_ids"] - seen
        if missing:
            raise VerificationError(f"(i): {len(missing)} of {p['n']} events never delivered")
        hist = histogram_delta(before, after, "coi_delivery_latency_seconds")
        sc_cpu = (after.value("process_cpu_seconds_total")
                  - before.value("process_cpu_seconds_total")) / p["elapsed"]
        res["i"] = dict(p, p50=pct(lat_2xx, 50), p90=pct(lat_2xx, 90), p99=pct(lat_2xx, 99),
                        max=max(lat_2xx), arr_p50=pct(lat_arrival, 50),
                        arr_p99=pct(lat_arrival, 99),
                        h_p50=hist.histogram_quantile("coi_delivery_latency_seconds", .5) * 1000,
                        h_p99=hist.histogram_quantile("coi_delivery_latency_seconds", .99) * 1000,
                        h_count=hist.value("coi_delivery_latency_seconds_count"),
                        sc_cpu=sc_cpu)
        i = res["i"]
        print(f"    achieved {i['rate']:.1f} msgs/s ({i['n']} msgs in {i['elapsed']:.1f}s), "
              f"sender lag p99 {i['lag_p99_ms']:.1f} ms, LMTP txn p50/p99 "
              f"{i['txn_p50_ms']:.1f}/{i['txn_p99_ms']:.1f} ms", flush=True)
        print(f"    commit->2xx p50 {i['p50']:.1f} ms p90 {i['p90']:.1f} p99 {i['p99']:.1f} "
              f"max {i['max']:.1f}; commit->request arrival p50 {i['arr_p50']:.1f} "
              f"p99 {i['arr_p99']:.1f}; sidecar histogram p50~{i['h_p50']:.1f} "
              f"p99~{i['h_p99']:.1f} ms ({i['h_count']:.0f} obs.); sidecar CPU "
              f"{i['sc_cpu']:.0%} of one core", flush=True)
        print("    CPU while pacing (1.0 = one core; rest = Dovecot + kernel): "
              + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
              + f" of {os.cpu_count()} cores", flush=True)
        res["i"]["cpu"] = shares

        if not args.latency_only:
            # (ii) black-holed vs healthy endpoint, interleaved
            print(f"(ii) black-holed vs healthy: {args.rounds} rounds x {args.messages} msgs over "
                  f"{args.connections} sessions ...", flush=True)
            rates = {"healthy": [], "blackhole": []}
            for r in range(args.rounds):
                order = ("healthy", "blackhole") if r % 2 == 0 else ("blackhole", "healthy")
                for mode in order:
                    if mode == "blackhole":
                        rx.blackhole()
                    else:
                        rx.ok()
                    mark = rx.count()
                    rate = burst(dc_on, f"{mode}_{r}", args.messages, args.connections)
                    rates[mode].append(rate)
                    expected_ids += args.messages
                    held = sum(1 for q in rx.summaries(mark) if q["status"] is None)
                    if mode == "blackhole":
                        depth = sc.metrics().value("coi_queue_depth_events")
                        rx.ok()  # release: the backlog is delivered before the next round
                        print(f"    round {r + 1} {mode:9}: {rate:7.1f} msgs/s (queue depth "
                              f"{depth:.0f}, {held} requests held unanswered)", flush=True)
                    else:
                        print(f"    round {r + 1} {mode:9}: {rate:7.1f} msgs/s", flush=True)
                    wait_drained(sc, rx, expected_ids)
            res["ii"] = {k: statistics.median(v) for k, v in rates.items()}
            res["ii_rounds"] = rates

            # (iv) events on vs off, interleaved. "on" runs the whole pipeline on
            # this machine (sidecar + receiver compete with Dovecot for the CPUs);
            # "on, sidecar stopped" SIGSTOPs the sidecar for the round: the plugin
            # still appends and rings (the socket queue fills, sends fail with
            # EAGAIN), which isolates the cost inside the delivering process.
            print(f"(iv) events off / on / on with the sidecar stopped: {args.rounds} rounds x "
                  f"{args.messages} msgs ...", flush=True)
            variants = ("off", "on", "paused")
            rates = {v: [] for v in variants}
            rx.ok()
            for r in range(args.rounds):
                order = variants[r % 3:] + variants[:r % 3]
                for mode in order:
                    dc = dc_off if mode == "off" else dc_on
                    if mode == "paused":
                        sc.signal(signal.SIGSTOP)
                    try:
                        rate = burst(dc, f"{mode}_{r}", args.messages, args.connections)
                    finally:
                        if mode == "paused":
                            sc.signal(signal.SIGCONT)
                    rates[mode].append(rate)
                    if mode != "off":
                        expected_ids += args.messages
                    wait_drained(sc, rx, expected_ids)
                    print(f"    round {r + 1} events {mode:6}: {rate:7.1f} msgs/s", flush=True)
            res["iv"] = {k: statistics.median(v) for k, v in rates.items()}
            res["iv_rounds"] = rates
        # the "off" instance emitted nothing: every delivered id is accounted for
        time.sleep(1.5)
        got = rx.delivered_count()
        if got != expected_ids:
            raise VerificationError(f"{got} distinct events delivered, expected {expected_ids} "
                                    "(the events-off instance must emit none)")
        rss.stop_flag.set()
        res["hwm_kib"] = sc.rss_kib("VmHWM")
        res["rss_kib"] = rss.max_kib
        res["total"] = expected_ids
        res["dups"] = sum(1 for q in rx.summaries(0)
                          if q["status"] is not None and 200 <= q["status"] < 300) - got
        for dc in (dc_on, dc_off):
            dc.assert_no_panic_or_fatal()
    except (VerificationError, AssertionError) as exc:
        print(f"VERIFICATION FAILED: {exc}", file=sys.stderr)
        status = 1
        sc.failed = dc_on.failed = dc_off.failed = True
    finally:
        rss.stop_flag.set()
        sc.close()
        rx.close()
        dc_on.stop()
        dc_off.stop()
    if status == 0 and not args.latency_only:
        report(res, args)
    return status


def report(res: dict, args) -> None:
    i, ii, iv = res["i"], res["ii"], res["iv"]
    bh_ratio = ii["blackhole"] / ii["healthy"]
    hwm_mib = res["hwm_kib"] / 1024

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ("(i) achieved LMTP rate (paced)", f"{i['rate']:.0f} msgs/s",
         f"{args.rate:.0f} msgs/s", met(i["rate"] >= 0.97 * args.rate)),
        ("(i) commit -> webhook 2xx p50", f"{i['p50']:.1f} ms", "", ""),
        ("(i) commit -> webhook 2xx p99", f"{i['p99']:.1f} ms",
         f"< {LATENCY_P99_TARGET_MS:.0f} ms", met(i["p99"] < LATENCY_P99_TARGET_MS)),
        ("(i) sidecar histogram p50 / p99 (bucket est.)",
         f"{i['h_p50']:.1f} / {i['h_p99']:.1f} ms", "", ""),
        ("(i) CPU: machine / sidecar (cores)",
         f"{i['cpu']['machine']:.2f}/{os.cpu_count()} / {i['cpu']['sidecar']:.2f}", "", ""),
        ("(ii) LMTP healthy endpoint (median)", f"{ii['healthy']:.0f} msgs/s", "", ""),
        ("(ii) LMTP black-holed endpoint (median)", f"{ii['blackhole']:.0f} msgs/s", "", ""),
        ("(ii) black-holed / healthy", f"{bh_ratio:.3f}", f">= {BLACKHOLE_RATIO_TARGET}",
         met(bh_ratio >= BLACKHOLE_RATIO_TARGET)),
        ("(iii) sidecar peak RSS (VmHWM)", f"{hwm_mib:.1f} MiB", f"< {RSS_TARGET_MIB:.0f} MiB",
         met(hwm_mib < RSS_TARGET_MIB)),
        ("(iv) LMTP events off (median)", f"{iv['off']:.0f} msgs/s", "", ""),
        ("(iv) LMTP events on (median)", f"{iv['on']:.0f} msgs/s", "", ""),
        ("(iv) LMTP events on, sidecar stopped (median)", f"{iv['paused']:.0f} msgs/s", "", ""),
        ("(iv) on / off (whole pipeline on this box)", f"{iv['on'] / iv['off']:.3f}", "", ""),
        ("(iv) on, sidecar stopped / off (emission)", f"{iv['paused'] / iv['off']:.3f}", "", ""),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    print(f"| {'figure':<{w}} | {'value':>22} | {'target':>12} | {'':6} |")
    print(f"|{'-' * (w + 2)}|{'-' * 24}|{'-' * 14}|{'-' * 8}|")
    for name, value, target, verdict in rows:
        print(f"| {name:<{w}} | {value:>22} | {target:>12} | {verdict:6} |")
    print()
    print(f"rounds (ii) healthy {['%.0f' % x for x in res['ii_rounds']['healthy']]} "
          f"black-holed {['%.0f' % x for x in res['ii_rounds']['blackhole']]}; "
          "(iv) " + "; ".join(f"{k} {['%.0f' % x for x in v]}"
                              for k, v in res["iv_rounds"].items()))
    print(f"verified: {res['total']} events delivered (distinct ids; {res['dups']} duplicate "
          f"deliveries), none from the events-off instance; max sampled VmRSS "
          f"{res['rss_kib'] / 1024:.1f} MiB")
    print("command: /usr/bin/python3 bench/events_e2e.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())

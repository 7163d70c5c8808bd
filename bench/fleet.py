#!/usr/bin/python3
"""Fleet mode benchmark (docs/fleet.md): local SQLite queue vs NATS JetStream with dispatchers.

Real parts: a 3-node ``nats-server`` cluster on loopback ports (stream
replicas 3), one Dovecot with the coi plugin, its ``coi-sidecar`` (restarted
between modes with ``[queue] engine`` = ``sqlite`` or ``jetstream``), up to
four ``coi-sidecar dispatch`` processes, and the receiver in its own process
(``ReceiverProcess``, answers 200 at once). One run, figures side by side:

  (a) drain throughput: N events waiting, then the senders start; events/s
      from the senders' start to the last event's 2xx. Local: the events wait
      in the spool with the sidecar stopped (so the figure includes its
      intake); JetStream: they wait in the stream (published by the sidecar
      with no dispatcher running), then 1, 2 or 4 dispatchers start;
  (b) delivery commit (the event's ``ts_ms``) to webhook 2xx, p50/p99, at a
      steady rate (default 500 msgs/s over LMTP) in both modes (JetStream: 2
      dispatchers);
  (c) peak RSS (VmHWM) of the local sidecar, the publishing sidecar and each
      dispatcher.

Every figure is verified: each message must reach the receiver as a
2xx-answered webhook. Usage: /usr/bin/python3 bench/fleet.py [--events 3000]
[--rate 500] [--seconds 10]. Needs target/release/{libcoi_plugin.so,coi-sidecar}
and Debian's nats-server. The machine is shared: the load average before and
after is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.events_e2e import VerificationError, build_stream, machine, paced, pct  # noqa: E402
from tests.harness import DovecotInstance  # noqa: E402
from tests.harness.nats import NatsCluster  # noqa: E402
from tests.harness.receiver import ReceiverProcess  # noqa: E402
from tests.harness.sidecar import SidecarProcess, Webhook  # noqa: E402

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
CHATS = "COI/Chats"


def fleet_toml(cluster: NatsCluster) -> str:
    urls = ", ".join(f'"{u}"' for u in cluster.urls())
    return ("[queue]\nengine = \"jetstream\"\n\n[jetstream]\n"
            f"servers = [{urls}]\nstream = \"BENCH\"\ndead_letter_stream = \"BENCH_DEAD\"\n"
            "replicas = 3\n")


def wait_delivered(rx: ReceiverProcess, want: int, timeout: float = 300.0) -> float:
    """Until ``want`` distinct ids were answered 2xx; returns the monotonic time seen."""
    deadline = time.monotonic() + timeout
    while True:
        have = rx.delivered_count()
        if have >= want:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise VerificationError(f"only {have} of {want} events delivered\n{rx.log_tail(5)}")
        time.sleep(0.02)


def deliver(dc: DovecotInstance, user: str, n: int) -> None:
    rcpt = dc.address(user)
    jobs = [(m.raw, rcpt) for m in build_stream(dc, user, n)]
    results, _ = dc.lmtp_deliver_timed(jobs, 4)
    bad = [r for r in results if not r.ok]
    if bad or len(results) != n:
        raise VerificationError(f"{len(bad)} LMTP deliveries failed")


def latency(rx: ReceiverProcess, mark: int, ids: set[str]) -> dict:
    first: dict[str, dict] = {}
    for r in rx.summaries(mark):
        if r["status"] is not None and 200 <= r["status"] < 300 and r["webhook_id"] not in first:
            first[r["webhook_id"]] = r
    seen = {r["message_id"] for r in first.values()}
    if ids - seen:
        raise VerificationError(f"{len(ids - seen)} paced events never delivered")
    lat = [r["answered_at"] * 1000 - r["ts_ms"] for r in first.values() if r["message_id"] in ids]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "n": len(lat)}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000, help="events per drain round (a)")
    ap.add_argument("--rate", type=float, default=500.0, help="paced msgs/s for (b)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of (b) per mode")
    ap.add_argument("--dispatchers", default="1,2,4", help="dispatcher counts for (a)")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.dispatchers.split(",")]
    users = {u: ACTIVE for u in ["warm", "lat_local", "lat_fleet", "local",
                                 *[f"fleet_{k}" for k in counts]]}

    rx = ReceiverProcess()
    cluster = NatsCluster(3)
    hooks = [Webhook("bench", rx.url("/hook"), timeout_secs=10, concurrency=32,
                     retry_schedule_secs=(1, 2, 5, 10, 30, 60))]
    sc = SidecarProcess(hooks, scan_interval_ms=1000, rotate_bytes=64 << 20)
    dispatchers = [SidecarProcess(hooks, extra_toml=fleet_toml(cluster), command="dispatch")
                   for _ in range(max(counts))]
    dc = DovecotInstance(plugin=True, users=users, plugin_settings=sc.plugin_settings())
    res: dict = {"drain": {}, "latency": {}, "rss_mib": {}}
    status = 0
    try:
        print(f"machine: {machine()}; load average before: {loadavg()}", flush=True)
        cluster.start()
        dc.start()
        for u in users:
            dc.doveadm.run("mailbox", "create", "-s", "-u", u, CHATS)
        expected = 0

        # ---- local mode
        sc.extra_toml = ""
        sc.start()
        deliver(dc, "warm", 200)
        expected += 200
        wait_delivered(rx, expected)
        mark = rx.count()
        p = paced(dc, ["lat_local"], args.rate, args.seconds, 8)
        expected += p["n"]
        wait_delivered(rx, expected)
        res["latency"]["local"] = dict(latency(rx, mark, p["message_ids"]), rate=p["rate"])
        sc.stop()
        deliver(dc, "local", args.events)  # waits in the spool
        t0 = time.monotonic()
        sc.start()
        expected += args.events
        t1 = wait_delivered(rx, expected)
        res["drain"]["local SQLite"] = args.events / (t1 - t0)
        res["rss_mib"]["local sidecar"] = sc.rss_kib() / 1024
        sc.stop()
        print(f"  local: drain {res['drain']['local SQLite']:.0f} events/s; "
              f"latency {res['latency']['local']}", flush=True)

        # ---- JetStream mode: the same sidecar publishes
        sc.extra_toml = fleet_toml(cluster)
        sc.start()
        for k in counts:
            deliver(dc, f"fleet_{k}", args.events)  # published, no dispatcher yet
            deadline = time.monotonic() + 120
            while (cluster.stream_info("BENCH") or {}).get("state", {}).get("messages", 0) < args.events:
                if time.monotonic() > deadline:
                    raise VerificationError("events did not reach the stream")
                time.sleep(0.1)
            st = (cluster.stream_info("BENCH") or {}).get("state") or {}
            if st.get("messages"):
                res["bytes_per_event"] = st["bytes"] / st["messages"]
            t0 = time.monotonic()
            for d in dispatchers[:k]:
                d.start()
            expected += args.events
            t1 = wait_delivered(rx, expected)
            res["drain"][f"JetStream, {k} dispatcher(s)"] = args.events / (t1 - t0)
            print(f"  JetStream {k}: drain {args.events / (t1 - t0):.0f} events/s", flush=True)
            if k == 2 or k == max(counts):
                for i, d in enumerate(dispatchers[:k]):
                    res["rss_mib"][f"dispatcher {i} ({k} running)"] = d.rss_kib() / 1024
            for d in dispatchers[:k]:
                d.stop()
        info = cluster.stream_info("BENCH") or {}
        for d in dispatchers[:2]:
            d.start()
        mark = rx.count()
        p = paced(dc, ["lat_fleet"], args.rate, args.seconds, 8)
        expected += p["n"]
        wait_delivered(rx, expected)
        res["latency"]["JetStream, 2 dispatchers"] = dict(latency(rx, mark, p["message_ids"]), rate=p["rate"])
        res["rss_mib"]["publishing sidecar"] = sc.rss_kib() / 1024
        print(f"  JetStream latency {res['latency']['JetStream, 2 dispatchers']}", flush=True)
    except Exception as exc:  # noqa: BLE001
        print(f"failed: {exc}", file=sys.stderr)
        status = 1
    finally:
        for x in [sc, *dispatchers]:
            x.close()
        dc.stop()
        cluster.close()
        rx.close()
    if status:
        return status
    print(f"\nload average after: {loadavg()} ({os.cpu_count()} cores, shared)")
    print("\n| drain (events waiting, then senders start) | events/s |\n|---|---|")
    for k, v in res["drain"].items():
        print(f"| {k} | {v:.0f} |")
    print(f"\n| commit -> webhook 2xx at {args.rate:.0f} msgs/s | achieved msgs/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for k, v in res["latency"].items():
        print(f"| {k} | {v['rate']:.0f} | {v['p50']:.1f} | {v['p99']:.1f} | {v['max']:.1f} |")
    print("\n| process | peak RSS MiB |\n|---|---|")
    for k, v in res["rss_mib"].items():
        print(f"| {k} | {v:.1f} |")
    state = info.get("state") or {}
    if state:
        print(f"\nstream after the drains: {state.get('messages')} messages left; "
              f"{res.get('bytes_per_event', 0):.0f} bytes per waiting event (stream bytes / messages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""The sidecar's own cost per event at a steady rate, A/B between builds (no Dovecot).

Owns a quick, low-noise measurement for work on the event path: a real
``coi-sidecar`` (one binary or several, alternating round by round), records
appended to its spool the way the plugin does (one write under a shared
flock, then a doorbell datagram) at ``--rate`` events/s, one webhook
endpoint in its own process answering 200 at once (``bench/lean_receiver.py``).
Per round and binary it reports the sidecar's CPU time per event (utime +
stime of all its threads, from the first append until the last webhook
arrived), its queue commits per event (``coi_queue_commits_total``), its
fsync/fdatasync calls per event (``perf record``, as in
``bench/pipeline_cost.py``) and the p50/p99 of record append -> webhook
arrival. Every event must arrive (distinct ids), or the run fails.

Usage: /usr/bin/python3 bench/sidecar_cpu.py --rate 300 --events 3000 --rounds 3 \\
         NAME=PATH[:WINDOW_MS[:MAX_MS]] [NAME=PATH[:WINDOW_MS[:MAX_MS]] ...]

WINDOW_MS and MAX_MS set ``spool_commit_window_ms`` and ``spool_commit_window_max_ms``
(MAX_MS = WINDOW_MS gives a fixed window, the sidecar's behaviour before it adapted).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lean_receiver import LeanReceiver  # noqa: E402
from bench.pipeline_cost import SyscallCounter, commits, proc_cpu_seconds  # noqa: E402
from tests.harness.sidecar import SidecarProcess, TEST_SECRET, Webhook  # noqa: E402


def record(i: int) -> bytes:
    rec = {"v": 1, "type": "message", "id": str(uuid.uuid4()), "ts_ms": int(time.time() * 1000),
           "user": f"user{i % 40}@example.org", "folder": "COI/Chats", "uid": i + 1,
           "uidvalidity": 1700000000, "kind": "chat", "group_id": None, "chat_keyword": True,
           "routed": True, "from": "bob@example.net", "message_id": f"<{uuid.uuid4()}@localhost>",
           "subject": "hello", "pid": os.getpid(), "dropped_before": 0}
    return b"\x1e" + json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def paced(sc: SidecarProcess, n: int, rate: float) -> None:
    path = sc.spool_dir / "events.log"
    bell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    bell.setblocking(False)
    ring = json.dumps({"v": 1, "type": "ring", "dropped": 0}).encode()
    t0 = time.perf_counter()
    for i in range(n):
        data = record(i)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            bell.sendto(ring, str(sc.socket_path))
        except OSError:
            pass
        wait = t0 + (i + 1) / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    bell.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("builds", nargs="+", metavar="NAME=PATH[:WINDOW_MS[:MAX_MS]]")
    args = ap.parse_args()
    wh = LeanReceiver("webhook")
    builds = {}
    for spec in args.builds:
        name, rest = spec.split("=", 1)
        path, *windows = rest.split(":")
        window = windows[0] if windows else None
        window_max = windows[1] if len(windows) > 1 else None
        os.environ["COI_SIDECAR_BIN"] = path
        builds[name] = SidecarProcess(
            [Webhook("bench", wh.url("/hook"), timeout_secs=10, concurrency=32)],
            scan_interval_ms=1000, rotate_bytes=64 << 20,
            commit_window_ms=int(window) if window else None,
            commit_window_max_ms=int(window_max) if window_max else None)
    perf = SyscallCounter(not args.no_perf)
    res: dict[str, list[dict]] = {n: [] for n in builds}
    try:
        for r in range(args.rounds):
            names = list(builds)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                sc = builds[name]
                sc.start()
                # warm-up: the HTTP connection, the queue
                mark = wh.count()
                paced(sc, 50, args.rate)
                while wh.count() < mark + 50:
                    time.sleep(0.02)
                mark = wh.count()
                c0, cpu0 = commits(sc), proc_cpu_seconds(sc.pid)
                rx0 = proc_cpu_seconds(wh.pid)
                perf.start()
                paced(sc, args.events, args.rate)
                deadline = time.monotonic() + 120
                while wh.count() < mark + args.events:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{name}: {wh.count() - mark} of {args.events} "
                                             f"arrived\n{sc.log_tail(10)}")
                    time.sleep(0.02)
                cpu = proc_cpu_seconds(sc.pid) - cpu0
                rx_cpu = proc_cpu_seconds(wh.pid) - rx0
                calls = perf.stop()
                c1 = commits(sc)
                hooks, errors = wh.call("check", (mark, TEST_SECRET))
                ids = {h["webhook_id"] for h in hooks}
                if errors or len(ids) != args.events:
                    raise AssertionError(f"{name}: {len(ids)} distinct of {args.events}, "
                                         f"errors {errors[:2]}")
                lat = sorted(h["at"] * 1000 - h["ts_ms"] for h in hooks)
                fig = {"cpu_us": cpu * 1e6 / args.events, "rx_us": rx_cpu * 1e6 / args.events,
                       "commits": {k: (c1.get(k, 0) - c0.get(k, 0)) / args.events for k in c1},
                       "fsyncs": calls.get(sc.pid, ("", 0))[1] / args.events if calls else None,
                       "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1]}
                res[name].append(fig)
                sc.stop()
                print(f"  round {r + 1} {name}: {fig['cpu_us']:.0f} us CPU/event (receiver "
                      f"{fig['rx_us']:.0f} us), commits/event "
                      + " ".join(f"{k} {v:.2f}" for k, v in sorted(fig["commits"].items()))
                      + (f", fsyncs/event {fig['fsyncs']:.2f}" if fig["fsyncs"] is not None
                         else "")
                      + f", append->webhook p50 {fig['p50']:.1f} ms p99 {fig['p99']:.1f} ms",
                      flush=True)
    finally:
        for sc in builds.values():
            sc.close()
        wh.close()
    print(f"\n{args.events} events at {args.rate:.0f}/s, {args.rounds} rounds, medians:")
    for name, figs in res.items():
        med = lambda k: statistics.median(f[k] for f in figs)  # noqa: E731
        fs = [f["fsyncs"] for f in figs if f["fsyncs"] is not None]
        print(f"  {name}: {med('cpu_us'):.0f} us CPU/event (receiver {med('rx_us'):.0f} us); "
              + (f"{statistics.median(fs):.2f} fsyncs/event; " if fs else "")
              + f"p50 {med('p50'):.1f} ms, p99 {med('p99'):.1f} ms")
    print(f"load: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

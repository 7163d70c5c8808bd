#!/usr/bin/python3
"""IDLE notification latency and idle-connection CPU, coi_fast_notify off vs on (one command).

Owns the benchmark of issue 7. One throwaway Dovecot (tests/harness) with the
coi plugin; the variants are switched by rewriting the config and ``doveadm
reload`` (DovecotInstance.reconfigure), interleaved round by round:

  off  ``coi_fast_notify = no``     stock Dovecot: its watcher waits 500 ms
  on   ``coi_fast_notify = chats``  the plugin's index-log watch, 5 ms coalescing

(i)  Latency: one IDLE connection on ``COI/Chats`` of an enabled+active user;
     COI chats are delivered over one LMTP connection, one at a time. Latency
     is from just before MAIL FROM (client clock) to the arrival of
     ``* N EXISTS`` (N = previous count + 1) on the IDLE socket; the IDLE
     socket is read by the main thread, blocked in select(), while a worker
     thread runs the LMTP transaction. The next delivery starts 100-200 ms
     (uniform random) after the previous EXISTS, so deliveries never coalesce.
     Each (round, variant) segment starts with one unrecorded warm-up delivery.
     Figures: p50, p90 (nearest rank), max per variant; the LMTP transaction's
     own duration is shown beside.
(ii) Idle CPU: N IDLE connections (default 200) of enabled+active users, half
     on COI/Chats, half on INBOX (both in scope for ``chats``), logged in,
     SELECTed, IDLE, and no mail for T seconds (default 60). CPU is summed
     over the Dovecot master and all its descendants (imap, imap-login, auth,
     log, anvil, stats, config ...), read from /proc at the start and the end
     of the window: utime+stime (clock ticks, as /proc/<pid>/stat has them)
     and, precise to the ns, /proc/<pid>/schedstat's on-CPU time. After the
     window every connection must still answer DONE with OK.

Targets (feature on): p50 <= 20 ms, p90 <= 50 ms, idle CPU within 5 % of off.

Usage: /usr/bin/python3 bench/idle_latency.py [--rounds 5] [--deliveries 10]
       [--idle-seconds 60] [--idle-connections 200] [--idle-rounds 1]
       [--skip-latency] [--skip-idle] [--keep]
Exit status: 0 ran and verified (targets may still be missed: see the verdicts),
1 verification failed (an EXISTS never came, a delivery failed, a connection
broke), 2 setup failure.
Needs target/release/libcoi_plugin.so (or COI_PLUGIN_SO) and Debian's dovecot packages.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import DovecotInstance, IdleClient  # noqa: E402
from tests.harness import messages as M  # noqa: E402
from tests.harness.paths import find_binary, plugin_so  # noqa: E402

CHATS = "COI/Chats"
VARIANTS = {"off": "no", "on": "chats"}
EXISTS_TIMEOUT = 5.0
TARGET_P50_MS = 20.0
TARGET_P90_MS = 50.0
TARGET_IDLE_CPU_RATIO = 1.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
LAT_USER = "lat_u"
PER_USER = 4  # idle connections per user: 2 on COI/Chats, 2 on INBOX


class VerificationError(AssertionError):
    pass


# --------------------------------------------------------------------------- machine
def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info() -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    so = plugin_so()
    try:
        st = so.stat()
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
        so_desc = f"{so} ({st.st_size} bytes, built {built})"
    except OSError:
        so_desc = f"{so} (missing)"
    dirty = _cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "plugin", "include"])
    return [
        f"nproc:    {os.cpu_count()}",
        f"CPU:      {model}",
        f"kernel:   {platform.release()} ({platform.machine()})",
        f"memory:   {mem}",
        f"load avg: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (at start)",
        f"dovecot:  {_cmd([find_binary('dovecot'), '--version'])}",
        f"commit:   {_cmd(['git', '-C', str(REPO), 'log', '--oneline', '-1'])}"
        + (" (plugin/ or include/ modified)" if dirty not in ("", "?") else ""),
        f"plugin:   {so_desc}",
        f"python:   {sys.executable} {platform.python_version()}",
    ]


# --------------------------------------------------------------------------- setup
def extra_config(connections: int) -> str:
    procs = max(1024, connections + 100)
    clients = max(1000, 2 * connections + 200)
    return "\n".join([
        f"default_process_limit = {procs}",
        f"default_client_limit = {clients}",
        "service imap {",
        f"  process_limit = {procs}",
        "}",
        "protocol imap {",
        f"  mail_max_userip_connections = {connections + 10}",
        "}",
    ]) + "\n"


def configure(dc: DovecotInstance, variant: str) -> None:
    dc.reconfigure(plugin_settings={"coi_fast_notify": VARIANTS[variant]})


def deliver_ok(dc: DovecotInstance, session, user: str, msg: M.TestMessage) -> None:
    res = session.deliver(msg.raw, [dc.address(user)])
    if not res[0].ok:
        raise VerificationError(f"LMTP delivery to {user} failed: {res[0]}")


def prepare_users(dc: DovecotInstance, users: list[str]) -> None:
    """Enable COI (active) for every user and create COI/Chats with a first chat."""
    def one(user: str) -> None:
        dc.enable_coi(user, "active")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, users))
    with dc.lmtp_session() as s:
        for user in users:
            deliver_ok(dc, s, user, M.coi_chat(to=dc.address(user)))
    with dc.imap(users[0]) as c:
        if CHATS not in c.list_folders():
            raise VerificationError(f"a first chat did not create {CHATS}")


# --------------------------------------------------------------------------- (i) latency
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def latency_segment(dc: DovecotInstance, deliveries: int, rng: random.Random
                    ) -> tuple[list[float], list[float]]:
    """One IDLE connection, ``deliveries`` chats one at a time (after a warm-up one).

    Returns (LMTP-start-to-EXISTS ms, LMTP transaction ms) per recorded delivery.
    """
    lat, txn = [], []
    with IdleClient(dc.host, dc.imap_port, LAT_USER) as c, dc.lmtp_session() as s:
        n = c.select(CHATS)
        c.idle()
        for k in range(deliveries + 1):
            time.sleep(rng.uniform(0.100, 0.200))
            msg = M.coi_chat(to=dc.address(LAT_USER))
            box: dict = {}

            def run() -> None:
                try:
                    box["t0"] = time.perf_counter()
                    box["res"] = s.deliver(msg.raw, [dc.address(LAT_USER)])
                    box["t_done"] = time.perf_counter()
                except Exception as exc:  # noqa: BLE001 - reported below
                    box["exc"] = exc

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                t1, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
            finally:
                worker.join(30)
            if "exc" in box or not box["res"][0].ok:
                raise VerificationError(f"delivery failed: {box.get('exc') or box['res'][0]}")
            if got != n + 1:
                raise VerificationError(f"expected * {n + 1} EXISTS, got * {got} EXISTS")
            n = got
            if k == 0:
                continue  # warm-up
            lat.append((t1 - box["t0"]) * 1000)
            txn.append((box["t_done"] - box["t0"]) * 1000)
        status, text, _ = c.done(timeout=10)
        if status != "OK":
            raise VerificationError(f"DONE answered {status} {text}")
    return lat, txn


def run_latency(dc: DovecotInstance, rounds: int, deliveries: int, seed: int
                ) -> dict[str, dict[str, list[float]]]:
    rng = random.Random(seed)
    out = {v: {"lat": [], "txn": []} for v in VARIANTS}
    for rnd in range(rounds):
        order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            configure(dc, variant)
            lat, txn = latency_segment(dc, deliveries, rng)
            out[variant]["lat"] += lat
            out[variant]["txn"] += txn
            print(f"  round {rnd + 1} {variant:3}: p50 {statistics.median(lat):7.1f} ms  "
                  f"max {max(lat):7.1f} ms  ({len(lat)} deliveries)", flush=True)
    return out


# --------------------------------------------------------------------------- (ii) idle CPU
def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, utime+stime ticks, comm) of ``pid``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()
    # fields after comm: state(0) ppid(1) ... utime(11) stime(12)
    return int(f[1]), int(f[11]) + int(f[12]), comm


def _schedstat_ns(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def dovecot_processes(master: int) -> dict[int, dict]:
    """The master and all its descendants: pid -> {comm, ticks, ns}."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    tree, frontier = {master}, [master]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    out = {}
    for pid in tree:
        if pid in stats:
            _, ticks, comm = stats[pid]
            out[pid] = {"comm": comm, "ticks": ticks, "ns": _schedstat_ns(pid)}
    return out


def open_idle_connections(dc: DovecotInstance, users: list[str], n: int) -> list[IdleClient]:
    def one(i: int) -> IdleClient:
        user = users[i % len(users)]
        folder = CHATS if (i // len(users)) % 2 == 0 else "INBOX"
        c = IdleClient(dc.host, dc.imap_port, user, timeout=60)
        try:
            c.select(folder)
            c.idle(timeout=60)
        except BaseException:
            c.close()
            raise
        return c

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        clients, errors = [], []
        for f in futures:
            try:
                clients.append(f.result())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
    if errors:
        for c in clients:
            c.sock.close()
        raise VerificationError(f"{len(errors)} of {n} IDLE connections failed, "
                                f"first: {errors[0]!r}")
    return clients


def close_idle_connections(clients: list[IdleClient]) -> int:
    """DONE (must be OK) and LOGOUT on every connection; returns the number that failed."""
    def one(c: IdleClient) -> bool:
        try:
            status, _, _ = c.done(timeout=20)
            return status == "OK"
        except Exception:  # noqa: BLE001 - counted
            return False
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        return sum(1 for ok in pool.map(one, clients) if not ok)


def idle_segment(dc: DovecotInstance, users: list[str], n: int, seconds: float) -> dict:
    clients = open_idle_connections(dc, users, n)
    try:
        time.sleep(2.0)  # login processes finish, first-IDLE work settles
        master = dc.master_pid()
        if master is None:
            raise VerificationError("no master.pid")
        imap_now = sum(1 for p in dovecot_processes(master).values() if p["comm"] == "imap")
        if imap_now < n:
            raise VerificationError(f"only {imap_now} imap processes for {n} connections")
        before = dovecot_processes(master)
        t0 = time.monotonic()
        time.sleep(seconds)
        after = dovecot_processes(master)
        wall = time.monotonic() - t0
    finally:
        broken = close_idle_connections(clients)
    if broken:
        raise VerificationError(f"{broken} of {n} IDLE connections did not answer DONE with OK")
    common = before.keys() & after.keys()
    by_comm: dict[str, list[float]] = {}
    ticks = ns = 0
    ns_ok = True
    for pid in common:
        dt = after[pid]["ticks"] - before[pid]["ticks"]
        ticks += dt
        if before[pid]["ns"] is None or after[pid]["ns"] is None:
            ns_ok = False
            dns = 0
        else:
            dns = after[pid]["ns"] - before[pid]["ns"]
            ns += dns
        agg = by_comm.setdefault(after[pid]["comm"], [0, 0, 0])
        agg[0] += 1
        agg[1] += dt
        agg[2] += dns
    return {"ticks": ticks, "ns": ns if ns_ok else None, "wall": wall, "by_comm": by_comm,
            "gone": sorted(before[p]["comm"] for p in before.keys() - after.keys()),
            "new": sorted(after[p]["comm"] for p in after.keys() - before.keys()),
            "procs": len(common)}


def run_idle(dc: DovecotInstance, users: list[str], n: int, seconds: float, rounds: int
             ) -> dict[str, list[dict]]:
    out = {v: [] for v in VARIANTS}
    for rnd in range(rounds):
        order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            configure(dc, variant)
            seg = idle_segment(dc, users, n, seconds)
            out[variant].append(seg)
            ns = "n/a" if seg["ns"] is None else f"{seg['ns'] / 1e6:.1f} ms"
            print(f"  round {rnd + 1} {variant:3}: utime+stime {seg['ticks']} ticks "
                  f"({seg['ticks'] * 1000 / CLK_TCK:.0f} ms), schedstat {ns}, "
                  f"{seg['procs']} processes, {seg['wall']:.1f} s"
                  + (f"; during the window exited: {', '.join(seg['gone']) or '-'}, "
                     f"started: {', '.join(seg['new']) or '-'} (not counted)"
                     if seg["gone"] or seg["new"] else ""), flush=True)
            for comm, (cnt, dt, dns) in sorted(seg["by_comm"].items()):
                print(f"      {comm:12} x{cnt:<4} {dt * 1000 / CLK_TCK:6.0f} ms (ticks)  "
                      f"{dns / 1e6:8.2f} ms (schedstat)")
    return out


# --------------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report_latency(res: dict[str, dict[str, list[float]]]) -> None:
    print("\n(i) LMTP start (before MAIL FROM) -> '* N EXISTS' on an IDLE connection, COI/Chats")
    print(f"{'variant':10} {'n':>4} {'p50 ms':>9} {'p90 ms':>9} {'max ms':>9} {'min ms':>9}"
          f" {'LMTP txn p50':>13}")
    for v, setting in VARIANTS.items():
        lat, txn = res[v]["lat"], res[v]["txn"]
        print(f"{v + ' (' + setting + ')':10} {len(lat):>4} {statistics.median(lat):9.1f} "
              f"{percentile(lat, 90):9.1f} {max(lat):9.1f} {min(lat):9.1f} "
              f"{statistics.median(txn):10.1f} ms")
    on = res["on"]["lat"]
    p50, p90 = statistics.median(on), percentile(on, 90)
    print(f"target on p50 <= {TARGET_P50_MS:.0f} ms: {p50:.1f} ms -> "
          f"{verdict(p50 <= TARGET_P50_MS)}")
    print(f"target on p90 <= {TARGET_P90_MS:.0f} ms: {p90:.1f} ms -> "
          f"{verdict(p90 <= TARGET_P90_MS)}")
    print("off is Dovecot's fixed notify delay (NOTIFY_DELAY_MSECS = 500 in lib-storage's "
          "mailbox-watch.c) plus the sync; on is the plugin's 5 ms coalescing plus the sync.")


def report_idle(res: dict[str, list[dict]], n: int, seconds: float) -> None:
    print(f"\n(ii) CPU of all Dovecot processes, {n} IDLE connections, {seconds:.0f} s, no mail")
    sums = {}
    for v, setting in VARIANTS.items():
        segs = res[v]
        ticks = sum(s["ticks"] for s in segs)
        ns = None if any(s["ns"] is None for s in segs) else sum(s["ns"] for s in segs)
        sums[v] = (ticks, ns)
        ns_txt = "n/a" if ns is None else f"{ns / 1e6:.1f} ms"
        print(f"{v + ' (' + setting + ')':10} utime+stime {ticks * 1000 / CLK_TCK:7.0f} ms "
              f"({ticks} ticks)   schedstat {ns_txt}   over {len(segs)} window(s)")
    (t_off, ns_off), (t_on, ns_on) = sums["off"], sums["on"]
    if t_off > 0:
        r = t_on / t_off
        print(f"ratio on/off (utime+stime): {r:.3f}  target <= {TARGET_IDLE_CPU_RATIO:.2f} -> "
              f"{verdict(r <= TARGET_IDLE_CPU_RATIO)}")
    else:
        print(f"ratio on/off (utime+stime): undefined, off used 0 ticks (on: {t_on} ticks); "
              f"{verdict(t_on == 0)} at tick resolution ({1000 / CLK_TCK:.0f} ms per process)")
    if ns_off == 0 and ns_on is not None:
        print(f"ratio on/off (schedstat, ns): undefined, off used 0 ns (on: {ns_on} ns)")
    if ns_off and ns_on is not None:
        r = ns_on / ns_off
        per_conn_min = (ns_on - ns_off) / 1e3 / n / (seconds * len(res['on']) / 60)
        print(f"ratio on/off (schedstat, ns): {r:.3f}  target <= {TARGET_IDLE_CPU_RATIO:.2f} -> "
              f"{verdict(r <= TARGET_IDLE_CPU_RATIO)}  "
              f"(difference {per_conn_min:+.1f} us per connection per minute)")
    print("note: utime+stime are whole clock ticks per process, so with hundreds of nearly idle "
          "processes their sum moves in steps of 10 ms per process; schedstat is the same CPU "
          "time in ns.")


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds (off+on each)")
    ap.add_argument("--deliveries", type=int, default=10, help="recorded deliveries per "
                    "variant and round (default 5 x 10 = 50 per variant)")
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--idle-connections", type=int, default=200)
    ap.add_argument("--idle-rounds", type=int, default=1, help="idle windows per variant")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the Dovecot temp dir")
    args = ap.parse_args(argv)

    print("command: " + " ".join([sys.executable, *sys.argv]))
    for line in machine_info():
        print(line)
    print(flush=True)

    n = args.idle_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    idle_users = [f"idle_{i:03d}" for i in range(max(1, math.ceil(n / PER_USER)))]
    try:
        dc = DovecotInstance(plugin=True, keep_tmp=args.keep or None,
                             users=[LAT_USER, *idle_users], extra_config=extra_config(n),
                             plugin_settings={"coi_fast_notify": "no"})
        dc.start()
    except Exception as exc:  # noqa: BLE001
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"Dovecot {dc.tmpdir} imap={dc.imap_port} lmtp={dc.lmtp_port}", flush=True)
        try:
            prepare_users(dc, [LAT_USER] + ([] if args.skip_idle else idle_users))
        except Exception as exc:  # noqa: BLE001
            print(f"setup failed: {exc}", file=sys.stderr)
            dc.failed = True
            return 2
        lat = idle = None
        if not args.skip_latency:
            print(f"\n(i) latency: {args.rounds} rounds x {args.deliveries} deliveries per variant,"
                  " interleaved", flush=True)
            lat = run_latency(dc, args.rounds, args.deliveries, args.seed)
        if not args.skip_idle:
            print(f"\n(ii) idle CPU: {n} connections ({len(idle_users)} users, {PER_USER} each: "
                  f"2 on {CHATS}, 2 on INBOX), {args.idle_seconds:.0f} s per window, "
                  f"{args.idle_rounds} window(s) per variant", flush=True)
            idle = run_idle(dc, idle_users, n, args.idle_seconds, args.idle_rounds)
        bad = dc.log.panics_and_fatals() + [ln for ln in dc.log.lines() if ": Error: " in ln]
        if lat:
            report_latency(lat)
        if idle:
            report_idle(idle, n, args.idle_seconds)
        if bad:
            print("\nDovecot logged errors:\n" + "\n".join(bad[:20]))
            dc.failed = True
            return 1
        return 0
    except VerificationError as exc:
        print(f"\nverification failed: {exc}", file=sys.stderr)
        print(dc.log.tail(30), file=sys.stderr)
        dc.failed = True
        return 1
    finally:
        dc.stop()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Per-session cost of the coi plugin: one message per LMTP connection (one command).

Owns the start-up benchmark. Dovecot 2.4's ``service lmtp`` defaults (with
``dovecot_config_version`` 2.4.x) have ``restart_request_count = 1``: every
LMTP connection is served by a fresh lmtp process, which loads the mail
plugins (dlopen, their init, settings) before it answers. On 2.3
(``service_count = 0``) processes are reused and the start-up is paid once
per process. This measures what an MX pays per connection:

  (a) no plugin, a plain mail to INBOX;
  (n) the coi plugin loaded, a plain mail to INBOX: n - a is what loading
      the plugin and running it on a mail it leaves alone costs a session;
  (f) no plugin, the sender names the folder (``user+COI/Chats``,
      ``lmtp_save_to_detail_mailbox``): the floor for filing into a second
      folder, which a fresh process must open too;
  (b) the coi plugin, the recipient enabled+active (to COI/Chats): b - f is
      the plugin's own share of a chat session.
Every recipient's mailboxes (INBOX, COI/Chats) exist before its session.

Each session connects, sends LHLO, delivers one message to its own fresh
user, and QUITs; sessions run one after another (latency, not
throughput), variants interleaved round by round with ``doveadm reload``
between them. Prints the median session time and the Dovecot process tree's
CPU per session (which other people's load moves much less than latency),
the differences, and how many lmtp processes served each round.

Usage: /usr/bin/python3 bench/lmtp_sessions.py [--rounds 5] [--sessions 100]
       (2.4: scripts/test-dovecot24 --exec /usr/bin/python3 bench/lmtp_sessions.py)
Exit status: 0 ok, 1 a delivery failed, 2 setup failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402
from tests.harness.lmtp import LmtpSession  # noqa: E402

from bench.lmtp_throughput import dovecot_cpu_seconds  # noqa: E402

VARIANTS = {"a": dict(plugin=False, lmtp_save_to_detail_mailbox=False),
            "n": dict(plugin=True, lmtp_save_to_detail_mailbox=False),
            "f": dict(plugin=False, lmtp_save_to_detail_mailbox=True),
            "b": dict(plugin=True, lmtp_save_to_detail_mailbox=False)}
LABELS = {"a": "no plugin, plain mail to INBOX", "n": "coi plugin, plain mail to INBOX",
          "f": "no plugin, +detail to COI/Chats", "b": "coi plugin, chat to COI/Chats"}


def lmtp_pids(dc: DovecotInstance) -> set[int]:
    return {pid for pid, name in dc.child_processes() if name == "lmtp"}


def one_round(dc: DovecotInstance, variant: str, rnd: int, sessions: int) -> tuple[list[float], int]:
    """Per-session seconds, and how many distinct lmtp processes served them."""
    times, seen = [], set()
    for i in range(sessions):
        # plain mail for (a) and (n), a Delta Chat message for (f) and (b)
        raw = (M.plain_mail() if variant in ("a", "n") else M.deltachat_plain()).raw
        user = f"s_{variant}_{rnd}_{i}"
        rcpt = dc.rcpt(user, "COI/Chats") if variant == "f" else dc.address(user)
        t0 = time.perf_counter()
        session = LmtpSession("127.0.0.1", dc.lmtp_port)
        try:
            res = session.deliver(raw, [rcpt])
            t1 = time.perf_counter()
            seen |= lmtp_pids(dc)  # while the session's process is alive; not timed
            t2 = time.perf_counter()
        finally:
            session.close()
        times.append(time.perf_counter() - t2 + (t1 - t0))
        if not res[0].ok:
            raise RuntimeError(f"delivery to {rcpt} failed: {res[0]}")
    return times, len(seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=100, help="sessions per variant and round")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    users = {f"s_{v}_{r}_{i}": {} for v in VARIANTS for r in range(args.rounds)
             for i in range(args.sessions)}
    users["warm"] = {}
    try:
        dc = DovecotInstance(keep_tmp=args.keep, users=users, plugin=True)
        dc.start()
    except Exception as exc:  # noqa: BLE001
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    procs: dict[str, list[int]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    status = 0
    try:
        # every user's mailboxes exist: no variant pays for creating them
        for u in users:
            dc.doveadm.run("mailbox", "create", "-s", "-u", u, "COI/Chats")
            if u.startswith("s_b_"):
                dc.enable_coi(u, "active")
        print(f"Dovecot at {dc.tmpdir}; {args.rounds} rounds x {args.sessions} sessions",
              flush=True)
        for r in range(args.rounds):
            for v in VARIANTS:
                dc.reconfigure(**VARIANTS[v])
                dc.lmtp_deliver(M.plain_mail().raw, [dc.address("warm")])
                cpu0 = dovecot_cpu_seconds(dc)
                times, nproc = one_round(dc, v, r, args.sessions)
                time.sleep(0.3)  # the last session's process ends (2.4)
                cpu_ms = (dovecot_cpu_seconds(dc) - cpu0) * 1e3 / args.sessions
                samples[v] += times
                procs[v].append(nproc)
                cpu[v].append(cpu_ms)
                print(f"  round {r + 1} ({v}): median {statistics.median(times) * 1e3:.2f} ms "
                      f"per session, Dovecot CPU {cpu_ms:.2f} ms per session, {nproc} lmtp "
                      "processes", flush=True)
        dc.assert_no_panic_or_fatal()
    except RuntimeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        dc.failed = True
        status = 1
    finally:
        dc.stop()
    med = {v: statistics.median(s) * 1e3 for v, s in samples.items() if s}
    print()
    for v, m in med.items():
        print(f"({v}) {LABELS[v]}: median {m:.2f} ms per session over {len(samples[v])} "
              f"sessions; lmtp processes per round {procs[v]}")
    for x, y in (("n", "a"), ("b", "f"), ("f", "a"), ("b", "a")):
        if x in med and y in med:
            print(f"  {x} - {y} = {med[x] - med[y]:.2f} ms per session; "
                  f"{x}/{y} = {med[x] / med[y]:.3f}")
    cmed = {v: statistics.median(xs) for v, xs in cpu.items() if xs}
    for v, m in cmed.items():
        print(f"[{v}] Dovecot CPU: median {m:.2f} ms per session (rounds: "
              f"{' '.join(f'{x:.2f}' for x in cpu[v])})")
    for x, y in (("n", "a"), ("b", "f"), ("f", "a"), ("b", "a")):
        if x in cmed and y in cmed:
            paired = statistics.median(p - q for p, q in zip(cpu[x], cpu[y]))
            print(f"  cpu {x} - {y} = {cmed[x] - cmed[y]:.2f} ms per session; per round: "
                  f"median {paired:.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())

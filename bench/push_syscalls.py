#!/usr/bin/python3
"""What push being configured costs a user without targets, counted exactly (one command).

Owns the push-configured cost count. Throughput on a shared 2-core machine
moves by 10 % and more from round to round, far more than the 2 % this is
about; system calls do not. One throwaway Dovecot with the plugin and an
event spool (events on), reconfigured in turn to:

  (e) events on, push off;
  (p) events on, push configured (``coi_deltachat_push = yes``), user without
      targets (with this build: the push-target marker);
  (o) (p) with another plugin build (``--baseline-so``, e.g. main's before
      the marker).

Per variant and round, a fresh user (so every variant sees the same
mailbox state): ``doveadm reload``, one chat to the user (so the user has
had mail before, as users have), then ``strace -f -c`` attached to the
master while one new LMTP session delivers N messages (a third plain mail,
a third COI chats, a third Delta Chat messages) to that user. The
master and all its children are traced (``-f``: 2.4 forks the session's lmtp
after the attach, 2.3 reuses the one of the priming chat), so every call the
delivery makes is counted. Prints system calls per message per variant (median of
the rounds) and the difference to (e), with the calls that make it up.

Usage: /usr/bin/python3 bench/push_syscalls.py [--rounds 3] [--messages 30]
       [--baseline-so OLD.so]  (2.4: scripts/test-dovecot24 --exec ...)
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402

#: Calls whose counts follow timing, not work (waiting, signals, socket I/O
#: batching): left out of the count.
TIMING = {"futex", "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "select",
          "pselect6", "nanosleep", "clock_nanosleep", "wait4", "restart_syscall",
          "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "read", "write", "readv", "writev",
          "recvfrom", "sendto", "recvmsg", "sendmsg", "clock_gettime", "gettimeofday",
          "setitimer", "alarm", "inotify_add_watch", "inotify_rm_watch", "accept", "accept4",
          "setsockopt"}


def stream(n: int) -> list[bytes]:
    return [(M.plain_mail() if i % 3 == 0 else M.coi_chat() if i % 3 == 1
             else M.deltachat_plain()).raw for i in range(n)]


def user_for(v: str, r: int) -> str:
    return f"pushless_{v}_{r}"


def count_calls(dc: DovecotInstance, user: str, msgs: list[bytes], out: Path) -> dict[str, int]:
    # the master (2.4 forks a new lmtp per session) and its children (2.3
    # reuses the lmtp process of the priming chat)
    pids = [dc.master_pid()] + [pid for pid, _ in dc.child_processes()]
    strace = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", str(out)] +
                              [a for pid in pids for a in ("-p", str(pid))],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # attached before the session's process is forked
        session = dc.lmtp_session()
        try:
            for raw in msgs:
                res = session.deliver(raw, [dc.address(user)])
                if not res[0].ok:
                    raise RuntimeError(f"delivery failed: {res[0]}")
        finally:
            session.close()
        time.sleep(0.5)
    finally:
        strace.send_signal(signal.SIGINT)
        strace.wait(timeout=30)
    calls = {}
    for line in out.read_text().splitlines():
        m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total" and m.group(2) not in TIMING:
            calls[m.group(2)] = int(m.group(1))
    return calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=30)
    ap.add_argument("--baseline-so", type=Path, default=None)
    args = ap.parse_args(argv)
    variants = ["e", "p"] + (["o"] if args.baseline_so else [])
    spool = Path(tempfile.mkdtemp(prefix="coi-spool-"))
    spool.chmod(0o777)
    base = {"coi_spool_path": str(spool), "coi_sidecar_socket": str(spool / "none.sock")}
    settings = {"e": base, "p": {**base, "coi_deltachat_push": "yes"},
                "o": {**base, "coi_deltachat_push": "yes"}}
    users = [user_for(v, r) for v in variants for r in range(args.rounds)]
    dc = DovecotInstance(users=users, plugin=True, plugin_settings=base)
    per_msg: dict[str, list[float]] = {v: [] for v in variants}
    detail: dict[str, list[dict[str, int]]] = {v: [] for v in variants}
    try:
        dc.start()
        for u in users:
            dc.enable_coi(u, "active")
        tmp = Path(tempfile.mkdtemp(prefix="coi-strace-"))
        for r in range(args.rounds):
            for v in variants:
                dc.install_plugin(args.baseline_so if v == "o" else None)
                dc.reconfigure(plugin_settings=settings[v])
                user = user_for(v, r)  # same mailbox state in every variant
                dc.lmtp_deliver(M.coi_chat().raw, [dc.address(user)])  # the user has had mail
                calls = count_calls(dc, user, stream(args.messages), tmp / f"{v}{r}.txt")
                per_msg[v].append(sum(calls.values()) / args.messages)
                detail[v].append(calls)
                print(f"  round {r + 1} ({v}): {per_msg[v][-1]:.1f} system calls per message",
                      flush=True)
        dc.assert_no_panic_or_fatal()
    finally:
        dc.stop()
        subprocess.run(["rm", "-rf", str(spool)], check=False)
    med = {v: statistics.median(xs) for v, xs in per_msg.items()}
    print()
    for v in variants:
        print(f"({v}) median {med[v]:.1f} system calls per message "
              f"(rounds: {' '.join(f'{x:.1f}' for x in per_msg[v])})")
    for v in variants[1:]:
        # the calls that differ, from the median round of each
        mid = lambda xs: sorted(xs, key=lambda c: sum(c.values()))[len(xs) // 2]  # noqa: E731
        a, b = mid(detail["e"]), mid(detail[v])
        diff = {k: (b.get(k, 0) - a.get(k, 0)) / args.messages for k in set(a) | set(b)}
        top = sorted(((d, k) for k, d in diff.items() if abs(d) >= 0.1), reverse=True)[:8]
        print(f"  {v} - e = {med[v] - med['e']:+.1f} per message ({(med[v] / med['e'] - 1) * 100:+.1f} %)"
              f"; by call: " + ", ".join(f"{k} {d:+.1f}" for d, k in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

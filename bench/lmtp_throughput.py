#!/usr/bin/python3
"""LMTP delivery throughput of the coi plugin against stock alternatives (one command).

Owns the delivery benchmark. One throwaway Dovecot (tests/harness) is
reconfigured between variants by rewriting its config and ``doveadm reload``:

  (a) no plugin: everything to INBOX (the floor for any routing);
  (f) no plugin, ``lmtp_save_to_detail_mailbox = yes``; chats are sent to
      ``user+COI/Chats`` so Dovecot files them without classifying anything;
  (b) the coi plugin: users enabled with message-filter=active, chats routed
      to COI/Chats with $Chat;
  (c) no coi plugin; Sieve loaded in lmtp with a global ``sieve_before`` script
      that tags and files messages carrying Chat-Version.

  (k) optional probe, ``--variants afbck``: (c) without ``addflag``, which shows
      what storing the ``$Chat`` keyword alone costs.
  (e) optional: (b) with events on (spool + a running ``coi-sidecar``);
  (p) optional: (e) with push configured (``coi_deltachat_push = yes``) for
      users who have no push targets; p/e is the cost of push being
      configured (target <= 2 %).
  (o) optional, with ``--baseline-so OLD.so``: (p) with another plugin build
      (e.g. main's, before the push-target marker), installed for its rounds.

``--format maildir|sdbox|mdbox`` picks the mail storage format (default
maildir). Run it against 2.4 with ``scripts/test-dovecot24 --exec``.

The stream is a third plain mail, a third COI chats, a third Delta Chat
messages; N concurrent LMTP connections each send M messages, one RCPT per
message. Rounds are interleaved (a f b c a f b c ...); every round of every
variant delivers to fresh users, so mailbox sizes are identical across
variants. After each round the folder counts (and $Chat flags) are checked, so
a broken variant cannot look fast. Prints the median msgs/s per variant and
the ratios b/f, b/c, f/a against the targets b >= 0.95 f and b >= 1.2 c.

Usage: /usr/bin/python3 bench/lmtp_throughput.py [--rounds 5] [--messages 250]
       [--connections 4] [--users 1]
Exit status: 0 ok, 1 a variant stored the wrong thing, 2 setup failure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402

CHATS = "COI/Chats"
SIEVE_BEFORE = """require ["imap4flags","fileinto","mailbox"];
if exists "Chat-Version" { addflag "$Chat"; fileinto :create "COI/Chats"; }
"""

SIEVE_FILEINTO_ONLY = """require ["fileinto","mailbox"];
if exists "Chat-Version" { fileinto :create "COI/Chats"; }
"""

VARIANTS = {
    "a": ("no plugin, all to INBOX",
          dict(plugin=False, lmtp_save_to_detail_mailbox=False, sieve_before=None)),
    "f": ("no plugin, +detail RCPT to COI/Chats",
          dict(plugin=False, lmtp_save_to_detail_mailbox=True, sieve_before=None)),
    "b": ("coi plugin, enabled+active",
          dict(plugin=True, lmtp_save_to_detail_mailbox=False, sieve_before=None)),
    "c": ("sieve_before script, no coi plugin",
          dict(plugin=False, lmtp_save_to_detail_mailbox=False, sieve_before=SIEVE_BEFORE)),
    # Optional probe (not in the default order): (c) without addflag, to
    # separate the cost of storing the $Chat keyword from the cost of filing.
    "k": ("sieve_before fileinto only, no $Chat",
          dict(plugin=False, lmtp_save_to_detail_mailbox=False, sieve_before=SIEVE_FILEINTO_ONLY)),
}
VARIANTS["e"] = ("coi plugin, events on (spool + sidecar)",
                  dict(plugin=True, lmtp_save_to_detail_mailbox=False, sieve_before=None))
VARIANTS["p"] = ("coi plugin, events on, push configured, no targets",
                  dict(plugin=True, lmtp_save_to_detail_mailbox=False, sieve_before=None))
VARIANTS["o"] = ("(p) with the --baseline-so plugin build",
                  dict(plugin=True, lmtp_save_to_detail_mailbox=False, sieve_before=None))
ORDER = ["a", "f", "b", "c"]
PLUGIN_VARIANTS = ("b", "e", "p", "o")
FORMATS = {"maildir": "maildir:~/Maildir", "sdbox": "sdbox:~/sdbox", "mdbox": "mdbox:~/mdbox"}


class VerificationError(AssertionError):
    pass


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()


def dovecot_cpu_seconds(dc: DovecotInstance) -> float:
    """CPU time the Dovecot process tree has used so far: the master's own,
    its reaped children's (cutime/cstime: 2.4's one-session lmtp processes
    end up there) and its live children's. A counter: the difference over a
    round is the CPU that round cost, whatever else ran on the machine."""
    master = dc.master_pid()
    if master is None:
        return float("nan")
    f = _stat_fields(master)
    ticks = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    for pid, _ in dc.child_processes():
        try:
            c = _stat_fields(pid)
        except OSError:
            continue  # ended meanwhile: counted in the master's cutime now
        ticks += int(c[11]) + int(c[12])
    return ticks / CLK_TCK


def user_names(variant: str, rnd: int, n: int) -> list[str]:
    return [f"bench_{variant}_{rnd}_{i}" for i in range(n)]


def build_stream(count: int, seed_offset: int) -> list[M.TestMessage]:
    """count messages: plain, COI chat, Delta Chat, plain, ... (all with fresh ids)."""
    out = []
    for i in range(count):
        k = (i + seed_offset) % 3
        out.append(M.plain_mail() if k == 0 else M.coi_chat() if k == 1 else M.deltachat_plain())
    return out


def rcpt_for(dc: DovecotInstance, variant: str, user: str, msg: M.TestMessage) -> str:
    if variant == "f" and msg.is_chat:
        return dc.rcpt(user, CHATS)
    return dc.address(user)


def run_load(dc: DovecotInstance, variant: str, users: list[str], connections: int,
             per_conn: int) -> tuple[float, dict[str, dict[str, int]]]:
    """Deliver connections x per_conn messages concurrently; (seconds, expected counts)."""
    streams = [build_stream(per_conn, c) for c in range(connections)]
    expected = {u: {"INBOX": 0, CHATS: 0} for u in users}
    jobs = []
    n = 0
    for c in range(connections):
        job = []
        for msg in streams[c]:
            user = users[n % len(users)]
            n += 1
            job.append((msg.raw, rcpt_for(dc, variant, user, msg)))
            folder = CHATS if (msg.is_chat and variant != "a") else "INBOX"
            expected[user][folder] += 1
        jobs.append(job)
    # job i goes over connection i % connections: interleave the per-connection lists
    flat = [jobs[c][k] for k in range(per_conn) for c in range(connections)]
    results, elapsed = dc.lmtp_deliver_timed(flat, connections)
    errors = [f"{r.rcpt}: {r.code} {r.message}" for r in results if not r.ok]
    if errors or len(results) != len(flat):
        raise VerificationError(f"variant {variant}: {len(errors)} deliveries failed, e.g. "
                                f"{errors[:3]}")
    return elapsed, expected


def verify(dc: DovecotInstance, variant: str, expected: dict[str, dict[str, int]]) -> None:
    for user, want in expected.items():
        got = dc.doveadm.message_counts(user)
        got_cmp = {k: got.get(k, 0) for k in want}
        extra = {k: v for k, v in got.items() if k not in want and v}
        if got_cmp != want or extra:
            raise VerificationError(f"variant {variant} user {user}: expected {want}, "
                                    f"found {got}")
        if variant in ("b", "c", *PLUGIN_VARIANTS) and want[CHATS]:
            rows = dc.doveadm.fetch(user, "flags", ["mailbox", CHATS])
            untagged = [r for r in rows if "$Chat" not in r.get("flags", "").split()]
            if untagged:
                raise VerificationError(f"variant {variant} user {user}: {len(untagged)} "
                                        f"messages in {CHATS} without $Chat")
        if variant in ("a", "f", "k"):
            rows = dc.doveadm.fetch(user, "flags", ["ALL"])
            if any("$Chat" in r.get("flags", "").split() for r in rows):
                raise VerificationError(f"variant {variant} user {user}: $Chat set without "
                                        "any classifier loaded (stale config after reload?)")


def plugin_settings_for(variant: str, sidecar) -> dict[str, str]:
    """Events (spool + sidecar socket) for (e) and (p), push for (p) only."""
    if variant not in ("e", "p", "o") or sidecar is None:
        return {}
    out = dict(sidecar.plugin_settings())
    if variant in ("p", "o"):
        out["coi_deltachat_push"] = "yes"
    return out


def prime(dc: DovecotInstance, variant: str, users: list[str]) -> None:
    """One chat to each user before the timed part: the users are not new
    to the server (per-user state such as the push-target marker exists, as
    it would for any user who has had mail before), the same for every variant."""
    session = dc.lmtp_session()
    try:
        for u in users:
            msg = M.coi_chat()
            res = session.deliver(msg.raw, [rcpt_for(dc, variant, u, msg)])
            if not res[0].ok:
                raise VerificationError(f"priming {u} for {variant} failed: {res[0]}")
    finally:
        session.close()


def configure(dc: DovecotInstance, variant: str, sidecar=None, baseline_so=None) -> None:
    if baseline_so is not None:  # the reload below makes every process load it
        dc.install_plugin(baseline_so if variant == "o" else None)
    dc.reconfigure(plugin_settings=plugin_settings_for(variant, sidecar),
                   **VARIANTS[variant][1])


def warm_up(dc: DovecotInstance, variant: str, connections: int) -> None:
    """Spawn the lmtp processes of the new config (and compile Sieve) before timing."""
    user = f"warm_{variant}"
    msgs = build_stream(connections * 3, 0)
    sessions = [dc.lmtp_session() for _ in range(connections)]
    for i, msg in enumerate(msgs):
        res = sessions[i % connections].deliver(msg.raw, [rcpt_for(dc, variant, user, msg)])
        if not res[0].ok:
            raise VerificationError(f"warm-up of {variant} failed: {res[0]}")
    for s in sessions:
        s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=250,
                    help="messages per connection per round (default 250)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--users", type=int, default=1, help="recipients per variant and round")
    ap.add_argument("--variants", default="".join(ORDER),
                    help="subset/order of variants to run, e.g. 'afc' or 'afbck' "
                         "(default afbc)")
    ap.add_argument("--format", choices=sorted(FORMATS), default="maildir",
                    help="mail storage format (default maildir)")
    ap.add_argument("--baseline-so", type=Path, default=None,
                    help="plugin build for variant (o), e.g. main's")
    ap.add_argument("--keep", action="store_true", help="keep the Dovecot temp dir")
    args = ap.parse_args(argv)
    order = [v for v in args.variants if v in VARIANTS]
    if "o" in order and args.baseline_so is None:
        ap.error("variant o needs --baseline-so")

    users = {}
    for v in order:
        users[f"warm_{v}"] = {}
        for r in range(args.rounds):
            for u in user_names(v, r, args.users):
                users[u] = {}
    first = order[0]
    sidecar = None
    try:
        if set(order) & {"e", "p", "o"}:
            from tests.harness.sidecar import SidecarProcess
            sidecar = SidecarProcess(keep_tmp=args.keep, scan_interval_ms=200)
            sidecar.start()
        dc = DovecotInstance(keep_tmp=args.keep, users=users,
                             mail_location=FORMATS[args.format],
                             **VARIANTS["b" if "b" in order else first][1])
        dc.start()
    except Exception as exc:  # noqa: BLE001
        print(f"setup failed: {exc}", file=sys.stderr)
        if sidecar is not None:
            sidecar.stop()
        return 2
    results: dict[str, list[float]] = {v: [] for v in order}
    cpu: dict[str, list[float]] = {v: [] for v in order}
    status = 0
    try:
        # Create COI/Chats for every user, so no variant pays (or races on)
        # folder creation in the timed part; enable COI for the (b) users as a
        # client would (IMAP SETMETADATA).
        print(f"Dovecot at {dc.tmpdir} ({args.format}); {args.rounds} rounds x "
              f"{args.connections} connections x {args.messages} messages, {args.users} users, "
              f"order {' '.join(order)}", flush=True)
        for u in users:
            dc.doveadm.run("mailbox", "create", "-s", "-u", u, CHATS)
            if u.startswith(tuple(f"{p}{v}" for v in PLUGIN_VARIANTS
                                  for p in ("bench_", "warm_"))):
                dc.enable_coi(u, "active")
        for r in range(args.rounds):
            for v in order:
                configure(dc, v, sidecar, args.baseline_so)
                warm_up(dc, v, args.connections)
                mark = dc.log.mark()
                round_users = user_names(v, r, args.users)
                prime(dc, v, round_users)
                cpu0 = dovecot_cpu_seconds(dc)
                secs, expected = run_load(dc, v, round_users, args.connections, args.messages)
                for u in round_users:  # the primed chat
                    expected[u][CHATS if v != "a" else "INBOX"] += 1
                total = args.connections * args.messages
                # lmtp processes still finishing their QUIT: let them end
                time.sleep(0.3)
                cpu_ms = (dovecot_cpu_seconds(dc) - cpu0) * 1e3 / total
                rate = total / secs
                results[v].append(rate)
                cpu[v].append(cpu_ms)
                verify(dc, v, expected)
                dc.assert_no_panic_or_fatal(since=mark)
                errs = dc.log.grep(": Error: ", since=mark, ignore_case=False)
                if errs:
                    raise VerificationError(f"variant {v} logged errors: {errs[:3]}")
                print(f"  round {r + 1} ({v}): {total} msgs in {secs:.2f}s = {rate:8.1f} msgs/s,"
                      f" Dovecot CPU {cpu_ms:.3f} ms/msg", flush=True)
    except VerificationError as exc:
        print(f"VERIFICATION FAILED: {exc}", file=sys.stderr)
        dc.failed = True
        status = 1
    finally:
        dc.stop()
        if sidecar is not None:
            sidecar.stop()
    report(results, cpu)
    return status


def report(results: dict[str, list[float]], cpu: dict[str, list[float]] | None = None) -> None:
    if cpu:
        print()
        print(f"{'variant':<44} {'Dovecot CPU ms/msg':>18}  rounds")
        for v, xs in cpu.items():
            if xs:
                print(f"[{v}] {VARIANTS[v][0]:<40} {statistics.median(xs):>18.3f}  " +
                      " ".join(f"{x:.3f}" for x in xs))
        cmed = {v: statistics.median(xs) for v, xs in cpu.items() if xs}
        for x, y in (("b", "f"), ("b", "c"), ("b", "a"), ("e", "b"), ("p", "e"), ("o", "e")):
            if x in cmed and y in cmed and cmed[y]:
                paired = statistics.median(p / q for p, q in zip(cpu[x], cpu[y]) if q)
                print(f"  cpu {x}/{y} = {cmed[x] / cmed[y]:.3f}; per round: median {paired:.3f}")
    med = {v: statistics.median(r) for v, r in results.items() if r}
    print()
    print(f"{'variant':<44} {'median msgs/s':>14}  rounds")
    for v, rates in results.items():
        if not rates:
            continue
        label = f"({v}) {VARIANTS[v][0]}"
        print(f"{label:<44} {med[v]:>14.1f}  " + " ".join(f"{x:.0f}" for x in rates))
    print()

    def ratio(x, y):
        return med[x] / med[y] if x in med and y in med and med[y] else None

    for name, target in (("b/f", 0.95), ("b/c", 1.2), ("f/a", None), ("b/a", None),
                         ("e/b", None), ("e/f", None), ("p/e", 0.98),
                         ("o/e", None)):
        q = ratio(name[0], name[2])
        if q is None:
            continue
        verdict = "" if target is None else \
            f"  (target >= {target:.2f}: {'MET' if q >= target else 'NOT MET'})"
        # the same ratio round by round (neighbours in time share the load)
        paired = [x / y for x, y in zip(results[name[0]], results[name[2]]) if y]
        per_round = f"; per round: median {statistics.median(paired):.3f}" if paired else ""
        print(f"  {name} = {q:.3f}{verdict}{per_round}")


if __name__ == "__main__":
    sys.exit(main())

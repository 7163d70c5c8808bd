#!/usr/bin/python3
"""What the event pipeline costs the mail server, stage by stage, in one run (issue 18).

One throwaway Dovecot (tests/harness), reconfigured between variants with
``doveadm reload``, the real ``coi-sidecar``, and HTTP receivers in their own
processes (``bench/lean_receiver.py``). Variants, interleaved round by round
(the order rotates every round), each round to fresh users:

  S  stock Dovecot: no coi plugin;
  R  stock Dovecot, chats addressed to ``user+COI/Chats`` with
     ``lmtp_save_to_detail_mailbox`` (no keyword): the floor of any routing,
     the same two folders without anyone deciding;
  V  stock Dovecot + a ``sieve_before`` script filing the same chats into
     COI/Chats with ``$Chat`` (the stock way to do the plugin's filing);
  P  the plugin, events off (``coi_spool_path`` does not exist);
  Q  the plugin + event spool, sidecar NOT running (the spool grows, each
     doorbell finds no socket);
  Qn Q without a VAPID key configured (no Web Push lookup per delivery);
  U  Q with a spool that is full from the start (``coi_spool_max_size`` 64 KiB,
     pre-filled): UIDs are assigned and events built, every append opens,
     locks and checks the size, then drops the event without writing. U
     against P is the event path without the write; Q against U the write;
  F  Q + ``bench/fsync_floor.py`` on the doorbell socket: a process that only
     appends 64 bytes to a file on the same disk and fdatasyncs it, once per
     doorbell (= per event): the floor of any intake that commits each event;
  Fw the same, at most once per 10 ms while doorbells keep coming: the floor
     of the sidecar's group commit with its default window;
  Fh the same with a 50 ms window (the sidecar's window at these rates), and
     after each sync every new spool record POSTed as it is, in order, on one
     kept-alive connection to the same webhook receiver: the floor of any
     implementation that acknowledges durably and sends one request per event;
  W  the plugin + spool + the running sidecar + one webhook endpoint that
     answers 200 at once;
  X  W + Web Push: a quarter of the users have a validated subscription
     (msgtype ``all``), the push service answers 201 at once.

The stream: a third plain mail, a third COI chats, a third Delta Chat
messages (the captured real Delta Chat 2.65 mails of tests/fixtures/deltachat,
each with a fresh Message-ID), over ``--connections`` LMTP sessions, one RCPT
per message, spread over ``--users`` users with COI on (``active``). Every
round is checked: folder counts per user; for W and X every event arrived as
a correctly signed webhook (one per message); for X every push decrypts with
its subscription's key, carries a valid VAPID JWT, and the pushes are
exactly the messages of subscribed users that are not read receipts.

Besides the delivery rates (medians, and each against S) it reports, per
1,000 events of the W and X rounds (from the round's start until the last
webhook/push arrived): the sidecar's CPU time (utime+stime of all its
threads), its queue commits (``coi_queue_commits_total``, when the sidecar has
that counter), the fsync/fdatasync calls of the sidecar and of Dovecot
(``perf record`` of the syscall tracepoints, machine-wide, attributed by
process; ``--no-perf`` to skip), the time from the last LMTP answer to the
last webhook (drain lag), and the sidecar's peak RSS.

Usage: /usr/bin/python3 bench/pipeline_cost.py [--rounds 5] [--messages 1500]
       [--connections 2] [--users 40] [--variants SPQWX] [--push-share 0.25]
Exit status: 0 ran and verified, 1 a variant stored or sent the wrong thing,
2 setup failure. Needs target/release/libcoi_plugin.so and coi-sidecar.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lean_receiver import LeanReceiver  # noqa: E402
from bench.lmtp_throughput import dovecot_cpu_seconds  # noqa: E402
from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402
from tests.harness.pushreceiver import PushSidecar  # noqa: E402
from tests.harness.sidecar import TEST_SECRET, Webhook  # noqa: E402

CHATS = "COI/Chats"
ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
SUBS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
NO_SPOOL = "/nonexistent/coi-bench-spool"
#: coi_spool_max_size of variant U (the smallest the plugin accepts).
U_SPOOL_BYTES = 64 * 1024
VARIANTS = {
    "S": "stock Dovecot (no plugin)",
    "R": "stock Dovecot, the sender names the chats folder (user+COI/Chats, no $Chat): the floor of any routing",
    "V": "stock Dovecot + a sieve_before script filing the same chats with $Chat (routing without the plugin)",
    "P": "plugin, events off",
    "Q": "plugin + spool, sidecar not running",
    "Qn": "Q without Web Push configured (no VAPID key)",
    "F": "Q + a process that only fdatasyncs once per doorbell (the floor of per-event durability)",
    "Fw": "Q + a process that only fdatasyncs, at most once per 10 ms (the group-commit floor)",
    "Fh": "Q + a process that fdatasyncs at most once per 50 ms and POSTs each record unsigned "
          "on one kept-alive connection (the floor of any durable webhook forwarder)",
    "U": "Q with a full spool: UIDs assigned, events built, every append refused (no write)",
    "W": "plugin + spool + sidecar + webhook",
    "X": "W + Web Push for a share of users",
}
TARGETS = {"P": None, "Q": 0.98, "W": 0.95, "X": 0.93}
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "deltachat")
                  .glob("*.eml"))
SUBJECT = "mailto:postmaster@example.org"
#: Variant V: Dovecot's own Sieve doing the filing the plugin does for this
#: stream (COI chats by Chat-Version, the captured Delta Chat 2.x messages by
#: their protected-header shape), so P/V is the plugin's cost over the same
#: work done the stock way.
SIEVE_ROUTING = """require ["imap4flags","fileinto"];
if anyof (exists "Chat-Version",
          allof (header :is "Subject" "[...]", header :contains "To" "hidden-recipients")) {
  addflag "$Chat"; fileinto "COI/Chats";
}
"""


class VerificationError(AssertionError):
    pass


# --------------------------------------------------------------------------- the stream
def deltachat_message(i: int) -> M.TestMessage:
    """Captured fixture number ``i`` (cycling) with a fresh Message-ID."""
    raw = FIXTURES[i % len(FIXTURES)].read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    mid = f"{uuid.uuid4()}@localhost"
    raw, n = re.subn(rb"(?im)^Message-ID:[ \t]*<[^>]+>", f"Message-ID: <{mid}>".encode(), raw,
                     count=1)
    assert n == 1, FIXTURES[i % len(FIXTURES)]
    return M.TestMessage(raw, mid, "[...]", "chat")


def build_stream(count: int) -> list[M.TestMessage]:
    out = []
    for i in range(count):
        k = i % 3
        out.append(M.plain_mail() if k == 0 else M.coi_chat() if k == 1
                   else deltachat_message(i // 3))
    return out


def users_of(variant: str, rnd: int, n: int) -> list[str]:
    return [f"{variant.lower()}{rnd}_{i}" for i in range(n)]


# --------------------------------------------------------------------------- measuring
def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def proc_status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def commits(sc) -> dict[str, float]:
    try:
        return sc.metrics().by_label("coi_queue_commits_total", "writer")
    except Exception:  # noqa: BLE001 - an older sidecar has no such counter
        return {}


class SyscallCounter:
    """fsync/fdatasync calls machine-wide during a window, by process (``perf record``)."""

    EVENTS = ("syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync")

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("perf") is not None
        self.proc = None

    def start(self) -> None:
        if not self.enabled:
            return
        self.out = Path(tempfile.mkstemp(prefix="coi-perf-", suffix=".data")[1])
        argv = ["perf", "record", "-q", "-a", "-o", str(self.out)]
        for e in self.EVENTS:
            argv += ["-e", e]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)  # let perf open its events before the window starts
        if self.proc.poll() is not None:
            print(f"perf record failed: {self.proc.stderr.read().decode()[:300]}; "
                  "fsyncs not counted", file=sys.stderr)
            self.enabled = False

    def stop(self) -> dict[int, tuple[str, int]]:
        """pid -> (comm, calls)."""
        if not self.enabled or self.proc is None:
            return {}
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.proc = None
        text = subprocess.run(["perf", "script", "-i", str(self.out), "-F", "pid,comm"],
                              capture_output=True, text=True).stdout
        self.out.unlink(missing_ok=True)
        out: dict[int, tuple[str, int]] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[-1].isdigit():
                continue
            pid, comm = int(parts[-1]), " ".join(parts[:-1])
            out[pid] = (comm, out.get(pid, (comm, 0))[1] + 1)
        return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far; idle and iowait are not busy."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def dovecot_pids(dc: DovecotInstance) -> set[int]:
    return {pid for pid, _ in dc.child_processes()} | ({dc.master_pid} if dc.master_pid else set())


# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args):
        self.args = args
        # --alt NAME:BINARY[:WINDOW_MS[:MAX_MS]]: variant NAME is W with
        # another coi-sidecar binary and/or commit window (A/B in the same run).
        self.alts: dict[str, tuple[str, int | None, int | None]] = {}
        for spec in args.alt:
            name, binary, *window = spec.split(":")
            self.alts[name] = (binary, int(window[0]) if window else None,
                               int(window[1]) if len(window) > 1 else None)
            VARIANTS[name] = f"W with {Path(binary).name}" + (
                f", window {window[0]}" + (f"-{window[1]}" if len(window) > 1 else "") + " ms"
                if window else "")
        self.order = [v for v in re.findall(r"[A-Z][a-z0-9]*", args.variants) if v in VARIANTS]
        self.rates = {v: [] for v in self.order}
        self.side = {v: [] for v in self.order}   # per-round figures
        self.subscribed: dict[str, str] = {}      # user -> subscription id
        self.tmp = Path(tempfile.mkdtemp(prefix="coi-pipeline-"))
        # The mail uid must reach q-spool and q-run (mkdtemp makes it 0700:
        # every append of Q failed with EACCES and was dropped).
        self.tmp.chmod(0o711)
        self.q_spool = self.tmp / "q-spool"
        self.q_socket = self.tmp / "q-run" / "events.sock"
        self.perf = SyscallCounter(not args.no_perf)

    # -- setup -------------------------------------------------------------------
    def setup(self) -> None:
        a = self.args
        self.wh = LeanReceiver("webhook")
        self.push = LeanReceiver("push")
        self.push.call("msgtype", a.msgtype)
        self.sc = PushSidecar([Webhook("bench", self.wh.url("/hook"), timeout_secs=10,
                                       concurrency=a.webhook_concurrency,
                                       retry_schedule_secs=(1, 2, 5, 10, 30, 60))],
                              scan_interval_ms=1000, rotate_bytes=64 << 20,
                              subject=SUBJECT, commit_window_ms=a.commit_window_ms,
                              keep_tmp=a.keep)
        self.sc.push_sections = self.sc.push_config(retry_schedule_secs=(1, 2, 5, 10, 30))
        self.sc.start()
        self.sidecars = {"W": self.sc, "X": self.sc}
        for name, (binary, window, window_max) in self.alts.items():
            os.environ["COI_SIDECAR_BIN"], saved = binary, os.environ.get("COI_SIDECAR_BIN")
            try:
                self.sidecars[name] = PushSidecar(
                    [Webhook("bench", self.wh.url("/hook"), timeout_secs=10,
                             concurrency=a.webhook_concurrency,
                             retry_schedule_secs=(1, 2, 5, 10, 30, 60))],
                    scan_interval_ms=1000, rotate_bytes=64 << 20, subject=SUBJECT,
                    commit_window_ms=window, commit_window_max_ms=window_max,
                    keep_tmp=a.keep)
            finally:
                if saved is None:
                    del os.environ["COI_SIDECAR_BIN"]
                else:
                    os.environ["COI_SIDECAR_BIN"] = saved
            alt = self.sidecars[name]
            alt.push_sections = alt.push_config(retry_schedule_secs=(1, 2, 5, 10, 30))
        deadline = time.monotonic() + 20
        while not self.sc.vapid_public_key.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the sidecar wrote no VAPID key")
            time.sleep(0.05)
        self.q_spool.mkdir()
        self.q_socket.parent.mkdir()
        if self.sc.ident.running_as_root:
            os.chown(self.q_spool, self.sc.ident.uid, self.sc.ident.gid)
        self.q_spool.chmod(0o775)
        users = {"warm": ACTIVE}
        for v in self.order:
            users[f"warm_{v.lower()}"] = ACTIVE
            for r in range(a.rounds):
                for u in users_of(v, r, a.users):
                    users[u] = ACTIVE
        self.dc = DovecotInstance(plugin=True, users=users, keep_tmp=a.keep,
                                  plugin_settings=self.settings("W"))
        self.dc.start()
        self.current = "W"
        # No folder creation inside the timed part.
        self.dc.doveadm.run("mailbox", "create", "-A", "-s", CHATS, timeout=600)
        if "X" in self.order:
            n_sub = max(1, round(a.users * a.push_share))
            for r in range(a.rounds):
                for u in users_of("X", r, a.users)[:n_sub]:
                    self.subscribe(u)
            self.wait_drained(0, 0)  # the validation pushes

    def settings(self, variant: str) -> dict[str, str]:
        key = {"coi_webpush_vapid_key": str(self.sc.vapid_public_key)}
        if variant == "P":
            return {"coi_spool_path": NO_SPOOL, "coi_sidecar_socket": str(self.q_socket), **key}
        if variant in ("Q", "Qn", "F", "Fw", "Fh"):
            return {"coi_spool_path": str(self.q_spool), "coi_sidecar_socket": str(self.q_socket),
                    **(key if variant in ("Q", "Fh") else {})}
        if variant == "U":
            return {"coi_spool_path": str(self.q_spool), "coi_spool_max_size": str(U_SPOOL_BYTES),
                    "coi_sidecar_socket": str(self.q_socket), **key}
        return {**self.sidecars[variant].plugin_settings(), **key}

    def configure(self, variant: str) -> None:
        stockish = ("S", "R", "V")
        want = (variant,) if variant in stockish else tuple(sorted(self.settings(variant).items()))
        have = ((self.current,) if self.current in stockish
                else tuple(sorted(self.settings(self.current).items())))
        if want != have:
            if variant == "S":
                self.dc.reconfigure(plugin=False, sieve_before=None,
                                    lmtp_save_to_detail_mailbox=False)
            elif variant == "R":
                self.dc.reconfigure(plugin=False, sieve_before=None,
                                    lmtp_save_to_detail_mailbox=True)
            elif variant == "V":
                self.dc.reconfigure(plugin=False, sieve_before=SIEVE_ROUTING,
                                    lmtp_save_to_detail_mailbox=False)
            else:
                self.dc.reconfigure(plugin=True, sieve_before=None,
                                    lmtp_save_to_detail_mailbox=False,
                                    plugin_settings=self.settings(variant))
        self.current = variant
        self.floor_stop()
        for name, sc in self.sidecars.items():
            if sc is not self.sidecars.get(variant):
                sc.stop()
        if variant in ("F", "Fw"):
            self.floor_start(0 if variant == "F" else 10)
        if variant == "Fh":
            self.floor_start(50, forward=self.wh.url("/hook"))
        if variant in self.sidecars:
            self.sidecars[variant].start()

    def verify_spool(self, variant: str, n: int) -> None:
        """Q, Qn, F, Fw: one record per message in the spool; U: nothing written."""
        if variant not in ("Q", "Qn", "U", "F", "Fw", "Fh"):
            return
        data = b"".join(f.read_bytes() for f in self.q_spool.iterdir())
        if variant == "U":
            if len(data) != U_SPOOL_BYTES:
                raise VerificationError(f"U: the full spool changed ({len(data)} bytes)")
            return
        records = data.count(b"\x1e")
        if records < n:
            raise VerificationError(f"{variant}: {records} spool records for {n} messages")

    def floor_start(self, window_ms: int, forward: str | None = None) -> None:
        """Runs bench/fsync_floor.py on the doorbell socket the plugin rings."""
        self.floor = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("fsync_floor.py")), str(self.q_socket),
             str(self.tmp / "floor.data"), "--window-ms", str(window_ms),
             *(["--forward", forward, "--spool", str(self.q_spool)] if forward else [])],
            stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not self.q_socket.exists():
            if time.monotonic() > deadline or self.floor.poll() is not None:
                raise RuntimeError("fsync_floor.py did not bind the doorbell socket")
            time.sleep(0.02)

    def floor_stop(self) -> None:
        floor = getattr(self, "floor", None)
        if floor is None:
            return
        floor.send_signal(signal.SIGTERM)
        out, _ = floor.communicate(timeout=10)
        self.floor = None
        print(f"  fsync floor: {out.strip()}", flush=True)

    def subscribe(self, user: str) -> None:
        sub = self.push.call("subscribe", "b" + uuid.uuid4().hex[:20])
        with self.dc.imap(user) as c:
            c.setmetadata_ok(SUBS + sub["id"], sub["client_json"])
            deadline = time.monotonic() + 20
            while (secret := self.push.call("validation_secret", sub["id"])) is None:
                if time.monotonic() > deadline:
                    raise VerificationError(f"no validation push for {user}\n"
                                            f"{self.sc.log_tail(20)}")
                time.sleep(0.02)
            c.setmetadata_ok(SUBS + sub["id"] + "/validate", secret)
        self.subscribed[user] = sub["id"]

    # -- one round -------------------------------------------------------------------
    def warm_up(self, variant: str) -> None:
        user = f"warm_{variant.lower()}"
        msgs = build_stream(6 * self.args.connections)
        jobs = [(m.raw, self.dc.address(user)) for m in msgs]
        wh0, push0 = self.wh.count(), self.push.count()
        results, _ = self.dc.lmtp_deliver_timed(jobs, self.args.connections)
        bad = [r for r in results if not r.ok]
        if bad:
            raise VerificationError(f"warm-up of {variant} failed: {bad[:2]}")
        if variant in self.sidecars:
            self.wait_drained(wh0 + len(jobs), push0, self.sidecars[variant])

    def wait_drained(self, want_webhooks: int, want_pushes: int, sc=None,
                     timeout: float = 180) -> None:
        sc = sc or self.sc
        deadline = time.monotonic() + timeout
        while True:
            have, pushes = self.wh.count(), self.push.count()
            depth = sc.metrics().value("coi_queue_depth_events")
            if have >= want_webhooks and pushes >= want_pushes and depth == 0:
                return
            if time.monotonic() > deadline:
                raise VerificationError(f"events stuck: {have}/{want_webhooks} webhooks, "
                                        f"{pushes}/{want_pushes} pushes, queue depth {depth}\n"
                                        f"{sc.log_tail(20)}")
            time.sleep(0.05)

    def run_round(self, variant: str, rnd: int) -> None:
        a = self.args
        self.configure(variant)
        self.warm_up(variant)
        users = users_of(variant, rnd, a.users)
        msgs = build_stream(a.messages)
        jobs, expected = [], {u: {"INBOX": 0, CHATS: 0} for u in users}
        for i, m in enumerate(msgs):
            u = users[i % len(users)]
            routed_by_sender = variant == "R" and m.is_chat
            jobs.append((m.raw, self.dc.rcpt(u, CHATS) if routed_by_sender else self.dc.address(u)))
            folder = CHATS if (m.is_chat and variant != "S") else "INBOX"
            expected[u][folder] += 1
        events = variant in self.sidecars
        sc = self.sidecars.get(variant)
        wh0, push0 = self.wh.count(), self.push.count()
        conns0 = (self.wh.call("connections", None), self.push.call("connections", None))
        c0 = commits(sc) if events else {}
        pid = sc.pid if events else None
        cpu0 = proc_cpu_seconds(pid) if pid else 0.0
        if variant in ("Q", "Qn", "U", "F", "Fw", "Fh"):
            for f in self.q_spool.iterdir():
                f.unlink()
        if variant == "U":
            # Full from the start: each append opens, locks and checks the
            # size, then drops the event (counted) without writing.
            full = self.q_spool / "events.log"
            full.write_bytes(b"\n" * U_SPOOL_BYTES)
            full.chmod(0o666)
        floor_cpu0 = proc_cpu_seconds(self.floor.pid) if variant == "Fh" else 0.0
        self.perf.start()
        dcpu0, busy0 = dovecot_cpu_seconds(self.dc), machine_ticks()
        results, secs = self.dc.lmtp_deliver_timed(jobs, a.connections)
        t_end = time.time()
        dcpu1, busy1 = dovecot_cpu_seconds(self.dc), machine_ticks()
        bad = [f"{r.rcpt}: {r.code} {r.message}" for r in results if not r.ok]
        if bad or len(results) != len(jobs):
            raise VerificationError(f"{variant}: {len(bad)} deliveries failed: {bad[:3]}")
        fig: dict = {"rate": len(jobs) / secs,
                     # Dovecot's own CPU per message, and how busy the whole
                     # machine was while delivering (1.0 = both cores).
                     "dovecot_cpu_ms": (dcpu1 - dcpu0) * 1000 / len(jobs),
                     "busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])}
        n_push = 0
        if variant == "Fh":
            # Not verified like W (unsigned, as the plugin wrote them): all there.
            deadline = time.monotonic() + 120
            while self.wh.count() < wh0 + len(jobs):
                if time.monotonic() > deadline or self.floor.poll() is not None:
                    raise VerificationError(f"Fh: {self.wh.count() - wh0} of {len(jobs)} "
                                            "records forwarded")
                time.sleep(0.01)
            fig["drain_lag_ms"] = (time.time() - t_end) * 1000
            fig["floor_cpu_ms_per_1k"] = (proc_cpu_seconds(self.floor.pid) - floor_cpu0) \
                * 1e6 / len(jobs)
        if events:
            # The event's user is the login name Dovecot resolved (user@domain).
            subs = {self.dc.address(u) for u in users if u in self.subscribed} | \
                {u for u in users if u in self.subscribed}
            self.wait_drained(wh0 + len(jobs), push0, sc)
            hooks, errors = self.wh.call("check", (wh0, TEST_SECRET))
            if errors:
                raise VerificationError(f"{variant}: bad webhooks: {errors[:3]}")
            want_mids = {m.message_id for m in msgs}
            got_mids = {(h["message_id"] or "").strip("<>") for h in hooks}
            if len({h["webhook_id"] for h in hooks}) != len(jobs) or got_mids != want_mids:
                raise VerificationError(f"{variant}: {len(hooks)} webhooks for {len(jobs)} "
                                        f"messages; missing {len(want_mids - got_mids)}")
            n_push = sum(1 for h in hooks if h["user"] in subs and h["kind"] != "read-receipt")
            self.wait_drained(wh0 + len(jobs), push0 + n_push, sc)
            t_last = max(h["at"] for h in hooks)
            if n_push:
                pushes, errors = self.push.call("check", (push0, self.sc.vapid_public_key
                                                          .read_bytes(), SUBJECT))
                if errors:
                    raise VerificationError(f"{variant}: bad pushes: {errors[:3]}")
                got = {p["msg_id"] for p in pushes if not p["validation"]}
                want = {h["message_id"].strip("<>") for h in hooks
                        if h["user"] in subs and h["kind"] != "read-receipt"}
                if got != want or len(pushes) != n_push:
                    raise VerificationError(f"{variant}: {len(pushes)} pushes, expected {n_push}")
                t_last = max(t_last, max(p["at"] for p in pushes))
            cpu = proc_cpu_seconds(pid) - cpu0
            c1 = commits(sc)
            n_ev = len(jobs) + n_push
            conns = (self.wh.call("connections", None) - conns0[0],
                     self.push.call("connections", None) - conns0[1])
            fig.update(events=len(jobs), pushes=n_push, tcp_connections=conns, drain_lag_ms=(t_last - t_end) * 1000,
                       cpu_ms_per_1k=cpu * 1000 / len(jobs) * 1000,
                       commits_per_1k={k: (c1.get(k, 0) - c0.get(k, 0)) * 1000 / len(jobs)
                                       for k in c1},
                       hwm_kib=proc_status_kib(pid, "VmHWM"), n_ev=n_ev)
        calls = self.perf.stop()
        if calls:
            dpids = dovecot_pids(self.dc)
            dove = sum(n for p, (comm, n) in calls.items()
                       if p in dpids or comm in ("lmtp", "dovecot", "auth", "log", "anvil"))
            fig["dovecot_fsyncs_per_msg"] = dove / len(jobs)
            if getattr(self, "floor", None) is not None:
                floor = calls.get(self.floor.pid, ("", 0))[1]
                fig["floor_fsyncs_per_1k"] = floor * 1000 / len(jobs)
            if events:
                side = calls.get(pid, ("", 0))[1]
                fig["sidecar_fsyncs_per_1k"] = side * 1000 / len(jobs)
        self.verify(variant, expected)
        self.verify_spool(variant, len(jobs))
        self.rates[variant].append(fig["rate"])
        self.side[variant].append(fig)
        extra = ""
        if events:
            extra = (f"; sidecar {fig['cpu_ms_per_1k']:.0f} ms CPU/1k events, drain lag "
                     f"{fig['drain_lag_ms']:.0f} ms"
                     + (f", {n_push} pushes" if n_push else "")
                     + f", new TCP connections webhook {fig['tcp_connections'][0]}"
                     + (f" push {fig['tcp_connections'][1]}" if n_push else "")
                     + (f", fsyncs/1k {fig['sidecar_fsyncs_per_1k']:.0f}"
                        if "sidecar_fsyncs_per_1k" in fig else "")
                     + (", commits/1k " + " ".join(f"{k} {v:.0f}" for k, v in
                                                  sorted(fig["commits_per_1k"].items()))
                        if fig["commits_per_1k"] else ""))
        if "dovecot_fsyncs_per_msg" in fig:
            extra += f"; Dovecot fsyncs/msg {fig['dovecot_fsyncs_per_msg']:.2f}"
        if "floor_fsyncs_per_1k" in fig:
            extra += f"; floor fdatasyncs/1k {fig['floor_fsyncs_per_1k']:.0f}"
        if "floor_cpu_ms_per_1k" in fig:
            extra += (f"; floor CPU {fig['floor_cpu_ms_per_1k']:.0f} ms/1k events, all forwarded "
                      f"{fig['drain_lag_ms']:.0f} ms after the last LMTP answer")
        print(f"  round {rnd + 1} {variant}: {len(jobs)} msgs in {secs:.2f}s = "
              f"{fig['rate']:7.1f} msgs/s; Dovecot CPU {fig['dovecot_cpu_ms']:.2f} ms/msg, "
              f"machine busy {fig['busy']:.0%}{extra}", flush=True)

    def verify(self, variant: str, expected: dict) -> None:
        for user, want in expected.items():
            got = self.dc.doveadm.message_counts(user)
            got_cmp = {k: got.get(k, 0) for k in want}
            if got_cmp != want:
                raise VerificationError(f"{variant} {user}: expected {want}, found {got}")

    def run(self) -> None:
        a = self.args
        print(f"machine: {machine()}", flush=True)
        print(f"load before: {load()}; Dovecot at {self.dc.tmpdir}, sidecar {self.sc.root}; "
              f"{a.rounds} rounds x {a.messages} msgs over {a.connections} LMTP sessions, "
              f"{a.users} users; order {' '.join(self.order)} (rotating)", flush=True)
        for r in range(a.rounds):
            k = r % len(self.order)
            for v in self.order[k:] + self.order[:k]:
                self.run_round(v, r)
        self.dc.assert_no_panic_or_fatal()

    def close(self) -> None:
        try:
            self.floor_stop()
        except Exception as exc:  # noqa: BLE001 - best effort
            print(f"stopping the fsync floor: {exc}", file=sys.stderr)
        for sc in list(getattr(self, "sidecars", {}).values())[2:]:
            sc.close()
        for x in ("sc", "dc", "wh", "push"):
            obj = getattr(self, x, None)
            if obj is None:
                continue
            try:
                if x == "dc":
                    obj.stop()
                else:
                    obj.close()
            except Exception as exc:  # noqa: BLE001 - best effort
                print(f"closing {x}: {exc}", file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------
    def report(self) -> None:
        med = {v: statistics.median(r) for v, r in self.rates.items() if r}
        base = med.get("S")
        print()
        print(f"load after: {load()}")
        def paired(v: str, ref: str) -> float:
            """Median over rounds of v / ref in the same rotation (less noisy)."""
            pairs = [a / b for a, b in zip(self.rates[v], self.rates.get(ref) or []) if b]
            return statistics.median(pairs) if pairs else float("nan")
        with_v = "V" in med
        print("| variant | median msgs/s | / stock | per-round / stock | "
              + ("/ V (Sieve routing) | " if with_v else "") + "target | rounds |")
        print("|---|---|---|---|" + ("---|" if with_v else "") + "---|---|")
        for v in self.order:
            if v not in med:
                continue
            ratio = med[v] / base if base else float("nan")
            t = TARGETS.get(v)
            verdict = "" if t is None or v == "S" else \
                f">= {t:.2f}: {'met' if ratio >= t else 'MISSED'}"
            print(f"| {v} {VARIANTS[v]} | {med[v]:.1f} | {ratio:.3f} | {paired(v, 'S'):.3f} | "
                  + (f"{med[v] / med['V']:.3f} ({paired(v, 'V'):.3f}) | " if with_v else "")
                  + f"{verdict} | " + " ".join(f"{x:.0f}" for x in self.rates[v]) + " |")
        if "P" in med:
            # The aim: the whole pipeline should cost what the plugin costs.
            print("over the plugin alone (P), medians (per-round): " + ", ".join(
                f"{v}/P {med[v] / med['P']:.3f} ({paired(v, 'P'):.3f})"
                for v in self.order if v in med and v not in ("S", "R", "V", "P")))
        for v in self.order:
            figs = [f for f in self.side.get(v) or [] if "cpu_ms_per_1k" in f]
            if not figs:
                continue
            m = lambda k: statistics.median(f[k] for f in figs if k in f)  # noqa: E731
            per_round = " ".join(f"{f['cpu_ms_per_1k']:.0f}" for f in figs)
            line = (f"{v}: sidecar CPU {m('cpu_ms_per_1k'):.0f} ms per 1,000 events "
                    f"(rounds: {per_round})")
            print(line)
            if any(f.get("commits_per_1k") for f in figs):
                keys = sorted({k for f in figs for k in f["commits_per_1k"]})
                print(f"{v}: commits per 1,000 events " + ", ".join(
                    f"{k} {statistics.median(f['commits_per_1k'].get(k, 0) for f in figs):.0f}"
                    for k in keys))
            if any("sidecar_fsyncs_per_1k" in f for f in figs):
                print(f"{v}: sidecar fsync+fdatasync per 1,000 events "
                      f"{m('sidecar_fsyncs_per_1k'):.0f}")
            print(f"{v}: drain lag (last LMTP answer -> last webhook/push) median "
                  f"{m('drain_lag_ms'):.0f} ms; sidecar peak RSS "
                  f"{max(f['hwm_kib'] for f in figs) / 1024:.1f} MiB"
                  + (f"; pushes per round {figs[0]['pushes']}" if v == "X" else ""))
        for v in self.order:
            figs = self.side.get(v) or []
            if figs:
                print(f"{v}: Dovecot CPU per message {statistics.median(f['dovecot_cpu_ms'] for f in figs):.2f} ms, "
                      f"machine busy while delivering {statistics.median(f['busy'] for f in figs):.0%}")
        for v in self.order:
            figs = [f for f in self.side[v] if "dovecot_fsyncs_per_msg" in f]
            if figs:
                print(f"{v}: Dovecot fsync+fdatasync per message "
                      f"{statistics.median(f['dovecot_fsyncs_per_msg'] for f in figs):.2f}")
        print("command: /usr/bin/python3 bench/pipeline_cost.py " + " ".join(sys.argv[1:]))


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def machine() -> str:
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import platform
    return f"{os.cpu_count()} CPU(s) {cpu}; {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=1500, help="messages per round")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--variants", default="SPQWX",
                    help="variants in order, e.g. SPQWX, or SWWb with --alt Wb:...")
    ap.add_argument("--push-share", type=float, default=0.25,
                    help="share of the X users with a validated Web Push subscription")
    ap.add_argument("--msgtype", default="all", help="the subscriptions' msgtype")
    ap.add_argument("--webhook-concurrency", type=int, default=32)
    ap.add_argument("--commit-window-ms", type=int, default=None,
                    help="the sidecar's spool_commit_window_ms (default: its own default)")
    ap.add_argument("--alt", action="append", default=[], metavar="NAME:BINARY[:WINDOW_MS[:MAX_MS]]",
                    help="an extra variant NAME (capitalised, e.g. Wb): W with another "
                         "coi-sidecar binary and/or commit window, interleaved with the rest")
    ap.add_argument("--no-perf", action="store_true", help="do not count fsyncs with perf")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args(argv)
    bench = Bench(args)
    try:
        bench.setup()
    except Exception as exc:  # noqa: BLE001
        print(f"setup failed: {exc!r}", file=sys.stderr)
        bench.close()
        return 2
    status = 0
    try:
        bench.run()
    except VerificationError as exc:
        print(f"VERIFICATION FAILED: {exc}", file=sys.stderr)
        status = 1
        bench.dc.failed = True
        bench.sc.failed = True
    finally:
        bench.close()
    bench.report()
    return status


if __name__ == "__main__":
    sys.exit(main())

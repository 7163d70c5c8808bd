"""Fault injection: Dovecot + coi plugin -> spool -> coi-sidecar -> receiver (issue 6, item 3).

Owns the checks that faults lose nothing the design promises to keep
(docs/events.md: the spool is the buffer; a sidecar that is down or killed only
delays events; a full spool drops events but counts them; mail delivery never
waits on or fails because of events). Each case ends with the counts of mails
delivered (stored copies, over IMAP), events delivered (distinct webhook-ids
answered 2xx), duplicates, events dropped and counted (the sidecar's
``coi_plugin_events_dropped_total`` and the plugin's log) and spool records
rejected, printed as one ``COUNTS`` line and written up in
``docs/fault-injection.md``:

* the sidecar SIGKILLed (by pid) three times during 600 deliveries and restarted;
* the doorbell socket in a missing directory, deleted under the running sidecar,
  or unwritable for the mail processes;
* the spool full: ``coi_spool_max_size`` reached; the spool directory
  unwritable; the spool on a 160 KiB tmpfs filled while the sidecar is down;
* the sidecar's queue database on a full tmpfs, and on an ext4 volume forced
  read-only by the kernel under the running sidecar (``errors=remount-ro``);
* webhook endpoints slow, refusing (closed port) and hanging, next to a healthy one;
* ``doveadm reload`` three times during 600 deliveries.

One case documents a limit and is marked ``xfail(strict=True)`` (it turns
into a failure the day the limit goes, so the mark gets removed): drop counts
of a process that exits while the sidecar is down and the spool refuses
writes reach only the log, not the sidecar's counter. A second defect found
here (a delivery the queue could not record was re-sent every ~12 ms) is
fixed; its test now guards the backoff.

Filesystems are mounted only as root (tmpfs, loop-mounted ext4) and always
unmounted in a ``finally``; every process is stopped by its pid
(``SidecarProcess``) or ``doveadm -c CONF stop``. Runtime about 55 s on 2 cores.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from tests.harness import DovecotInstance, free_ports
from tests.harness import messages as M
from tests.harness.faults import (LoopExt4, SmallFs, can_mount, deliver_burst,
                                  plugin_drop_warnings, stored_message_ids)
from tests.harness.receiver import HANG, OK, Reply, WebhookReceiver
from tests.harness.sidecar import Metrics, SidecarProcess, Webhook
from tests.harness.sysuser import ensure_mail_identity

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
#: alice: COI on, chats filed into COI/Chats; bob: no COI.
USERS = {"alice": ACTIVE, "bob": {}}
WAIT = 60.0

needs_root = pytest.mark.skipif(not can_mount(), reason="mounting filesystems needs root")

#: One line per case, printed at the end of the module (and with -s as they come).
REPORT: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_report():
    yield
    if REPORT:
        print("\n==== fault-injection counts\n" + "\n".join(REPORT))


# --------------------------------------------------------------------------- environment
@dataclass
class Env:
    rx: WebhookReceiver
    sc: SidecarProcess
    dc: DovecotInstance | None = None
    #: Message-ID (no brackets) -> Dovecot user, of every delivery the test made.
    sent: dict[str, str] = field(default_factory=dict)
    cleanups: list = field(default_factory=list)

    def diag(self, n: int = 30) -> str:
        parts = ["", self.sc.log_tail(30), "--- " + self.rx.log_tail(10),
                 f"--- spool {self.sc.spool_dir}: {self.sc.spool_files()}"]
        if self.dc is not None:
            parts.append(f"--- Dovecot log (last {n} lines)\n" + (self.dc.log.tail(n) or "(empty)"))
        return "\n".join(parts)

    def metrics(self) -> Metrics:
        return self.sc.metrics()

    def wait_metric(self, cond, what: str, timeout: float = 20.0) -> Metrics:
        deadline = time.monotonic() + timeout
        while True:
            m = self.sc.metrics()
            if cond(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics never showed {what}{self.diag()}")
            time.sleep(0.1)

    def wait_for(self, cond, what: str, timeout: float = WAIT, step: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}{self.diag()}")
            time.sleep(step)

    # -- deliveries --------------------------------------------------------------
    def make_jobs(self, n: int) -> list[tuple[M.TestMessage, str]]:
        """Alternately a chat for alice (filed, tagged) and plain mail for bob."""
        jobs = []
        for i in range(n):
            if i % 2:
                jobs.append((M.coi_chat(to=self.dc.address("alice")), "alice"))
            else:
                jobs.append((M.plain_mail(to=self.dc.address("bob")), "bob"))
        return jobs

    def burst(self, jobs, connections: int = 4, **kw):
        for msg, user in jobs:
            self.sent[msg.message_id] = user
        res = deliver_burst(self.dc, [(m.raw, u) for m, u in jobs], connections, **kw)
        bad = res.failed()
        assert not bad, f"{len(bad)} of {len(jobs)} deliveries failed: {list(bad.values())[:3]}" \
                        + self.diag()
        return res

    def lda(self, msg: M.TestMessage, user: str) -> None:
        self.sent[msg.message_id] = user
        res = self.dc.lda_deliver(user, msg.raw)
        assert res.ok, f"dovecot-lda to {user}: {res}{self.diag()}"

    # -- counting ----------------------------------------------------------------
    def stored(self) -> Counter:
        """Message-ID -> stored copies, over IMAP, all folders of every user."""
        out = Counter()
        for user in self.dc.users:
            out.update(stored_message_ids(self.dc, user))
        return out

    def ids_by_mid(self, path: str | None = None, rx: WebhookReceiver | None = None
                   ) -> dict[str, set]:
        """Message-ID -> webhook-ids answered 2xx (on ``path``, if given)."""
        out: dict[str, set] = defaultdict(set)
        for r in (rx or self.rx).requests:
            if r.ok and (path is None or r.path == path):
                out[r.json()["data"]["message_id"].strip("<>")].add(r.webhook_id)
        return out

    def delivered_count(self, path: str | None = None, rx: WebhookReceiver | None = None) -> int:
        return len({r.webhook_id for r in (rx or self.rx).requests
                    if r.ok and (path is None or r.path == path)})

    def check_events(self, path: str | None = None, rx: WebhookReceiver | None = None,
                     copies: Counter | None = None) -> dict:
        """Every sent message has exactly one event id (one per stored copy, if
        ``copies`` is given), delivered at least once; nothing unexpected."""
        rx = rx or self.rx
        by_mid = self.ids_by_mid(path, rx)
        missing = sorted(set(self.sent) - set(by_mid))
        assert not missing, (f"{len(missing)} of {len(self.sent)} messages have no delivered "
                             f"event, e.g. {missing[:4]}{self.diag()}")
        unexpected = sorted(set(by_mid) - set(self.sent))
        assert not unexpected, f"events for messages never sent: {unexpected[:4]}"
        want = copies or Counter({mid: 1 for mid in self.sent})
        split = {mid: ids for mid, ids in by_mid.items() if len(ids) != want[mid]}
        assert not split, (f"{len(split)} messages with a wrong number of event ids "
                           f"(expected one per stored copy): {list(split.items())[:3]}")
        reqs = [r for r in rx.requests if path is None or r.path == path]
        ok = [r for r in reqs if r.ok]
        ids = {r.webhook_id for r in ok}
        return {"events": len(ids), "requests": len(reqs), "duplicates": len(ok) - len(ids)}

    def check_stored_once(self) -> int:
        stored = self.stored()
        wrong = {mid: n for mid, n in stored.items() if mid in self.sent and n != 1}
        missing = sorted(set(self.sent) - set(stored))
        assert not missing and not wrong, (f"mails not stored exactly once: missing "
                                           f"{missing[:4]}, copies {list(wrong.items())[:4]}")
        return sum(stored[mid] for mid in self.sent)

    def report(self, case: str, **counts) -> None:
        line = f"COUNTS {case}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
        print(line)
        REPORT.append(line)


@pytest.fixture(scope="module")
def background_stops():
    """Dovecot needs ~3 s to stop; stop instances in the background, join at module end."""
    threads: list[threading.Thread] = []
    errors: list[str] = []

    def stop_later(dc: DovecotInstance) -> None:
        def run():
            try:
                dc.stop()
            except Exception as exc:  # noqa: BLE001 - reported at module teardown
                errors.append(f"{dc}: {exc!r}")
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)

    yield stop_later
    for t in threads:
        t.join(timeout=60)
    assert not errors, "stopping Dovecot failed: " + "; ".join(errors)


@pytest.fixture
def make_env(request, background_stops):
    """``make_env(webhooks=fn(rx), start=True, plugin_extra={}, before_dovecot=fn(env),
    **sidecar_kwargs)``; everything is stopped, unmounted and closed at teardown."""
    made: list[Env] = []

    def make(webhooks=None, start: bool = True, plugin_extra=None, before_dovecot=None,
             **sidecar_kwargs) -> Env:
        rx = WebhookReceiver()
        try:
            hooks = webhooks(rx) if webhooks else [Webhook("main", rx.url("/hook"))]
            sc = SidecarProcess(hooks, **sidecar_kwargs)
        except BaseException:
            rx.close()
            raise
        env = Env(rx, sc)
        made.append(env)
        if before_dovecot is not None:
            before_dovecot(env)
        settings = {**sc.plugin_settings(), **(plugin_extra or {})}
        env.dc = DovecotInstance(plugin=True, users=USERS, plugin_settings=settings)
        env.dc.start()
        if start:
            sc.start()
        return env

    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for env in made:
        if failed:
            env.sc.failed = True
            if env.dc is not None:
                env.dc.failed = True
            print(f"\n==== diagnostics of {request.node.name}{env.diag(60)}", flush=True)
        try:
            env.sc.kill()
        except Exception as exc:  # noqa: BLE001 - keep tearing down
            print(f"killing the sidecar failed: {exc!r}")
        for cleanup in reversed(env.cleanups):  # unmount after the sidecar is gone
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                print(f"cleanup failed: {exc!r}")
        for step in (env.sc.close, env.rx.close):
            try:
                step()
            except Exception as exc:  # noqa: BLE001
                print(f"teardown step failed: {exc!r}")
        if env.dc is not None:
            background_stops(env.dc)


def _mail_ids():
    ident = ensure_mail_identity()
    return ident.uid, ident.gid



def _spool_writable(env, writable: bool) -> None:
    """Make the sidecar's spool unwritable for the mail uid (root-owned 0755)
    or give it back (mail uid, 0775)."""
    uid, gid = _mail_ids() if writable else (0, 0)
    os.chown(env.sc.spool_dir, uid, gid)
    os.chmod(env.sc.spool_dir, 0o775 if writable else 0o755)

def _mount_small(attr: str, size: int, **kw):
    """``before_dovecot`` hook: a SmallFs of ``size`` over ``env.sc.<attr>``."""
    def hook(env: Env) -> None:
        fs = SmallFs(getattr(env.sc, attr), size, **kw)
        env.cleanups.append(fs.close)
        env.fs = fs
    return hook


# =========================================================================== sidecar killed
def test_sidecar_sigkilled_and_restarted_under_load(make_env):
    """Three SIGKILLs (by pid) during 600 LMTP deliveries, restart after 0.2 s each:
    every event delivered, one webhook-id per message, nothing dropped."""
    env = make_env(rotate_bytes=65536)
    env.rx.slow(0.01)  # a backlog builds up, so kills hit requests in flight
    jobs = env.make_jobs(600)
    progress = Counter()
    errors: list[BaseException] = []

    def run():
        try:
            env.burst(jobs, 4, on_result=lambda i, r: progress.update(n=1))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    kills = []
    for threshold in (150, 300, 450):
        while progress["n"] < threshold and t.is_alive():
            time.sleep(0.005)
        pid = env.sc.pid
        rc = env.sc.kill()
        kills.append((progress["n"], pid, rc))
        time.sleep(0.2)
        env.sc.start()
    t.join(timeout=180)
    assert not t.is_alive(), "deliveries did not finish"
    if errors:
        raise errors[0]
    assert [rc for *_, rc in kills] == [-9, -9, -9], kills
    assert all(n < len(jobs) for n, *_ in kills), f"a kill came after the last delivery: {kills}"
    env.wait_for(lambda: env.delivered_count() >= len(jobs), "all events delivered", 90)
    summary = env.check_events()
    mails = env.check_stored_once()
    m = env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    assert m.value("coi_plugin_events_dropped_total") == 0
    assert m.value("coi_spool_records_rejected_total") == 0
    assert not [n for n, _ in env.sc.spool_files() if n != "events.log"], env.sc.spool_files()
    env.dc.assert_no_panic_or_fatal()
    env.report("sidecar SIGKILLed x3 under load", mails=mails, events=summary["events"],
               duplicates=summary["duplicates"], dropped=0, rejected=0,
               kills_at=[n for n, *_ in kills])


# =========================================================================== doorbell socket
@pytest.mark.parametrize("fault", ["absent_dir", "deleted", "unwritable"])
def test_doorbell_socket_missing_or_unwritable(make_env, fault):
    """Doorbells cannot be sent: delivery is unaffected and the sidecar's spool scan
    (every 500 ms) picks every event up; no doorbell is accepted, nothing dropped."""
    if fault == "unwritable" and not ensure_mail_identity().running_as_root:
        pytest.skip("the mail processes run as the test user: the socket is always writable")
    kw = {"scan_interval_ms": 500}
    extra = {}
    if fault == "absent_dir":
        extra = {"coi_sidecar_socket": "/nonexistent-coi-test-dir/events.sock"}
    if fault == "unwritable":
        kw["socket_mode"] = "0600"  # root's socket; lmtp and dovecot-lda write as the mail uid
    env = make_env(plugin_extra=extra, **kw)
    if fault == "deleted":
        env.sc.socket_path.unlink()
    jobs = env.make_jobs(60)
    res = env.burst(jobs, 2)
    lda = [M.coi_chat(to=env.dc.address("alice")) for _ in range(3)] + \
        [M.plain_mail(to=env.dc.address("bob")) for _ in range(3)]
    t0 = time.monotonic()
    for i, msg in enumerate(lda):
        env.lda(msg, "alice" if i < 3 else "bob")
    lda_s = time.monotonic() - t0
    n = len(jobs) + len(lda)
    t_last = time.monotonic()
    env.wait_for(lambda: env.delivered_count() >= n, f"{n} events via the spool scan", 15)
    lag = time.monotonic() - t_last
    summary = env.check_events()
    mails = env.check_stored_once()
    m = env.metrics()
    accepted = m.value("coi_intake_datagrams_total", outcome="accepted")
    assert accepted == 0, f"{accepted} doorbells accepted though none could be sent"
    assert m.value("coi_plugin_events_dropped_total") == 0
    assert lag < 5, f"events took {lag:.1f}s after the last delivery (scan every 0.5 s)"
    assert res.seconds < 20, f"60 LMTP deliveries took {res.seconds:.1f}s"
    env.dc.assert_no_panic_or_fatal()
    env.report(f"doorbell socket {fault}", mails=mails, events=summary["events"],
               duplicates=summary["duplicates"], dropped=0, doorbells_accepted=int(accepted),
               lmtp_60_s=round(res.seconds, 2), lda_6_s=round(lda_s, 2),
               last_event_lag_s=round(lag, 2))


# =========================================================================== spool full
def _dropped(env: Env) -> int:
    return int(env.metrics().value("coi_plugin_events_dropped_total"))


def test_spool_full_by_max_size_drops_are_counted(make_env):
    """``coi_spool_max_size = 64k`` (the minimum) and a sidecar that rotates only at
    1 MiB: the spool stops growing at 64 KiB, every later event is dropped and
    counted (doorbells), every mail is delivered; events + dropped == mails. Once
    the operator raises the limit (config + ``doveadm reload``) events flow again."""
    env = make_env(plugin_extra={"coi_spool_max_size": "64k"})
    assert env.sc.rotate_bytes == 1 << 20
    mark = env.dc.log.mark()
    jobs = env.make_jobs(250)
    env.burst(jobs, 2)
    n = len(jobs)
    env.wait_for(lambda: env.delivered_count() + _dropped(env) >= n,
                 "events delivered + dropped == mails", 20)
    time.sleep(0.5)  # nothing more may arrive
    events, dropped = env.delivered_count(), _dropped(env)
    assert events + dropped == n, f"{events} events + {dropped} dropped != {n} mails"
    assert events > 0 and dropped > 0, (events, dropped)
    size = (env.sc.spool_dir / "events.log").stat().st_size
    assert size <= 65536, f"events.log grew to {size} bytes beyond coi_spool_max_size"
    mails = env.check_stored_once()
    warnings = plugin_drop_warnings(env.dc, mark)
    assert warnings, "the plugin logged no drop warning"
    assert all("spool file full" in w for w in warnings), warnings[:2]
    assert all(len(v) == 1 for v in env.ids_by_mid().values())
    # Recovery: the operator raises the limit.
    env.dc.reconfigure(plugin_settings={**env.sc.plugin_settings(), "coi_spool_max_size": "4M"})
    more = env.make_jobs(20)
    env.burst(more, 2)
    env.wait_for(lambda: env.delivered_count() >= events + len(more), "events after the fix", 20)
    assert _dropped(env) == dropped, "drops after the limit was raised"
    assert env.metrics().value("coi_spool_records_rejected_total") == 0
    env.dc.assert_no_panic_or_fatal()
    env.report("spool full (coi_spool_max_size=64k)", mails=mails, events=events,
               dropped=dropped, plugin_warnings=len(warnings), spool_bytes=size,
               after_fix=f"{len(more)} mails -> {env.delivered_count() - events} events")


def test_spool_dir_unwritable_drops_are_counted(make_env):
    """The spool directory is not writable for the mail uid: every event (LMTP and
    dovecot-lda) is dropped and counted through the doorbell, no mail is lost;
    once the permissions are back, events flow again."""
    if not ensure_mail_identity().running_as_root:
        pytest.skip("needs root: the mail processes must run as another uid")
    env = make_env()
    _spool_writable(env, False)
    mark = env.dc.log.mark()
    jobs = env.make_jobs(40)
    env.burst(jobs, 2)
    for _ in range(5):
        env.lda(M.coi_chat(to=env.dc.address("alice")), "alice")
    n = len(jobs) + 5
    env.wait_for(lambda: _dropped(env) >= n, f"{n} drops counted", 15)
    time.sleep(0.3)
    dropped = _dropped(env)
    assert dropped == n and env.delivered_count() == 0, (dropped, env.delivered_count())
    warnings = plugin_drop_warnings(env.dc, mark)
    assert any("Permission denied" in w for w in warnings), warnings[:2]
    mails = env.check_stored_once()
    _spool_writable(env, True)
    env.sent.clear()
    more = env.make_jobs(10)
    env.burst(more, 2)
    env.wait_for(lambda: env.delivered_count() >= len(more), "events after the repair", 15)
    env.check_events()
    assert _dropped(env) == dropped
    env.dc.assert_no_panic_or_fatal()
    env.report("spool dir unwritable", mails=mails, events=0, dropped=dropped,
               lda_processes=5, plugin_warnings=len(warnings),
               after_repair=f"{len(more)} mails -> {env.delivered_count()} events")


@needs_root
def test_spool_on_full_tmpfs_while_sidecar_down(make_env):
    """The spool on a 160 KiB tmpfs; the sidecar stopped while 450 mails arrive over two
    long-lived LMTP connections: the filesystem fills, later events are dropped
    (a record may be torn at the edge). After the sidecar restarts (it drains and
    rotates, freeing the space), the next event of each lmtp process reports that
    process's drops: events + dropped == mails, no mail lost."""
    uid, gid = _mail_ids()
    env = make_env(rotate_bytes=65536,
                   before_dovecot=_mount_small("spool_dir", 160 * 1024, uid=uid, gid=gid,
                                               mode=0o775))
    warm = env.make_jobs(30)
    env.burst(warm, 2)
    env.wait_for(lambda: env.delivered_count() >= len(warm), "warm-up events")
    env.sc.stop()
    mark = env.dc.log.mark()
    sessions = [env.dc.lmtp_session(), env.dc.lmtp_session()]
    try:
        def over_sessions(jobs):
            for i, (msg, user) in enumerate(jobs):
                env.sent[msg.message_id] = user
                res = sessions[i % 2].deliver(msg.raw, [env.dc.address(user)])
                assert res[0].ok, res
        full = env.make_jobs(450)
        over_sessions(full)
        free = env.fs.free_bytes()
        spool_bytes = sum(s for _, s in env.sc.spool_files())
        warnings = plugin_drop_warnings(env.dc, mark)
        env.sc.start()
        env.wait_for(lambda: env.fs.free_bytes() > 96 * 1024,
                     "the sidecar rotated, drained and deleted the full spool file")
        after = env.make_jobs(10)
        over_sessions(after)
    finally:
        for s in sessions:
            s.close()
    n = len(warm) + len(full) + len(after)
    env.wait_for(lambda: env.delivered_count() + _dropped(env) >= n,
                 "events delivered + dropped == mails", 20)
    time.sleep(0.5)
    events, dropped = env.delivered_count(), _dropped(env)
    m = env.metrics()
    rejected = {k: v for k, v in m.by_label("coi_spool_records_rejected_total",
                                            "error_type").items() if v}
    assert events + dropped == n, (f"{events} events + {dropped} dropped != {n} mails; "
                                   f"rejected {rejected}{env.diag()}")
    assert dropped > 0 and free < 8192, (dropped, free)
    assert warnings, "no drop warning logged by the lmtp processes"
    assert set(rejected) <= {"torn"}, f"unexpected rejections: {rejected}"
    mails = env.check_stored_once()
    by_mid = env.ids_by_mid()
    assert all(len(v) == 1 for v in by_mid.values())
    assert all(mid in by_mid for mid in [m.message_id for m, _ in after])
    env.dc.assert_no_panic_or_fatal()
    env.report("spool on full 160k tmpfs, sidecar down", mails=mails, events=events,
               dropped=dropped, rejected_torn=int(rejected.get("torn", 0)),
               spool_bytes_when_full=spool_bytes, free_bytes_when_full=free,
               plugin_warnings=len(warnings))


# =========================================================================== queue database
@needs_root
def test_queue_db_on_full_filesystem(make_env):
    """The sidecar's state dir on an 8 MiB tmpfs, filled to the last byte while it runs:
    mail delivery is unaffected, the sidecar keeps running, commits fail and are
    counted (``coi_errors_total``), the spool offset does not move, and once the
    space is back every event is delivered; nothing lost."""
    env = make_env(before_dovecot=_mount_small("state_dir", 8 << 20))
    warm = env.make_jobs(20)
    env.burst(warm, 2)
    env.wait_for(lambda: env.delivered_count() >= len(warm), "warm-up events")
    env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    errors0 = env.metrics().value("coi_errors_total")
    env.fs.fill(0)
    jobs = env.make_jobs(100)
    res = env.burst(jobs, 4)
    time.sleep(2.0)
    during = env.delivered_count() - len(warm)
    m = env.metrics()
    errors = m.by_label("coi_errors_total", "error_type")
    health = env.sc.healthz()[0]
    running = env.sc.running
    spool_before = env.sc.spool_files()
    env.fs.empty()
    n = len(warm) + len(jobs)
    env.wait_for(lambda: env.delivered_count() >= n, "all events after the space is back", 30)
    summary = env.check_events()
    mails = env.check_stored_once()
    assert running, "the sidecar died on a full disk" + env.diag()
    assert m.value("coi_errors_total") > errors0, "no failed commit was counted"
    assert res.seconds < 20, f"100 LMTP deliveries took {res.seconds:.1f}s"
    assert _dropped(env) == 0
    env.dc.assert_no_panic_or_fatal()
    env.report("queue DB on full tmpfs", mails=mails, events=summary["events"],
               duplicates=summary["duplicates"], requests=summary["requests"], dropped=0,
               delivered_while_full=during, errors_while_full=errors, healthz_while_full=health,
               lmtp_100_s=round(res.seconds, 2),
               spool_while_full=spool_before)


@needs_root
def test_queue_db_on_filesystem_forced_read_only(make_env):
    """The state dir on a loop-mounted ext4 (``errors=remount-ro``) that the kernel
    turns read-only under the running sidecar: deliveries unaffected, failed commits
    counted, the sidecar keeps running; killed, it refuses to start on the read-only
    volume (clear error, exit != 0); after unmount + fsck + mount it starts and
    delivers every event; nothing lost."""
    holder = {}

    def mount(env: Env) -> None:
        uid, gid = 0, 0
        fs = LoopExt4(env.sc.state_dir, env.sc.root / "state.ext4", uid=uid, gid=gid)
        env.cleanups.append(fs.close)
        holder["fs"] = fs

    env = make_env(before_dovecot=mount)
    fs: LoopExt4 = holder["fs"]
    warm = env.make_jobs(20)
    env.burst(warm, 2)
    env.wait_for(lambda: env.delivered_count() >= len(warm), "warm-up events")
    env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    errors0 = env.metrics().value("coi_errors_total")
    fs.trigger_error()
    assert "ro" in fs.options().split(",") or "emergency_ro" in fs.options(), fs.options()
    jobs = env.make_jobs(60)
    res = env.burst(jobs, 4)
    time.sleep(2.0)
    during = env.delivered_count() - len(warm)
    m = env.metrics()
    errors = m.by_label("coi_errors_total", "error_type")
    health = env.sc.healthz()[0]
    running = env.sc.running
    env.sc.kill()
    with pytest.raises(RuntimeError) as refused:
        env.sc.start(timeout=10)
    refusal = [ln for ln in str(refused.value).splitlines() if "error" in ln.lower()][-1:]
    env.sc.failed = False  # that refusal was the expected outcome, not a test failure
    fs.repair()
    env.sc.start()
    n = len(warm) + len(jobs)
    env.wait_for(lambda: env.delivered_count() >= n, "all events after the repair", 30)
    summary = env.check_events()
    mails = env.check_stored_once()
    assert running, "the sidecar died when its volume turned read-only" + env.diag()
    assert m.value("coi_errors_total") > errors0, "no failed commit was counted"
    assert res.seconds < 20
    assert _dropped(env) == 0
    env.dc.assert_no_panic_or_fatal()
    oks = Counter(r.json()["data"]["message_id"].strip("<>") for r in env.rx.requests if r.ok)
    warm_ids = {m.message_id for m, _ in warm}
    repeated_warm = sum(n - 1 for mid, n in oks.items() if mid in warm_ids)
    env.report("queue DB on ext4 forced read-only", mails=mails, events=summary["events"],
               repeats_of_warmup_events=repeated_warm,
               duplicates=summary["duplicates"], requests=summary["requests"], dropped=0,
               delivered_while_ro=during, errors_while_ro=errors, healthz_while_ro=health,
               lmtp_60_s=round(res.seconds, 2),
               restart_on_ro=refusal)


# =========================================================================== webhook endpoints
def test_webhook_endpoints_slow_refusing_hanging(make_env):
    """Four endpoints get every event: healthy, slow (0.3 s per answer), hanging
    (accepts, never answers; 1 s timeout) and refusing (closed port). Delivery is
    unaffected, the healthy endpoint is not held back, timeouts and refused
    connections are retried, and once the faulty endpoints recover every event
    reaches each of them with the same webhook-id; no dead letters."""
    closed_port = free_ports(1)[0]
    state = {"hang": True}

    def policy(req, i):
        if req.path == "/slow":
            return Reply(200, delay=0.3)
        if req.path == "/hang" and state["hang"]:
            return HANG
        return OK
    policy.may_hang = True  # type: ignore[attr-defined]
    refusing_url = f"http://127.0.0.1:{closed_port}/hook"
    env = make_env(webhooks=lambda rx: [
        Webhook("ok", rx.url("/ok")),
        Webhook("slow", rx.url("/slow"), concurrency=4),
        Webhook("hang", rx.url("/hang"), timeout_secs=1, concurrency=4),
        Webhook("refuse", refusing_url, retry_schedule_secs=[1] * 40),
    ])
    env.rx.set_policy(policy)
    jobs = env.make_jobs(80)
    res = env.burst(jobs, 4)
    n = len(jobs)
    t0 = time.monotonic()
    env.wait_for(lambda: env.delivered_count("/ok") >= n, "the healthy endpoint", 15)
    ok_lag = time.monotonic() - t0
    m = env.wait_metric(lambda m: (
        m.value("coi_delivery_attempts_total", endpoint="hang", outcome="timeout") >= 4
        and m.value("coi_delivery_attempts_total", endpoint="refuse", outcome="connection") >= 4),
        "timeouts and refused connections", 15)
    slow_early = env.delivered_count("/slow")
    # Recovery: answer the hanging endpoint, open the closed port.
    state["hang"] = False
    env.rx.release()
    rx2 = WebhookReceiver(port=closed_port)
    try:
        env.wait_for(lambda: env.delivered_count("/hang") >= n and env.delivered_count("/slow") >= n
                     and env.delivered_count(rx=rx2) >= n, "every endpoint complete", 60)
        sums = {p: env.check_events(p) for p in ("/ok", "/slow", "/hang")}
        sums["refuse"] = env.check_events(rx=rx2)
        ids = {p: env.ids_by_mid(p) for p in ("/ok", "/slow", "/hang")}
        ids["refuse"] = env.ids_by_mid(rx=rx2)
        differ = [mid for mid in env.sent if len({frozenset(ids[p][mid]) for p in ids}) != 1]
        assert not differ, f"endpoints got different webhook-ids for {differ[:3]}"
    finally:
        rx2.close()
    m = env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    assert m.value("coi_dead_letters_total") == 0
    assert res.seconds < 20, f"80 deliveries took {res.seconds:.1f}s"
    assert ok_lag < 10
    per_ep: dict[str, dict[str, int]] = defaultdict(dict)
    for s in m.samples:
        if s.name == "coi_delivery_attempts_total" and s.value:
            per_ep[s.labels["endpoint"]][s.labels["outcome"]] = int(s.value)
    mails = env.check_stored_once()
    env.dc.assert_no_panic_or_fatal()
    env.report("webhook endpoints ok/slow/hang/refuse", mails=mails,
               events={k: v["events"] for k, v in sums.items()},
               duplicates={k: v["duplicates"] for k, v in sums.items()},
               attempts=dict(per_ep), lmtp_80_s=round(res.seconds, 2),
               ok_endpoint_done_after_s=round(ok_lag, 2), slow_done_before_recovery=slow_early,
               dropped=0, dead_letters=0)


# =========================================================================== Dovecot reload
def test_dovecot_reload_during_burst(make_env):
    """``doveadm reload`` three times during 600 LMTP deliveries. The client behaves
    like an MTA (retries 4xx and broken connections). Every mail is stored (a copy
    beyond one is only allowed where the connection broke after the data was sent),
    and every stored copy has exactly one event, delivered."""
    env = make_env()
    jobs = env.make_jobs(600)
    progress = Counter()
    errors: list[BaseException] = []
    holder = {}

    def run():
        try:
            holder["res"] = env.burst(jobs, 4, on_result=lambda i, r: progress.update(n=1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    mark = env.dc.log.mark()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    reloads = []
    for threshold in (150, 300, 450):
        while progress["n"] < threshold and t.is_alive():
            time.sleep(0.005)
        env.dc.doveadm.reload()
        reloads.append(progress["n"])
    t.join(timeout=180)
    assert not t.is_alive()
    if errors:
        raise errors[0]
    res = holder["res"]
    assert all(n < len(jobs) for n in reloads), f"a reload came after the last delivery: {reloads}"
    assert env.dc.log.grep("reloading", since=mark) or env.dc.log.grep("SIGHUP", since=mark), \
        "Dovecot did not log the reloads"
    stored = env.stored()
    missing = [mid for mid in env.sent if stored[mid] == 0]
    extra = {mid: stored[mid] - 1 for mid in env.sent if stored[mid] > 1}
    assert not missing, f"{len(missing)} mails lost across reloads: {missing[:4]}"
    assert sum(extra.values()) <= len(res.uncertain), (
        f"{sum(extra.values())} duplicate copies but only {len(res.uncertain)} uncertain retries")
    copies = Counter({mid: stored[mid] for mid in env.sent})
    total = sum(copies.values())
    env.wait_for(lambda: env.delivered_count() >= total, f"{total} events", 30)
    summary = env.check_events(copies=copies)
    m = env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    assert m.value("coi_plugin_events_dropped_total") == 0
    env.dc.assert_no_panic_or_fatal()
    env.report("doveadm reload x3 during 600 deliveries", mails=total, events=summary["events"],
               duplicates=summary["duplicates"], dropped=0, reloads_at=reloads,
               lmtp_retries=res.retries, uncertain=len(res.uncertain),
               duplicate_copies=sum(extra.values()), seconds=round(res.seconds, 1))


def test_drops_of_an_exiting_process_are_logged_with_their_count(make_env):
    """Sidecar not running, spool not writable: each dovecot-lda process drops
    its event and, at exit, with no sidecar to take a last doorbell, logs how
    many drops its counter misses (the only record left)."""
    if not ensure_mail_identity().running_as_root:
        pytest.skip("needs root: the mail processes must run as another uid")
    env = make_env(start=False)
    _spool_writable(env, False)
    mark = env.dc.log.mark()
    for _ in range(3):
        env.lda(M.coi_chat(to=env.dc.address("alice")), "alice")
    text = env.dc.log_text(since=mark)
    lost = re.findall(r"(\d+) dropped event\(s\) could not be reported to coi-sidecar", text)
    assert [int(n) for n in lost] == [1, 1, 1], text[-2000:]
    _spool_writable(env, True)


# =========================================================================== defects (xfail)
@pytest.mark.xfail(strict=True, reason=(
    "LIMIT: drops are kept in a per-process counter (plugin/src/events.rs UNREPORTED_DROPS) "
    "and reported by a later append or doorbell of the same process, or one last doorbell at "
    "exit; a process that exits while the sidecar is down and the spool refuses writes can "
    "only log its count (see the test above), so coi_plugin_events_dropped_total misses them"))
def test_drops_of_a_process_that_exits_while_sidecar_down_are_counted(make_env):
    """Sidecar not running, spool directory not writable for the mail uid: 4
    dovecot-lda deliveries, each dropping its event (one warning each). The
    directory is repaired and the sidecar started; one more delivery works. The
    4 drops must show in ``coi_plugin_events_dropped_total``."""
    if not ensure_mail_identity().running_as_root:
        pytest.skip("needs root: the mail processes must run as another uid")
    env = make_env(start=False)
    _spool_writable(env, False)
    mark = env.dc.log.mark()
    for _ in range(4):
        env.lda(M.coi_chat(to=env.dc.address("alice")), "alice")
    warnings = plugin_drop_warnings(env.dc, mark)
    _spool_writable(env, True)
    env.sc.start()
    env.lda(M.coi_chat(to=env.dc.address("alice")), "alice")
    env.wait_for(lambda: env.delivered_count() >= 1, "the event after the repair", 15)
    time.sleep(0.5)
    env.check_stored_once()
    events, dropped = env.delivered_count(), _dropped(env)
    env.report("LDA drops while sidecar down", mails=5, events=events, dropped_counted=dropped,
               plugin_warnings=len(warnings))
    assert events == 1 and len(warnings) == 4, (events, warnings)
    assert dropped == 4, (f"4 events dropped (one warning per dovecot-lda process), "
                          f"{dropped} counted by the sidecar")


@needs_root
def test_no_duplicate_storm_when_queue_cannot_record_a_delivery(make_env):
    """One webhook in flight (the endpoint answers after 1 s) when the state volume
    fills up: its 200 cannot be recorded. At-least-once allows a repeat, but the
    repeats must follow a backoff: at most 5 requests for that event in 3 s."""
    arrived = threading.Event()

    def policy(req, i):
        if i == 0:
            arrived.set()
            return Reply(200, delay=1.0)
        return OK
    env = make_env(before_dovecot=_mount_small("state_dir", 8 << 20))
    env.rx.set_policy(policy)
    msg = M.coi_chat(to=env.dc.address("alice"))
    env.burst([(msg, "alice")], 1)
    assert arrived.wait(10), "the webhook never arrived"
    env.fs.fill(0)
    time.sleep(3.0)
    reqs = [r for r in env.rx.requests if r.ok]
    env.fs.empty()
    env.report("duplicate storm, queue DB full", mails=1, events=len({r.webhook_id for r in reqs}),
               requests_in_3s=len(reqs))
    assert len({r.webhook_id for r in reqs}) == 1
    assert len(reqs) <= 5, f"the same event was POSTed {len(reqs)} times in 3 s"


@needs_root
def test_failed_delivery_not_retried_in_a_loop_when_queue_cannot_record_it(make_env):
    """Issue 12 item 5. The endpoint answers 503 (the first answer after 1 s) while
    the state volume fills up: the failure cannot be recorded, so the row's next
    attempt time never moves. It must be held back (1 s, doubling), not re-sent
    at once in a tight loop: at most 5 requests for that event in 3 s. Once the
    space is back and the endpoint answers 200, the event is delivered."""
    arrived = threading.Event()
    state = {"ok": False}

    def policy(req, i):
        if state["ok"]:
            return OK
        if i == 0:
            arrived.set()
            return Reply(503, delay=1.0)
        return Reply(503)
    env = make_env(before_dovecot=_mount_small("state_dir", 8 << 20),
                   webhooks=lambda rx: [Webhook("main", rx.url("/hook"), retry_schedule_secs=(60,),
                                                deadline_secs=3600)])
    env.rx.set_policy(policy)
    msg = M.coi_chat(to=env.dc.address("alice"))
    env.burst([(msg, "alice")], 1)
    assert arrived.wait(10), "the webhook never arrived"
    env.fs.fill(0)
    time.sleep(3.0)
    reqs = list(env.rx.requests)
    errors = env.metrics().by_label("coi_errors_total", "error_type")
    env.fs.empty()
    state["ok"] = True
    env.wait_for(lambda: any(r.ok for r in env.rx.requests), "the delivery after the space is back", 45)
    env.report("failure storm, queue DB full", mails=1, requests_in_3s=len(reqs), errors=errors)
    assert len({r.webhook_id for r in reqs}) == 1
    assert len(reqs) <= 5, f"the failing event was POSTed {len(reqs)} times in 3 s"

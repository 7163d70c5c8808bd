"""Hostile entries at the spool path: real Dovecot + coi plugin -> spool -> real coi-sidecar.

Owns the checks that whatever sits at ``<spool>/events.log`` can never make a
Dovecot process wait or write where it must not (docs/events.md, "Writer
protocol"; plugin/core/src/spool.rs). The spool directory is writable by every
mail process, so a FIFO, a symlink or a directory can be planted there:

* a FIFO nobody reads: opening it for writing used to block the delivering
  process until something opened it for reading; now LMTP and dovecot-lda
  deliveries finish at once, the mail is stored, and the event is dropped,
  counted by the sidecar (``coi_plugin_events_dropped_total``, through the
  doorbell) and logged by the plugin;
* a FIFO with a reader: refused after ``fstat``; nothing is written into it;
* a symlink to a file the mail uid can write: never followed, the file stays
  untouched;
* a directory: refused.

After each case the entry is removed and the next delivery's event arrives as
usual. The sidecar scans only on doorbells (scan interval 60 s), so nothing
but the plugin's own behaviour decides whether a delivery waits.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.harness import DovecotInstance
from tests.harness import messages as M
from tests.harness.faults import plugin_drop_warnings
from tests.harness.receiver import WebhookReceiver
from tests.harness.sidecar import SidecarProcess, Webhook

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
#: A delivery that takes longer than this waited on something.
PROMPT = 10.0


@pytest.fixture
def env():
    rx = WebhookReceiver()
    sc = SidecarProcess([Webhook("main", rx.url("/hook"))], scan_interval_ms=60000)
    dc = DovecotInstance(plugin=True, users={"alice": ACTIVE},
                         plugin_settings=sc.plugin_settings())
    try:
        dc.start()
        sc.start()
        yield dc, sc, rx
    except BaseException:
        dc.failed = sc.failed = True
        raise
    finally:
        sc.close()
        dc.stop()
        rx.close()


def _in_time(what: str, fn):
    """Runs ``fn`` in a thread; fails if it does not return within PROMPT seconds."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    start = time.monotonic()
    t.start()
    t.join(PROMPT)
    assert not t.is_alive(), f"{what} did not finish within {PROMPT}s: the plugin waited"
    return out[0], time.monotonic() - start


def _dropped(sc: SidecarProcess) -> int:
    return int(sc.metrics().value("coi_plugin_events_dropped_total"))


def _wait(cond, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _mail_writable(dc: DovecotInstance, path) -> None:
    """Make ``path`` the mail uid's, so only the plugin's own checks stop it."""
    if dc.ident.running_as_root:
        os.lchown(path, dc.ident.uid, dc.ident.gid)


def _deliver_lmtp(dc: DovecotInstance, msg: M.TestMessage):
    return dc.lmtp_deliver(msg.raw, ["alice"])[0]


def _events_flow_again(dc, sc, rx, active) -> None:
    """The planted entry removed: the next delivery's event arrives."""
    if os.path.isdir(active) and not os.path.islink(active):
        os.rmdir(active)
    else:
        os.unlink(active)
    msg = M.coi_chat(to=dc.address("alice"))
    assert _deliver_lmtp(dc, msg).ok
    rx.wait_for(lambda reqs: any(r.ok and msg.message_id in r.body.decode() for r in reqs),
                15, "the event after the repair")


def test_fifo_without_reader_never_blocks_a_delivery(env):
    dc, sc, rx = env
    active = sc.spool_dir / "events.log"
    os.mkfifo(active, 0o666)
    _mail_writable(dc, active)
    mark = dc.log.mark()
    chat, plain = M.coi_chat(to=dc.address("alice")), M.plain_mail(to=dc.address("alice"))
    res, secs = _in_time("an LMTP delivery", lambda: _deliver_lmtp(dc, chat))
    assert res.ok, res
    lda, lda_secs = _in_time("a dovecot-lda delivery",
                             lambda: dc.lda_deliver("alice", plain.raw))
    assert lda.ok, lda
    counts = dc.doveadm.message_counts("alice")
    assert counts["COI/Chats"] == 1 and counts["INBOX"] == 1, counts
    _wait(lambda: _dropped(sc) >= 2, "2 drops counted by the sidecar")
    warnings = plugin_drop_warnings(dc, mark)
    assert any("FIFO or socket, not a regular file; refused" in w for w in warnings), warnings
    assert active.exists() and not rx.requests, "the FIFO stays; no event was sent"
    print(f"\nFIFO without reader: LMTP {secs:.2f}s, dovecot-lda {lda_secs:.2f}s, "
          f"dropped {_dropped(sc)}")
    _events_flow_again(dc, sc, rx, active)
    assert _dropped(sc) == 2
    dc.assert_no_panic_or_fatal()


def test_fifo_with_reader_is_refused_and_gets_nothing(env):
    dc, sc, rx = env
    active = sc.spool_dir / "events.log"
    os.mkfifo(active, 0o666)
    _mail_writable(dc, active)
    reader = os.open(active, os.O_RDONLY | os.O_NONBLOCK)
    try:
        res, _ = _in_time("an LMTP delivery",
                          lambda: _deliver_lmtp(dc, M.coi_chat(to=dc.address("alice"))))
        assert res.ok, res
        _wait(lambda: _dropped(sc) >= 1, "the drop counted")
        try:
            got = os.read(reader, 65536)
        except BlockingIOError:
            got = b""
        assert got == b"", f"the plugin wrote into the FIFO: {got[:80]!r}"
    finally:
        os.close(reader)
    _events_flow_again(dc, sc, rx, active)
    dc.assert_no_panic_or_fatal()


def test_symlink_is_never_followed(env, tmp_path):
    dc, sc, rx = env
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    victim.chmod(0o666)
    tmp_path.chmod(0o755)
    _mail_writable(dc, victim)
    active = sc.spool_dir / "events.log"
    os.symlink(victim, active)
    mark = dc.log.mark()
    res, _ = _in_time("an LMTP delivery",
                      lambda: _deliver_lmtp(dc, M.coi_chat(to=dc.address("alice"))))
    assert res.ok, res
    _wait(lambda: _dropped(sc) >= 1, "the drop counted")
    assert victim.read_bytes() == b"keep me\n", "the plugin wrote through the symlink"
    assert any("symbolic link, not a regular file" in w
               for w in plugin_drop_warnings(dc, mark))
    _events_flow_again(dc, sc, rx, active)
    dc.assert_no_panic_or_fatal()


def test_directory_is_refused(env):
    dc, sc, rx = env
    active = sc.spool_dir / "events.log"
    active.mkdir(mode=0o777)
    res, _ = _in_time("an LMTP delivery",
                      lambda: _deliver_lmtp(dc, M.coi_chat(to=dc.address("alice"))))
    assert res.ok, res
    _wait(lambda: _dropped(sc) >= 1, "the drop counted")
    _events_flow_again(dc, sc, rx, active)
    dc.assert_no_panic_or_fatal()

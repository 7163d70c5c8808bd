"""``coi-sidecar status`` against the real pipeline: Dovecot + the coi plugin -> spool -> a
running coi-sidecar -> two real HTTP receivers, one healthy, one answering 503.

Owns the operator-tooling check of issue 14 ("``coi-sidecar status`` for a shell on the box"):
  * while the sidecar runs: exit 0, the daemon's pid and its ``/healthz``, the queue depth and
    oldest event of the deliveries held back by the failing endpoint, each endpoint's state,
    last success / last failure, failures in a row, next retry and last error, spool lag 0;
  * with the sidecar stopped and chats still delivered over LMTP: exit 3, and the spool lag is
    exactly the bytes the plugin appended meanwhile;
  * started again: the lag is taken in, and the failing endpoint's history (recorded in the
    queue database) survived the restart.

The plain-text form is checked for the same facts. Runtime ~10 s.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import DovecotInstance
from tests.harness import messages as M
from tests.harness.receiver import Reply, WebhookReceiver
from tests.harness.sidecar import SidecarProcess, Webhook

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
WAIT = 30.0


def status(sc: SidecarProcess) -> tuple[int, dict]:
    p = sc.cli("status", "--json")
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"status --json printed no JSON: {p.stdout!r} {p.stderr!r}") from None


def endpoint(st: dict, name: str) -> dict:
    found = [e for e in st["endpoints"] if e["name"] == name]
    assert len(found) == 1, f"endpoint {name} in {json.dumps(st['endpoints'], indent=1)}"
    return found[0]


def wait_until(cond, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def spool_bytes(sc: SidecarProcess) -> int:
    return sum(size for _, size in sc.spool_files())


@pytest.fixture
def pipeline():
    good, bad = WebhookReceiver(), WebhookReceiver()
    bad.set_policy(lambda req, i: Reply(503))
    sc = SidecarProcess([Webhook("good", good.url("/hook")),
                         Webhook("bad", bad.url("/hook?token=s3cr3t"), retry_schedule_secs=(60, 60))])
    dc = DovecotInstance(plugin=True, users={"alice": ACTIVE}, plugin_settings=sc.plugin_settings())
    try:
        dc.start()
        sc.start()
        yield dc, sc, good, bad
    except BaseException:
        sc.failed = dc.failed = True
        print(sc.log_tail(60))
        raise
    finally:
        sc.close()
        dc.stop()
        good.close()
        bad.close()


def deliver_chat(dc: DovecotInstance, subject: str) -> None:
    msg = M.coi_chat(subject=subject, to=dc.address("alice"))
    res = dc.lmtp_deliver(msg.raw, ["alice"])
    assert res[0].ok, res


def test_status_of_a_running_then_stopped_then_restarted_sidecar(pipeline):
    dc, sc, good, bad = pipeline
    for i in range(2):
        deliver_chat(dc, f"status chat {i}")
    wait_until(lambda: len(good.requests) >= 2 and len(bad.requests) >= 2, "2 requests at each receiver")
    wait_until(lambda: endpoint(status(sc)[1], "bad")["consecutive_failures"] == 2, "2 failures recorded")

    code, st = status(sc)
    assert code == 0, st
    d = st["daemon"]
    assert (d["running"], d["pid"]) == (True, sc.pid), d
    assert d["healthz"] == {"address": f"127.0.0.1:{sc.metrics_port}", "status": 200, "detail": "ok"}
    q = st["queue"]
    assert (q["depth_events"], q["pending_deliveries"], q["dead_letters"]) == (2, 2, 0), q
    assert 0 <= q["oldest_event_age_secs"] < WAIT, q
    g, b = endpoint(st, "good"), endpoint(st, "bad")
    assert (g["state"], g["pending"], g["consecutive_failures"], g["last_failure"]) == ("ok", 0, 0, None), g
    assert -WAIT < g["last_success"]["from_now_secs"] <= 0, g
    assert (b["state"], b["pending"], b["retrying"], b["last_success"]) == ("failing", 2, 2, None), b
    assert "503" in b["last_error"], b
    assert 30 < b["next_retry"]["from_now_secs"] <= 75, "the 60 s step of the schedule (±20 % jitter)"
    assert b["target"] == f"http://127.0.0.1:{bad.port}", "no path or query (it may carry a secret)"
    assert st["spool"]["lag_bytes"] == 0, st["spool"]

    text = sc.cli("status").stdout
    assert f"running, pid {sc.pid}" in text and "healthy (/healthz at 127.0.0.1:" in text, text
    assert "2 events pending (2 deliveries)" in text, text
    assert "bad [webhook]" in text and "FAILING" in text and "2 failures in a row" in text, text
    assert "HTTP 503" in text and "s3cr3t" not in text, text

    # Stopped: deliveries go on, the plugin appends, nobody takes the events in.
    assert sc.stop() == 0
    before = spool_bytes(sc)
    deliver_chat(dc, "status chat while stopped")
    appended = spool_bytes(sc) - before
    assert appended > 0
    code, st = status(sc)
    assert code == 3, st["daemon"]
    assert (st["daemon"]["running"], st["daemon"]["pid"], st["daemon"]["healthz"]) == (False, None, None)
    assert st["spool"]["lag_bytes"] == appended, st["spool"]
    assert endpoint(st, "bad")["consecutive_failures"] == 2, "read from the queue with the daemon down"
    assert "NOT RUNNING" in sc.cli("status").stdout

    # Started again: the lag is taken in, the history survived the restart.
    sc.start()
    wait_until(lambda: len(good.requests) >= 3, "the third chat at the healthy receiver")
    code, st = wait_until(lambda: (lambda r: r if r[1]["spool"]["lag_bytes"] == 0
                                   and endpoint(r[1], "bad")["consecutive_failures"] >= 3 else None)(status(sc)),
                          "lag 0 and the third failure recorded")
    assert code == 0 and st["daemon"]["pid"] == sc.pid
    b = endpoint(st, "bad")
    assert (b["pending"], b["state"]) == (3, "failing"), b
    assert st["queue"]["depth_events"] == 3
    dc.assert_no_panic_or_fatal()

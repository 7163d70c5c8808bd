"""Events end to end: real Dovecot + the coi plugin -> spool -> real coi-sidecar -> real HTTP receiver.

Owns the checks of the event-pipeline issue ("How it is checked"):
  * a chat delivered over LMTP reaches the receiver as a signed request whose
    fields (user, folder, uid, uidvalidity, kind, Message-ID) match IMAP;
  * the sidecar absent during 500 deliveries, then started: all 500 arrive;
  * 503 for a while: retried, then delivered; ``Retry-After`` respected;
  * the sidecar SIGKILLed 4 times during 2,000 LMTP deliveries: every event arrives;
  * garbage / oversized / wrong-version / foreign-peer datagrams: rejected,
    counted by reason, the sidecar keeps serving;
  * /metrics parsed with a Prometheus text parser; counters match what was done;
  * plain mail (LMTP) and dovecot-lda deliveries produce events too;
  * the ``ox`` format: HTTP PUT with the OX push driver's JSON;
  * a permanent failure becomes a dead letter, ``dead-letters replay`` delivers it;
  * ``check-config`` refuses a loopback endpoint unless private addresses are allowed.

Every test gets its own Dovecot, sidecar tree and receiver (Dovecot starts in
well under a second), so no test sees another's events. At-least-once is
checked the strict way: every accepted delivery's Message-ID shows up in a
2xx-answered request, each Message-ID maps to exactly one ``webhook-id``
(a duplicate carries the same id), and there is no event for anything the test
did not deliver. On failure the teardown prints the sidecar log, the
receiver's log, the spool listing and the Dovecot log tail, and keeps the
temp dirs. Dovecot needs ~3 s to stop, so instances are stopped in the
background and joined at module teardown. Runtime ~30 s on 2 cores.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from tests.harness import DovecotInstance
from tests.harness import messages as M
from tests.harness.receiver import (Reply, SignatureError, WebhookReceiver, sign, verify)
from tests.harness.sidecar import TEST_SECRET, Metrics, SidecarProcess, Webhook

#: A second signing key, for key rotation (two signatures per request).
SECOND_SECRET = "whsec_" + base64.b64encode(b"coi-test-rotation-key-0123456789").decode()

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
#: alice: COI enabled + message-filter=active (routes chats to COI/Chats);
#: bob: no COI (ordinary delivery); fb: active, but COI/Chats made unusable.
EVENT_USERS = {"alice": ACTIVE, "bob": {}, "fb": ACTIVE}
CHATS = "COI/Chats"
#: Envelope sender of every test delivery (the From header differs on purpose).
ENVELOPE_FROM = "envelope-sender@example.net"

WAIT = 60.0  # generous bound for "eventually arrives"


# --------------------------------------------------------------------------- environment
@dataclass
class Env:
    """One test's Dovecot, sidecar and receiver."""

    rx: WebhookReceiver
    sc: SidecarProcess
    dc: DovecotInstance | None = None
    notes: list[str] = field(default_factory=list)

    def diag(self, dovecot_lines: int = 30) -> str:
        parts = ["", self.sc.log_tail(40), "--- " + self.rx.log_tail(15),
                 f"--- spool {self.sc.spool_dir}: {self.sc.spool_files()}"]
        if self.dc is not None:
            parts.append(f"--- Dovecot log {self.dc.log_path} (last {dovecot_lines} lines)\n"
                         + (self.dc.log.tail(dovecot_lines) or "(empty)"))
        return "\n".join(parts)

    def deliver(self, msg: M.TestMessage, user: str) -> None:
        res = self.dc.lmtp_deliver(msg.raw, [user], sender=ENVELOPE_FROM)
        assert res[0].ok, f"LMTP delivery to {user} failed: {res}{self.diag()}"

    def lda(self, msg: M.TestMessage, user: str) -> None:
        res = self.dc.lda_deliver(user, msg.raw, sender=ENVELOPE_FROM)
        assert res.ok, f"dovecot-lda to {user} failed: {res}{self.diag()}"

    def deliver_many(self, jobs: list[tuple[M.TestMessage, str]], connections: int = 4,
                     on_result=None) -> None:
        results = self.dc.lmtp_deliver_parallel([(m.raw, u) for m, u in jobs], connections,
                                                on_result)
        bad = [r for r in results if not r.ok]
        assert len(results) == len(jobs) and not bad, (
            f"{len(bad)} of {len(jobs)} LMTP deliveries failed, e.g. {bad[:3]}{self.diag()}")

    def wait_delivered(self, n: int, timeout: float = WAIT, path: str | None = None) -> None:
        """Until ``n`` distinct webhook-ids (on ``path``, if given) were answered 2xx."""
        def done(reqs):
            return len({r.webhook_id for r in reqs
                        if r.ok and (path is None or r.path == path)}) >= n
        try:
            self.rx.wait_for(done, timeout, f"{n} delivered events")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}{self.diag()}") from None

    def wait_metric(self, cond, what: str, timeout: float = 15.0) -> Metrics:
        """Scrape until ``cond(metrics)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.sc.metrics()
            if cond(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics never showed {what}; last scrape:\n"
                                     + _coi_lines(m.text) + self.diag())
            time.sleep(0.1)


def _coi_lines(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines()
                     if ln.startswith("coi_") and not ln.endswith(" 0"))


@pytest.fixture(scope="module")
def background_stops():
    """Dovecot takes ~3 s to stop; tests hand their instance over and move on.

    Every stop is joined (and its error reported) at module teardown.
    """
    threads: list[threading.Thread] = []
    errors: list[str] = []

    def stop_later(dc: DovecotInstance) -> None:
        def run():
            try:
                dc.stop()
            except Exception as exc:  # noqa: BLE001 - reported at module teardown
                errors.append(f"{dc}: {exc!r}")
        t = threading.Thread(target=run, name=f"stop-{dc.tmpdir.name}")
        t.start()
        threads.append(t)

    yield stop_later
    for t in threads:
        t.join(timeout=60)
    assert not errors, "stopping Dovecot failed: " + "; ".join(errors)


@pytest.fixture
def make_env(request, background_stops):
    """``make_env(webhooks=fn(rx) -> [Webhook], start=True, users=..., **sidecar_kwargs)``."""
    made: list[Env] = []

    def make(webhooks=None, start: bool = True, users=None, **sidecar_kwargs) -> Env:
        rx = WebhookReceiver()
        try:
            hooks = webhooks(rx) if webhooks else [Webhook("main", rx.url("/hook"))]
            sc = SidecarProcess(hooks, **sidecar_kwargs)
        except BaseException:
            rx.close()
            raise
        env = Env(rx, sc)
        made.append(env)
        env.dc = DovecotInstance(plugin=True, users=users or EVENT_USERS,
                                 plugin_settings=sc.plugin_settings())
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
        for step in (env.sc.close, env.rx.close):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - stop everything, then report
                print(f"teardown step failed: {exc!r}")
        if env.dc is not None:
            background_stops(env.dc)


# --------------------------------------------------------------------------- payload helpers
def data_of(req) -> dict:
    """The event fields of a request: ``data`` of a standard payload, the ox body as is."""
    body = req.json()
    return body["data"] if "data" in body else body


def by_message_id(reqs, ok_only: bool = True) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for r in reqs:
        if ok_only and not r.ok:
            continue
        out[data_of(r)["message_id"]].append(r)
    return out


def check_at_least_once(env: Env, sent: dict[str, str], path: str = "/hook") -> dict:
    """Every sent Message-ID (``<id>`` -> Dovecot username) was delivered; ids are consistent.

    Returns a summary (requests, duplicates). Asserts:
    - every request's payload ``data.id`` equals its ``webhook-id`` header;
    - every Message-ID in ``sent`` has a 2xx-answered request;
    - all requests for one Message-ID carry the same webhook-id (a duplicate
      is a redelivery of the same event, never a second event);
    - there is no event the test did not cause; distinct delivered ids == len(sent).
    """
    reqs = [r for r in env.rx.requests if r.path == path]
    mismatched = [r.short() for r in reqs if data_of(r)["id"] != r.webhook_id]
    assert not mismatched, f"payload id != webhook-id header: {mismatched[:3]}"
    delivered = by_message_id(reqs)
    missing = sorted(set(sent) - set(delivered))
    assert not missing, (f"{len(missing)} of {len(sent)} delivered messages never reached the "
                         f"receiver, e.g. {missing[:5]}{env.diag()}")
    unexpected = sorted(set(delivered) - set(sent))
    assert not unexpected, f"events for messages the test did not send: {unexpected[:5]}"
    ids_per_mid: dict[str, set] = defaultdict(set)
    for r in reqs:
        ids_per_mid[data_of(r)["message_id"]].add(r.webhook_id)
    split = {m: ids for m, ids in ids_per_mid.items() if len(ids) != 1}
    assert not split, (f"{len(split)} messages produced more than one event id (a duplicate must "
                       f"carry the same webhook-id): {list(split.items())[:3]}")
    ok_ids = {r.webhook_id for r in reqs if r.ok}
    assert len(ok_ids) == len(sent), f"{len(ok_ids)} distinct delivered ids for {len(sent)} messages"
    wrong_user = [(m, data_of(rs[0])["user"]) for m, rs in delivered.items()
                  if data_of(rs[0])["user"] != sent[m]]
    assert not wrong_user, f"events name the wrong user: {wrong_user[:3]}"
    ok = [r for r in reqs if r.ok]
    return {"requests": len(reqs), "delivered": len(ok), "duplicates": len(ok) - len(ok_ids)}


def mid(msg: M.TestMessage) -> str:
    """The Message-ID as the event carries it (as sent, with angle brackets)."""
    return f"<{msg.message_id}>"


def imap_uidvalidity_and_uid(dc: DovecotInstance, user: str, folder: str,
                             message_id: str) -> tuple[int, int]:
    """(UIDVALIDITY of ``folder``, UID of the message with ``message_id``) over IMAP."""
    with dc.imap(user) as c:
        typ, data = c.conn.status(f'"{folder}"', "(UIDVALIDITY)")
        assert typ == "OK", f"STATUS {folder}: {typ} {data}"
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", data[0])[1])
        msgs = c.fetch_folder(folder)
    uids = [m.uid for m in msgs
            if (m.header("Message-ID") or "").strip("<> ") == message_id.strip("<>")]
    assert len(uids) == 1, (f"expected the message {message_id} once in {user}/{folder}, found "
                            f"UIDs {uids} among {[m.short() for m in msgs]}")
    return uidvalidity, uids[0]


def ring_datagram(dropped: int = 0, **extra) -> bytes:
    return json.dumps({"v": 1, "type": "ring", "dropped": dropped, **extra}).encode()


def send_datagrams(path, datagrams: list[bytes]) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for d in datagrams:
            s.sendto(d, str(path))
    finally:
        s.close()


# =========================================================================== tests
def test_signature_verifier_matches_standard_webhooks_vector():
    """The test's own verifier against the Standard Webhooks test vector (DESIGN §5)."""
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(TEST_SECRET, msg_id, ts, body) == want
    headers = {"Webhook-Id": msg_id, "Webhook-Timestamp": str(ts), "Webhook-Signature": want}
    assert verify(TEST_SECRET, headers, body, tolerance=None) == msg_id
    # key rotation: several signatures, one per secret, any secret matches
    rotated = dict(headers, **{"Webhook-Signature": f"v1,AAAA {want}"})
    assert verify([SECOND_SECRET, TEST_SECRET], rotated, body, tolerance=None) == msg_id
    for bad_headers, bad_body, secret in [
        (headers, b'{"test": 2432232315}', TEST_SECRET),           # body changed
        (dict(headers, **{"Webhook-Timestamp": "1614265331"}), body, TEST_SECRET),
        (dict(headers, **{"Webhook-Id": "msg_other"}), body, TEST_SECRET),
        (headers, body, SECOND_SECRET),                             # wrong key
        (dict(headers, **{"Webhook-Signature": want[3:]}), body, TEST_SECRET),  # no v1,
        ({"webhook-id": msg_id}, body, TEST_SECRET),                 # headers missing
    ]:
        with pytest.raises(SignatureError):
            verify(secret, bad_headers, bad_body, tolerance=None)
    with pytest.raises(SignatureError):  # 5 minutes tolerance by default
        verify(TEST_SECRET, headers, body, now=ts + 301)
    assert verify(TEST_SECRET, headers, body, now=ts + 299) == msg_id


def test_chat_over_lmtp_reaches_receiver_signed(make_env):
    env = make_env(webhooks=lambda rx: [Webhook("main", rx.url("/hook"),
                                                secrets=(TEST_SECRET, SECOND_SECRET))],
                   users={"carol": {}, "bob": {}})
    # carol turns COI on the way a client does: METADATA over IMAP.
    env.dc.enable_coi("carol", "active")
    msg = M.coi_chat(to=env.dc.address("carol"), frm="dora@example.net")
    t0 = time.time()
    env.deliver(msg, "carol")
    t1 = time.time()
    env.wait_delivered(1)
    reqs = env.rx.requests
    assert len(reqs) == 1, f"one event, one request expected:\n{env.rx.log_tail()}"
    req = reqs[0]
    assert (req.method, req.path) == ("POST", "/hook")
    assert req.header("content-type").startswith("application/json")
    # Standard Webhooks v1: verifies with each configured secret, one signature per secret.
    assert verify(TEST_SECRET, req.headers, req.body) == req.webhook_id
    assert verify(SECOND_SECRET, req.headers, req.body) == req.webhook_id
    sigs = req.header("webhook-signature").split()
    ts = req.header("webhook-timestamp")
    assert sorted(sigs) == sorted([sign(TEST_SECRET, req.webhook_id, ts, req.body),
                                   sign(SECOND_SECRET, req.webhook_id, ts, req.body)]), sigs
    assert abs(int(ts) - time.time()) < 30

    body = req.json()
    assert body["type"] == "message.stored", body
    d = body["data"]
    assert d["id"] == req.webhook_id
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", d["id"]), (
        f"event id is not a UUID v7: {d['id']}")
    assert d["user"] == env.dc.address("carol"), "LMTP's Dovecot username is the address"
    assert d["folder"] == CHATS, f"chat of an enabled+active user must be in {CHATS}: {d}"
    assert d["kind"] == "chat"
    assert d["chat_keyword"] is True and d["routed"] is True, d
    assert d["group_id"] is None
    assert d["message_id"] == mid(msg)
    assert d["subject"] == msg.subject
    assert d["from"] in ("dora@example.net", ENVELOPE_FROM), d["from"]
    assert "pid" not in d and "dropped_before" not in d, f"plugin-internal fields leaked: {d}"
    # ts_ms is the delivery commit: inside the LMTP transaction's wall-clock window.
    assert t0 * 1000 - 5 <= d["ts_ms"] <= t1 * 1000 + 5, (t0, d["ts_ms"], t1)
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert stamp == datetime.fromtimestamp(d["ts_ms"] / 1000, timezone.utc), body["timestamp"]
    # uid/uidvalidity are the message's real IMAP coordinates.
    uidvalidity, uid = imap_uidvalidity_and_uid(env.dc, "carol", CHATS, msg.message_id)
    assert (d["uidvalidity"], d["uid"]) == (uidvalidity, uid), (
        f"event says uidvalidity={d['uidvalidity']} uid={d['uid']}, IMAP says "
        f"uidvalidity={uidvalidity} uid={uid}")
    env.dc.assert_no_panic_or_fatal()


def test_plain_mail_and_dovecot_lda_produce_events(make_env):
    env = make_env()
    plain_lmtp = M.plain_mail(to=env.dc.address("bob"))
    plain_lda = M.plain_mail(to=env.dc.address("bob"))
    chat_lda = M.coi_chat(to=env.dc.address("alice"))
    group_lmtp = M.coi_group_chat(to=env.dc.address("alice"))
    env.deliver(plain_lmtp, "bob")
    env.lda(plain_lda, "bob")
    env.lda(chat_lda, "alice")
    env.deliver(group_lmtp, "alice")
    env.wait_delivered(4)
    sent = {mid(plain_lmtp): "bob", mid(plain_lda): "bob", mid(chat_lda): "alice",
            mid(group_lmtp): "alice"}
    # LMTP events name the full address (the RCPT), dovecot-lda's the -d user name.
    got = {m: data_of(rs[0]) for m, rs in by_message_id(env.rx.requests).items()}
    assert set(got) == set(sent), f"events for {set(got)}, sent {set(sent)}\n{env.rx.log_tail()}"
    for m, user in sent.items():
        assert got[m]["user"] in (user, env.dc.address(user)), got[m]
    for m in (mid(plain_lmtp), mid(plain_lda)):
        d = got[m]
        assert (d["kind"], d["folder"], d["routed"], d["chat_keyword"]) == (
            "not-chat", "INBOX", False, False), f"plain mail event: {d}"
        assert d["group_id"] is None
    d = got[mid(chat_lda)]
    assert (d["kind"], d["folder"], d["routed"], d["chat_keyword"]) == (
        "chat", CHATS, True, True), f"dovecot-lda chat event: {d}"
    d = got[mid(group_lmtp)]
    assert (d["kind"], d["folder"], d["group_id"]) == ("group-chat", CHATS, group_lmtp.group_id), d
    for m, user, folder in [(mid(plain_lmtp), "bob", "INBOX"), (mid(plain_lda), "bob", "INBOX"),
                            (mid(chat_lda), "alice", CHATS)]:
        uidvalidity, uid = imap_uidvalidity_and_uid(env.dc, user, folder, m)
        assert (got[m]["uidvalidity"], got[m]["uid"]) == (uidvalidity, uid), (m, got[m])
    for r in env.rx.requests:
        verify(TEST_SECRET, r.headers, r.body)
    env.dc.assert_no_panic_or_fatal()


def test_ox_format_endpoint_gets_put_with_ox_push_json(make_env):
    env = make_env(webhooks=lambda rx: [
        Webhook("ox", rx.url("/ox"), format="ox", folders=["INBOX"]),
        Webhook("std", rx.url("/std"))])
    plain = M.plain_mail(to=env.dc.address("bob"), frm="Dora Example <dora@example.net>",
                         subject="Quarterly report \u00e9t\u00e9")
    chat = M.coi_chat(to=env.dc.address("alice"))     # goes to COI/Chats: not for the ox hook
    plain_lda = M.plain_mail(to=env.dc.address("alice"))
    env.deliver(plain, "bob")
    env.deliver(chat, "alice")
    env.lda(plain_lda, "alice")
    env.wait_delivered(3, path="/std")
    env.wait_delivered(2, path="/ox")
    time.sleep(0.5)  # a wrongly routed third PUT would show up by now
    ox = [r for r in env.rx.requests if r.path == "/ox"]
    assert len(ox) == 2, f"the ox endpoint (folders=INBOX) must get exactly 2 requests:\n" \
                         f"{env.rx.log_tail()}"
    keys = {"user", "event", "folder", "imap-uidvalidity", "imap-uid", "from", "subject"}
    by_subject = {}
    for r in ox:
        assert r.method == "PUT", f"OX push driver format is an HTTP PUT, got {r.method}"
        assert (r.header("content-type") or "").startswith("application/json")
        body = r.json()
        assert keys <= set(body), f"ox JSON lacks {keys - set(body)}: {body}"
        assert body["event"] == "messageNew"
        assert body["folder"] == "INBOX"
        assert isinstance(body["imap-uid"], int) and isinstance(body["imap-uidvalidity"], int)
        verify(TEST_SECRET, r.headers, r.body)
        by_subject[body["subject"]] = body
    b = by_subject.get(plain.subject)
    assert b is not None, f"no ox PUT for {plain.subject!r}: {list(by_subject)}"
    assert b["user"] in ("bob", env.dc.address("bob")), b
    assert "dora@example.net" in b["from"], f"ox 'from' should be the From address: {b}"
    uidvalidity, uid = imap_uidvalidity_and_uid(env.dc, "bob", "INBOX", plain.message_id)
    assert (b["imap-uidvalidity"], b["imap-uid"]) == (uidvalidity, uid), b
    b = by_subject.get(plain_lda.subject)
    assert b is not None and b["user"] in ("alice", env.dc.address("alice")), by_subject
    uidvalidity, uid = imap_uidvalidity_and_uid(env.dc, "alice", "INBOX", plain_lda.message_id)
    assert (b["imap-uidvalidity"], b["imap-uid"]) == (uidvalidity, uid), b


def test_sidecar_absent_during_500_deliveries_then_started(make_env):
    env = make_env(start=False)
    jobs = []
    for i in range(500):
        if i % 2:
            jobs.append((M.coi_chat(to=env.dc.address("alice")), "alice"))
        else:
            jobs.append((M.plain_mail(to=env.dc.address("bob")), "bob"))
    t0 = time.monotonic()
    env.deliver_many(jobs, connections=4)
    took = time.monotonic() - t0
    assert not env.sc.socket_path.exists()
    records = sum(p.read_bytes().count(b"\x1e") for p in env.sc.spool_dir.iterdir())
    assert records == 500, f"spool holds {records} records after 500 deliveries: " \
                           f"{env.sc.spool_files()}"
    assert env.rx.count() == 0
    env.sc.start()
    env.wait_delivered(500)
    summary = check_at_least_once(env, {mid(m): env.dc.address(u) for m, u in jobs})
    for r in env.rx.delivered()[:50]:
        verify(TEST_SECRET, r.headers, r.body)
    m = env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    assert m.value("coi_intake_events_total", kind="chat") == 250
    assert m.value("coi_intake_events_total", kind="not-chat") == 250
    print(f"500 deliveries without sidecar in {took:.2f}s; {summary}")
    env.dc.assert_no_panic_or_fatal()


def test_endpoint_503_for_a_while_is_retried_then_delivered(make_env):
    env = make_env()
    env.rx.fail_for(2.5, status=503)
    msgs = [M.coi_chat(to=env.dc.address("alice")) for _ in range(3)]
    for msg in msgs:
        env.deliver(msg, "alice")
    env.wait_delivered(3, timeout=30)
    check_at_least_once(env, {mid(m): env.dc.address("alice") for m in msgs})
    reqs = env.rx.requests
    per_id = defaultdict(list)
    for r in reqs:
        per_id[r.webhook_id].append(r)
    for wid, attempts in per_id.items():
        statuses = [a.status for a in attempts]
        assert statuses[0] == 503 and statuses[-1] == 200 and len(attempts) >= 2, (
            f"{wid}: expected 503s then a 200, got {statuses}")
        assert all(s == 503 for s in statuses[:-1]), statuses
        assert len({a.body for a in attempts}) == 1, f"{wid}: body changed between retries"
        for a in attempts:
            verify(TEST_SECRET, a.headers, a.body)
        gaps = [b.mono - a.mono for a, b in zip(attempts, attempts[1:])]
        # schedule 1 s +-20 % jitter
        assert all(g >= 0.75 for g in gaps), f"{wid}: retries too early: {gaps}"
    failures = sum(1 for r in reqs if r.status == 503)
    m = env.wait_metric(
        lambda m: m.value("coi_delivery_attempts_total", endpoint="main", outcome="success") == 3,
        "3 successful attempts")
    assert m.value("coi_delivery_attempts_total", endpoint="main",
                   outcome="retriable_status") == failures, _coi_lines(m.text)
    assert m.value("coi_dead_letters_total", endpoint="main") == 0
    # delivered rows are deleted in batches shortly after their 2xx
    env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_respected(make_env, status):
    """Retry-After: 3 with a 2 s schedule (jitter +-20 %: 1.6..2.4 s): the retry waits >= 3 s."""
    retry_after = 3
    env = make_env(webhooks=lambda rx: [Webhook("main", rx.url("/hook"),
                                                retry_schedule_secs=(2, 2, 2))])
    env.rx.fail_first(1, status=status, retry_after=retry_after)
    msg = M.coi_chat(to=env.dc.address("alice"))
    env.deliver(msg, "alice")
    env.wait_delivered(1, timeout=20)
    reqs = env.rx.requests
    assert [r.status for r in reqs] == [status, 200], env.rx.log_tail()
    assert reqs[0].webhook_id == reqs[1].webhook_id
    gap = reqs[1].mono - reqs[0].mono
    assert gap >= retry_after, (f"retry came {gap:.3f}s after the {status} with "
                                f"Retry-After: {retry_after}")
    assert gap < retry_after + 2.5, f"retry came late: {gap:.3f}s"


def test_sidecar_sigkilled_during_2000_deliveries_loses_nothing(make_env):
    env = make_env(rotate_bytes=65536)
    # A receiver slower than Dovecot (4 x 15 ms per request): a backlog builds
    # up, so every kill hits requests in flight and a non-empty queue.
    env.rx.slow(0.015)
    total, kills = 2000, 4
    jobs = []
    for i in range(total):
        if i % 2:
            jobs.append((M.coi_chat(to=env.dc.address("alice")), "alice"))
        else:
            jobs.append((M.plain_mail(to=env.dc.address("bob")), "bob"))
    done = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def on_result(i, res):
        with lock:
            done["n"] += 1

    def run():
        try:
            env.deliver_many(jobs, connections=4, on_result=on_result)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    kill_log = []
    for k in range(1, kills + 1):
        threshold = total * k // (kills + 1)
        while done["n"] < threshold and t.is_alive():
            time.sleep(0.005)
        pid = env.sc.pid
        rc = env.sc.kill()
        kill_log.append((done["n"], env.rx.count(), pid, rc))
        time.sleep(0.1 + 0.1 * k)
        env.sc.start()
    t.join(timeout=300)
    assert not t.is_alive(), "deliveries did not finish"
    if errors:
        raise errors[0]
    assert len(kill_log) == kills and all(rc == -9 for *_, rc in kill_log), kill_log
    assert all(n < total for n, *_ in kill_log), f"a kill came after the stream ended: {kill_log}"
    env.wait_delivered(total, timeout=90)
    summary = check_at_least_once(env, {mid(m): env.dc.address(u) for m, u in jobs})
    m = env.wait_metric(lambda m: m.value("coi_queue_depth_events") == 0, "an empty queue")
    leftovers = [n for n, _ in env.sc.spool_files() if n != "events.log"]
    assert not leftovers, f"rotated spool files not drained: {env.sc.spool_files()}"
    print(f"kills at (delivered, requests, pid, rc): {kill_log}; {summary}")
    env.dc.assert_no_panic_or_fatal()


def test_bad_datagrams_rejected_counted_and_still_serving(make_env):
    env = make_env()
    sock = env.sc.socket_path
    garbage = [b"hello", b"\x00\xff\xfe\xfd", b"{not json", b"", json.dumps({
        "v": 1, "type": "bell", "dropped": 0}).encode()]
    oversized = [ring_datagram(pad="x" * 600), b"x" * 513, b"{" + b" " * 65000 + b"}"]
    version = [json.dumps({"v": 2, "type": "ring", "dropped": 0}).encode(),
               json.dumps({"v": "1", "type": "ring", "dropped": 0}).encode(),
               json.dumps({"type": "ring", "dropped": 0, "v": 0}).encode()]
    send_datagrams(sock, garbage + oversized + version)
    want = {"garbage": len(garbage), "oversized": len(oversized), "version": len(version)}
    m = env.wait_metric(lambda m: all(
        m.value("coi_intake_datagrams_total", outcome=k) == v for k, v in want.items()),
        f"datagram rejections {want}")
    assert m.value("coi_intake_datagrams_total", outcome="accepted") == 0, _coi_lines(m.text)
    assert m.value("coi_intake_datagrams_total", outcome="peer") == 0
    assert m.value("coi_plugin_events_dropped_total") == 0
    assert env.sc.running, "the sidecar died on bad datagrams" + env.diag()
    assert env.sc.healthz()[0] == 200
    # Still serving: a following delivery arrives, and its doorbell is accepted.
    msg = M.coi_chat(to=env.dc.address("alice"))
    env.deliver(msg, "alice")
    env.wait_delivered(1, timeout=15)
    check_at_least_once(env, {mid(msg): env.dc.address("alice")})
    m = env.wait_metric(lambda m: m.value("coi_intake_datagrams_total", outcome="accepted") >= 1,
                        "the plugin's doorbell accepted")
    for k, v in want.items():
        assert m.value("coi_intake_datagrams_total", outcome=k) == v, _coi_lines(m.text)


def test_doorbell_from_foreign_peer_is_rejected(make_env):
    """Allowed peers = the mail uid and gid: the plugin's doorbells pass, others count as peer.

    Dovecot's lmtp runs as root and only drops its *effective* uid per delivery,
    so the kernel reports its doorbells with uid 0 and the mail gid; dovecot-lda
    drops all ids. The gid entry is what lets lmtp's doorbells in. As root,
    the test's own datagrams (uid 0, gid 0) are foreign.
    """
    from tests.harness.sysuser import ensure_mail_identity
    ident = ensure_mail_identity()
    if ident.running_as_root:
        uids, gids = [ident.uid], [ident.gid]
    else:  # the test shares the mail identity: allow nobody we know, rely on the scan timer
        uids, gids = [65534], [65534]
    env = make_env(allowed_uids=uids, allowed_gids=gids)
    send_datagrams(env.sc.socket_path, [ring_datagram(), ring_datagram(dropped=3)])
    m = env.wait_metric(lambda m: m.value("coi_intake_datagrams_total", outcome="peer") == 2,
                        "2 datagrams rejected by peer credentials")
    assert m.value("coi_plugin_events_dropped_total") == 0, "a rejected doorbell was believed"
    assert m.value("coi_intake_datagrams_total", outcome="accepted") == 0
    chat, plain = M.coi_chat(to=env.dc.address("alice")), M.plain_mail(to=env.dc.address("bob"))
    env.deliver(chat, "alice")
    env.lda(plain, "bob")
    env.wait_delivered(2, timeout=15)
    if ident.running_as_root:
        m = env.wait_metric(
            lambda m: m.value("coi_intake_datagrams_total", outcome="accepted") == 2,
            f"the doorbells of lmtp and dovecot-lda (uid {ident.uid} / gid {ident.gid}) accepted")
        assert m.value("coi_intake_datagrams_total", outcome="peer") == 2, _coi_lines(m.text)
    else:  # every doorbell refused; the spool scan timer still delivers
        m = env.wait_metric(lambda m: m.value("coi_intake_datagrams_total", outcome="peer") == 4,
                            "the plugin's doorbells refused too")
    assert env.sc.healthz()[0] == 200


def test_metrics_counters_match_what_the_test_did(make_env):
    """A known mix of deliveries; /metrics parsed; every counter checked against it."""
    state = {"all": 0}
    lock = threading.Lock()

    def policy(req, i):
        if req.path == "/all":
            with lock:
                state["all"] += 1
                if state["all"] <= 2:
                    return Reply(503)
        return Reply(200)

    env = make_env(webhooks=lambda rx: [
        Webhook("all", rx.url("/all")),
        Webhook("chats", rx.url("/chats"), kinds=["chat", "group-chat"])])
    env.rx.set_policy(policy)
    dc = env.dc
    # fb's Maildir exists (first delivery), then its chats folder is blocked by a file.
    first = M.plain_mail(to=dc.address("fb"))
    env.deliver(first, "fb")
    env.dc.block_folder_with_file("fb", CHATS)
    plan = (
        [(first, "fb", "not-chat")]
        + [(M.plain_mail(to=dc.address("bob")), "bob", "not-chat") for _ in range(3)]
        + [(M.coi_chat(to=dc.address("alice")), "alice", "chat") for _ in range(2)]
        + [(M.coi_group_chat(to=dc.address("alice")), "alice", "group-chat") for _ in range(2)]
        + [(M.deltachat_mdn(to=dc.address("alice")), "alice", "read-receipt")]
        + [(M.coi_chat(to=dc.address("bob")), "bob", "chat") for _ in range(2)]
        + [(M.coi_chat(to=dc.address("fb")), "fb", "chat")]
    )
    for msg, user, _ in plan[1:]:
        env.deliver(msg, user)
    lda_msg = M.plain_mail(to=dc.address("bob"))
    env.lda(lda_msg, "bob")
    plan.append((lda_msg, "bob", "not-chat"))
    send_datagrams(env.sc.socket_path, [ring_datagram(dropped=7)])
    n = len(plan)
    n_chatty = sum(1 for _, _, k in plan if k in ("chat", "group-chat"))
    env.wait_delivered(n, path="/all")
    env.wait_delivered(n_chatty, path="/chats")
    m = env.wait_metric(lambda m: (
        m.value("coi_delivery_attempts_total", endpoint="all", outcome="success") == n
        and m.value("coi_delivery_attempts_total", endpoint="chats", outcome="success") == n_chatty
        and m.value("coi_queue_depth_events") == 0), "all deliveries counted")

    # What the plugin did, from the events themselves (the /all endpoint sees everything).
    events = [data_of(rs[0]) for rs in by_message_id(
        [r for r in env.rx.requests if r.path == "/all"]).values()]
    assert len(events) == n
    kinds_sent = Counter(k for _, _, k in plan)
    kinds_seen = Counter(e["kind"] for e in events)
    assert kinds_seen == kinds_sent, f"event kinds {kinds_seen} != delivered {kinds_sent}"
    fb_event = [e for e in events if e["user"].startswith("fb") and e["kind"] == "chat"]
    assert len(fb_event) == 1 and fb_event[0]["folder"] == "INBOX" and not fb_event[0]["routed"], (
        f"the fallback chat must be stored in INBOX, not routed: {fb_event}")
    routed = sum(1 for e in events if e["routed"])
    tagged = sum(1 for e in events if e["chat_keyword"])
    assert routed == 5, f"alice's 2 chats, 2 group chats and 1 MDN are routed; events say {routed}"

    problems = []

    def expect(name, want, **labels):
        got = m.value(name, **labels)
        if got != want:
            problems.append(f"{name}{labels or ''} = {got}, expected {want}")

    for kind in ("not-chat", "chat", "group-chat", "read-receipt"):
        expect("coi_intake_events_total", kinds_sent[kind], kind=kind)
        expect("coi_plugin_messages_classified_total", kinds_sent[kind], kind=kind)
    expect("coi_intake_events_total", 1, kind="fallback")
    expect("coi_intake_events_total", 0, kind="other")
    expect("coi_plugin_messages_routed_total", routed)
    expect("coi_plugin_messages_tagged_total", tagged)
    expect("coi_plugin_fallbacks_total", 1, reason="folder_unavailable")
    expect("coi_plugin_fallbacks_total", 1)
    expect("coi_plugin_events_dropped_total", 7)
    # one doorbell per appended record (n messages + 1 fallback) plus the test's one
    expect("coi_intake_datagrams_total", n + 1 + 1, outcome="accepted")
    for outcome in ("garbage", "oversized", "version", "peer"):
        expect("coi_intake_datagrams_total", 0, outcome=outcome)
    expect("coi_delivery_attempts_total", n, endpoint="all", outcome="success")
    expect("coi_delivery_attempts_total", 2, endpoint="all", outcome="retriable_status")
    expect("coi_delivery_attempts_total", n_chatty, endpoint="chats", outcome="success")
    expect("coi_delivery_attempts_total", 0, endpoint="chats", outcome="retriable_status")
    for outcome in ("permanent_status", "timeout", "connection", "rate_limited",
                    "refused_address", "invalid_request"):
        expect("coi_delivery_attempts_total", 0, outcome=outcome)
    expect("coi_delivery_latency_seconds_count", n + n_chatty)
    expect("coi_dead_letters_total", 0)
    expect("coi_dead_letters_pending", 0)
    expect("coi_queue_depth_events", 0)
    expect("coi_spool_records_rejected_total", 0)
    assert not problems, "metrics do not match:\n  " + "\n  ".join(problems) + \
        "\n--- scrape (non-zero coi_ lines)\n" + _coi_lines(m.text)

    # Types, build info, process metrics; nothing but our prefix and process_*.
    types = m.types
    assert types.get("coi_intake_events") == "counter", types
    assert types.get("coi_delivery_latency_seconds") == "histogram", types
    assert types.get("coi_queue_depth_events") == "gauge", types
    assert any(s.name == "coi_build_info" and s.labels.get("version") and s.value == 1
               for s in m.samples), "coi_build_info{version} missing"
    assert m.value("process_resident_memory_bytes") > 0
    assert m.value("process_open_fds") > 0
    foreign = sorted({s.name for s in m.samples if not s.name.startswith(("coi_", "process_"))})
    assert not foreign, f"metrics outside the coi_/process_ prefixes: {foreign}"
    # Privacy: no user, address, folder or URL in any label.
    label_values = {v for s in m.samples for v in s.labels.values()}
    leaks = sorted(v for v in label_values
                   if "@" in v or v in ("alice", "bob", "fb", "INBOX", CHATS)
                   or "127.0.0.1" in v or "/" in v)
    assert not leaks, f"label values that name users, folders or URLs: {leaks}"
    # The latency histogram is sane: every observation is finite and small here.
    buckets, count, total = m.histogram("coi_delivery_latency_seconds")
    assert count == n + n_chatty and buckets and buckets[-1][1] == count
    assert total / count < 10, f"mean latency {total / count:.2f}s"


def test_permanent_failure_goes_to_dead_letters_and_replays(make_env):
    """A 400 is permanent: no retry, a dead letter; ``dead-letters replay`` delivers it."""
    env = make_env()
    env.rx.fail_first(1, status=400)
    msg = M.coi_chat(to=env.dc.address("alice"))
    env.deliver(msg, "alice")
    m = env.wait_metric(lambda m: m.value("coi_dead_letters_total", endpoint="main") == 1,
                        "one dead letter")
    assert m.value("coi_delivery_attempts_total", endpoint="main", outcome="permanent_status") == 1
    assert m.value("coi_dead_letters_pending") == 1
    time.sleep(1.5)  # the schedule would have retried by now (1 s)
    assert [r.status for r in env.rx.requests] == [400], env.rx.log_tail()
    event_id = env.rx.requests[0].webhook_id
    listed = env.sc.cli("dead-letters", "list")
    assert listed.returncode == 0 and event_id in listed.stdout, (listed.stdout, listed.stderr)
    assert "1 dead letter(s)" in listed.stdout, listed.stdout
    replay = env.sc.cli("dead-letters", "replay", event_id)  # while the daemon runs
    assert replay.returncode == 0, (replay.stdout, replay.stderr)
    env.wait_delivered(1, timeout=15)
    reqs = env.rx.requests
    assert [r.status for r in reqs] == [400, 200] and reqs[1].webhook_id == event_id, \
        env.rx.log_tail()
    verify(TEST_SECRET, reqs[1].headers, reqs[1].body)
    m = env.wait_metric(lambda m: m.value("coi_dead_letters_pending") == 0,
                        "no dead letter pending after the replay")
    assert "0 dead letter(s)" in env.sc.cli("dead-letters", "list").stdout


def test_loopback_endpoint_refused_unless_allowed(tmp_path):
    """check-config: a loopback webhook URL is a config error without allow_private_addresses."""
    sc = SidecarProcess([Webhook("main", "http://127.0.0.1:9/hook")],
                        root=tmp_path, allow_private_addresses=False)
    try:
        res = sc.cli("check-config")
        assert res.returncode != 0, f"loopback endpoint accepted: {res.stdout}{res.stderr}"
        assert "allow_private_addresses" in res.stderr + res.stdout, res.stderr
        sc.allow_private_addresses = True
        sc.write_config()
        res = sc.cli("check-config")
        assert res.returncode == 0 and "ok" in res.stdout, (res.stdout, res.stderr)
    finally:
        sc.close()

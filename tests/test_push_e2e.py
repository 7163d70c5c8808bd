"""Push end to end: a COI client over real IMAP, a real Dovecot with the plugin,
the real coi-sidecar, a push service that decrypts with its own RFC 8291
implementation and checks the VAPID JWT against the key IMAP served, a Delta
Chat notification proxy, and Dovecot's doveadm HTTP API for removals.

Nothing here is simulated but the far ends (push service, proxy), which are
loopback HTTP servers in this process (tests/harness/pushreceiver.py,
tests/harness/receiver.py).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import DovecotInstance, WebhookReceiver, free_ports
from tests.harness import messages as M
from tests.harness.pushreceiver import PushReceiver, PushSidecar, doveadm_http_config
from tests.harness.receiver import Reply

SUBS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
VAPID = "/private/vendor/vendor.dovecot/webpush/vapid"
TOKENS = "/private/vendor/vendor.dovecot/coi/devicetokens"
API_KEY = "e2e-doveadm-key"
SUBJECT = "mailto:postmaster@example.org"
WAIT = 20.0
#: Longer than the 32 bytes the old encoder cut a user to when 32 large
#: device tokens overflowed a record (issue 12, item 11).
LONG_USER = "frank-with-a-rather-long-login-name"


def wait_until(what: str, cond, timeout: float = WAIT, diag=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{diag()}")
        time.sleep(0.05)


class Env:
    def __init__(self, dc: DovecotInstance, sc: PushSidecar, rx: PushReceiver, proxy: WebhookReceiver):
        self.dc, self.sc, self.rx, self.proxy = dc, sc, rx, proxy

    def diag(self) -> str:
        return "\n".join([self.sc.log_tail(), self.rx.log_tail(), self.dc.log.tail(30)])

    def subscribe(self, user: str, sub, msgtype: str = "chat") -> dict:
        """Subscribe over IMAP and answer the validation push, as a client does."""
        with self.dc.imap(user) as c:
            c.setmetadata_ok(SUBS + sub.id, sub.client_json(msgtype))
            req = self.rx.wait_for(1, sub)[0]
            assert not req.errors, req.errors
            assert req.header("webpush-validation") is not None, req.headers
            secret = req.json()["validation"]
            c.setmetadata_ok(SUBS + sub.id + "/validate", secret)
            shown = json.loads(c.getmetadata(SUBS + sub.id))
            assert c.noop() == []
            return shown


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    proxy = WebhookReceiver()
    proxy.__enter__()
    proxy.set_policy(lambda req, i: Reply(410 if req.body == b"token-dead" else 200))
    sc = PushSidecar(log_level="debug", subject=SUBJECT)
    rx = PushReceiver(vapid_public_key=sc.vapid_public_key, subject=SUBJECT)
    port = free_ports(1)[0]
    key_file = sc.root / "doveadm-api-key"
    key_file.write_text(API_KEY + "\n")
    sc.push_sections = sc.push_config(deltachat_proxy=proxy.url("/notify"),
                                      doveadm_url=f"http://127.0.0.1:{port}/doveadm/v1",
                                      doveadm_key_file=key_file)
    dc = None
    try:
        sc.start()
        wait_until("the VAPID key", sc.vapid_public_key.exists)
        settings = dict(sc.plugin_settings())
        settings.update({"coi_webpush_vapid_key": str(sc.vapid_public_key),
                         "coi_deltachat_push": "yes"})
        dc = DovecotInstance(plugin_settings=settings, extra_config=doveadm_http_config(port, API_KEY),
                             users=["alice", "bob", "carol", "dave", "grace", "heidi", LONG_USER])
        dc.start()
        yield Env(dc, sc, rx, proxy)
    finally:
        if dc is not None:
            dc.stop()
        rx.close()
        sc.close()
        proxy.__exit__(None, None, None)


def test_webpush_subscribe_validate_push_and_msgtype(env):
    dc, rx = env.dc, env.rx
    sub = rx.make_subscription("alice-phone-1")
    with dc.imap("alice") as c:
        assert "WEBPUSH" in c.capabilities()
        served = c.getmetadata(VAPID)
    assert served == env.sc.vapid_public_key.read_text()
    shown = env.subscribe("alice", sub, "chat")
    assert shown["msgtype"] == "chat" and shown["resource"]["endpoint"] == sub.endpoint

    chat = M.coi_chat(subject="lunch?", body="ciphertext-ish body")
    dc.lmtp_deliver(chat.raw, [dc.rcpt("alice")])
    req = rx.wait_for(2, sub)[1]
    assert not req.errors, req.errors          # decrypted, JWT verified against the served key
    assert req.header("ttl") == "86400"
    assert req.claims["aud"] == rx.base_url and req.claims["sub"] == SUBJECT
    payload = req.json()
    assert payload["msg-id"] == chat.message_id
    assert payload["subject"] == "lunch?"
    assert payload["folder"] == "INBOX" and payload["uid"] >= 1 and payload["uidvalidity"] > 0
    assert payload["from-email"] and "ciphertext-ish body" in payload["content"]
    assert payload["date"].endswith("Z")

    # msgtype chat: no push for plain mail; never for read receipts
    dc.lmtp_deliver(M.plain_mail().raw, [dc.rcpt("alice")])
    dc.lmtp_deliver(M.deltachat_mdn().raw, [dc.rcpt("alice")])
    dc.lmtp_deliver(M.coi_chat(subject="again").raw, [dc.rcpt("alice")])
    reqs = rx.wait_for(3, sub)
    time.sleep(1.0)
    reqs = rx.requests(sub)
    assert [r.json().get("subject") for r in reqs[1:]] == ["lunch?", "again"], env.diag()


def test_unvalidated_subscription_gets_no_message_pushes(env):
    dc, rx = env.dc, env.rx
    sub = rx.make_subscription("bob-tablet-1")
    with dc.imap("bob") as c:
        c.setmetadata_ok(SUBS + sub.id, sub.client_json("all"))
        assert c.noop() == []
    rx.wait_for(1, sub)                          # the validation push only
    dc.lmtp_deliver(M.coi_chat().raw, [dc.rcpt("bob")])
    time.sleep(1.5)
    assert len(rx.requests(sub)) == 1, env.diag()


def test_410_removes_the_subscription_from_metadata(env):
    dc, rx = env.dc, env.rx
    sub = rx.make_subscription("carol-gone-1")
    env.subscribe("carol", sub, "all")
    rx.reply_for(sub, 410)
    dc.lmtp_deliver(M.plain_mail().raw, [dc.rcpt("carol")])

    def listed() -> str | None:
        with dc.imap("carol") as c:
            return c.getmetadata(SUBS + sub.id)
    wait_until("the subscription unset through doveadm", lambda: listed() is None, diag=env.diag)
    dc.lmtp_deliver(M.plain_mail().raw, [dc.rcpt("carol")])
    time.sleep(1.0)
    assert len(rx.requests(sub)) == 2, env.diag()   # validation + the one 410


def test_410_clean_up_keeps_a_subscription_renewed_under_the_same_id(env):
    """Issue 12 item 8. A push to subscription <id> (endpoint A) is answered 410, but
    only after the client re-subscribed under the same <id> with endpoint B and
    validated it. The clean-up may remove only what is still the dead target: it
    reads the key through doveadm, sees endpoint B and keeps it (before the fix it
    removed <id> by id alone and the client lost its new subscription)."""
    dc, rx = env.dc, env.rx
    sub_id = "grace-phone-01"
    old, new = rx.make_subscription("grace-endpoint-a"), rx.make_subscription("grace-endpoint-b")
    changed0 = env.sc.metrics().value("coi_push_metadata_removals_total", result="changed")
    with dc.imap("grace") as c:
        c.setmetadata_ok(SUBS + sub_id, old.client_json("all"))
        secret = rx.wait_for(1, old)[0].json()["validation"]
        c.setmetadata_ok(SUBS + sub_id + "/validate", secret)
    rx.hold(old)
    try:
        dc.lmtp_deliver(M.plain_mail().raw, [dc.rcpt("grace")])
        rx.wait_for(2, old)                       # the message push, held
        with dc.imap("grace") as c:               # meanwhile: the same id, a new endpoint
            c.setmetadata_ok(SUBS + sub_id, new.client_json("all"))
            secret = rx.wait_for(1, new)[0].json()["validation"]
            c.setmetadata_ok(SUBS + sub_id + "/validate", secret)
            assert c.conn.noop()[0] == "OK"
    finally:
        rx.release(old, 410)
    wait_until("the clean-up decided", lambda: env.sc.metrics().value(
        "coi_push_metadata_removals_total", result="changed") == changed0 + 1, diag=env.diag)
    with dc.imap("grace") as c:
        shown = c.getmetadata(SUBS + sub_id)
        assert shown is not None, "the renewed subscription was removed\n" + env.diag()
        assert json.loads(shown)["resource"]["endpoint"] == new.endpoint
    dc.lmtp_deliver(M.coi_chat(subject="still here").raw, [dc.rcpt("grace")])
    req = rx.wait_for(2, new)[1]
    assert req.json()["subject"] == "still here"
    assert len(rx.requests(old)) == 2, rx.log_tail()

def test_resetting_one_subscription_id_cannot_queue_unlimited_validations(env):
    """Issue 12 item 6. Every SETMETADATA of a subscription, even of the same id,
    asks for a validation push to a URL the user chose. 25 in a row from one IMAP
    session: the sidecar sends at most validations_per_user_per_hour (20 by
    default) and counts the rest; the client is still told OK each time."""
    dc, rx = env.dc, env.rx
    sub = rx.make_subscription("heidi-loop-01")
    limited0 = env.sc.metrics().value("coi_push_requests_total", channel="validation",
                                      outcome="user_rate_limited")
    with dc.imap("heidi") as c:
        for _ in range(25):
            c.setmetadata_ok(SUBS + sub.id, sub.client_json("chat"))
        assert c.conn.noop()[0] == "OK"
    wait_until("the validations past the limit counted", lambda: env.sc.metrics().value(
        "coi_push_requests_total", channel="validation", outcome="user_rate_limited") == limited0 + 5,
        diag=env.diag)
    time.sleep(0.5)
    assert len(rx.requests(sub)) == 20, rx.log_tail()
    dc.assert_no_panic_or_fatal()

def test_deltachat_tokens_self_sent_and_410(env):
    dc, proxy = env.dc, env.proxy
    with dc.imap("dave") as c:
        assert "XDELTAPUSH" in c.capabilities()
        for tok in ("token-phone", "token-dead", "token-phone"):
            c.setmetadata_ok("/private/devicetoken", tok, mailbox="INBOX")
        assert c.noop() == []
    before = len(proxy.requests)
    dc.lmtp_deliver(M.coi_chat().raw, [dc.rcpt("dave")])
    wait_until("two proxy POSTs", lambda: len(proxy.requests) >= before + 2, diag=env.diag)
    assert sorted(r.body for r in proxy.requests[before:]) == [b"token-dead", b"token-phone"]

    def tokens() -> list[str]:
        with dc.imap("dave") as c:
            from tests.test_imap_coi import metadata_depth
            return sorted(v for v in metadata_depth(c, TOKENS).values() if v)
    wait_until("the dead token unset", lambda: tokens() == ["token-phone"], diag=env.diag)

    # mail the user sent themself: no push
    n = len(proxy.requests)
    own = M.coi_chat(frm=dc.address("dave"))
    dc.lmtp_deliver(own.raw, [dc.rcpt("dave")], sender=dc.address("dave"))
    time.sleep(1.0)
    assert len(proxy.requests) == n, env.diag()
    dc.assert_no_panic_or_fatal()


def test_32_large_tokens_keep_the_user_whole_and_drop_targets_counted(env):
    """Issue 12 item 11. A user with 32 Delta Chat tokens of 1000 bytes: the push
    record would exceed 16 KiB. The plugin must never cut the user (the old
    encoder cut it to 32 bytes, so the 410 clean-up asked doveadm about a user that
    does not exist and the dead token stayed); it leaves trailing tokens out,
    counts them (coi_plugin_push_targets_dropped_total) and logs it."""
    dc, proxy = env.dc, env.proxy
    tokens = [f"frank-token-{i:02d}-" + "x" * 985 for i in range(32)]
    assert all(len(t) == 1000 for t in tokens)
    with dc.imap(LONG_USER) as c:
        for tok in tokens:
            c.setmetadata_ok("/private/devicetoken", tok, mailbox="INBOX")
    dropped0 = env.sc.metrics().value("coi_plugin_push_targets_dropped_total")
    chosen: dict[str, bytes] = {}

    def policy(req, i):
        if req.body.startswith(b"frank-token-") and not chosen:
            chosen["dead"] = req.body
        return Reply(410 if req.body == chosen.get("dead") else 200)
    before = len(proxy.requests)
    proxy.set_policy(policy)
    try:
        dc.lmtp_deliver(M.coi_chat().raw, [dc.rcpt(LONG_USER)])
        wait_until("a token posted", lambda: "dead" in chosen, diag=env.diag)

        def stored() -> list[str]:
            with dc.imap(LONG_USER) as c:
                from tests.test_imap_coi import metadata_depth
                return sorted(v for v in metadata_depth(c, TOKENS).values() if v)
        # The 410 clean-up names the right user, so the dead token goes.
        wait_until("the dead token unset for the right user",
                   lambda: chosen["dead"].decode() not in stored(),
                   diag=lambda: env.diag() + str(env.sc.metrics().by_label(
                       "coi_push_metadata_removals_total", "result")))
        assert len(stored()) == 31
        removals = env.sc.metrics().by_label("coi_push_metadata_removals_total", "result")
        assert removals.get("no_user", 0) == 0, removals
        dropped = env.sc.metrics().value("coi_plugin_push_targets_dropped_total") - dropped0
        assert 0 < dropped < 32, dropped
        wait_until("every kept token posted", lambda: len(proxy.requests) - before >= 32 - dropped)
        time.sleep(0.3)
        posted = [r.body for r in proxy.requests[before:]]
        assert len(posted) == 32 - dropped, (dropped, len(posted))
        assert set(posted) <= {t.encode() for t in tokens}, "tokens are posted whole"
        warnings = [ln for ln in dc.log.text().splitlines() if "push target(s) left out" in ln]
        assert warnings, "the plugin logs the targets it left out"
    finally:
        proxy.set_policy(lambda req, i: Reply(410 if req.body == b"token-dead" else 200))
    dc.assert_no_panic_or_fatal()

def test_no_validation_push_after_the_subscription_window(tmp_path):
    """Issue 12 item 12. The validation window counts from the subscription's
    ``created``: with the sidecar down while a client subscribes and back only
    after the plugin's window (coi_webpush_validation_timeout = 10 s) closed,
    the sidecar sends no validation push the plugin would refuse to accept
    (before the fix its deadline counted from when it queued the job, so it
    pushed). The subscription is gone from METADATA; a fresh one validates."""
    sc = PushSidecar(log_level="debug", subject=SUBJECT)
    rx = PushReceiver(vapid_public_key=sc.vapid_public_key, subject=SUBJECT)
    sc.push_sections = sc.push_config(validation_deadline_secs=10)
    dc = None
    try:
        sc.start()
        wait_until("the VAPID key", sc.vapid_public_key.exists)
        sc.stop()
        settings = dict(sc.plugin_settings())
        settings.update({"coi_webpush_vapid_key": str(sc.vapid_public_key),
                         "coi_webpush_validation_timeout": "10s"})
        dc = DovecotInstance(plugin_settings=settings, users=["erin"])
        dc.start()
        late = rx.make_subscription("erin-late-1")
        with dc.imap("erin") as c:
            c.setmetadata_ok(SUBS + late.id, late.client_json("chat"))
            assert json.loads(c.getmetadata(SUBS + late.id))["resource"]["endpoint"] == late.endpoint
            time.sleep(11.0)                       # the window closes while the sidecar is down
            assert c.conn.noop()[0] == "OK"
            sc.start()
            wait_until("the late validation given up",
                       lambda: sc.metrics().value("coi_dead_letters_total", endpoint="push:validation") == 1,
                       diag=lambda: sc.log_tail() + rx.log_tail())
            time.sleep(0.5)
            assert rx.requests(late) == [], rx.log_tail()
            assert c.getmetadata(SUBS + late.id) is None, "an expired subscription is discarded"

            fresh = rx.make_subscription("erin-fresh-1")
            c.setmetadata_ok(SUBS + fresh.id, fresh.client_json("chat"))
            req = rx.wait_for(1, fresh)[0]
            assert not req.errors, req.errors
            assert 1 <= int(req.header("ttl")) <= 10, req.header("ttl")
            c.setmetadata_ok(SUBS + fresh.id + "/validate", req.json()["validation"])
            assert c.conn.noop()[0] == "OK"
        assert rx.requests(late) == []
        dc.assert_no_panic_or_fatal()
    finally:
        if dc is not None:
            dc.stop()
        rx.close()
        sc.close()

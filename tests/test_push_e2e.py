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
                             users=["alice", "bob", "carol", "dave"])
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

"""Recall behind a real MTA: Debian's Postfix as the submission and inbound
path, Dovecot's auth service for SASL, LMTP into Dovecot with the plugin, the
real coi-sidecar (docs/recall.md, "Who sent it").

The trace headers the plugin trusts are written by Postfix itself here:
* a message alice submits (SASL, ``smtpd_sasl_authenticated_header = yes``)
  is recallable by alice;
* outside mail on the inbound port with alice's From and envelope sender and
  a forged ``(Authenticated sender: alice...)`` Received header is not;
* mallory, authenticated, cannot use alice's envelope (Postfix refuses it),
  and a message she submits with alice's From is recallable by nobody.
"""

from __future__ import annotations

import pytest

from tests.harness import free_ports
from tests.harness import postfix as P
from tests.harness import submission as S
from tests.harness.config import PASSWORD
from tests.recall_env import RECALL, addr, start_env, wait_until

pytestmark = pytest.mark.skipif(P.available() is not None, reason=str(P.available()))


@pytest.fixture(scope="module")
def env():
    auth_port = free_ports(1)[0]
    e, stop = start_env(["alice", "bob", "mallory"],
                        {"coi_recall": "yes", "coi_sender_trust": "received"},
                        extra_config=P.auth_listener_config(auth_port))
    pf = None
    try:
        pf = P.PostfixInstance(e.dc.lmtp_port, auth_port).start()
        e.postfix = pf
        yield e
    finally:
        if pf is not None:
            pf.stop()
        stop()


def inbox_copy(env, user: str, mid: str):
    with env.dc.imap(user) as c:
        return [m for m in c.fetch_folder("INBOX") if m.header("Message-ID") == mid]


def arrived(env, user: str, mid: str):
    return wait_until(f"{mid} in {user}'s INBOX", lambda: inbox_copy(env, user, mid),
                      diag=lambda: env.postfix.log_tail() + "\n" + env.diag())[0]


def test_authenticated_submission_is_recallable(env):
    alice, bob = addr("alice"), addr("bob")
    raw, mid = S.message(alice, [bob], "through postfix")
    env.postfix.submit(alice, PASSWORD, raw, [bob])
    got = arrived(env, bob, mid)
    top = got.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "(Authenticated sender: alice@example.org)" in top and "with ESMTPA" in top, top
    with env.dc.imap(alice) as a:
        a.setmetadata_ok(RECALL + "pf1", mid)
        done = env.wait_recall_done(a, "pf1")
    assert done["recipients"] == [{"user": bob, "outcome": "recalled", "copies": 1}], done
    assert inbox_copy(env, bob, mid) == []


def test_outside_mail_forging_alice_is_not_recallable(env):
    alice, bob = addr("alice"), addr("bob")
    raw, mid = S.message(alice, [bob], "forged through the inbound port",
                         received=[S.submission_received(alice, bob)])
    env.postfix.inbound(alice, raw, [bob])
    got = arrived(env, bob, mid)
    assert b"with ESMTP id" in got.raw            # Postfix's inbound hop sits above the forgery
    with env.dc.imap(alice) as a:
        a.setmetadata_ok(RECALL + "pf2", mid)
        done = env.wait_recall_done(a, "pf2")
    assert done["recipients"] == [], done
    assert len(inbox_copy(env, bob, mid)) == 1


def test_mallory_cannot_send_as_alice(env):
    alice, bob, mallory = addr("alice"), addr("bob"), addr("mallory")
    raw, mid = S.message(alice, [bob], "mallory pretends")
    with pytest.raises(Exception) as refused:
        env.postfix.submit_as(mallory, PASSWORD, alice, raw, [bob])
    assert "not owned by user" in str(refused.value) or "553" in str(refused.value), refused.value
    env.postfix.submit(mallory, PASSWORD, raw, [bob])      # envelope mallory, From alice
    arrived(env, bob, mid)
    for who, rid in ((alice, "pf3a"), (mallory, "pf3m")):
        with env.dc.imap(who) as c:
            c.setmetadata_ok(RECALL + rid, mid)
            assert env.wait_recall_done(c, rid)["recipients"] == []
    assert len(inbox_copy(env, bob, mid)) == 1

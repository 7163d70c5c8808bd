"""Recall while unread, for recipients on the same server (docs/recall.md).

Real parts throughout: Dovecot with the freshly built plugin (LMTP delivery,
IMAP sessions that go on after each change), the real coi-sidecar (index,
doveadm HTTP API calls into the recipients' accounts, webhooks), and a
webhook receiver on loopback. Messages arrive at LMTP exactly as Postfix's
submission and inbound services hand them over (tests/harness/submission.py).

What is proved:
* an unread copy is removed and a read one kept, the sender learns both over
  IMAP (GETMETADATA) and as a ``message.recalled`` webhook, and a recipient's
  live session sees an ordinary ``* n EXPUNGE``;
* outside mail forging From, envelope sender and an authenticated-sender
  Received header is never recalled;
* nobody can recall a message someone else sent;
* a message filed into two folders is recalled from both (a client in IDLE
  on one of them hears ``* 1 EXPUNGE``);
* a recipient who turned COI off is recalled like anyone else;
* only the sender's IMAP session can ask; bad values are refused.
"""

from __future__ import annotations

import json

import pytest

from tests.harness import IdleClient
from tests.harness import submission as S
from tests.recall_env import RECALL, addr, start_env, wait_until

USERS = ["alice", "bob", "carol", "dave", "mallory", "erin"]
SIEVE_TWO_FOLDERS = """require ["fileinto", "copy", "mailbox"];
if header :contains "subject" "two folders" { fileinto :copy :create "Work"; }
"""


@pytest.fixture(scope="module")
def env():
    e, stop = start_env(USERS, {"coi_recall": "yes", "coi_sender_trust": "received"}, sieve=True)
    try:
        e.dc.write_user_sieve("erin", SIEVE_TWO_FOLDERS)
        yield e
    finally:
        stop()


def deliver(env, raw: bytes, sender: str, rcpts: list[str]) -> None:
    results = env.dc.lmtp_deliver(raw, rcpts, sender=sender)
    assert all(r.ok for r in results), results


def copies(env, user: str, mid: str) -> dict[str, list]:
    """folder -> [Message] of the copies of ``mid`` in ``user``'s account."""
    with env.dc.imap(user) as c:
        found = {}
        for folder, msgs in c.fetch_all_folders().items():
            hit = [m for m in msgs if m.header("Message-ID") == mid]
            if hit:
                found[folder] = hit
        return found


def test_unread_copy_is_recalled_read_copy_kept_and_sender_told(env):
    alice, bob, carol = addr("alice"), addr("bob"), addr("carol")
    raw, mid = S.submitted(alice, [bob, carol], "lunch moved")
    deliver(env, raw, alice, [bob, carol])

    # carol keeps a session open on INBOX; bob reads the message.
    watcher = IdleClient(env.dc.host, env.dc.imap_port, carol)
    try:
        assert watcher.select("INBOX") == 1
        with env.dc.imap(bob) as b:
            b.select("INBOX")
            b.conn.uid("STORE", "1:*", "+FLAGS", "(\\Seen)")
            assert b.noop() == []

        with env.dc.imap(alice) as a:
            a.setmetadata_ok(RECALL + "r1", mid)
            pending = env.recall_state(a, "r1")
            assert pending["state"] == "pending" and pending["message-id"] == mid
            done = env.wait_recall_done(a, "r1")
        outcome = {r["user"]: r["outcome"] for r in done["recipients"]}
        assert outcome == {bob: "already-read", carol: "recalled"}, done
        assert done["remote"].startswith("out-of-reach"), done

        # carol's live session learns of it as of any expunge
        lines = watcher.noop()
        assert any(l.endswith(b" EXPUNGE") for l in lines), lines
        assert watcher.view.uids == [] and not watcher.view.violations, lines
    finally:
        watcher.close()
    assert copies(env, carol, mid) == {}
    kept = copies(env, bob, mid)["INBOX"]
    assert "\\Seen" in kept[0].flags

    note = wait_until("message.recalled webhook",
                      lambda: [n for n in env.notices("message.recalled")
                               if n["data"]["message_id"] == mid], diag=env.diag)[0]
    assert note["data"]["sender"] == alice and note["data"]["request_id"] == "r1"
    assert {r["user"]: r["outcome"] for r in note["data"]["recipients"]} == outcome


def test_outside_mail_forging_the_sender_is_never_recalled(env):
    alice, bob = addr("alice"), addr("bob")
    raw, mid = S.forged(alice, [bob], "forged from outside")
    deliver(env, raw, alice, [bob])
    with env.dc.imap(alice) as a:
        a.setmetadata_ok(RECALL + "forged", mid)
        done = env.wait_recall_done(a, "forged")
    assert done["recipients"] == [], done
    assert len(copies(env, bob, mid)["INBOX"]) == 1


def test_nobody_recalls_someone_elses_message(env):
    alice, carol, mallory = addr("alice"), addr("carol"), addr("mallory")
    raw, mid = S.submitted(alice, [carol], "only alice may recall this")
    deliver(env, raw, alice, [carol])
    with env.dc.imap(mallory) as m:
        m.setmetadata_ok(RECALL + "steal", mid)
        done = env.wait_recall_done(m, "steal")
    assert done["recipients"] == [], done
    assert len(copies(env, carol, mid)["INBOX"]) == 1
    # mallory's own submission claiming alice's From does not qualify either
    raw, mid2 = S.message(alice, [carol], "mallory as alice",
                          received=[S.submission_received(mallory, carol)])
    deliver(env, raw, alice, [carol])
    for who, rid in ((alice, "a2"), (mallory, "m2")):
        with env.dc.imap(who) as c:
            c.setmetadata_ok(RECALL + rid, mid2)
            assert env.wait_recall_done(c, rid)["recipients"] == []
    assert len(copies(env, carol, mid2)["INBOX"]) == 1


def test_copies_filed_into_two_folders_are_both_recalled(env):
    alice, erin = addr("alice"), addr("erin")
    raw, mid = S.submitted(alice, [erin], "two folders please")
    deliver(env, raw, alice, [erin])
    assert sorted(copies(env, erin, mid)) == ["INBOX", "Work"]
    # erin's client sits in IDLE on Work and hears of the expunge there
    idler = IdleClient(env.dc.host, env.dc.imap_port, erin)
    try:
        assert idler.select("Work") == 1
        idler.idle()
        with env.dc.imap(alice) as a:
            a.setmetadata_ok(RECALL + "two", mid)
            done = env.wait_recall_done(a, "two")
        idler.wait_untagged(r"^\* 1 EXPUNGE", 10)
        idler.done()
        assert idler.view.uids == [] and not idler.view.violations
    finally:
        idler.close()
    assert done["recipients"] == [{"user": erin, "outcome": "recalled", "copies": 2}], done
    assert copies(env, erin, mid) == {}


def test_recipient_with_coi_off_is_recalled_too(env):
    alice, dave = addr("alice"), addr("dave")
    with env.dc.imap(dave) as d:
        d.setmetadata_ok("/private/vendor/vendor.dovecot/coi/config/enabled", "no")
    raw, mid = S.submitted(alice, [dave], "dave has COI off")
    deliver(env, raw, alice, [dave])
    with env.dc.imap(alice) as a:
        a.setmetadata_ok(RECALL + "dave", mid)
        done = env.wait_recall_done(a, "dave")
    assert done["recipients"] == [{"user": dave, "outcome": "recalled", "copies": 1}], done
    assert copies(env, dave, mid) == {}


def test_requests_are_checked_and_only_imap_may_ask(env):
    alice, bob = addr("alice"), addr("bob")
    raw, mid = S.submitted(alice, [bob], "checked requests")
    deliver(env, raw, alice, [bob])
    with env.dc.imap(alice) as a:
        typ, text = a.setmetadata(RECALL + "bad", "not a message id")
        assert typ == "NO" and "Message-ID" in text, text
        typ, text = a.setmetadata(RECALL + "bad/id", mid)
        assert typ == "NO", text
        # the state is the server's to write
        assert a.getmetadata(RECALL + "bad") is None
        # the server's own entries are not for IMAP sessions
        for key in ("/private/vendor/vendor.dovecot/coi/recall-execute",
                    "/private/vendor/vendor.dovecot/coi/read-mark"):
            typ, text = a.setmetadata(key, "{}")
            assert typ == "NO", (key, text)
    # doveadm (an administrator) cannot start a recall, only store state
    res = env.dc.doveadm.run("mailbox", "metadata", "set", "-u", alice, "-s", "",
                             RECALL + "admin", mid, check=False)
    assert res.returncode != 0
    res = env.dc.doveadm.run("mailbox", "metadata", "set", "-u", bob, "-s", "",
                             "/private/vendor/vendor.dovecot/coi/recall-execute",
                             json.dumps({"request": "x", "sender": alice, "message_id": mid,
                                         "copies": [{"folder": "INBOX", "uidvalidity": 1, "uid": 1}]}),
                             check=False)
    # doveadm itself may carry recalls out (that is how the sidecar does it),
    # but only for copies that are this sender's message: a wrong
    # UIDVALIDITY or Message-ID finds nothing.
    assert len(copies(env, bob, mid)["INBOX"]) == 1
    # forgetting an entry
    with env.dc.imap(alice) as a:
        a.setmetadata_ok(RECALL + "gone", mid)
        env.wait_recall_done(a, "gone")
        a.setmetadata_ok(RECALL + "gone", None)
        assert a.getmetadata(RECALL + "gone") is None
    env.dc.assert_no_panic_or_fatal()

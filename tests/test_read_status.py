"""Read status for local senders, and unencrypted MDNs from outside
(docs/recall.md, "Read status").

Real Dovecot + plugin, real coi-sidecar (index, doveadm calls into the
sender's account, webhooks). The sender keeps an IMAP session on her Sent
folder and sees the keyword arrive as any flag change (``* n FETCH``).

What is proved:
* with the recipient's consent (``.../coi/config/read-status yes``), the
  first ``\\Seen`` puts ``$CoiRead`` on the sender's own copy (Sent), sends
  one ``message.read`` webhook and one Web Push to the sender's phone
  (msgtype chat); reading again sends nothing more;
* without consent (the site default is off) nothing is marked or sent;
* an unencrypted MDN (``displayed``) from a remote recipient marks the
  sender's copy and sends ``message.read`` with ``via: mdn``;
* outside mail forging the sender never leads to a read report, and a \\Seen
  that dsync brings from a replica is not reported either.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import IdleClient
from tests.harness.doveadm import other_maildir_args
from tests.harness import messages as M
from tests.harness import submission as S
from tests.recall_env import READ_STATUS, addr, start_env, wait_until

READ = "$CoiRead"


@pytest.fixture(scope="module")
def env():
    e, stop = start_env(["alice", "bob", "carol"],
                        {"coi_read_status": "yes", "coi_sender_trust": "received"},
                        special_use={"Sent": "\\Sent"}, webpush=True)
    try:
        yield e
    finally:
        stop()


def send(env, frm: str, to: list[str], subject: str, local: list[str]) -> tuple[str, int]:
    """``frm`` submits a message (delivered to the ``local`` recipients) and
    keeps a copy in Sent, as a mail client does. Returns (Message-ID, Sent UID)."""
    raw, mid = S.submitted(frm, to, subject)
    if local:
        assert all(r.ok for r in env.dc.lmtp_deliver(raw, local, sender=frm))
    with env.dc.imap(frm) as c:
        if "Sent" not in c.list_folders():
            c.create("Sent")
        typ, data = c.conn.append("Sent", "(\\Seen)", None, raw)
        assert typ == "OK", data
        uid = int(data[0].split(b"APPENDUID ")[1].split(b" ")[1].rstrip(b"]"))
    return mid, uid


def read_it(env, user: str, mid: str) -> None:
    with env.dc.imap(user) as c:
        c.select("INBOX")
        typ, data = c.conn.uid("SEARCH", None, f'HEADER Message-ID "{mid}"')
        uids = data[0].split()
        assert len(uids) == 1, data
        c.conn.uid("STORE", uids[0], "+FLAGS", "(\\Seen)")
        assert c.noop() == []


def read_notices(env, mid: str) -> list[dict]:
    return [n for n in env.notices("message.read") if n["data"]["message_id"] == mid]


def test_consenting_reader_marks_the_senders_copy_once(env):
    alice, bob = addr("alice"), addr("bob")
    with env.dc.imap(bob) as b:
        assert b.getmetadata(READ_STATUS) == "no"      # the site default
        b.setmetadata_ok(READ_STATUS, "yes")
        assert b.getmetadata(READ_STATUS) == "yes"
        typ, text = b.setmetadata(READ_STATUS, "sometimes")
        assert typ == "NO", text
    phone = env.push.make_subscription("alice-phone-read")
    env.subscribe(alice, phone, "chat")
    mid, sent_uid = send(env, alice, [bob], "did you read this?", [bob])
    watcher = IdleClient(env.dc.host, env.dc.imap_port, alice)
    try:
        watcher.select("Sent")
        assert READ not in watcher.view.flags[sent_uid]
        read_it(env, bob, mid)
        wait_until("$CoiRead on alice's Sent copy",
                   lambda: watcher.noop() is not None and READ in watcher.view.flags.get(sent_uid, []),
                   diag=env.diag)
    finally:
        watcher.close()
    note = wait_until("message.read webhook", lambda: read_notices(env, mid), diag=env.diag)[0]
    assert note["data"] == {"sender": alice, "reader": bob, "message_id": mid, "via": "seen"}, note
    # alice's phone hears of it by Web Push (msgtype chat): her own msg-id,
    # the reader as from-email, her Sent copy's folder and UID
    pushed = env.push.wait_for(2, phone)[1]
    assert not pushed.errors, pushed.errors
    payload = pushed.json()
    assert payload["msg-id"] == mid.strip("<>") and payload["from-email"] == bob, payload
    assert payload["folder"] == "Sent" and payload["uid"] == sent_uid, payload
    # unread and read again: the first read was reported, nothing more
    with env.dc.imap(bob) as b:
        b.select("INBOX")
        b.conn.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    read_it(env, bob, mid)
    time.sleep(1.5)
    assert len(read_notices(env, mid)) == 1, read_notices(env, mid)


def test_an_implicit_seen_from_fetch_body_counts(env):
    """FETCH BODY[] sets \\Seen as a side effect; that is a read too."""
    alice, bob = addr("alice"), addr("bob")
    with env.dc.imap(bob) as b:
        b.setmetadata_ok(READ_STATUS, "yes")
    mid, sent_uid = send(env, alice, [bob], "opened with BODY[]", [bob])
    with env.dc.imap(bob) as b:
        b.select("INBOX")
        typ, data = b.conn.uid("SEARCH", None, f'HEADER Message-ID "{mid}"')
        typ, data = b.conn.uid("FETCH", data[0].split()[0], "(BODY[])")
        assert typ == "OK", data
    note = wait_until("message.read webhook", lambda: read_notices(env, mid), diag=env.diag)[0]
    assert note["data"]["reader"] == bob and note["data"]["via"] == "seen"


def test_without_consent_nothing_is_reported(env):
    alice, carol = addr("alice"), addr("carol")
    mid, sent_uid = send(env, alice, [carol], "carol never said yes", [carol])
    read_it(env, carol, mid)
    time.sleep(2.0)
    assert read_notices(env, mid) == []
    with env.dc.imap(alice) as a:
        sent = {m.uid: m for m in a.fetch_folder("Sent")}
        assert READ not in sent[sent_uid].flags


def test_outside_mail_forging_the_sender_is_never_reported(env):
    alice, bob = addr("alice"), addr("bob")          # bob consents (see above)
    with env.dc.imap(bob) as b:
        b.setmetadata_ok(READ_STATUS, "yes")
    raw, mid = S.forged(alice, [bob], "forged, then read")
    assert all(r.ok for r in env.dc.lmtp_deliver(raw, [bob], sender=alice))
    read_it(env, bob, mid)
    time.sleep(2.0)
    assert read_notices(env, mid) == []


def test_a_read_replicated_by_dsync_is_not_reported(env):
    """dsync copies a read that happened elsewhere; only where a client read it counts."""
    alice, bob = addr("alice"), addr("bob")      # bob consents
    with env.dc.imap(bob) as b:
        b.setmetadata_ok(READ_STATUS, "yes")
    mid, _ = send(env, alice, [bob], "read on the replica", [bob])
    replica = env.dc.home("bob") / "replica"
    location = f"maildir:{replica}"
    env.dc.doveadm.run("sync", "-u", bob, location)
    # read on the replica by something that is not the plugin
    env.dc.doveadm.run(*other_maildir_args(env.dc.config.dovecot_version, replica), "-o", "mail_plugins=",
                       "flags", "add", "-u", bob, "\\Seen", "mailbox", "INBOX", "all")
    env.dc.doveadm.run("sync", "-u", bob, location)
    with env.dc.imap(bob) as b:
        got = [m for m in b.fetch_folder("INBOX") if m.header("Message-ID") == mid]
        assert "\\Seen" in got[0].flags        # the replicated flag arrived
    time.sleep(2.0)
    assert read_notices(env, mid) == [], read_notices(env, mid)


def test_mdn_from_a_remote_recipient_marks_the_senders_copy(env):
    alice = addr("alice")
    remote = "dora@remote.example"
    mid, sent_uid = send(env, alice, [remote], "to a remote friend", [])
    mdn = M.deltachat_mdn(original_mid=mid.strip("<>"), frm=remote, to=alice)
    assert all(r.ok for r in env.dc.lmtp_deliver(mdn.raw, [alice], sender=remote))
    note = wait_until("message.read webhook (mdn)", lambda: read_notices(env, mid), diag=env.diag)[0]
    assert note["data"] == {"sender": alice, "reader": remote, "message_id": mid, "via": "mdn"}, note
    with env.dc.imap(alice) as a:
        sent = {m.uid: m for m in a.fetch_folder("Sent")}
        assert READ in sent[sent_uid].flags
    # an MDN saying "deleted" is no read
    mid2, sent_uid2 = send(env, alice, [remote], "deleted unread", [])
    deleted = M.deltachat_mdn(original_mid=mid2.strip("<>"), frm=remote, to=alice)
    raw = deleted.raw.replace(b"; displayed", b"; deleted")
    assert all(r.ok for r in env.dc.lmtp_deliver(raw, [alice], sender=remote))
    time.sleep(2.0)
    assert read_notices(env, mid2) == []
    env.dc.assert_no_panic_or_fatal()

"""Seen mode (``message-filter = seen``) with clients that go on living.

Issue 12 items 1 and 4. A read chat leaves INBOX for the chats folder; every
session that has INBOX open must be told (``* n EXPUNGE``) the way IMAP tells
it of any other session's move, and stay alive; the chat then exists once,
in the chats folder. The reading may come from the session itself (STORE,
UID STORE, FETCH BODY[]), from another IMAP session while this one IDLEs, or
from ``doveadm flags``. One move per message, however often \\Seen flips, and
none when dsync merely replicates a flag change.

Each test keeps its sessions open after the change, sends NOOP or sits in
IDLE, checks the untagged responses against a ``MailboxView`` (what the client
knows from the server's words alone) and compares that view with the server.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.harness import messages as M
from tests.harness.doveadm import other_maildir_args
from tests.harness.imap import IdleClient
from tests.harness.spool import make_spool_dir, seen_moves, wait_records

USERS = ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]


@pytest.fixture(scope="module")
def env(dovecot_factory):
    spool = make_spool_dir("coi-seen-")
    d = dovecot_factory(plugin_settings={
        "coi_spool_path": str(spool),
        "coi_sidecar_socket": str(spool.parent / "no-sidecar.sock"),
    }, users=USERS)
    d._chown_mail(spool)
    for user in USERS:
        d.enable_coi(user, "seen")
    yield d, spool
    shutil.rmtree(spool.parent, ignore_errors=True)


def session(d, user: str) -> IdleClient:
    return IdleClient(d.host, d.imap_port, user)


def copies(d, user: str, message_id: str) -> dict[str, int]:
    """Folder -> how many messages there carry ``message_id`` (over a new session)."""
    found: dict[str, int] = {}
    for folder, msgs in d.folders(user).items():
        n = sum(1 for m in msgs if (m.header("Message-ID") or "").strip("<> ") == message_id)
        if n:
            found[folder] = n
    return found


def expunge_lines(lines: list[bytes]) -> list[bytes]:
    return [ln for ln in lines if ln.upper().endswith(b" EXPUNGE")]


def deliver(d, user: str, *msgs) -> None:
    for m in msgs:
        d.lmtp_deliver(m.raw, [d.rcpt(user)])


def moved_once(d, spool, user: str, chat) -> None:
    """The chat is in the chats folder once, nowhere else, and one move was reported."""
    assert copies(d, user, chat.message_id) == {"COI/Chats": 1}
    recs = wait_records(spool, lambda r: r.get("type") == "message" and r.get("origin") == "seen_move"
                        and r.get("message_id") == f"<{chat.message_id}>")
    time.sleep(0.2)
    assert len([r for r in seen_moves(spool, user) if r["message_id"] == f"<{chat.message_id}>"]) == 1, recs


# -- item 1: the session that reads is told, and lives on ----------------------

def test_store_seen_then_noop_gets_expunge(env):
    d, spool = env
    user = "s1"
    plain, chat = M.plain_mail(), M.coi_chat()
    deliver(d, user, plain, chat)
    mark = d.log.mark()
    with session(d, user) as c:
        assert c.select("INBOX") == 2
        chat_uid = c.view.uids[1]
        # non-UID STORE may not report expunges itself (RFC 3501 7.4.1)
        untagged = c.command_ok("STORE 2 +FLAGS (\\Seen)")
        assert not expunge_lines(untagged), untagged
        assert expunge_lines(c.noop()) == [b"* 2 EXPUNGE"]
        assert c.view.expunged == [chat_uid]
        assert c.check_view() == [c.view.uids[0]]
        # the plain mail read too: it stays
        c.command_ok("STORE 1 +FLAGS (\\Seen)")
        assert not expunge_lines(c.noop())
        assert len(c.check_view()) == 1
        # the session goes on: the chat is in the chats folder, read, tagged
        assert c.select("COI/Chats") == 1
        assert "\\Seen" in c.view.flags[c.view.uids[0]] and "$Chat" in c.view.flags[c.view.uids[0]]
    moved_once(d, spool, user, chat)
    assert copies(d, user, plain.message_id) == {"INBOX": 1}
    d.assert_no_panic_or_fatal(since=mark)


def test_uid_store_and_fetch_body_tell_the_client_once(env):
    d, spool = env
    user = "s2"
    chat1, chat2, plain = M.coi_chat(), M.coi_chat(), M.plain_mail()
    deliver(d, user, chat1, plain, chat2)
    mark = d.log.mark()
    with session(d, user) as c:
        assert c.select("INBOX") == 3
        uid1, uid_plain, uid2 = c.view.uids
        told = c.command_ok(f"UID STORE {uid1} +FLAGS (\\Seen)") + c.noop()
        assert expunge_lines(told) == [b"* 1 EXPUNGE"], told
        assert c.view.uids == [uid_plain, uid2]
        # reading the body sets \Seen too (UID commands may report the
        # expunge themselves, RFC 3501 7.4.1)
        told = c.command_ok(f"UID FETCH {uid2} (BODY[])") + c.noop()
        assert expunge_lines(told) == [b"* 2 EXPUNGE"], told
        assert c.view.expunged == [uid1, uid2]
        assert c.check_view() == [uid_plain]
        assert not expunge_lines(c.noop())
    moved_once(d, spool, user, chat1)
    moved_once(d, spool, user, chat2)
    d.assert_no_panic_or_fatal(since=mark)


def test_idle_sessions_are_told_when_another_session_reads(env):
    d, spool = env
    user = "s3"
    chat = M.coi_chat()
    deliver(d, user, chat)
    mark = d.log.mark()
    with session(d, user) as inbox_idle, session(d, user) as chats_idle, session(d, user) as reader:
        assert inbox_idle.select("INBOX") == 1
        assert chats_idle.select("COI/Chats") == 0
        inbox_idle.idle()
        chats_idle.idle()
        reader.select("INBOX")
        reader.command_ok("STORE 1 +FLAGS (\\Seen)")
        inbox_idle.wait_untagged(r"^\* 1 EXPUNGE$", timeout=10)
        chats_idle.wait_exists(1, timeout=10)
        assert expunge_lines(reader.noop()) == [b"* 1 EXPUNGE"]
        for c in (inbox_idle, chats_idle):
            status, _, _ = c.done()
            assert status == "OK"
        assert inbox_idle.check_view() == [] and reader.check_view() == []
        assert len(chats_idle.check_view()) == 1
    moved_once(d, spool, user, chat)
    d.assert_no_panic_or_fatal(since=mark)


def test_doveadm_flag_change_moves_and_sessions_are_told(env):
    d, spool = env
    user = "s4"
    chat, plain = M.coi_chat(), M.plain_mail()
    deliver(d, user, plain, chat)
    mark = d.log.mark()
    with session(d, user) as idler, session(d, user) as selected:
        assert idler.select("INBOX") == 2
        assert selected.select("INBOX") == 2
        idler.idle()
        d.doveadm.run("flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "all")
        idler.wait_untagged(r"^\* 2 EXPUNGE$", timeout=10)
        assert idler.done()[0] == "OK"
        assert expunge_lines(selected.noop()) == [b"* 2 EXPUNGE"]
        for c in (idler, selected):
            assert len(c.check_view()) == 1
            assert not expunge_lines(c.noop())
    moved_once(d, spool, user, chat)
    assert copies(d, user, plain.message_id) == {"INBOX": 1}
    d.assert_no_panic_or_fatal(since=mark)


# -- item 4: one move per message, none from replication -----------------------

def test_pipelined_seen_toggles_move_once(env):
    d, spool = env
    user = "s5"
    chat = M.coi_chat()
    deliver(d, user, chat)
    mark = d.log.mark()
    with session(d, user) as c:
        assert c.select("INBOX") == 1
        uid = c.view.uids[0]
        statuses = c.pipeline([f"UID STORE {uid} +FLAGS.SILENT (\\Seen)",
                               f"UID STORE {uid} -FLAGS.SILENT (\\Seen)",
                               f"UID STORE {uid} +FLAGS.SILENT (\\Seen)",
                               "NOOP"])
        assert statuses == ["OK"] * 4, statuses
        c.noop()
        assert c.view.expunged == [uid]
        assert c.check_view() == []
    moved_once(d, spool, user, chat)
    d.assert_no_panic_or_fatal(since=mark)


def test_pipelined_seen_toggles_then_logout_move_once(env):
    """The same toggles by a client that logs out at once: the move must not
    depend on the session living on, and still happens once."""
    d, spool = env
    user = "s7"
    chat = M.coi_chat()
    deliver(d, user, chat)
    mark = d.log.mark()
    with session(d, user) as c:
        assert c.select("INBOX") == 1
        uid = c.view.uids[0]
        statuses = c.pipeline([f"UID STORE {uid} +FLAGS.SILENT (\\Seen)",
                               f"UID STORE {uid} -FLAGS.SILENT (\\Seen)",
                               f"UID STORE {uid} +FLAGS.SILENT (\\Seen)",
                               "LOGOUT"])
        assert statuses == ["OK"] * 4, statuses
    moved_once(d, spool, user, chat)
    d.assert_no_panic_or_fatal(since=mark)


def test_dsync_replicated_seen_flag_does_not_move(env):
    """dsync is not a client: a flag change it copies in from a replica is
    stored as is, and only the side where a client read the chat moves it."""
    d, spool = env
    user = "s6"
    chat = M.coi_chat()
    deliver(d, user, chat)
    replica = d.home(user) / "replica"
    location = f"maildir:{replica}"
    # a first copy with backup: a first two-way sync into an empty location
    # can give INBOX a new GUID on 2.4 ("Remote lost mailbox GUID", exit 2),
    # and server METADATA is keyed by INBOX's GUID in the attribute dict this
    # replica shares, so the user's COI settings would vanish (docs/migration.md)
    d.doveadm.dsync("backup", "-u", user, location)
    # the chat is read on the replica by something that is not the plugin
    # (here: doveadm with the plugin off there)
    d.doveadm.run(*other_maildir_args(d.config.dovecot_version, replica), "-o", "mail_plugins=",
                  "flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "all")
    with session(d, user) as c:
        assert c.select("INBOX") == 1
        uid = c.view.uids[0]
        assert "\\Seen" not in c.view.flags[uid]
        d.doveadm.dsync("sync", "-u", user, location)
        told = c.noop()
        # the replicated flag arrives; the message stays
        assert not expunge_lines(told), told
        assert "\\Seen" in c.view.flags[uid], told
        assert c.check_view() == [uid]
    assert copies(d, user, chat.message_id) == {"INBOX": 1}
    time.sleep(0.3)
    assert seen_moves(spool, user) == []
    # a client reading it on this side moves it, once
    with session(d, user) as c:
        c.select("INBOX")
        c.command_ok("STORE 1 -FLAGS (\\Seen)")
        c.command_ok("STORE 1 +FLAGS (\\Seen)")
        assert expunge_lines(c.noop()) == [b"* 1 EXPUNGE"]
    moved_once(d, spool, user, chat)
    # and replicating that move back to the replica moves nothing again
    d.doveadm.dsync("sync", "-u", user, location)
    assert copies(d, user, chat.message_id) == {"COI/Chats": 1}
    assert len(seen_moves(spool, user)) == 1
    d.assert_no_panic_or_fatal()

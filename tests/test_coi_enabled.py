"""Who decides whether COI is on for a user: the site default or the user.

Issue 12 items 2 and 3. ``.../coi/config/enabled`` is a tri-state: ``yes``
and ``no`` are the user's choice, NIL means "the site default"
(``coi_default_enabled``). The plugin's own folder creation (the chats
folder on the first chat, or on the first seen-mode move) is not a choice,
so turning the site default off later still reaches those users. A user
opts out with ``no`` or by deleting the chats folder, and that sticks while
the site default is on; the COI specification's ``yes`` and NIL still work.

Every test keeps an IMAP session with INBOX selected while chats arrive and
checks what NOOP tells it (``* n EXISTS`` only for chats that stay in INBOX).
"""

from __future__ import annotations

import re

from tests.harness import messages as M
from tests.harness.doveadm import other_maildir_args
from tests.harness.imap import COI_ENABLED, IdleClient

SITE_ON = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
SITE_OFF = {"coi_default_enabled": "no", "coi_default_message_filter": "active"}


def session(d, user: str) -> IdleClient:
    return IdleClient(d.host, d.imap_port, user)


def getmetadata(c: IdleClient, entry: str) -> str | None:
    """GETMETADATA "" entry over the raw session: the value, or None for NIL."""
    lines = c.command_ok(f'GETMETADATA "" {entry}')
    for line in lines:
        m = re.search(rb'\(\S+ (NIL|"(?:[^"\\]|\\.)*"|\{\d+\}\r\n.*)\)$', line, re.S)
        if m:
            v = m[1]
            if v == b"NIL":
                return None
            if v.startswith(b"{"):
                return v.split(b"\r\n", 1)[1].decode()
            return v[1:-1].decode()
    raise AssertionError(f"no METADATA line in {lines!r}")


def setmetadata(c: IdleClient, entry: str, value: str | None) -> tuple[str, str]:
    val = "NIL" if value is None else f'"{value}"'
    status, text, _ = c.command(f'SETMETADATA "" ({entry} {val})')
    return status, text


def exists_after(c: IdleClient) -> list[bytes]:
    return [ln for ln in c.noop() if ln.upper().endswith(b" EXISTS")]


def folders(d, user: str) -> dict[str, list[str]]:
    """Folder -> Message-IDs (without <>), over a new session."""
    return {f: [(m.header("Message-ID") or "").strip("<> ") for m in msgs]
            for f, msgs in d.folders(user).items()}


# -- item 2: the plugin's own folder creation is no choice ---------------------

def test_first_chat_creating_the_folder_stores_no_choice(dovecot_factory):
    d = dovecot_factory(plugin_settings=SITE_ON, users=["u1"])
    first, second = M.coi_chat(), M.coi_chat()
    with session(d, "u1") as c:
        assert c.select("INBOX") == 0
        assert getmetadata(c, COI_ENABLED) == "yes"  # the site default, shown
        d.lmtp_deliver(first.raw, [d.rcpt("u1")])
        # filed into the chats folder the plugin just made: INBOX hears nothing
        assert exists_after(c) == []
        assert c.check_view() == []
    assert folders(d, "u1")["COI/Chats"] == [first.message_id]
    # the operator turns the default off: the user never chose, so COI is off
    d.reconfigure(plugin_settings=SITE_OFF)
    with session(d, "u1") as c:
        assert c.select("INBOX") == 0
        assert getmetadata(c, COI_ENABLED) is None
        d.lmtp_deliver(second.raw, [d.rcpt("u1")])
        assert exists_after(c) == [b"* 1 EXISTS"]
        assert len(c.check_view()) == 1
    assert folders(d, "u1")["INBOX"] == [second.message_id]
    d.assert_no_panic_or_fatal()


def test_seen_move_creating_the_folder_stores_no_choice(dovecot_factory):
    d = dovecot_factory(plugin_settings={"coi_default_enabled": "yes",
                                         "coi_default_message_filter": "seen"}, users=["u2"])
    chat = M.coi_chat()
    d.lmtp_deliver(chat.raw, [d.rcpt("u2")])
    with session(d, "u2") as c:
        assert c.select("INBOX") == 1
        assert "COI/Chats" not in str(c.command_ok('LIST "" "*"'))
        # read by another client (doveadm): the move creates the folder
        d.doveadm.run("flags", "add", "-u", "u2", "\\Seen", "mailbox", "INBOX", "all")
        assert [ln for ln in c.noop() if ln.endswith(b"EXPUNGE")] == [b"* 1 EXPUNGE"]
        assert c.check_view() == []
    assert folders(d, "u2")["COI/Chats"] == [chat.message_id]
    d.reconfigure(plugin_settings={"coi_default_enabled": "no",
                                   "coi_default_message_filter": "seen"})
    with session(d, "u2") as c:
        c.select("INBOX")
        assert getmetadata(c, COI_ENABLED) is None
    d.assert_no_panic_or_fatal()


def test_dsync_creating_the_chats_folder_stores_no_choice(dovecot_factory):
    """A folder dsync copies in from a replica is the other side's, not a
    CREATE by this user: it neither enables COI here nor is refused."""
    d = dovecot_factory(plugin_settings=SITE_OFF, users=["u6"])
    replica = d.home("u6") / "replica"
    # a real INBOX first (dsync merges two fresh empty ones only on a rerun)
    d.lmtp_deliver(M.plain_mail().raw, [d.rcpt("u6")])
    d.doveadm.dsync("sync", "-u", "u6", f"maildir:{replica}")
    d.doveadm.run(*other_maildir_args(d.config.dovecot_version, replica), "-o", "mail_plugins=",
                  "mailbox", "create", "-u", "u6", "COI/Chats")
    chat = M.coi_chat()
    with session(d, "u6") as c:
        assert c.select("INBOX") == 1
        d.doveadm.dsync("sync", "-u", "u6", f"maildir:{replica}")
        assert b"COI/Chats" in b"\n".join(c.command_ok('LIST "" "*"'))
        assert getmetadata(c, COI_ENABLED) is None
        d.lmtp_deliver(chat.raw, [d.rcpt("u6")])
        assert exists_after(c) == [b"* 2 EXISTS"]
        assert len(c.check_view()) == 2
    assert chat.message_id in folders(d, "u6")["INBOX"]
    d.assert_no_panic_or_fatal()


# -- item 3: the user's no sticks; yes / NIL still work ------------------------

def test_user_opts_out_with_no_while_the_site_default_is_on(dovecot_factory):
    d = dovecot_factory(plugin_settings=SITE_ON, users=["u3"])
    a, b, c3 = M.coi_chat(), M.coi_chat(), M.coi_chat()
    with session(d, "u3") as c:
        assert c.select("INBOX") == 0
        assert setmetadata(c, COI_ENABLED, "no")[0] == "OK"
        assert getmetadata(c, COI_ENABLED) == "no"
        d.lmtp_deliver(a.raw, [d.rcpt("u3")])
        assert exists_after(c) == [b"* 1 EXISTS"]
        # NIL: back to the site default (on)
        assert setmetadata(c, COI_ENABLED, None)[0] == "OK"
        assert getmetadata(c, COI_ENABLED) == "yes"
        d.lmtp_deliver(b.raw, [d.rcpt("u3")])
        assert exists_after(c) == []
        # case does not matter, and "no" again sticks
        assert setmetadata(c, COI_ENABLED, "NO")[0] == "OK"
        d.lmtp_deliver(c3.raw, [d.rcpt("u3")])
        assert exists_after(c) == [b"* 2 EXISTS"]
        status, text = setmetadata(c, COI_ENABLED, "off")
        assert status == "NO" and "[CANNOT]" in text and '"no"' in text and "server default" in text, text
        assert len(c.check_view()) == 2
    got = folders(d, "u3")
    assert got["INBOX"] == [a.message_id, c3.message_id]
    assert got["COI/Chats"] == [b.message_id]
    d.assert_no_panic_or_fatal()


def test_delete_of_the_chats_folder_opts_out_and_sticks(dovecot_factory):
    d = dovecot_factory(plugin_settings=SITE_ON, users=["u4"])
    first, after_delete, after_create = M.coi_chat(), M.coi_chat(), M.coi_chat()
    d.lmtp_deliver(first.raw, [d.rcpt("u4")])
    with session(d, "u4") as c:
        assert c.select("INBOX") == 0
        c.command_ok('DELETE "COI/Chats"')
        assert getmetadata(c, COI_ENABLED) == "no"
        d.lmtp_deliver(after_delete.raw, [d.rcpt("u4")])
        assert exists_after(c) == [b"* 1 EXISTS"]
        listed = b"\n".join(c.command_ok('LIST "" "*"'))
        assert b"COI/Chats" not in listed, listed
        # CREATE is the way back in
        c.command_ok('CREATE "COI/Chats"')
        assert getmetadata(c, COI_ENABLED) == "yes"
        d.lmtp_deliver(after_create.raw, [d.rcpt("u4")])
        assert exists_after(c) == []
        assert len(c.check_view()) == 1
    got = folders(d, "u4")
    assert got["INBOX"] == [after_delete.message_id]
    assert got["COI/Chats"] == [after_create.message_id]
    d.assert_no_panic_or_fatal()


def test_specification_values_with_the_site_default_off(dovecot_factory):
    d = dovecot_factory(plugin_settings=SITE_OFF, users=["u5"])
    on, off = M.coi_chat(), M.coi_chat()
    with session(d, "u5") as c:
        assert c.select("INBOX") == 0
        assert getmetadata(c, COI_ENABLED) is None
        assert setmetadata(c, COI_ENABLED, "yes")[0] == "OK"
        d.lmtp_deliver(on.raw, [d.rcpt("u5")])
        assert exists_after(c) == []
        assert setmetadata(c, COI_ENABLED, None)[0] == "OK"
        assert getmetadata(c, COI_ENABLED) is None
        d.lmtp_deliver(off.raw, [d.rcpt("u5")])
        assert exists_after(c) == [b"* 1 EXISTS"]
        assert len(c.check_view()) == 1
    got = folders(d, "u5")
    assert got["COI/Chats"] == [on.message_id] and got["INBOX"] == [off.message_id]
    d.assert_no_panic_or_fatal()

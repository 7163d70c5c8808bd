"""COI state survives dsync between backends (issue 17 items 1, 2 and 5).

Two instances with the plugin (``src``, ``dst``) and two without it
(``stock_src``, ``stock_dst``, the reference for what dsync itself does),
each with a doveadm service on loopback and a shared password, as an
operator sets them up to move users between backends. Every command is the
real ``doveadm backup|sync ... tcp:127.0.0.1:PORT``.

What a user's COI state is: ``.../coi/config/enabled`` and
``message-filter``, Web Push subscriptions (with the validation secret and
state, which no client can read) and Delta Chat device tokens. After a move
the raw stored values are identical on both backends, the client sees the
same, and the next chat on the new backend is filed, tagged and pushed to
the same targets. dsync is not a client: no events, no folder life cycle,
no seen-mode moves on the side it writes. Values a hostile source sends are
checked as a client's SETMETADATA would be, refused one by one, logged and
counted (named event ``coi_value_refused``, Dovecot's stats).

Runs under Dovecot 2.3 and 2.4 (``scripts/test-dovecot24``).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.harness import COI_ENABLED, COI_MESSAGE_FILTER
from tests.harness import messages as M
from tests.harness.coistate import (PVT_COI, SERVER_CONFIG, TOKENS, WEBPUSH_SUBS, PushFiles,
                                    client_view, plant_raw_entries, push_files, raw_coi_entries,
                                    subscribe_validated, subscription_json)
from tests.harness.doveadm import DoveadmError
from tests.harness.dsync import doveadm_service_config, password_args, tcp_location
from tests.harness.imap import IdleClient
from tests.harness.instance import free_ports

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
SITE = {"coi_default_enabled": "no", "coi_default_message_filter": "none"}


def stats_config(version: str) -> str:
    """A Dovecot stats metric counting the plugin's refusals, as docs/dsync.md shows."""
    return ("metric coi_value_refused {\n"
            "  filter = event=coi_value_refused\n"
            "}\n")


class Backend:
    """One instance with its doveadm port and push files."""

    def __init__(self, inst, port: int, files: PushFiles | None):
        self.inst = inst
        self.port = port
        self.files = files

    @property
    def location(self) -> str:
        return tcp_location(self.port)

    def doveadm(self, *args: str, check: bool = True):
        """doveadm with the shared password. A dsync that exits 2 ("Mailbox
        changes caused a desync. You may want to run dsync again", seen on
        2.4 for a first two-way sync) is run again, as its message says."""
        proc = self.inst.doveadm.run(*password_args(), *args, check=False, timeout=120)
        if proc.returncode == 2 and args and args[0] in ("sync", "backup"):
            proc = self.inst.doveadm.run(*password_args(), *args, check=False, timeout=120)
        if check and proc.returncode != 0:
            raise DoveadmError(list(args), proc)
        return proc

    def events(self) -> list[dict]:
        return self.files.records() if self.files else []


@pytest.fixture(scope="module")
def backends(dovecot_factory):
    made = []

    def make(plugin: bool, extra: str = "") -> Backend:
        port, = free_ports(1)
        files = push_files() if plugin else None
        settings = dict(SITE, **files.settings()) if files else {}
        version = __import__("os").environ.get("COI_DOVECOT_VERSION", "2.3")
        inst = dovecot_factory(plugin=plugin, users=USERS, plugin_settings=settings,
                               extra_config=doveadm_service_config(port, version) + extra)
        if files:
            inst._chown_mail(files.spool)
        b = Backend(inst, port, files)
        made.append(b)
        return b

    version = __import__("os").environ.get("COI_DOVECOT_VERSION", "2.3")
    pair = {
        "src": make(True),
        "dst": make(True, stats_config(version)),
        "stock_src": make(False),
        "stock_dst": make(False),
    }
    yield pair
    for b in made:
        if b.files:
            b.files.remove()


def folders(inst, user: str) -> dict[str, list[tuple[str, bool]]]:
    """Folder -> [(Message-ID, has $Chat)], over IMAP."""
    return {f: [((m.header("Message-ID") or "").strip("<> "), m.has_chat_keyword) for m in msgs]
            for f, msgs in inst.folders(user).items()}


def message_events(b: Backend, user: str) -> list[dict]:
    return [r for r in b.events() if r.get("user", "").split("@")[0] == user
            and r.get("type") in ("message", "push", "webpush_validation")]


def set_up_coi_user(b: Backend, user: str, sub_id: str) -> tuple[str, list[str]]:
    """COI on (active), a validated Web Push subscription, two Delta Chat
    tokens, a chat filed into COI/Chats, ordinary server METADATA."""
    chat = M.coi_chat()
    with b.inst.imap(user) as c:
        c.enable_coi("active")
        subscribe_validated(c, b.files, sub_id, f"https://push.example.net/{sub_id}")
        for tok in ("dc-token-phone", "dc-token-laptop"):
            c.setmetadata_ok("/private/devicetoken", tok, mailbox="INBOX")
        c.setmetadata_ok("/private/comment", f"{user}'s comment")
    b.inst.lmtp_deliver(chat.raw, [user])
    return chat.message_id, ["dc-token-phone", "dc-token-laptop"]


# -- 1. a backend move over the doveadm protocol ------------------------------

def test_backup_over_tcp_carries_the_coi_state(backends):
    src, dst = backends["src"], backends["dst"]
    first, _ = set_up_coi_user(src, "alice", "alice-phone-0001")
    before = raw_coi_entries(src.inst, "alice")
    assert {k for k in before if k.startswith(PVT_COI)} and SERVER_CONFIG + "enabled" in before
    events_before = len(dst.events())
    log_mark = len(dst.inst.log_text())

    dst.doveadm("backup", "-R", "-u", "alice", src.location)

    # identical stored values: config, the subscription with its secret and
    # validated state, both tokens, and ordinary METADATA
    assert raw_coi_entries(dst.inst, "alice") == before
    view = client_view(dst.inst, "alice")
    assert view == client_view(src.inst, "alice")
    assert view["enabled"] == "yes" and view["message-filter"] == "active"
    with dst.inst.imap("alice") as c:
        shown = json.loads(c.getmetadata(WEBPUSH_SUBS + "alice-phone-0001"))
        assert shown["resource"]["endpoint"] == "https://push.example.net/alice-phone-0001"
        assert "secret" not in json.dumps(shown)
        assert c.getmetadata("/private/comment") == "alice's comment"
    assert folders(dst.inst, "alice")["COI/Chats"] == [(first, True)]
    # dsync wrote all that: no event, no life cycle, nothing said that did not stay true
    assert len(dst.events()) == events_before
    log = dst.inst.log_text()[log_mark:]
    assert "COI enabled" not in log and "coi:" not in log, log

    # the moved user goes on: the next chat is filed (INBOX hears nothing)
    # and pushed to the subscription and both tokens that came along
    chat = M.coi_chat()
    with IdleClient(dst.inst.host, dst.inst.imap_port, "alice") as c:
        assert c.select("INBOX") == 0
        dst.inst.lmtp_deliver(chat.raw, ["alice"])
        assert [ln for ln in c.noop() if ln.endswith(b"EXISTS")] == []
    pushes = [r for r in message_events(dst, "alice") if r["type"] == "push"]
    assert len(pushes) == 1, pushes
    assert [t["subscription_id"] for t in pushes[0]["webpush"]] == ["alice-phone-0001"]
    assert sorted(t["token"] for t in pushes[0]["deltachat"]) == ["dc-token-laptop", "dc-token-phone"]
    assert [m for m, _ in folders(dst.inst, "alice")["COI/Chats"]] == [first, chat.message_id]
    dst.inst.assert_no_panic_or_fatal()


def test_stock_dovecot_reference_and_plugin_on_one_side_only(backends):
    """Stock Dovecot carries every server METADATA entry as a plain
    attribute; with the plugin on either side only, COI's config arrives too
    (it is stored where Dovecot stores it)."""
    stock_src, stock_dst, dst = backends["stock_src"], backends["stock_dst"], backends["dst"]
    stock_src.doveadm("mailbox", "metadata", "set", "-u", "bob", "-s", "", COI_ENABLED, "yes")
    stock_src.doveadm("mailbox", "metadata", "set", "-u", "bob", "-s", "", COI_MESSAGE_FILTER, "active")
    stock_src.inst.lmtp_deliver(M.plain_mail().raw, ["bob"])
    expected = raw_coi_entries(stock_src.inst, "bob")
    assert expected[SERVER_CONFIG + "enabled"] == "yes"
    stock_dst.doveadm("backup", "-R", "-u", "bob", stock_src.location)
    assert raw_coi_entries(stock_dst.inst, "bob") == expected
    # stock source, plugin on the destination: the same values arrive (and pass validation)
    dst.doveadm("backup", "-R", "-u", "bob", stock_src.location)
    assert raw_coi_entries(dst.inst, "bob") == expected
    assert client_view(dst.inst, "bob")["message-filter"] == "active"
    # plugin on the source, stock destination
    src = backends["src"]
    set_up_coi_user(src, "frank", "frank-phone-001")
    moved = raw_coi_entries(src.inst, "frank")
    stock_dst.doveadm("backup", "-R", "-u", "frank", src.location)
    assert raw_coi_entries(stock_dst.inst, "frank") == moved


# -- 2. two-way sync, changes on both sides -----------------------------------

def test_two_way_sync_merges_and_the_newer_value_wins_as_for_stock(backends):
    src, dst = backends["src"], backends["dst"]
    stock_src, stock_dst = backends["stock_src"], backends["stock_dst"]
    with src.inst.imap("carol") as c:
        c.enable_coi("active")
        c.setmetadata_ok("/private/comment", "first")
    src.inst.lmtp_deliver(M.plain_mail().raw, ["carol"])
    stock_src.doveadm("mailbox", "metadata", "set", "-u", "carol", "-s", "", "/private/comment", "first")
    stock_src.inst.lmtp_deliver(M.plain_mail().raw, ["carol"])
    # the first copy one way (a first two-way sync into an empty account
    # sometimes ends "run dsync again" on 2.4, stock or not, and then never
    # sends the attributes changed before it), then two-way from here on
    src.doveadm("backup", "-u", "carol", dst.location)
    stock_src.doveadm("backup", "-u", "carol", stock_dst.location)
    assert raw_coi_entries(dst.inst, "carol") == raw_coi_entries(src.inst, "carol")

    # different keys changed on each side: both changes arrive both ways
    with src.inst.imap("carol") as c:
        c.setmetadata_ok(COI_MESSAGE_FILTER, "seen")
    with dst.inst.imap("carol") as c:
        c.setmetadata_ok("/private/devicetoken", "dc-token-new", mailbox="INBOX")
        subscribe_validated(c, dst.files, "carol-tab-0001", "https://push.example.net/carol")
    src.doveadm("sync", "-u", "carol", dst.location)
    both = raw_coi_entries(src.inst, "carol")
    assert both == raw_coi_entries(dst.inst, "carol")
    assert both[SERVER_CONFIG + "message-filter"] == "seen"
    assert any(k.startswith(PVT_COI + "devicetokens/") for k in both)
    assert PVT_COI + "webpush/carol-tab-0001" in both

    # the same key changed on both sides, the destination's later: whatever
    # dsync decides for stock Dovecot's plain attribute, it decides for COI's
    with src.inst.imap("carol") as c:
        c.setmetadata_ok(COI_MESSAGE_FILTER, "none")
    stock_src.doveadm("mailbox", "metadata", "set", "-u", "carol", "-s", "", "/private/comment", "older")
    time.sleep(1.1)
    with dst.inst.imap("carol") as c:
        c.setmetadata_ok(COI_MESSAGE_FILTER, "active")
    stock_dst.doveadm("mailbox", "metadata", "set", "-u", "carol", "-s", "", "/private/comment", "newer")
    src.doveadm("sync", "-u", "carol", dst.location)
    stock_src.doveadm("sync", "-u", "carol", stock_dst.location)
    stock_winner = raw_coi_entries(stock_src.inst, "carol")[
        "vendor/vendor.dovecot/pvt/server/comment"]
    assert stock_winner == raw_coi_entries(stock_dst.inst, "carol")[
        "vendor/vendor.dovecot/pvt/server/comment"]
    ours = raw_coi_entries(src.inst, "carol")
    assert ours == raw_coi_entries(dst.inst, "carol")
    assert ours[SERVER_CONFIG + "message-filter"] == {"older": "none", "newer": "active"}[stock_winner]

    # an unset travels too (NIL: back to the site default)
    with dst.inst.imap("carol") as c:
        c.setmetadata_ok(COI_ENABLED, None)
    dst.doveadm("sync", "-u", "carol", src.location)
    assert SERVER_CONFIG + "enabled" not in raw_coi_entries(src.inst, "carol")
    assert client_view(src.inst, "carol")["enabled"] is None
    src.inst.assert_no_panic_or_fatal()
    dst.inst.assert_no_panic_or_fatal()


# -- 3. a hostile or corrupt source ---------------------------------------------

def stats_count(b: Backend) -> int:
    """How many coi_value_refused events Dovecot's stats counted."""
    lines = b.inst.doveadm.run("stats", "dump", fmt="tab").stdout.splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t")))
        if row.get("metric_name") == "coi_value_refused":
            return int(row["count"])
    raise AssertionError(f"no coi_value_refused metric in {lines}")


def test_values_from_a_hostile_source_are_refused_one_by_one(backends):
    src, dst = backends["src"], backends["dst"]
    good_chat = M.coi_chat()
    with src.inst.imap("dave") as c:
        c.enable_coi("active")
        c.setmetadata_ok("/private/devicetoken", "dc-token-good", mailbox="INBOX")
    src.inst.lmtp_deliver(good_chat.raw, ["dave"])
    good = raw_coi_entries(src.inst, "dave")
    validated_private = json.dumps({
        "public": json.loads(subscription_json("http://127.0.0.1:9/push/x")) | {"created": "2025-01-01T00:00:00Z"},
        "created_unix": 1735689600, "secret": "0123456789abcdef0123456789abcdef", "validated": True})
    bad_auth = validated_private.replace("http://127.0.0.1:9/push/x", "https://push.example.net/x") \
                                .replace('"auth": "BTBZMqHH6r4Tts7J_aSIgg"', '"auth": "AAAA"')
    plant_raw_entries(src.inst, "dave", {
        PVT_COI + "webpush/private-endpoint-01": validated_private,
        PVT_COI + "webpush/bad-auth-key-01": bad_auth,
        PVT_COI + "devicetokens/0000000000000000": '{"token":"dc-token-other","seen_unix":1}',
        PVT_COI + "evil": "x",
        SERVER_CONFIG + "message-filter": "everything",
    })
    count_before = stats_count(dst)
    mark = len(dst.inst.log_text())
    proc = dst.doveadm("backup", "-R", "-u", "dave", src.location, check=False)
    # dsync logs the attribute failures and the rest goes on: the run succeeds
    assert proc.returncode == 0, proc.stderr
    got = raw_coi_entries(dst.inst, "dave")
    assert got == {k: v for k, v in good.items() if "message-filter" not in k}, got
    assert folders(dst.inst, "dave")["COI/Chats"] == [(good_chat.message_id, True)]
    log = dst.inst.log_text()[mark:] + proc.stderr
    for item, reason in [("webpush_subscription", "private_endpoint"), ("webpush_subscription", "invalid"),
                         ("devicetoken", "invalid"), ("unknown", "unknown_key"), ("config", "invalid")]:
        assert re.search(rf"coi: refused {item} value from dsync \({reason}\)", log), (item, reason, log)
    refusals = [ln for ln in log.splitlines() if "coi: refused" in ln]
    assert len(refusals) == 5, refusals
    assert not any("127.0.0.1" in ln or "everything" in ln for ln in refusals), refusals
    assert stats_count(dst) - count_before == 5
    with dst.inst.imap("dave") as c:
        assert c.getmetadata(WEBPUSH_SUBS + "private-endpoint-01") is None
        assert c.getmetadata(COI_MESSAGE_FILTER) == "none"  # the site default
    dst.inst.assert_no_panic_or_fatal()


# -- 4. backup and restore -------------------------------------------------------

def test_backup_then_restore_round_trip(backends):
    """dst is the backup host: back up, lose the user on src, restore."""
    src, dst = backends["src"], backends["dst"]
    first, _ = set_up_coi_user(src, "erin", "erin-phone-0001")
    state = raw_coi_entries(src.inst, "erin")
    mail = folders(src.inst, "erin")
    src.doveadm("backup", "-u", "erin", dst.location)
    assert raw_coi_entries(dst.inst, "erin") == state
    # the disaster: mail and attributes gone
    home = src.inst.home("erin")
    for p in sorted(home.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    assert raw_coi_entries(src.inst, "erin") == {}
    events_before = len(src.events())
    src.doveadm("backup", "-R", "-u", "erin", dst.location)
    assert raw_coi_entries(src.inst, "erin") == state
    assert folders(src.inst, "erin") == mail
    assert folders(src.inst, "erin")["COI/Chats"] == [(first, True)]
    assert len(src.events()) == events_before
    view = client_view(src.inst, "erin")
    assert view["enabled"] == "yes" and view["subscriptions"] == ["erin-phone-0001"]
    src.inst.assert_no_panic_or_fatal()


# -- 5. dsync is not a client: seen mode ---------------------------------------

def test_flags_dsync_copies_never_trigger_seen_mode_moves(backends):
    """A read chat arriving by dsync stays where the other side has it; the
    same gesture by a client on this backend moves it."""
    stock_src, dst = backends["stock_src"], backends["dst"]
    for key, value in ((COI_ENABLED, "yes"), (COI_MESSAGE_FILTER, "seen")):
        stock_src.doveadm("mailbox", "metadata", "set", "-u", "gina", "-s", "", key, value)
    read_there, unread, later = M.coi_chat(), M.coi_chat(), M.coi_chat()
    for m in (read_there, unread):
        stock_src.inst.lmtp_deliver(m.raw, ["gina"])
    stock_src.doveadm("flags", "add", "-u", "gina", "$Chat", "mailbox", "INBOX", "all")
    stock_src.doveadm("flags", "add", "-u", "gina", "\\Seen", "mailbox", "INBOX", "uid", "1")
    events_before = len(dst.events())
    mark = len(dst.inst.log_text())
    dst.doveadm("backup", "-R", "-u", "gina", stock_src.location)
    assert client_view(dst.inst, "gina")["message-filter"] == "seen"
    with IdleClient(dst.inst.host, dst.inst.imap_port, "gina") as c:
        assert c.select("INBOX") == 2
        # the other read arrives as a flag change of an incremental run
        stock_src.doveadm("flags", "add", "-u", "gina", "\\Seen", "mailbox", "INBOX", "uid", "2")
        dst.doveadm("backup", "-R", "-u", "gina", stock_src.location)
        assert [ln for ln in c.noop() if ln.endswith(b"EXPUNGE")] == []
        assert len(c.check_view()) == 2
        # a client's read on this backend is a user's gesture: it moves
        dst.inst.lmtp_deliver(later.raw, ["gina"])
        assert [ln for ln in c.noop() if ln.endswith(b"EXISTS")] == [b"* 3 EXISTS"]
        told = c.command_ok("UID STORE 3 +FLAGS (\\Seen)") + c.noop()
        assert [ln for ln in told if ln.endswith(b"EXPUNGE")] == [b"* 3 EXPUNGE"]
    got = folders(dst.inst, "gina")
    assert got["INBOX"] == [(read_there.message_id, True), (unread.message_id, True)]
    assert got["COI/Chats"] == [(later.message_id, True)]
    mine = [r for r in message_events(dst, "gina") if r["type"] == "message"]
    # the delivery and the client's move; nothing for what dsync wrote
    assert [r.get("origin", "delivery") for r in mine[-2:]] == ["delivery", "seen_move"], mine
    assert len(dst.events()) - events_before == 2
    dsync_lines = [ln for ln in dst.inst.log_text()[mark:].splitlines() if ln.startswith("doveadm")]
    assert not [ln for ln in dsync_lines if "coi:" in ln], dsync_lines

"""Real Delta Chat clients (2.65 core from PyPI) through Dovecot with the plugin.

For each message-filter (`active`, `none`, `seen`) one world
(tests/harness/chatworld.py): alice and carol have COI on (their transports
watch the chats folder when chats are filed there at delivery), bob has COI
off; alice gets a second device. Everything goes the way it goes for users:
QR secure-join, messages both ways, a group of three joined by invite, a
3 MiB attachment (Delta Chat sends it as a pre-message and the full one),
reaction, edit, delete for everyone, read receipts, and mail from an ordinary
client. The server side is checked over IMAP, the plugin's event spool and a
stock Dovecot fed the same bytes.

Also here: what a single-device Delta Chat account does to the server (it
expunges what it fetched, docs/deltachat.md), and that XCHATMAIL is never
announced.
"""

from __future__ import annotations

import base64
import os
import smtplib
from pathlib import Path

import pytest

from tests.harness import PASSWORD, DovecotInstance
from tests.harness.chatworld import CHATS, ChatWorld
from tests.harness.deltachat import wait_until

# The relay is plain text on loopback by design; aiosmtpd warns per session.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODES = ["active", "none"]
SYSTEM_FLAGS = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"}


@pytest.fixture(scope="module", params=MODES)
def world(request):
    # A failing test marks world.dc failed (conftest), which keeps the dirs.
    with ChatWorld(request.param, users=("alice", "bob", "carol")) as w:
        w.add_user("alice", coi=True)
        w.add_user("bob", coi=False)
        w.add_user("carol", coi=True)
        yield w


def expected_chat_folder(w: ChatWorld) -> str:
    """Where the plugin files a COI-on user's chats at delivery."""
    return CHATS if w.message_filter == "active" else "INBOX"


def chat_copies(w: ChatWorld, user: str, relayed) -> list:
    """The stored copies of the relayed messages in ``user``'s mailbox."""
    wanted = {m.header("Message-ID") for m in relayed}
    out = []
    for folder, msgs in w.mailbox(user).items():
        out += [m for m in msgs if m.header("Message-ID") in wanted]
    return out


def assert_filed_as_chats(w: ChatWorld, user: str, relayed) -> None:
    """Every copy the COI-on ``user`` still has is tagged and in the right folder."""
    copies = chat_copies(w, user, relayed)
    assert copies, f"no stored copies for {user}\n{w.diag()}"
    for m in copies:
        assert m.has_chat_keyword, m.short()
        if w.message_filter == "seen" and "\\Seen" in m.flags:
            assert m.folder in (CHATS, "INBOX"), m.short()   # moved once read
        else:
            assert m.folder == expected_chat_folder(w), m.short()


def test_secure_join_contact_verifies_both_sides(world):
    before = len(world.relay.snapshot())
    a_chat, b_chat = world.contact_chat("alice", "bob")
    assert a_chat.get_basic_snapshot().is_encrypted and b_chat.get_basic_snapshot().is_encrypted
    handshake = world.relay.snapshot()[before:]
    assert len(handshake) >= 4, [m.rcpts for m in handshake]          # vc-request ... vc-contact-confirm
    for m in handshake:
        assert m.ok and m.header("Subject") == "[...]", m.header_block()
    to_alice = [m for m in handshake if world.users["alice"].address in m.rcpts]
    assert to_alice
    assert_filed_as_chats(world, "alice", to_alice)


def test_messages_both_ways(world):
    a_chat, b_chat = world.contact_chat("alice", "bob")
    b_chat.send_text("bob to alice")
    world.wait_text("alice", "bob to alice")
    a_chat.send_text("alice to bob")
    world.wait_text("bob", "alice to bob")
    assert_filed_as_chats(world, "alice", world.relayed_to("alice"))


def test_group_of_three_by_invite_with_one_member_coi_off(world):
    group = world.group("alice", "carol", "bob")
    assert {c.get_snapshot().address for c in group.get_contacts()} >= {
        world.users[n].address for n in ("alice", "bob", "carol")}
    group.send_text("hello trio")
    bob_msg = world.wait_text("bob", "hello trio")
    carol_msg = world.wait_text("carol", "hello trio")
    carol_group = world.users["carol"].account.get_chat_by_id(carol_msg.get_snapshot().chat_id)
    carol_group.send_text("carol to the trio")
    world.wait_text("alice", "carol to the trio")
    world.wait_text("bob", "carol to the trio")
    bob_group = world.users["bob"].account.get_chat_by_id(bob_msg.get_snapshot().chat_id)
    bob_group.accept()
    bob_group.send_text("bob to the trio")
    world.wait_text("alice", "bob to the trio")
    world.wait_text("carol", "bob to the trio")
    for user in ("alice", "carol"):
        assert_filed_as_chats(world, user, world.relayed_to(user))
    # group ids are inside the encryption: every group message is a plain,
    # header-protected chat in the events
    group_events = [e for e in world.events() if e.get("type") == "message"
                    and e["user"].startswith(("alice", "carol")) and e["kind"] != "not-chat"]
    assert group_events and all(e["kind"] == "chat" and e.get("group_id") is None
                                and e.get("headers_protected") is True for e in group_events), group_events


def test_attachment_sent_in_parts(world, tmp_path):
    a_chat, b_chat = world.contact_chat("alice", "bob")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    before = len(world.relay.snapshot())
    a_chat.send_file(str(big))

    def arrived():
        for m in b_chat.get_messages():
            s = m.get_snapshot()
            if s.file_name == "big.bin" and s.file and Path(s.file).exists():
                return Path(s.file).read_bytes() == big.read_bytes()
        return False
    wait_until("bob has the whole file", arrived, timeout=120, diag=world.diag)
    parts = [m for m in world.relay.snapshot()[before:] if world.users["bob"].address in m.rcpts]
    assert len(parts) >= 2, [len(m.data) for m in parts]             # pre-message + full message
    assert max(len(m.data) for m in parts) > 3 * 1024 * 1024
    assert all(m.ok for m in parts)


def test_reaction_edit_delete(world):
    a_chat, b_chat = world.contact_chat("alice", "bob")
    sent = a_chat.send_text("react to me")
    got = world.wait_text("bob", "react to me")
    got.send_reaction("\N{THUMBS UP SIGN}")
    wait_until("alice sees bob's reaction", lambda: sent.get_reactions(), diag=world.diag)
    acc = world.users["alice"].account
    acc._rpc.send_edit_request(acc.id, sent.id, "react to me (edited)")
    wait_until("bob sees the edit", lambda: got.get_snapshot().text == "react to me (edited)",
               diag=world.diag)
    victim = a_chat.send_text("delete me")
    bob_victim = world.wait_text("bob", "delete me")
    acc._rpc.delete_messages_for_all(acc.id, [victim.id])
    wait_until("bob's copy deleted", lambda: not bob_victim.exists(), diag=world.diag)
    assert_filed_as_chats(world, "alice", world.relayed_to("alice"))


def test_read_receipts_reach_the_sender(world):
    a_chat, b_chat = world.contact_chat("alice", "bob")
    sent = b_chat.send_text("read me")
    got = world.wait_text("alice", "read me")
    before = len(world.relayed_to("bob"))
    world.users["alice"].account.mark_seen_messages([got])
    wait_until("bob sees alice's read receipt", lambda: sent.get_read_receipt_count() >= 1,
               diag=world.diag)
    receipts = world.relayed_to("bob")[before:]
    assert receipts and all(m.header("Subject") == "[...]" for m in receipts)
    # An encrypted receipt looks like any other Delta Chat message from
    # outside (docs/deltachat.md): the receiver's copy is an ordinary chat.
    assert all(m.header("Content-Type").startswith("multipart/encrypted") for m in receipts)


def test_second_device_gets_everything(world):
    second = world.once("alice-device-2", lambda: world.add_device("alice"))
    a_chat, b_chat = world.contact_chat("alice", "bob")
    b_chat.send_text("to both of alice's devices")
    world.wait_text("alice", "to both of alice's devices", device=0)
    world.wait_text("alice", "to both of alice's devices", device=1)
    a_chat.send_text("sent from alice's first device")
    world.wait_text("alice", "sent from alice's first device", device=1)
    world.wait_text("bob", "sent from alice's first device")
    assert second.get_config("configured_addr") == world.users["alice"].address
    # the self-sent copy (multi-device) is a chat for alice too
    own = [m for m in world.relayed_to("alice") if m.mail_from == world.users["alice"].address]
    assert own
    assert_filed_as_chats(world, "alice", own)


@pytest.mark.parametrize("fixture", sorted(p.name for p in (FIXTURES / "encrypted-mail").glob("*.eml")))
def test_mail_from_ordinary_clients_stays_in_inbox(world, fixture):
    raw = (FIXTURES / "encrypted-mail" / fixture).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = raw.replace(b"bob@example.org", world.users["alice"].address.encode())
    mid = next(line.split(b":", 1)[1].strip() for line in raw.split(b"\r\n")
               if line.lower().startswith(b"message-id:")).decode()
    # submitted the way that client would: SMTP with AUTH, through the relay
    before = len(world.relay.snapshot())
    with smtplib.SMTP(world.relay.host, world.relay.port, timeout=30) as smtp:
        smtp.login("alice@example.net", PASSWORD)
        smtp.sendmail("alice@example.net", [world.users["alice"].address], raw)
    assert world.relay.snapshot()[before].ok
    copies = world.stored_copies("alice", mid)
    assert [(m.folder, m.has_chat_keyword) for m in copies] == [("INBOX", False)], [m.short() for m in copies]


def test_every_submission_reached_every_recipient(world):
    world.contact_chat("alice", "bob")
    msgs = world.relay.snapshot()
    assert msgs and not world.relay.failures
    for m in msgs:
        assert [r.code for r in m.results] == [250] * len(m.rcpts), (m.rcpts, m.results)
    stored = [e for e in world.events() if e.get("type") == "message"]
    delivered = sum(len(m.rcpts) for m in msgs)
    assert len([e for e in stored if e.get("origin", "delivery") == "delivery"]) >= delivered


def test_coi_off_user_gets_what_dovecot_alone_stores(world):
    world.contact_chat("alice", "bob")
    to_bob = world.relayed_to("bob")
    assert to_bob
    bob_events = [e for e in world.events() if e.get("type") == "message" and e["user"].startswith("bob")]
    assert len(bob_events) == len(to_bob)
    assert all(e["folder"] == "INBOX" and not e["chat_keyword"] and not e["routed"]
               for e in bob_events), bob_events
    with DovecotInstance(plugin=False, users=["bob"]) as stock:
        for m in to_bob:
            assert all(r.ok for r in stock.lmtp_deliver(m.delivered, ["bob"], sender=m.mail_from))
        stock_box = stock.folders("bob")
    ours = world.mailbox("bob")
    assert sorted(ours) == sorted(stock_box) == ["INBOX"]
    by_id = {m.header("Message-ID"): m for m in stock_box["INBOX"]}
    assert ours["INBOX"], "bob's Delta Chat (multi-device mode) keeps what it fetched"
    for m in ours["INBOX"]:
        twin = by_id[m.header("Message-ID")]
        assert after_relay(m.raw) == after_relay(twin.raw), m.short()
        assert {f for f in m.flags if f not in SYSTEM_FLAGS} == \
            {f for f in twin.flags if f not in SYSTEM_FLAGS}, m.short()


def after_relay(raw: bytes) -> bytes:
    """The message from the relay's Received line on (what LMTP adds above differs per delivery)."""
    i = raw.find(b"Received: from client (localhost")
    assert i >= 0, raw[:300]
    return raw[i:]


def test_seen_mode_end_to_end():
    """message-filter seen with real clients: chats arrive in INBOX tagged,
    a chat the user read moves to the chats folder, and everything else of
    the scenario still works. Delta Chat watches INBOX (where seen mode
    delivers) and IDLEs there, which is what trips the known panic."""
    with ChatWorld("seen", users=("alice", "bob", "carol")) as w:
        w.add_user("alice", coi=True)
        w.add_user("bob", coi=False)
        w.add_user("carol", coi=True)
        a_chat, b_chat = w.contact_chat("alice", "bob")
        # Delta Chat sets \\Seen on the handshake messages it processed, so
        # seen mode already moves those out of the INBOX it IDLEs in.
        w.settle(2.0)
        w.dc.assert_no_panic_or_fatal()
        b_chat.send_text("move me once read")
        got = w.wait_text("alice", "move me once read")
        mine = w.relayed_to("alice")[-1:]
        copies = chat_copies(w, "alice", mine)
        assert [(c.folder, c.has_chat_keyword) for c in copies] == [("INBOX", True)]
        w.users["alice"].account.mark_seen_messages([got])

        def moved_or_panicked():
            if "Panic:" in w.dc.log_text():
                return True          # fail below at once instead of waiting out the deadline
            copies = chat_copies(w, "alice", mine)
            return copies and all(c.folder == CHATS and "\\Seen" in c.flags for c in copies)
        wait_until("alice's read chat moved to the chats folder", moved_or_panicked, diag=w.diag)
        w.settle(2.0)
        w.dc.assert_no_panic_or_fatal()
        assert [c.folder for c in chat_copies(w, "alice", mine)] == [CHATS]
        # the rest of the scenario, once the move no longer kills sessions
        a_chat.send_text("after the move")
        w.wait_text("bob", "after the move")
        group = w.group("alice", "carol", "bob")
        group.send_text("seen-mode trio")
        for user in ("bob", "carol"):
            w.wait_text(user, "seen-mode trio")
        assert not w.relay.failures
        w.dc.assert_no_panic_or_fatal()


def test_no_panic_in_dovecot(world):
    world.contact_chat("alice", "bob")
    world.dc.assert_no_panic_or_fatal()


# ---------------------------------------------------------------- single device, capabilities
def test_single_device_account_expunges_what_it_fetched():
    """Measured for docs/deltachat.md: 2.65 without a second device (bcc_self
    off, its default) deletes from the server every message it downloaded,
    even encrypted mail of another client it could not read; a plain mail
    stays."""
    with ChatWorld("active", users=("alice", "bob")) as w:
        w.add_user("alice", coi=True, single_device=True)
        w.add_user("bob", coi=False, single_device=True)
        assert w.users["alice"].account.get_config("bcc_self") == "0"
        a_chat, b_chat = w.contact_chat("alice", "bob")
        b_chat.send_text("fetched and gone")
        w.wait_text("alice", "fetched and gone")
        tb = (FIXTURES / "encrypted-mail" / "thunderbird-encrypted-subject.eml").read_bytes()
        tb = tb.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        w.dc.lmtp_deliver(tb, ["bob"])
        w.dc.lmtp_deliver(b"From: x@example.net\r\nTo: bob@example.org\r\nSubject: plain\r\n"
                          b"Message-ID: <plain-single@example.net>\r\n\r\nhello\r\n", ["bob"])
        wait_until("alice's chats folder emptied by her client",
                   lambda: not w.mailbox("alice")[CHATS], diag=w.diag)
        wait_until("bob's INBOX down to the plain mail", lambda: [
            m.header("Message-ID") for m in w.mailbox("bob")["INBOX"]] == ["<plain-single@example.net>"],
            diag=w.diag)
        events = [e for e in w.events() if e.get("type") == "message"]
        assert any(e["user"].startswith("alice") and e["folder"] == CHATS for e in events)


def test_xchatmail_is_never_announced():
    with ChatWorld("active", users=("alice",),
                   plugin_settings={"coi_deltachat_push": "yes"}) as w:
        for user in ("alice",):
            with w.dc.imap(user) as c:
                caps = c.capabilities()
            assert "XDELTAPUSH" in caps and "XCHATMAIL" not in caps, caps
        w.add_user("alice", coi=True)
        # the client saw a normal mail server: it keeps a server copy of
        # what it sends to itself and does not call itself a chatmail relay
        info = w.users["alice"].account.get_info()
        assert str(info.get("is_chatmail", "0")) in ("0", "false", "False"), info


# ---------------------------------------------------------------- push, server METADATA
DELTACHAT_SERVER_KEYS = ["/shared/comment", "/shared/admin", "/shared/vendor/deltachat/irohrelay",
                         "/shared/vendor/deltachat/turn", "/shared/vendor/deltachat/maxsmtprecipients",
                         "/shared/vendor/deltachat/appversions"]


def test_deltachat_push_and_server_metadata_end_to_end():
    """Real clients, Dovecot + plugin, the real coi-sidecar, a stand-in for
    Delta Chat's notification proxy. The client reads the server METADATA the
    plugin serves (maxsmtprecipients = 1 makes it send one SMTP transaction
    per recipient); a push token registered the way 2.65 registers it is
    POSTed for every chat delivered to the user, never for the user's own
    copies."""
    from tests.harness import WebhookReceiver
    from tests.harness.pushreceiver import PushSidecar
    from tests.harness.receiver import Reply

    proxy = WebhookReceiver()
    proxy.__enter__()
    proxy.set_policy(lambda req, i: Reply(200))
    sc = PushSidecar(log_level="debug")
    sc.push_sections = sc.push_config(deltachat_proxy=proxy.url("/notify"))
    try:
        sc.start()
        settings = dict(sc.plugin_settings())
        settings.update({"coi_deltachat_push": "yes", "coi_deltachat_max_smtp_recipients": "1"})
        extra = ('mail_server_comment = "coi test server"\n'
                 "mail_server_admin = mailto:postmaster@example.org\n")
        with ChatWorld("active", users=("alice", "bob", "carol"), plugin_settings=settings,
                       extra_config=extra) as w:
            with w.dc.imap("alice") as c:
                caps = c.capabilities()
                served = {k: c.getmetadata(k) for k in DELTACHAT_SERVER_KEYS}
            assert "XDELTAPUSH" in caps and "XCHATMAIL" not in caps, caps
            assert served == {**dict.fromkeys(DELTACHAT_SERVER_KEYS),
                              "/shared/comment": "coi test server",
                              "/shared/admin": "mailto:postmaster@example.org",
                              "/shared/vendor/deltachat/maxsmtprecipients": "1"}, served
            with w.dc.imap("alice") as c:
                status, _ = c.setmetadata("/shared/vendor/deltachat/maxsmtprecipients", "5")
            assert status == "NO"

            w.add_user("alice", coi=True)
            w.add_user("bob", coi=False)
            w.add_user("carol", coi=True)
            # 2.65 registers `openpgp:<base64>` (the token encrypted to the
            # notification server) with this exact command, but its JSON-RPC
            # API cannot hand the core a token (docs/deltachat.md), so the
            # test sends the command the core would send, on alice's login.
            token = "openpgp:" + base64.b64encode(os.urandom(96)).decode()
            with w.dc.imap("alice") as c:
                c.setmetadata_ok("/private/devicetoken", token, mailbox="INBOX")

            group = w.group("alice", "carol", "bob")
            before = len(w.relay.snapshot())
            group.send_text("one transaction per recipient")
            w.wait_text("bob", "one transaction per recipient")
            w.wait_text("carol", "one transaction per recipient")
            sends = [m for m in w.relay.snapshot()[before:]
                     if m.mail_from == w.users["alice"].address]
            assert sends and all(len(m.rcpts) == 1 for m in sends), [m.rcpts for m in sends]
            assert {m.rcpts[0] for m in sends} >= {w.users[n].address for n in ("bob", "carol")}

            n0 = len(proxy.requests)
            a_chat, b_chat = w.contact_chat("alice", "bob")
            b_chat.send_text("wake alice's phone")
            w.wait_text("alice", "wake alice's phone")
            wait_until("the proxy got alice's token", lambda: any(
                r.body == token.encode() for r in proxy.requests[n0:]), diag=lambda: sc.log_tail())
            assert all(r.body == token.encode() for r in proxy.requests[n0:])
            # alice's own copies (bcc_self) are no reason to wake her devices
            n1 = len(proxy.requests)
            pushed_before = len([e for e in w.dc.log_text().splitlines() if "saved mail to" in e])
            a_chat.send_text("alice to bob, own copy stored for alice")
            w.wait_text("bob", "alice to bob, own copy stored for alice")
            wait_until("alice's own copy delivered", lambda: len(
                [e for e in w.dc.log_text().splitlines() if "saved mail to" in e]) >= pushed_before + 2)
            w.settle(2.0)
            assert len(proxy.requests) == n1, [r.body[:40] for r in proxy.requests[n1:]]
            w.dc.assert_no_panic_or_fatal()
    finally:
        sc.close()
        proxy.__exit__(None, None, None)

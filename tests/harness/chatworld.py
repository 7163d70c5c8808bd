"""``ChatWorld``: real Delta Chat users on a throwaway Dovecot with the plugin.

Owns one complete setup the Delta Chat tests and the demo share: a
``DovecotInstance`` (plugin loaded, event spool on), the loopback
``SmtpRelay`` in front of its LMTP, one ``DeltaChatCore`` process, and named
users. A user is either COI-on (``enable_coi``: METADATA ``enabled=yes`` and a
``message-filter``, as a COI client sets it; its Delta Chat transport then
watches the chats folder when the filter files chats there) or COI-off (stock
delivery, Delta Chat watching INBOX). Accounts get ``bcc_self=1`` by default:
Delta Chat then keeps what it fetched on the server (multi-device mode), so
the tests can look at every stored copy afterwards; ``single_device=True``
leaves 2.65's default, which expunges what it downloaded (docs/deltachat.md).

Steps that several tests need (the 1:1 secure-join, the group of three) are
done once and remembered, so each test can ask for them in any order.
Everything started here is stopped by ``close()``, our own pids only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .deltachat import WAIT, DeltaChatCore, Server, find_message, wait_until
from .instance import DovecotInstance
from .smtprelay import SmtpRelay

CHATS = "COI/Chats"


@dataclass
class ChatUser:
    """One Delta Chat device of a mail user."""

    name: str
    address: str
    account: object
    coi: bool
    #: The folder this device's transport watches.
    folder: str
    devices: list = field(default_factory=list)


class ChatWorld:
    """Dovecot + plugin + relay + Delta Chat users; see the module docs."""

    def __init__(self, message_filter: str = "active", *, users=("alice", "bob", "carol"),
                 plugin_settings: dict | None = None, plugin: bool = True,
                 extra_config: str = "", root: Path | None = None):
        self.message_filter = message_filter
        self.root = Path(root or tempfile.mkdtemp(prefix="chatworld-"))
        # Dovecot's mail processes (an unprivileged uid) append to the spool.
        self.root.chmod(0o755)
        self.spool = self.root / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.spool.chmod(0o777)
        settings = {"coi_spool_path": str(self.spool),
                    "coi_sidecar_socket": str(self.root / "no-sidecar.sock")}
        settings.update(plugin_settings or {})
        self.dc = DovecotInstance(plugin=plugin, plugin_settings=settings, users=list(users),
                                  extra_config=extra_config)
        self.relay: SmtpRelay | None = None
        self.core: DeltaChatCore | None = None
        self.users: dict[str, ChatUser] = {}
        self._steps: dict[str, object] = {}

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "ChatWorld":
        try:
            self.dc.start()
            self.relay = SmtpRelay(self.dc.host, self.dc.lmtp_port).start()
            self.core = DeltaChatCore(self.root).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        errors = []
        for stop in (lambda: self.core and self.core.close(),
                     lambda: self.relay and self.relay.stop(),
                     self.dc.stop):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop everything, then report
                errors.append(repr(exc))
        self.core = self.relay = None
        if errors:
            raise RuntimeError("; ".join(errors))
        if self.dc.failed or os.environ.get("COI_KEEP_TMP"):
            print(f"coi harness: kept Delta Chat world {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ChatWorld":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.dc.failed = True
        self.close()

    @property
    def server(self) -> Server:
        return Server(self.dc.imap_port, self.relay.port)

    def diag(self) -> str:
        return "\n".join([self.dc.log.tail(30), self.core.log_tail(20) if self.core else ""])

    # -- users -------------------------------------------------------------------
    def chats_folder_for_filter(self) -> str:
        """Where a COI-on user's client should look: the chats folder when
        chats are filed there at delivery, else INBOX."""
        return CHATS if self.message_filter == "active" else "INBOX"

    def add_user(self, name: str, *, coi: bool, single_device: bool = False,
                 folder: str | None = None, config: dict | None = None) -> ChatUser:
        address = self.dc.address(name)
        if coi:
            self.dc.enable_coi(name, self.message_filter)
        folder = folder or (self.chats_folder_for_filter() if coi else "INBOX")
        cfg = {} if single_device else {"bcc_self": "1"}
        cfg.update(config or {})
        account = self.core.add_account(address, self.server, displayname=name.capitalize(),
                                        imap_folder=None if folder == "INBOX" else folder,
                                        config=cfg)
        user = ChatUser(name, address, account, coi, folder)
        user.devices.append(account)
        self.users[name] = user
        return user

    def add_device(self, name: str):
        """A second device of ``name`` from a backup of the first (Delta Chat's
        own export/import), online; returns the new account."""
        user = self.users[name]
        first = user.account
        backup = self.root / f"backup-{name}-{len(user.devices)}"
        backup.mkdir()
        first.stop_io()
        first.export_backup(backup)
        first.start_io()
        second = self.core.manager.add_account()
        second.import_backup(next(backup.iterdir()))
        second.bring_online()
        user.devices.append(second)
        return second

    # -- shared steps ----------------------------------------------------------------
    def once(self, key: str, fn):
        if key not in self._steps:
            self._steps[key] = fn()
        return self._steps[key]

    def contact_chat(self, inviter: str, joiner: str):
        """Secure-join: ``joiner`` scans ``inviter``'s contact QR. Returns
        (inviter's chat, joiner's chat), both verified."""
        def run():
            a, b = self.users[inviter].account, self.users[joiner].account
            b.secure_join(a.get_qr_code())
            self.wait_verified(inviter, joiner)
            self.wait_verified(joiner, inviter)
            return self.chat_with(inviter, joiner), self.chat_with(joiner, inviter)
        return self.once(f"contact:{inviter}:{joiner}", run)

    def wait_verified(self, name: str, other: str, timeout: float = WAIT) -> None:
        """Poll until ``name`` has ``other`` as a key-contact with a key (the client
        library's own secure-join waits block forever on a missed event)."""
        acc = self.users[name].account
        addr = self.users[other].address

        def verified():
            contact = acc.get_contact_by_addr(addr)
            return contact and contact.get_snapshot().e2ee_avail
        wait_until(f"{name} has verified {other}", verified, timeout, self.diag)

    def chat_with(self, name: str, other: str, device: int = 0):
        acc = self.users[name].devices[device]
        contact = acc.get_contact_by_addr(self.users[other].address)
        assert contact, f"{name} has no contact {other}"
        return acc.get_chat_by_contact(contact)

    def group(self, owner: str, joiner: str, added: str, name: str = "trio"):
        """``joiner`` joins ``owner``'s group by its QR invite, then ``owner``
        adds ``added`` (a verified contact). Returns the owner's group chat."""
        def run():
            o, j = self.users[owner].account, self.users[joiner].account
            chat = o.create_group(name)
            j.secure_join(chat.get_qr_code())
            joiner_addr = self.users[joiner].address
            wait_until(f"{joiner} is a member of {owner}'s group", lambda: joiner_addr in {
                c.get_snapshot().address for c in chat.get_contacts()}, WAIT, self.diag)
            self.wait_verified(joiner, owner)
            self.contact_chat(owner, added)
            chat.add_contact(o.get_contact_by_addr(self.users[added].address))
            return chat
        return self.once(f"group:{owner}:{name}", run)

    # -- what the clients and the server show -----------------------------------------
    def wait_text(self, name: str, text: str, device: int = 0, timeout: float = WAIT):
        """The message with ``text`` in any chat of ``name``'s device."""
        acc = self.users[name].devices[device]

        def look():
            for chat in acc.get_chatlist():
                m = find_message(acc, chat, text)
                if m:
                    return m
            return None
        return wait_until(f"{name}[{device}] sees {text!r}", look, timeout, self.diag)

    def mailbox(self, name: str) -> dict:
        """Every folder of ``name`` with its messages, over IMAP."""
        return self.dc.folders(name)

    def stored_copies(self, name: str, message_id: str) -> list:
        """Every stored copy of ``message_id`` in ``name``'s mailbox."""
        out = []
        for folder, msgs in self.mailbox(name).items():
            out += [m for m in msgs if (m.header("Message-ID") or "") == message_id]
        return out

    def relayed_to(self, name: str) -> list:
        """Every message a Delta Chat user sent ``name`` through the relay, in order."""
        addr = self.users[name].address if name in self.users else self.dc.address(name)
        senders = {u.address for u in self.users.values()}
        return [m for m in self.relay.snapshot() if addr in m.rcpts and m.mail_from in senders]

    def events(self) -> list[dict]:
        """Every record the plugin appended to the event spool."""
        out = []
        for f in sorted(self.spool.glob("events.log*")):
            for chunk in f.read_bytes().split(b"\x1e"):
                if chunk.strip():
                    out.append(json.loads(chunk))
        return out

    def settle(self, seconds: float = 1.0) -> None:
        """Give IMAP IDLE and the clients' fetch loops a moment."""
        time.sleep(seconds)

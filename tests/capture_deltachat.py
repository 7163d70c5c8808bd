"""Capture what the real Delta Chat core sends, as fixtures (not collected by pytest).

    COI_PLUGIN_SO=... /usr/bin/python3 -m tests.capture_deltachat [OUTDIR]

Runs the pinned Delta Chat core (tests/harness/deltachat.py) against a stock
throwaway Dovecot (no plugin: this records the client, not us) through the
loopback SMTP relay, walks every kind of message a user can cause (secure-join
1:1 and group invite, messages both ways, a group of three, read receipts, a
reaction, an edit, a delete for everyone, a large attachment, multi-device sync
messages, mail to a non-Delta-Chat address), and writes each submitted message
as ``OUTDIR/NN-step-K.eml``: the outer header block exactly as submitted plus
the first lines of the body (the encrypted payload is cut; the keys in it are
throwaway keys of throwaway accounts). ``OUTDIR/index.tsv`` lists file, step,
envelope sender, recipient count and size. Default OUTDIR:
tests/fixtures/deltachat.

It also measures what the client does to the server: whether a single-device
account expunges what it fetched (``OUTDIR/server-side.txt``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from tests.harness import DovecotInstance
from tests.harness.deltachat import DeltaChatCore, Server, texts, wait_message, wait_until
from tests.harness.smtprelay import SmtpRelay

BODY_LINES = 12


def fixture_text(data: bytes) -> bytes:
    text = data.replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    kept = body.split(b"\n")[:BODY_LINES]
    return head + b"\n\n" + b"\n".join(kept) + b"\n[... body truncated by tests/capture_deltachat.py ...]\n"


class Recorder:
    def __init__(self, relay: SmtpRelay, outdir: Path):
        self.relay, self.outdir = relay, outdir
        self.seen = 0
        self.step_no = 0
        self.index = ["file\tstep\tmail_from\trcpts\tbytes"]
        self.names = {}

    def step(self, name: str, settle: float = 4.0) -> list:
        """Record everything relayed since the previous step under ``name``."""
        time.sleep(settle)
        msgs = self.relay.snapshot()[self.seen:]
        self.seen += len(msgs)
        self.step_no += 1
        for k, m in enumerate(msgs, 1):
            fname = f"{self.step_no:02d}-{name}-{k}.eml"
            (self.outdir / fname).write_bytes(fixture_text(m.data))
            rcpts = ",".join(r.split("@")[0] for r in m.rcpts)
            self.index.append(f"{fname}\t{name}\t{m.mail_from.split('@')[0]}\t{rcpts}\t{len(m.data)}")
        print(f"step {name}: {len(msgs)} message(s)", file=sys.stderr)
        return msgs

    def finish(self) -> None:
        (self.outdir / "index.tsv").write_text("\n".join(self.index) + "\n")


def main() -> int:
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/deltachat")
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("[0-9][0-9]-*.eml"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="dccapture-"))
    dc = DovecotInstance(plugin=False, users=["alice", "bob", "carol", "dave"])
    dc.start()
    relay = SmtpRelay(dc.host, dc.lmtp_port).start()
    server = Server(dc.imap_port, relay.port)
    core = DeltaChatCore(work).start()
    rec = Recorder(relay, outdir)
    notes = []
    try:
        alice = core.add_account(dc.address("alice"), server, displayname="Alice")
        bob = core.add_account(dc.address("bob"), server, displayname="Bob")
        carol = core.add_account(dc.address("carol"), server, displayname="Carol")
        rec.step("configure")

        # secure-join 1:1: bob scans alice's contact QR
        qr = alice.get_qr_code()
        bob.secure_join(qr)
        alice.wait_for_securejoin_inviter_success()
        bob.wait_for_securejoin_joiner_success()
        rec.step("securejoin-contact")

        bob_chat = bob.get_chat_by_contact(bob.get_contact_by_addr(dc.address("alice")))
        alice_chat = alice.get_chat_by_contact(alice.get_contact_by_addr(dc.address("bob")))
        bob_chat.send_text("hello alice")
        wait_message(alice, lambda: alice_chat, "hello alice")
        rec.step("text-bob-to-alice")
        sent = alice_chat.send_text("hello bob")
        got = wait_message(bob, lambda: bob_chat, "hello bob")
        rec.step("text-alice-to-bob")

        # read receipt: bob reads alice's message
        bob.mark_seen_messages([got])
        wait_until("alice sees the read receipt", lambda: sent.get_read_receipt_count() >= 1)
        rec.step("read-receipt")

        # reaction, edit, delete for everyone
        got.send_reaction("\N{THUMBS UP SIGN}")
        wait_until("alice sees the reaction", lambda: sent.get_reactions())
        rec.step("reaction")
        alice._rpc.send_edit_request(alice.id, sent.id, "hello bob (edited)")
        wait_until("bob sees the edit", lambda: got.get_snapshot().text == "hello bob (edited)")
        rec.step("edit")
        victim = alice_chat.send_text("to be deleted")
        bob_victim = wait_message(bob, lambda: bob_chat, "to be deleted")
        alice._rpc.delete_messages_for_all(alice.id, [victim.id])
        wait_until("bob sees the delete", lambda: not bob_victim.exists())
        rec.step("delete-for-all")

        # a group invite: carol joins alice's group by QR; then a group of three
        group = alice.create_group("trio")
        gqr = group.get_qr_code()
        carol.secure_join(gqr)
        alice.wait_for_securejoin_inviter_success()
        carol.wait_for_securejoin_joiner_success()
        rec.step("securejoin-group")
        group.add_contact(alice.get_contact_by_addr(dc.address("bob")))
        group.send_text("hello trio")
        wait_until("carol and bob see the group message", lambda: any(
            "hello trio" in t for t in all_texts(carol)) and any("hello trio" in t for t in all_texts(bob)))
        rec.step("group-text")

        # a large attachment
        big = work / "big.bin"
        big.write_bytes(os.urandom(3 * 1024 * 1024))
        alice_chat.send_file(str(big))
        wait_until("bob gets the file", lambda: any(
            m.get_snapshot().file_name == "big.bin" for m in bob_chat.get_messages()), timeout=120)
        rec.step("attachment-3mib", settle=8.0)

        # a second device of alice (backup export/import), then a sync message
        backup_dir = work / "backup"
        backup_dir.mkdir()
        alice.stop_io()
        alice.export_backup(backup_dir)
        alice.start_io()
        alice2 = core.manager.add_account()
        alice2.import_backup(next(backup_dir.iterdir()))
        alice2.bring_online()
        rec.step("second-device")
        alice_chat.send_text("from device one")
        wait_until("alice's second device sees her own message", lambda: any(
            "from device one" in t for t in all_texts(alice2)))
        rec.step("multi-device-own-message")
        alice_chat.pin()
        rec.step("multi-device-sync-pin", settle=6.0)

        # mail to an address without Delta Chat: refused while force_encryption
        # is on (2.65's default), sent in the clear once it is off
        dave_chat = alice.create_contact(dc.address("dave")).create_chat()
        alice.set_config("force_encryption", "0")
        dave_chat.send_text("hello dave, no key")
        rec.step("unencrypted-to-plain-address")
        plain_group = alice._rpc.create_group_chat_unencrypted(alice.id, "email group")
        alice._rpc.add_contact_to_chat(alice.id, plain_group, alice.create_contact(dc.address("dave")).id)
        alice._rpc.misc_send_text_message(alice.id, plain_group, "hello email group")
        rec.step("unencrypted-group")

        for user in ("alice", "bob", "carol", "dave"):
            with dc.imap(user) as c:
                folders = c.fetch_all_folders(strict=False)
            notes.append(f"{user}: " + ", ".join(f"{f}={len(m)}" for f, m in sorted(folders.items())))
        notes.append(f"relayed messages: {len(relay.messages)}, relay failures: {len(relay.failures)}")
    finally:
        rec.finish()
        (outdir / "server-side.txt").write_text("\n".join(notes) + "\n")
        core.close()
        relay.stop()
        dc.stop()
    print("\n".join(notes))
    return 0


def all_texts(account) -> list[str]:
    out = []
    for item in account.get_chatlist():
        out += texts(item)
    return out


if __name__ == "__main__":
    sys.exit(main())

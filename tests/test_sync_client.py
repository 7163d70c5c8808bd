"""A real IMAP sync client nobody here wrote: Debian's isync (``mbsync``).

Issue 12, "tests as clients live". mbsync keeps a local Maildir and the
server in step both ways (new messages, flags, deletions, folders) while, at
the same time, chats and plain mails arrive over LMTP and a second IMAP
client (a phone) reads chats on the server. The user is in seen mode, so
read chats move from INBOX to the chats folder: reads made locally reach the
server through mbsync's flag sync and trigger the move there; mbsync must
then see the message leave INBOX and appear in the chats folder. Afterwards
both sides hold the same messages in the same folders, each delivered or
locally written message exactly once, and every read chat is in the chats
folder.
"""

from __future__ import annotations

import re
import threading
import time

from tests.harness import messages as M
from tests.harness.imap import IdleClient
from tests.harness.mbsync import MbsyncClient

USER = "syncer"
ROUNDS = 6
DELIVERIES = 30


def server_state(d) -> dict[str, list[str]]:
    """Folder -> sorted Message-IDs on the server (non-empty folders only)."""
    out = {}
    for folder, msgs in d.folders(USER).items():
        if msgs:
            out[folder] = sorted((m.header("Message-ID") or "").strip("<> ") for m in msgs)
    return out


def local_state(client: MbsyncClient) -> dict[str, list[str]]:
    out = {}
    for folder in client.folders():
        mids = client.message_ids(folder)
        if mids:
            out[folder] = mids
    return out


def test_mbsync_both_ways_while_chats_arrive_and_move(dovecot_factory, tmp_path):
    d = dovecot_factory(users=[USER])
    d.enable_coi(USER, "seen")
    client = MbsyncClient(tmp_path, d.host, d.imap_port, USER)
    delivered: list = []
    written: list = []
    errors: list[BaseException] = []
    phone_reads: list[str] = []   # Message-IDs the phone read
    local_reads: list[str] = []   # ... and the local Maildir
    deliveries_done = threading.Event()
    stop = threading.Event()

    def deliverer() -> None:
        try:
            for i in range(DELIVERIES):
                m = M.plain_mail() if i % 3 == 0 else M.coi_chat()
                d.lmtp_deliver(m.raw, [d.rcpt(USER)])
                delivered.append(m)
                time.sleep(0.08)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)
        finally:
            deliveries_done.set()

    def phone() -> None:
        """Another client that reads one unread chat now and then, on the server."""
        try:
            with IdleClient(d.host, d.imap_port, USER) as c:
                c.select("INBOX")
                turn = 0
                while not stop.is_set():
                    turn += 1
                    found = [ln for ln in c.command_ok("UID SEARCH UNSEEN KEYWORD $Chat")
                             if ln.startswith(b"* SEARCH")]
                    uids = [int(x) for x in re.findall(rb"\d+", found[0])] if found else []
                    if uids and turn % 4 == 0:
                        head = b"".join(c.command_ok(
                            f"UID FETCH {uids[-1]} (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
                        mid = re.search(rb"Message-ID:\s*<([^>]*)>", head, re.I)
                        c.command_ok(f"UID STORE {uids[-1]} +FLAGS.SILENT (\\Seen)")
                        if mid:
                            phone_reads.append(mid[1].decode())
                    c.noop()
                    time.sleep(0.25)
                c.noop()
                c.check_view()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=deliverer, daemon=True),
               threading.Thread(target=phone, daemon=True)]
    for t in threads:
        t.start()
    try:
        for rnd in range(ROUNDS):
            client.sync()
            # read every other local INBOX message (chats and plain mails)
            for path in client.files("INBOX")[::2]:
                if "S" not in client.flags_of(path):
                    local_reads.append(client.message_id(path))
                client.mark_seen(path)
            note = M.plain_mail(subject=f"local note {rnd}")
            client.add_message("Notes", note.raw)
            written.append(note)
            if rnd % 2:
                draft = M.plain_mail(subject=f"written into INBOX {rnd}")
                client.add_message("INBOX", draft.raw)
                written.append(draft)
            time.sleep(0.2)
        deliveries_done.wait(60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    # settle: a few runs until nothing changes
    for _ in range(3):
        client.sync()
    server, local = server_state(d), local_state(client)
    diag = "\n".join(client.log[-3:])
    assert server == local, f"server {server}\nlocal {local}\n{diag}"

    everything = [m.message_id for m in delivered + written]
    assert len(everything) == len(set(everything))
    held = sorted(mid for mids in server.values() for mid in mids)
    assert held == sorted(everything), f"lost or doubled: {held} vs {sorted(everything)}\n{diag}"
    assert sorted(server.get("Notes", [])) == sorted(
        m.message_id for m in written if m.subject.startswith("local note"))
    # every read chat moved, every unread one stayed
    chats = {m.message_id for m in delivered if m.message_id.startswith("chat$")}
    with d.imap(USER) as c:
        for folder, msgs in c.fetch_all_folders().items():
            for m in msgs:
                mid = (m.header("Message-ID") or "").strip("<> ")
                if mid in chats:
                    assert ("\\Seen" in m.flags) == (folder == "COI/Chats"), (folder, m.short())
    # both kinds of reading moved chats: the phone's on the server, and the
    # local ones mbsync carried up as flag changes
    moved = set(server.get("COI/Chats", []))
    assert moved & set(phone_reads), (phone_reads, moved)
    assert moved & (set(local_reads) - set(phone_reads)), (local_reads, moved)
    d.assert_no_panic_or_fatal()

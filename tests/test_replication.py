"""Dovecot 2.3 replication between two backends with the plugin (issue 17 item 3).

Two instances set up as an operator sets up a replicated pair (Dovecot 2.3
wiki "Replication with dsync"): the ``notify`` and ``replication`` mail
plugins, ``service replicator`` and ``service aggregator``, a doveadm
service on loopback with a shared ``doveadm_password``, and ``mail_replica =
tcp:127.0.0.1:<the other's doveadm port>`` on each. Both have the plugin
and their own event spool (what their sidecars would send: one webhook per
``message`` record, one push per ``push`` record target).

Checks: a chat delivered on one backend appears on the other in
``COI/Chats`` with ``$Chat``; a setting changed and a subscription added by
a client on one arrive on the other; across both spools there is exactly
one ``message`` and one ``push`` record per delivered chat (the replica
announces nothing), and the replica's log says nothing about COI.

Dovecot 2.4 removed replication (replicator and aggregator are gone), so
this module runs on 2.3 only.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import COI_MESSAGE_FILTER
from tests.harness import messages as M
from tests.harness.coistate import (PVT_COI, WEBPUSH_SUBS, client_view, push_files, raw_coi_entries,
                                    subscribe_validated)
from tests.harness.dsync import doveadm_service_config, replica_settings, replication_config
from tests.harness.instance import free_ports

pytestmark = pytest.mark.skipif(os.environ.get("COI_DOVECOT_VERSION", "2.3").startswith("2.4"),
                                reason="Dovecot 2.4 has no replicator")

WAIT = 30.0


def wait_for(what: str, pred, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def inbox_guid(inst, user: str) -> str | None:
    proc = inst.doveadm.run("mailbox", "status", "-u", user, "guid", "INBOX", check=False)
    return proc.stdout.strip().partition("=")[2] or None if proc.returncode == 0 else None


def settled(inst) -> bool:
    """Every user replicated, nothing queued, no failure."""
    out = inst.doveadm.run("replicator", "status", "*", fmt="tab").stdout.splitlines()
    rows = [dict(zip(out[0].split("\t"), ln.split("\t"))) for ln in out[1:]]
    return bool(rows) and all(r["priority"] == "none" and r["failed"] == "-"
                              and r["success sync"] != "-" for r in rows)


@pytest.fixture(scope="module")
def pair(dovecot_factory):
    """Both start without replicating; the users get mail on A; A then
    replicates every user to B (the first full sync creates them there with
    A's mailbox GUIDs), and B is reconfigured to replicate back. Starting both replicating at once
    makes each create the users on the other with its own GUIDs, which
    stock dsync cannot merge (it asserts on the INBOX GUID)."""
    port_a, port_b = free_ports(2)
    files_a, files_b = push_files("coi-repl-a-"), push_files("coi-repl-b-")
    run_user = "coitest" if os.geteuid() == 0 else None
    users = ["alice", "bob"]
    b = dovecot_factory(users=users, plugin_settings=files_b.settings(),
                        extra_config=doveadm_service_config(port_b, "2.3"))
    b._chown_mail(files_b.spool)
    a = dovecot_factory(users=users, plugin_settings=files_a.settings(),
                        extra_config=doveadm_service_config(port_a, "2.3"))
    a._chown_mail(files_a.spool)
    for user in users:
        # a real INBOX first: dsync gives two never-used ones no common
        # GUID, and the replicator syncs every user as soon as it starts
        a.lmtp_deliver(M.plain_mail().raw, [user])
    a.reconfigure(plugin_settings=dict(files_a.settings(), **replica_settings(port_b)),
                  extra_config=doveadm_service_config(port_a, "2.3") + replication_config(run_user))
    for user in users:
        a.doveadm.run("replicator", "replicate", "-f", user)
        # look at the files: any doveadm command on B would create the
        # user's INBOX there, with a GUID of its own
        wait_for(f"{user}'s mail on B", lambda: any((b.maildir(user) / "cur").glob("*"))
                 or any((b.maildir(user) / "new").glob("*")))
        assert inbox_guid(b, user) == inbox_guid(a, user)
    b.reconfigure(plugin_settings=dict(files_b.settings(), **replica_settings(port_a)),
                  extra_config=doveadm_service_config(port_b, "2.3") + replication_config(run_user))
    # both replicators have synced every user once (a run that B's reload
    # cut off is retried only after a while)
    for inst in (a, b):
        for user in users:
            inst.doveadm.run("replicator", "replicate", "-f", user)
        wait_for("the replicators to settle", lambda: settled(inst))
    yield (a, files_a), (b, files_b)
    files_a.remove()
    files_b.remove()


def folders(inst, user: str) -> dict[str, list[tuple[str, bool]]]:
    return {f: [((m.header("Message-ID") or "").strip("<> "), m.has_chat_keyword) for m in msgs]
            for f, msgs in inst.folders(user, strict=False).items()}


def announced(files, user: str, kind: str) -> list[dict]:
    return [r for r in files.records() if r.get("type") == kind
            and r.get("user", "").split("@")[0] == user]


def about(record: dict, message_id: str) -> bool:
    """Whether a message or push record is about the message with this Message-ID."""
    mid = record.get("message_id") or record.get("message", {}).get("message_id") or ""
    return mid.strip("<>") == message_id


def test_chats_settings_and_subscriptions_replicate_and_are_announced_once(pair):
    (a, files_a), (b, files_b) = pair
    # a client on A turns COI on and subscribes to Web Push
    with a.imap("alice") as c:
        c.enable_coi("active")
        subscribe_validated(c, files_a, "alice-phone-0001", "https://push.example.net/alice")
        c.setmetadata_ok("/private/devicetoken", "dc-token-alice", mailbox="INBOX")
    wait_for("alice's COI state on B", lambda: raw_coi_entries(b, "alice")
             == raw_coi_entries(a, "alice"))
    view = client_view(b, "alice")
    assert view["enabled"] == "yes" and view["subscriptions"] == ["alice-phone-0001"]

    # a chat delivered on A: filed and tagged there, replicated to B
    chat = M.coi_chat()
    a.lmtp_deliver(chat.raw, ["alice"])
    wait_for("the chat on B", lambda: (chat.message_id, True) in folders(b, "alice").get("COI/Chats", []))
    assert (chat.message_id, True) in folders(a, "alice")["COI/Chats"]

    # a setting changed by a client on B arrives on A
    with b.imap("alice") as c:
        c.setmetadata_ok(COI_MESSAGE_FILTER, "seen")
    wait_for("message-filter seen on A", lambda: client_view(a, "alice")["message-filter"] == "seen")
    # a subscription added on B arrives on A
    with b.imap("alice") as c:
        subscribe_validated(c, files_b, "alice-tablet-001", "https://push.example.net/tablet")
    wait_for("the tablet on A", lambda: PVT_COI + "webpush/alice-tablet-001" in raw_coi_entries(a, "alice"))
    with a.imap("alice") as c:
        assert c.getmetadata(WEBPUSH_SUBS + "alice-tablet-001") is not None

    # one delivered chat: exactly one message event and one push, from A only
    time.sleep(2.0)  # replication settles
    for kind in ("message", "push"):
        on_a = [r for r in announced(files_a, "alice", kind) if about(r, chat.message_id)]
        on_b = [r for r in announced(files_b, "alice", kind) if about(r, chat.message_id)]
        assert (len(on_a), len(on_b)) == (1, 0), (kind, on_a, on_b)
    # B announced nothing at all for alice: every record there is a
    # validation of the subscription a client made on B
    assert [r["type"] for r in files_b.records() if r.get("user", "").startswith("alice")] \
        == ["webpush_validation"]
    # the replica's processes said nothing about COI
    for inst in (a, b):
        repl = [ln for ln in inst.log_text().splitlines()
                if ln.startswith(("doveadm", "dsync")) and "coi:" in ln]
        assert repl == [], repl
        inst.assert_no_panic_or_fatal()


def test_a_chat_delivered_on_the_replica_is_announced_there_once(pair):
    """Both backends take deliveries (the usual active-active pair): a chat
    delivered on B is announced by B and by nobody else."""
    (a, files_a), (b, files_b) = pair
    with b.imap("bob") as c:
        c.enable_coi("active")
    chat = M.coi_chat()
    b.lmtp_deliver(chat.raw, ["bob"])
    wait_for("bob's chat on A", lambda: (chat.message_id, True) in folders(a, "bob").get("COI/Chats", []))
    time.sleep(2.0)
    mine = [r for r in announced(files_a, "bob", "message") + announced(files_b, "bob", "message")
            if about(r, chat.message_id)]
    assert len(mine) == 1 and mine[0] in announced(files_b, "bob", "message"), mine

"""Self-tests of the harness against STOCK Dovecot (the coi plugin is not loaded).

Owns the guarantees the plugin tests rely on: deterministic malformed
messages, unique Message-IDs, config rendering, per-recipient LMTP results,
dovecot-lda, IMAP/doveadm/METADATA helpers, reload, and clean shutdown.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import COI_ENABLED, DovecotInstance, InstanceConfig
from tests.harness import config as cfgmod
from tests.harness import messages as M
from tests.harness.checks import assert_stored_once, assert_unmodified
from tests.harness.config import InstanceLayout
from tests.harness.instance import _proc_name
from tests.harness.malformed import malformed_messages
from tests.harness.sysuser import ensure_mail_identity


@pytest.fixture(scope="module")
def stock(dovecot_factory) -> DovecotInstance:
    return dovecot_factory(plugin=False, users=["alice", "bob", "carol"])


def test_malformed_generator_is_deterministic():
    a, b = malformed_messages(200), malformed_messages(200)
    assert len(a) == 200
    assert [m.raw for m in a] == [m.raw for m in b]
    assert [m.raw for m in malformed_messages(200, seed=1)] != [m.raw for m in a]
    cats = {m.category for m in a}
    assert {"huge_header_line", "nul_bytes", "line_endings", "forged_group_ids"} <= cats
    assert max(len(m.raw) for m in a) > 100_000


def test_builders_give_unique_ids_and_crlf():
    msgs = [b() for b in M.ALL_CHAT_BUILDERS.values() for _ in range(3)]
    msgs += [M.plain_mail(), M.mailing_list(), *M.near_misses()]
    ids = [m.message_id for m in msgs]
    assert len(set(ids)) == len(ids)
    for m in msgs:
        assert b"\n" not in m.raw.replace(b"\r\n", b""), m.kind
        assert f"<{m.message_id}>".encode() in m.raw


def test_config_renders_required_settings(tmp_path):
    ident = ensure_mail_identity()
    lay = InstanceLayout(tmp_path, 1143, 1124)
    text = cfgmod.render(InstanceConfig(separator=".", sieve=True,
                                        plugin_settings={"coi_mailbox_root": "X Y"}), lay, ident)
    for needle in ("listen = 127.0.0.1", "ssl = no", "imap_metadata = yes",
                   "mail_attribute_dict = file:%h/dovecot-attributes", "separator = .",
                   "mail_plugins = $mail_plugins coi", "mail_plugins = $mail_plugins sieve",
                   'coi_mailbox_root = "X Y"', "port = 1143", "port = 1124"):
        assert needle in text, needle
    assert "$mail_plugins coi" not in cfgmod.render(InstanceConfig(plugin=False), lay, ident)


def test_lmtp_results_are_per_recipient(stock):
    msg = M.plain_mail()
    res = stock.lmtp_deliver(msg.raw, ["alice", "nosuchuser", "bob"])
    assert [r.code for r in res] == [250, 550, 250], res
    assert res[1].stage == "RCPT"
    for user in ("alice", "bob"):
        stored = assert_stored_once(stock.folders(user), msg.message_id, "INBOX", False)
        assert_unmodified(msg.raw, stored)


def test_lda_and_doveadm_helpers(stock):
    msg = M.coi_chat()
    res = stock.lda_deliver("carol", msg.raw)
    assert res.ok, res
    assert stock.doveadm.message_counts("carol") == {"INBOX": 1}
    rows = stock.doveadm.fetch("carol", "mailbox uid hdr.subject", ["ALL"])
    assert rows == [{"mailbox": "INBOX", "uid": "1", "hdr.subject": msg.subject}]
    stock.doveadm.metadata_set("carol", COI_ENABLED, "yes")
    assert stock.doveadm.metadata_get("carol", COI_ENABLED) == "yes"
    with stock.imap("carol") as c:
        assert c.getmetadata(COI_ENABLED) == "yes"
        c.setmetadata_ok(COI_ENABLED, None)
        assert c.getmetadata(COI_ENABLED) is None
        assert "METADATA" in c.capabilities()


def test_reconfigure_and_reload(stock):
    stock.reconfigure(lmtp_save_to_detail_mailbox=True)
    try:
        msg = M.plain_mail()
        assert stock.lmtp_deliver(msg.raw, [stock.rcpt("bob", "Lists/Dev")])[0].ok
        assert_stored_once(stock.folders("bob"), msg.message_id, "Lists/Dev", False)
    finally:
        stock.reconfigure(lmtp_save_to_detail_mailbox=False)
    stock.assert_no_panic_or_fatal()


def test_stop_ends_master_and_removes_tmp():
    inst = DovecotInstance(plugin=False)
    with inst:
        pid = inst.master_pid()
        assert pid and os.path.exists(f"/proc/{pid}")
        # The master forks its children (log, config, anvil, ...) after it
        # writes master.pid; on a loaded machine that takes a moment.
        deadline = time.monotonic() + 15
        kids = [k for k, _ in inst.child_processes()]
        while not kids and time.monotonic() < deadline:
            time.sleep(0.05)
            kids = [k for k, _ in inst.child_processes()]
        assert kids, "the master started no children within 15 s"
    alive = [k for k in kids if _proc_name(k) is not None]  # zombies await init, fine
    assert not alive, f"Dovecot children outlived stop(): {alive}"
    assert not os.path.exists(f"/proc/{pid}"), f"master {pid} still running after stop()"
    assert not inst.tmpdir.exists(), f"{inst.tmpdir} left behind: {list(inst.tmpdir.rglob('*'))[:20]}"

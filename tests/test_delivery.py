"""Delivery through a real Dovecot 2.3 with the coi plugin loaded (LMTP and dovecot-lda).

Owns the end-to-end routing contract of the plugin:
  * users without COI get byte-for-byte ordinary delivery (INBOX, no ``$Chat``);
  * enabled + message-filter=active: chats and chat MDNs go to ``COI/Chats``
    (created, subscribed) with ``$Chat``; plain mail stays in INBOX untouched;
  * enabled + none (and seen, at delivery time): chats stay in INBOX with ``$Chat``;
  * ``coi_default_*`` plugin settings enable users without METADATA;
  * a user's Sieve ``fileinto`` wins, implicit keep goes to ``COI/Chats``;
  * per-recipient decisions inside one LMTP transaction;
  * an unusable chat folder falls back to INBOX (never a tempfail);
  * 200 malformed messages are each delivered exactly once, no Panic/Fatal;
  * the plugin loads in imap, lmtp, lda and doveadm without breaking them;
  * namespace separator ``.`` gives ``COI.Chats``.

Instances are module-scoped (one per configuration); each test uses its own
users, so tests do not depend on each other's mailboxes.
"""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.harness import COI_ENABLED, COI_MESSAGE_FILTER, DovecotInstance
from tests.harness import messages as M
from tests.harness.checks import (assert_all_ok, assert_stored_once, assert_unmodified,
                                  dump_folders, folder_counts, locate)
from tests.harness.malformed import SEQ_HEADER, malformed_messages
from tests.harness.paths import PLUGIN_INSTALL_NAME

CHAT_KINDS = list(M.ALL_CHAT_BUILDERS)
ACTIVE_USERS = [f"act_{k}" for k in CHAT_KINDS]

MAIN_USERS = [
    "alice", "bob", "carol", "plain_u", "nocoi_u", "act_all", "act_plain", "none_u", "seen_u",
    "meta_u", "dadm_u", "lda_off", "lda_active", "lda_none", "mix_active", "mix_off", "mix_none",
    "fb_lmtp", "fb_lda", "fuzz", "fuzz_lda", "load_u", "cap_u", *ACTIVE_USERS,
]
# Per-user plugin settings through userdb extra fields: enabled by default, but
# with a chat root whose name Maildir++ rejects ('.' with separator '/').
BAD_ROOT = {"coi_default_enabled": "yes", "coi_default_message_filter": "active",
            "coi_mailbox_root": "Bad.Root"}

SIEVE_SCRIPT = """require ["fileinto", "mailbox"];
if header :contains "Subject" "project" {
  fileinto :create "Projects";
}
"""


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dc(dovecot_factory) -> DovecotInstance:
    """Plugin loaded globally, no Sieve, mail_debug on."""
    users = {u: {} for u in MAIN_USERS}
    users.update({"badroot_lmtp": BAD_ROOT, "badroot_lda": BAD_ROOT})
    return dovecot_factory(plugin=True, mail_debug=True, users=users)


@pytest.fixture(scope="module")
def dc_default_on(dovecot_factory) -> DovecotInstance:
    """COI on for everyone through plugin settings (no METADATA)."""
    return dovecot_factory(
        plugin=True, mail_debug=True, users=["def_u", "def_lda"],
        plugin_settings={"coi_default_enabled": "yes", "coi_default_message_filter": "active"})


@pytest.fixture(scope="module")
def dc_sieve(dovecot_factory) -> DovecotInstance:
    """Plugin + Pigeonhole Sieve in lmtp and lda; users with a fileinto script."""
    inst = dovecot_factory(plugin=True, sieve=True, mail_debug=True,
                           users=["sv_active", "sv_off", "sv_none", "sv_lda", "sv_noscript"])
    for u in ("sv_active", "sv_off", "sv_none", "sv_lda"):
        inst.write_user_sieve(u, SIEVE_SCRIPT)
    return inst


@pytest.fixture(scope="module")
def dc_dot(dovecot_factory) -> DovecotInstance:
    """Namespace separator '.'."""
    return dovecot_factory(plugin=True, mail_debug=True, separator=".", users=["dot_u", "dot_lda"])


# --------------------------------------------------------------------------- helpers
def deliver(dc: DovecotInstance, msg: M.TestMessage, *users: str) -> None:
    results = dc.lmtp_deliver(msg.raw, list(users))
    assert_all_ok(results, f"LMTP {msg.kind} {msg.message_id}")


def lda(dc: DovecotInstance, user: str, msg: M.TestMessage) -> None:
    res = dc.lda_deliver(user, msg.raw)
    assert res.returncode == 0, (
        f"dovecot-lda exited {res.returncode} for {msg.kind} {msg.message_id}\n"
        f"stderr: {res.stderr}\nlog tail:\n{dc.log.tail(30)}")


def no_coi_folder(dc: DovecotInstance, user: str) -> None:
    with dc.imap(user) as c:
        names = c.list_folders()
    assert not [n for n in names if n.upper().startswith("COI")], \
        f"COI folders created for a user without COI: {names}"
    assert not list(dc.maildir(user).glob(".COI*")), "a COI maildir folder exists on disk"


def enable(dc: DovecotInstance, user: str, message_filter: str = "active") -> None:
    dc.enable_coi(user, message_filter)


# --------------------------------------------------------------------------- users without COI
def test_plain_mail_stays_in_inbox_untouched(dc):
    msgs = [M.plain_mail(to=dc.address("plain_u")), M.mailing_list(to=dc.address("plain_u")),
            *M.near_misses(to=dc.address("plain_u"))]
    for msg in msgs:
        deliver(dc, msg, "plain_u")
    folders = dc.folders("plain_u")
    for msg in msgs:
        stored = assert_stored_once(folders, msg.message_id, "INBOX", chat_keyword=False)
        assert_unmodified(msg.raw, stored)
    no_coi_folder(dc, "plain_u")


def test_chats_for_user_without_coi_are_ordinary_delivery(dc):
    msgs = [b(to=dc.address("nocoi_u")) for b in M.ALL_CHAT_BUILDERS.values()]
    for msg in msgs:
        deliver(dc, msg, "nocoi_u")
    folders = dc.folders("nocoi_u")
    for msg in msgs:
        stored = assert_stored_once(folders, msg.message_id, "INBOX", chat_keyword=False,
                                    who=f"{msg.kind} to a user without COI")
        assert_unmodified(msg.raw, stored)
    no_coi_folder(dc, "nocoi_u")


# --------------------------------------------------------------------------- enabled + active
def test_setmetadata_enable_roundtrip(dc):
    with dc.imap("meta_u") as c:
        c.setmetadata_ok(COI_ENABLED, "yes")
        c.setmetadata_ok(COI_MESSAGE_FILTER, "active")
        assert c.getmetadata(COI_ENABLED) == "yes"
        assert c.getmetadata(COI_MESSAGE_FILTER) == "active"
        # the session goes on; enabling made the folders before the OK
        assert c.noop() == []
        assert {"COI/Chats", "COI/Contacts"} <= set(c.list_folders())


@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_enabled_active_files_chat_into_coi_chats(dc, kind):
    user = f"act_{kind}"
    enable(dc, user, "active")
    msg = M.ALL_CHAT_BUILDERS[kind](to=dc.address(user))
    deliver(dc, msg, user)
    folders = dc.folders(user)
    stored = assert_stored_once(folders, msg.message_id, "COI/Chats", chat_keyword=True, who=kind)
    assert_unmodified(msg.raw, stored)
    assert folders.get("INBOX") == [], f"INBOX must stay empty:\n{dump_folders(folders)}"
    with dc.imap(user) as c:
        subscribed = c.subscribed()
    assert "COI/Chats" in subscribed, f"COI/Chats not subscribed; LSUB: {subscribed}"


def test_enabled_active_all_chat_kinds_leave_inbox_empty(dc):
    enable(dc, "act_all", "active")
    msgs = [b(to=dc.address("act_all")) for b in M.ALL_CHAT_BUILDERS.values()]
    with dc.lmtp_session() as s:
        for msg in msgs:
            assert_all_ok(s.deliver(msg.raw, [dc.address("act_all")]), msg.kind)
    folders = dc.folders("act_all")
    assert folder_counts(folders).get("INBOX") == 0, dump_folders(folders)
    assert len(folders.get("COI/Chats", [])) == len(msgs), dump_folders(folders)
    assert all(m.has_chat_keyword for m in folders["COI/Chats"]), dump_folders(folders)


def test_enabled_active_leaves_plain_mail_alone(dc):
    enable(dc, "act_plain", "active")
    to = dc.address("act_plain")
    msgs = [M.plain_mail(to=to), M.mailing_list(to=to), *M.near_misses(to=to)]
    for msg in msgs:
        deliver(dc, msg, "act_plain")
    folders = dc.folders("act_plain")
    for msg in msgs:
        stored = assert_stored_once(folders, msg.message_id, "INBOX", chat_keyword=False,
                                    who=msg.subject)
        assert_unmodified(msg.raw, stored)


def test_enable_via_doveadm_metadata(dc):
    dc.doveadm.enable_coi("dadm_u", "active")
    assert dc.doveadm.metadata_get("dadm_u", COI_ENABLED) == "yes"
    msg = M.coi_chat(to=dc.address("dadm_u"))
    deliver(dc, msg, "dadm_u")
    assert_stored_once(dc.folders("dadm_u"), msg.message_id, "COI/Chats", chat_keyword=True)


# --------------------------------------------------------------------------- enabled + none / seen
def test_enabled_none_tags_chat_in_inbox(dc):
    enable(dc, "none_u", "none")
    chat, mdn = M.coi_chat(to=dc.address("none_u")), M.deltachat_mdn(to=dc.address("none_u"))
    plain = M.plain_mail(to=dc.address("none_u"))
    for msg in (chat, mdn, plain):
        deliver(dc, msg, "none_u")
    folders = dc.folders("none_u")
    for msg in (chat, mdn):
        stored = assert_stored_once(folders, msg.message_id, "INBOX", chat_keyword=True,
                                    who=msg.kind)
        assert_unmodified(msg.raw, stored)
    stored = assert_stored_once(folders, plain.message_id, "INBOX", chat_keyword=False)
    assert_unmodified(plain.raw, stored)


def test_enabled_seen_keeps_chat_in_inbox_at_delivery(dc):
    """message-filter=seen moves chats only once \\Seen is set, so delivery keeps INBOX."""
    enable(dc, "seen_u", "seen")
    chat = M.coi_chat(to=dc.address("seen_u"))
    deliver(dc, chat, "seen_u")
    assert_stored_once(dc.folders("seen_u"), chat.message_id, "INBOX", chat_keyword=True)


# --------------------------------------------------------------------------- plugin settings
def test_default_enabled_by_plugin_settings_files_chats(dc_default_on):
    dc = dc_default_on
    chat, dcm = M.coi_group_chat(to=dc.address("def_u")), M.deltachat_plain(to=dc.address("def_u"))
    plain = M.plain_mail(to=dc.address("def_u"))
    for msg in (chat, dcm, plain):
        deliver(dc, msg, "def_u")
    lda(dc, "def_lda", chat)
    for user in ("def_u", "def_lda"):
        folders = dc.folders(user)
        assert_stored_once(folders, chat.message_id, "COI/Chats", chat_keyword=True, who=user)
    folders = dc.folders("def_u")
    assert_stored_once(folders, dcm.message_id, "COI/Chats", chat_keyword=True)
    assert_stored_once(folders, plain.message_id, "INBOX", chat_keyword=False)


# --------------------------------------------------------------------------- Sieve
def _sieve_msgs(dc: DovecotInstance, user: str):
    to = dc.address(user)
    return {
        "chat_project": M.with_subject(M.coi_chat(to=to), "Chat: project kickoff"),
        "chat_other": M.coi_chat(to=to),
        "plain_project": M.plain_mail(subject="project budget", to=to),
        "plain_other": M.plain_mail(to=to),
    }


@pytest.mark.parametrize("path", ["lmtp", "lda"])
def test_sieve_fileinto_wins_and_implicit_keep_goes_to_chats(dc_sieve, path):
    dc = dc_sieve
    user = "sv_active" if path == "lmtp" else "sv_lda"
    enable(dc, user, "active")
    msgs = _sieve_msgs(dc, user)
    for msg in msgs.values():
        deliver(dc, msg, user) if path == "lmtp" else lda(dc, user, msg)
    folders = dc.folders(user)
    assert_stored_once(folders, msgs["chat_project"].message_id, "Projects", chat_keyword=True,
                       who="chat matching the user's fileinto rule")
    assert_stored_once(folders, msgs["chat_other"].message_id, "COI/Chats", chat_keyword=True,
                       who="chat taking Sieve's implicit keep")
    assert_stored_once(folders, msgs["plain_project"].message_id, "Projects", chat_keyword=False)
    assert_stored_once(folders, msgs["plain_other"].message_id, "INBOX", chat_keyword=False)


def test_sieve_user_without_coi_is_untouched(dc_sieve):
    dc = dc_sieve
    msgs = _sieve_msgs(dc, "sv_off")
    for msg in msgs.values():
        deliver(dc, msg, "sv_off")
    folders = dc.folders("sv_off")
    assert_stored_once(folders, msgs["chat_project"].message_id, "Projects", chat_keyword=False)
    stored = assert_stored_once(folders, msgs["chat_other"].message_id, "INBOX",
                                chat_keyword=False)
    assert_unmodified(msgs["chat_other"].raw, stored)
    no_coi_folder(dc, "sv_off")


def test_sieve_enabled_none_tags_but_does_not_move(dc_sieve):
    dc = dc_sieve
    enable(dc, "sv_none", "none")
    msgs = _sieve_msgs(dc, "sv_none")
    for msg in msgs.values():
        deliver(dc, msg, "sv_none")
    folders = dc.folders("sv_none")
    assert_stored_once(folders, msgs["chat_project"].message_id, "Projects", chat_keyword=True)
    assert_stored_once(folders, msgs["chat_other"].message_id, "INBOX", chat_keyword=True)


def test_sieve_loaded_but_no_user_script(dc_sieve):
    dc = dc_sieve
    enable(dc, "sv_noscript", "active")
    chat, plain = M.coi_chat(to=dc.address("sv_noscript")), M.plain_mail()
    deliver(dc, chat, "sv_noscript")
    deliver(dc, plain, "sv_noscript")
    folders = dc.folders("sv_noscript")
    assert_stored_once(folders, chat.message_id, "COI/Chats", chat_keyword=True)
    assert_stored_once(folders, plain.message_id, "INBOX", chat_keyword=False)
    dc.assert_no_panic_or_fatal()


# --------------------------------------------------------------------------- dovecot-lda
LDA_CASES = [
    # (user, message-filter or None = COI off, builder, expected folder, $Chat expected)
    ("lda_off", None, "plain", "INBOX", False),
    ("lda_off", None, "coi_chat", "INBOX", False),
    ("lda_off", None, "deltachat_encrypted", "INBOX", False),
    ("lda_active", "active", "coi_chat", "COI/Chats", True),
    ("lda_active", "active", "coi_group_chat", "COI/Chats", True),
    ("lda_active", "active", "legacy_group_reply", "COI/Chats", True),
    ("lda_active", "active", "deltachat_plain", "COI/Chats", True),
    ("lda_active", "active", "deltachat_encrypted", "COI/Chats", True),
    ("lda_active", "active", "deltachat_mdn", "COI/Chats", True),
    ("lda_active", "active", "plain", "INBOX", False),
    ("lda_none", "none", "coi_chat", "INBOX", True),
    ("lda_none", "none", "plain", "INBOX", False),
]


@pytest.mark.parametrize("user,mfilter,kind,folder,tagged", LDA_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in LDA_CASES])
def test_lda_delivery(dc, user, mfilter, kind, folder, tagged):
    if mfilter is not None:
        enable(dc, user, mfilter)
    builder = M.plain_mail if kind == "plain" else M.ALL_CHAT_BUILDERS[kind]
    msg = builder(to=dc.address(user))
    lda(dc, user, msg)
    stored = assert_stored_once(dc.folders(user), msg.message_id, folder, chat_keyword=tagged,
                                who=f"{user} via dovecot-lda")
    assert_unmodified(msg.raw, stored)
    if mfilter is None:
        no_coi_folder(dc, user)


# --------------------------------------------------------------------------- one transaction
def test_one_lmtp_transaction_decides_per_recipient(dc):
    enable(dc, "mix_active", "active")
    enable(dc, "mix_none", "none")
    first = M.coi_chat(to=dc.address("mix_active"))
    second = M.deltachat_plain(to=dc.address("mix_off"))
    plain = M.plain_mail(to=dc.address("mix_active"))
    # the enabled recipient first, then last: no state may leak between recipients
    deliver(dc, first, "mix_active", "mix_off", "mix_none")
    deliver(dc, second, "mix_off", "mix_none", "mix_active")
    deliver(dc, plain, "mix_none", "mix_active", "mix_off")
    f_active, f_off, f_none = (dc.folders(u) for u in ("mix_active", "mix_off", "mix_none"))
    for chat in (first, second):
        assert_stored_once(f_active, chat.message_id, "COI/Chats", True, who="mix_active")
        stored = assert_stored_once(f_off, chat.message_id, "INBOX", False, who="mix_off")
        assert_unmodified(chat.raw, stored)
        assert_stored_once(f_none, chat.message_id, "INBOX", True, who="mix_none")
    for f, who in ((f_active, "mix_active"), (f_off, "mix_off"), (f_none, "mix_none")):
        assert_stored_once(f, plain.message_id, "INBOX", False, who=who)
    no_coi_folder(dc, "mix_off")


# --------------------------------------------------------------------------- fallback
@pytest.mark.parametrize("path", ["lmtp", "lda"])
def test_unusable_chat_folder_falls_back_to_inbox(dc, path):
    """COI/Chats exists but its maildir directory was replaced by a regular file.

    Stock Dovecot answers a save into such a folder with a TEMPORARY failure
    (451 / exit 75) instead of falling back to INBOX, so the plugin must
    notice and keep the chat in INBOX itself.
    """
    user = f"fb_{path}"
    enable(dc, user, "active")
    blocked = dc.block_folder_with_file(user, "COI/Chats")
    mark = dc.log.mark()
    msg = M.coi_chat(to=dc.address(user))
    if path == "lmtp":
        results = dc.lmtp_deliver(msg.raw, [user])
        assert_all_ok(results, f"chat with {blocked} blocked")
    else:
        lda(dc, user, msg)
    with dc.imap(user) as c:
        folders = c.fetch_all_folders(strict=False)
    copies = locate(folders, msg.message_id)
    assert [m.folder for m in copies] == ["INBOX"], (
        f"expected the chat in INBOX only, found {[m.folder for m in copies]}\n"
        f"{dump_folders(folders)}\nlog:\n{dc.log.tail(20, since=mark)}")
    coi_lines = dc.log.plugin_lines(since=mark)
    assert any(re.search(r"Warning|Error", ln) for ln in coi_lines), (
        "expected a warning/error line from the coi plugin about the chat folder; coi lines:\n"
        + "\n".join(coi_lines[-20:]) + "\nlog since delivery:\n" + dc.log.tail(30, since=mark))
    assert copies[0].has_chat_keyword, f"fallback copy lost $Chat: {copies[0].short()}"
    dc.assert_no_panic_or_fatal(since=mark)


@pytest.mark.parametrize("path", ["lmtp", "lda"])
def test_uncreatable_mailbox_root_falls_back_to_inbox(dc, path):
    """Per-user settings (userdb): COI on by default, root 'Bad.Root' Maildir++ cannot create."""
    user = f"badroot_{path}"
    mark = dc.log.mark()
    msg = M.coi_chat(to=dc.address(user))
    if path == "lmtp":
        assert_all_ok(dc.lmtp_deliver(msg.raw, [user]), "chat with uncreatable root")
    else:
        lda(dc, user, msg)
    folders = dc.folders(user, strict=False)
    copies = locate(folders, msg.message_id)
    assert [m.folder for m in copies] == ["INBOX"], (
        f"expected the chat in INBOX only, found {[m.folder for m in copies]}\n"
        f"{dump_folders(folders)}\nlog:\n{dc.log.tail(20, since=mark)}")
    assert dc.log.plugin_lines(since=mark), "no coi log line about the uncreatable root:\n" \
        + dc.log.tail(30, since=mark)
    dc.assert_no_panic_or_fatal(since=mark)


# --------------------------------------------------------------------------- robustness
def test_200_malformed_messages_over_lmtp(dc):
    user = "fuzz"
    enable(dc, user, "active")
    mark = dc.log.mark()
    msgs = malformed_messages(200)
    problems = []
    session = dc.lmtp_session()
    try:
        for m in msgs:
            try:
                res = session.deliver(m.raw, [dc.address(user)])
            except (smtplib.SMTPException, OSError) as exc:
                problems.append(f"#{m.seq} {m.category}: connection failed: {exc!r}")
                session.smtp.close()
                session = dc.lmtp_session()
                continue
            problems += [f"#{m.seq} {m.category}: {r.code} {r.message}" for r in res if r.code != 250]
    finally:
        session.close()
    assert not problems, "not every malformed message got 250:\n" + "\n".join(problems[:40])
    with dc.imap(user) as c:
        folders = c.fetch_all_folders()
    total = sum(folder_counts(folders).values())
    assert total == len(msgs), f"expected {len(msgs)} stored messages, found {total}: " \
                               f"{folder_counts(folders)}"
    seen: dict[int, int] = {}
    for box in folders.values():
        for stored in box:
            mm = re.search(rb"(?:^|\n)" + SEQ_HEADER + rb": (\d+)\r?\n", stored.raw[:4096])
            if mm:
                seen[int(mm[1])] = seen.get(int(mm[1]), 0) + 1
    tagged = {m.seq for m in msgs if m.tagged}
    assert {k for k, v in seen.items() if v == 1} == tagged, (
        f"missing: {sorted(tagged - set(seen))}, duplicated: "
        f"{sorted(k for k, v in seen.items() if v > 1)}")
    dc.assert_no_panic_or_fatal(since=mark)


def test_malformed_messages_through_lda(dc):
    user = "fuzz_lda"
    enable(dc, user, "active")
    mark = dc.log.mark()
    msgs = malformed_messages(200)[:40]
    bad = []
    for m in msgs:
        res = dc.lda_deliver(user, m.raw)
        if res.returncode != 0:
            bad.append(f"#{m.seq} {m.category}: exit {res.returncode} {res.stderr.strip()}")
    assert not bad, "dovecot-lda failed:\n" + "\n".join(bad)
    counts = dc.doveadm.message_counts(user)
    assert sum(counts.values()) == len(msgs), f"expected {len(msgs)} messages: {counts}"
    dc.assert_no_panic_or_fatal(since=mark)


# --------------------------------------------------------------------------- loading
def test_plugin_loads_in_imap_lmtp_lda_and_doveadm(dc):
    so = str(dc.layout.module_dir / PLUGIN_INSTALL_NAME)
    with dc.imap("load_u") as c:
        assert "INBOX" in c.list_folders()
        c.examine("INBOX")
    deliver(dc, M.plain_mail(to=dc.address("load_u")), "load_u")
    lda(dc, "load_u", M.plain_mail(to=dc.address("load_u")))
    proc = dc.doveadm.run("-D", "mailbox", "list", "-u", "load_u")
    assert "INBOX" in proc.stdout.split(), proc.stdout
    assert f"Module loaded: {so}" in proc.stderr, \
        f"doveadm did not load the plugin:\n{proc.stderr[-3000:]}"
    # lmtp loads mail_plugins without a debug line (stock plugins neither); the
    # LMTP routing tests prove it is loaded there.
    loaded = [ln for ln in dc.log.lines() if f"Module loaded: {so}" in ln]
    for proc_name in ("imap(", "lda("):
        assert any(proc_name in ln for ln in loaded), \
            f"no 'Module loaded: {so}' line from {proc_name}...); lines: {loaded[:10]}"
    load_errors = [ln for ln in dc.log.lines()
                   if PLUGIN_INSTALL_NAME in ln or "coi_plugin" in ln
                   if re.search(r"Error|Fatal|Panic|Couldn't load|dlopen", ln)]
    assert not load_errors, "plugin load errors:\n" + "\n".join(load_errors[:20])
    dc.assert_no_panic_or_fatal()


# --------------------------------------------------------------------------- separator '.'
@pytest.mark.parametrize("path", ["lmtp", "lda"])
def test_separator_dot_files_into_coi_dot_chats(dc_dot, path):
    dc = dc_dot
    user = "dot_u" if path == "lmtp" else "dot_lda"
    enable(dc, user, "active")
    msg = M.coi_group_chat(to=dc.address(user))
    deliver(dc, msg, user) if path == "lmtp" else lda(dc, user, msg)
    folders = dc.folders(user)
    assert_stored_once(folders, msg.message_id, "COI.Chats", chat_keyword=True)
    with dc.imap(user) as c:
        assert "COI.Chats" in c.subscribed()

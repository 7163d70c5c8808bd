"""Fast IDLE change notifications (``coi_fast_notify``, issue 7): correctness, not timing.

Owns the contract that IMAP IDLE keeps telling clients about changes, whatever the
setting, and that the plugin's extra watch is where the setting says:

  * an IDLE client on ``COI/Chats`` of an enabled+active user gets ``* N+1 EXISTS`` for
    a chat delivered over LMTP, with ``coi_fast_notify`` unset (default ``chats``),
    ``chats``, ``all`` and ``no`` (stock Dovecot, up to ~0.5 s late);
  * one EXISTS per delivery for deliveries one after another (the watch re-arms), and
    the right final count after a burst (coalescing may merge EXISTS, never lose one);
  * the stock path keeps working: INBOX of a user without COI gets EXISTS for plain
    mail, INBOX of an enabled user with message-filter=none for a chat, a folder out of
    scope for an APPEND from another session; flag changes and expunges from another
    session reach the IDLE client too;
  * scope, checked without any timing: the imap process serving the IDLE connection
    has an inotify watch on the mailbox's ``dovecot.index.log`` exactly when the folder
    is in scope (maildir: Dovecot itself watches only ``new/`` and ``cur/``);
  * after the index log is rotated, the watch follows the new log and EXISTS still
    arrives;
  * no busy loop: after a notification the imap process goes back to sleep;
  * IDLE still ends with ``DONE`` -> OK; no Panic/Fatal/Error in the Dovecot log.

Configurations: maildir with the setting unset (default), ``chats``, ``all``, ``no``;
sdbox and mdbox with the default. All run on ONE instance, switched by rewriting the
config and ``doveadm reload``; every configuration has its own copy of each user.
Every wait for EXISTS allows ``EXISTS_TIMEOUT`` seconds, in every mode: this file
checks behaviour; ``bench/idle_latency.py`` measures latency.
"""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import pytest

from tests.harness import DovecotInstance, IdleClient
from tests.harness import messages as M

#: Generous for every mode: stock Dovecot answers after ~0.5 s (its notify delay).
EXISTS_TIMEOUT = 5.0
CHATS = "COI/Chats"

#: Configurations: id -> (mail_location, coi_fast_notify; None leaves the setting out,
#: i.e. the default "chats"). All run on one instance, switched by reload.
CONFIGS = {
    "default": ("maildir:~/Maildir", None),
    "chats": ("maildir:~/Maildir", "chats"),
    "all": ("maildir:~/Maildir", "all"),
    "no": ("maildir:~/Maildir", "no"),
    "sdbox": ("sdbox:~/sdbox", None),
    "mdbox": ("mdbox:~/mdbox", None),
}
MAILDIR_CONFIGS = ["default", "chats", "all", "no"]

USERS = {
    "chat_u": {}, "seq_u": {}, "plain_u": {}, "none_u": {}, "flag_u": {}, "work_u": {},
    "loop_u": {}, "rot_u": {}, "resel_u": {}, "scope_on": {}, "scope_off": {},
    # chat folder under another root (per-user plugin setting through userdb)
    "root_u": {"coi_mailbox_root": "Talk"},
}

_ERROR_LINE = re.compile(r": (Panic|Fatal|Error): ")


# --------------------------------------------------------------------------- fixtures
def _settings(mode: str | None) -> dict:
    return {} if mode is None else {"coi_fast_notify": mode}


@pytest.fixture(scope="module")
def instance(dovecot_factory) -> DovecotInstance:
    """ONE Dovecot for every configuration (a stop costs seconds, a reload 0.1 s).

    Every configuration has its own copy of each user (``<config>_<user>``), so
    switching storage or mode never meets state from another configuration.
    """
    users = {f"{cfg}_{user}": fields for cfg in CONFIGS for user, fields in USERS.items()}
    inst = dovecot_factory(plugin=True, users=users)
    inst.cfg_id = None  # type: ignore[attr-defined]
    return inst


@pytest.fixture(scope="module", params=list(CONFIGS))
def dc(request, instance) -> DovecotInstance:
    """The instance, reconfigured (config rewrite + doveadm reload) for one configuration."""
    location, mode = CONFIGS[request.param]
    if instance.cfg_id != request.param:
        instance.reconfigure(mail_location=location, plugin_settings=_settings(mode))
        instance.cfg_id = request.param
    instance.fast_mode = mode or "chats"  # type: ignore[attr-defined]
    return instance


def u(dc: DovecotInstance, user: str) -> str:
    """This configuration's copy of ``user``."""
    return f"{dc.cfg_id}_{user}"


def fast_on(dc: DovecotInstance) -> bool:
    return dc.fast_mode != "no"


# --------------------------------------------------------------------------- helpers
def deliver(dc: DovecotInstance, user: str, msg: M.TestMessage) -> None:
    res = dc.lmtp_deliver(msg.raw, [user])
    assert res[0].ok, f"LMTP delivery to {user} failed: {res}"


def enable_with_chats_folder(dc: DovecotInstance, user: str) -> None:
    """COI enabled + active, and COI/Chats created the natural way: by a first chat."""
    dc.enable_coi(user, "active")
    deliver(dc, user, M.coi_chat(to=dc.address(user)))
    with dc.imap(user) as c:
        assert CHATS in c.list_folders(), f"first chat did not create {CHATS} for {user}"


def assert_log_clean(dc: DovecotInstance, since: int) -> None:
    """No Panic/Fatal/Error lines at all (the plugin's own ones start with "coi:")."""
    bad = [ln for ln in dc.log.lines(since) if _ERROR_LINE.search(ln)]
    assert not bad, "Dovecot logged errors:\n" + "\n".join(bad[:40])


def end_idle(c: IdleClient) -> None:
    status, text, _ = c.done(timeout=10)
    assert status == "OK", f"DONE answered {status} {text}"


def idle_on(dc: DovecotInstance, user: str, folder: str) -> tuple[IdleClient, int]:
    """A new connection for ``user`` in IDLE on ``folder``; returns it and the count."""
    c = IdleClient(dc.host, dc.imap_port, user)
    try:
        n = c.select(folder)
        c.idle()
    except BaseException:
        c.close()
        raise
    return c, n


def server_pid(dc: DovecotInstance, client: IdleClient) -> int:
    """Pid of the imap process serving ``client``: owner of the server end of its socket."""
    cport = client.sock.getsockname()[1]
    wanted = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if (int(f[1].rsplit(":", 1)[1], 16) == dc.imap_port
                    and int(f[2].rsplit(":", 1)[1], 16) == cport):
                wanted.add(f"socket:[{f[9]}]")
    for pid, _name in dc.child_processes():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return pid
        except OSError:
            continue
    raise AssertionError(f"no Dovecot process owns the server end of port {cport}")


def inotify_inodes(pid: int) -> set[int]:
    """Inode numbers of every inotify watch of process ``pid`` (from /proc fdinfo)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for m in re.finditer(r"^inotify wd:\S+ ino:([0-9a-f]+)", info, re.M):
            out.add(int(m[1], 16))
    return out


def index_log_path(dc: DovecotInstance, user: str, folder: str) -> Path:
    """The folder's ``dovecot.index.log`` for maildir, sdbox and mdbox layouts."""
    loc = dc.config.mail_location
    if loc.startswith("maildir:"):
        base = dc.maildir_folder_path(user, folder)
    else:
        driver = loc.split(":", 1)[0]
        base = dc.home(user) / driver / "mailboxes" / folder.replace(
            dc.config.separator, "/") / "dbox-Mails"
    path = base / "dovecot.index.log"
    assert path.is_file(), f"index log of {user}/{folder} not found at {path}"
    return path


def watches_index_log(dc: DovecotInstance, pid: int, log: Path, settle: float = 1.0) -> bool:
    """Whether ``pid`` watches ``log`` (current inode); polls up to ``settle`` s for True."""
    deadline = time.monotonic() + settle
    while True:
        if os.stat(log).st_ino in inotify_inodes(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def sched_counts(pid: int) -> tuple[int, int]:
    """(ns on CPU, times scheduled) of ``pid`` from /proc/<pid>/schedstat."""
    f = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(f[0]), int(f[2])


#: struct mail_transaction_log_header (Dovecot 2.3): u8 major, u8 minor, u16 hdr_size,
#: u32 indexid, file_seq, prev_file_seq, prev_file_offset, create_stamp, ...
_LOG_HDR = struct.Struct("<BBHIIIII")
_CREATE_STAMP_OFFSET = 20
#: Dovecot rotates a log bigger than 32 KiB whose create_stamp is older than 5 minutes.
_ROTATE_MIN_SIZE = 32 * 1024


def force_index_log_rotation(dc: DovecotInstance, user: str, folder: str, log: Path) -> None:
    """Make Dovecot rotate ``folder``'s index log now (dovecot.index.log -> .log.2).

    Grows the log past 32 KiB with flag toggles from a second session, back-dates
    the log header's create_stamp by an hour, and lets a fresh process (doveadm)
    commit a change: that writer rotates the log. Dovecot 2.3 has no setting for it.
    """
    with IdleClient(dc.host, dc.imap_port, user) as o:
        o.select(folder)
        toggles = 0
        while log.stat().st_size <= _ROTATE_MIN_SIZE + 4096:
            cmds = [f"STORE 1 {'+-'[i % 2]}FLAGS.SILENT (\\Flagged)" for i in range(100)]
            assert set(o.pipeline(cmds)) == {"OK"}
            toggles += len(cmds)
            assert toggles < 20000, f"index log {log} does not grow ({log.stat().st_size} B)"
    with open(log, "r+b") as f:
        major, _minor, hdr_size, *_rest = _LOG_HDR.unpack(f.read(_LOG_HDR.size))
        assert major == 1 and hdr_size >= _CREATE_STAMP_OFFSET + 4, \
            f"unexpected index log header (major {major}, size {hdr_size}) in {log}"
        f.seek(_CREATE_STAMP_OFFSET)
        f.write(struct.pack("<I", int(time.time()) - 3600))
    before = log.stat().st_ino
    dc.doveadm.run("flags", "add", "-u", user, "\\Seen", "mailbox", folder, "1")
    assert log.stat().st_ino != before, f"Dovecot did not rotate {log}"
    assert log.with_name(log.name + ".2").exists()


# --------------------------------------------------------------------------- chats folder
def test_idle_on_chats_gets_exists_for_lmtp_chat(dc):
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "chat_u"))
    c, n = idle_on(dc, u(dc, "chat_u"), CHATS)
    try:
        chat = M.coi_chat(to=dc.address(u(dc, "chat_u")))
        deliver(dc, u(dc, "chat_u"), chat)
        _, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
        assert got == n + 1, f"expected * {n + 1} EXISTS, got * {got} EXISTS"
        end_idle(c)
        status, text, _ = c.command("NOOP")
        assert status == "OK", text
        assert c.exists == n + 1
    finally:
        c.close()
    with dc.imap(u(dc, "chat_u")) as r:
        mids = [m.header("Message-ID") for m in r.fetch_folder(CHATS)]
    assert f"<{chat.message_id}>" in mids
    assert_log_clean(dc, mark)


def test_idle_one_exists_per_delivery_then_burst(dc):
    """Three deliveries one at a time: each gets its own EXISTS (the watch re-arms after a
    notification). Then five at once: EXISTS may be merged, the final count may not lag."""
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "seq_u"))
    c, n = idle_on(dc, u(dc, "seq_u"), CHATS)
    try:
        for i in range(1, 4):
            deliver(dc, u(dc, "seq_u"), M.coi_chat(to=dc.address(u(dc, "seq_u"))))
            _, got = c.wait_exists(n + i, EXISTS_TIMEOUT)
            assert got == n + i, f"delivery {i}: expected * {n + i} EXISTS, got * {got}"
        n += 3
        for _ in range(5):
            deliver(dc, u(dc, "seq_u"), M.coi_chat(to=dc.address(u(dc, "seq_u"))))
        _, got = c.wait_exists(n + 5, EXISTS_TIMEOUT)
        assert got == n + 5
        counts = [int(m[1]) for _, ln in c.seen if (m := re.match(rb"\* (\d+) EXISTS", ln))]
        assert counts == sorted(counts), f"EXISTS went backwards: {counts}"
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


# --------------------------------------------------------------------------- stock paths
def test_idle_on_inbox_of_user_without_coi_gets_plain_mail(dc):
    mark = dc.log.mark()
    c, n = idle_on(dc, u(dc, "plain_u"), "INBOX")
    try:
        deliver(dc, u(dc, "plain_u"), M.plain_mail(to=dc.address(u(dc, "plain_u"))))
        _, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
        assert got == n + 1
        # a chat for a user without COI is ordinary mail in INBOX, and notified as such
        deliver(dc, u(dc, "plain_u"), M.coi_chat(to=dc.address(u(dc, "plain_u"))))
        _, got = c.wait_exists(n + 2, EXISTS_TIMEOUT)
        assert got == n + 2
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


def test_idle_on_inbox_of_enabled_user_with_filter_none_gets_chat(dc):
    mark = dc.log.mark()
    dc.enable_coi(u(dc, "none_u"), "none")
    c, n = idle_on(dc, u(dc, "none_u"), "INBOX")
    try:
        chat = M.coi_chat(to=dc.address(u(dc, "none_u")))
        deliver(dc, u(dc, "none_u"), chat)
        _, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
        assert got == n + 1
        deliver(dc, u(dc, "none_u"), M.plain_mail(to=dc.address(u(dc, "none_u"))))
        _, got = c.wait_exists(n + 2, EXISTS_TIMEOUT)
        assert got == n + 2
        end_idle(c)
    finally:
        c.close()
    with dc.imap(u(dc, "none_u")) as r:
        inbox = r.fetch_folder("INBOX")
    stored = [m for m in inbox if m.header("Message-ID") == f"<{chat.message_id}>"]
    assert len(stored) == 1 and stored[0].has_chat_keyword, [m.short() for m in inbox]
    assert_log_clean(dc, mark)


def test_idle_sees_flag_change_and_expunge_from_another_session(dc):
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "flag_u"))
    deliver(dc, u(dc, "flag_u"), M.coi_chat(to=dc.address(u(dc, "flag_u"))))
    c, n = idle_on(dc, u(dc, "flag_u"), CHATS)
    assert n == 2
    try:
        with dc.imap(u(dc, "flag_u")) as other:
            other.select(CHATS)
            typ, data = other.conn.store("1", "+FLAGS", "(\\Flagged)")
            assert typ == "OK", data
            c.wait_untagged(rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", EXISTS_TIMEOUT)
            typ, data = other.conn.store("1", "+FLAGS", "(\\Deleted)")
            assert typ == "OK", data
            typ, data = other.conn.expunge()
            assert typ == "OK", data
            c.wait_untagged(rb"^\* 1 EXPUNGE", EXISTS_TIMEOUT)
            # and a new message after the expunge is number 2 again
            deliver(dc, u(dc, "flag_u"), M.coi_chat(to=dc.address(u(dc, "flag_u"))))
            _, got = c.wait_exists(2, EXISTS_TIMEOUT)
            assert got == 2
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


def test_idle_on_other_folder_gets_append_from_another_session(dc):
    """A folder outside the default scope (and inside with ``all``): APPEND elsewhere."""
    mark = dc.log.mark()
    with dc.imap(u(dc, "work_u")) as setup:
        setup.create("Work")
    c, n = idle_on(dc, u(dc, "work_u"), "Work")
    try:
        with dc.imap(u(dc, "work_u")) as other:
            typ, data = other.conn.append("Work", None, None, M.plain_mail().raw)
            assert typ == "OK", data
        _, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
        assert got == n + 1
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


def test_idle_again_after_done_and_reselect(dc):
    """DONE, SELECT another folder, IDLE again: notifications follow the new folder."""
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "resel_u"))
    c, n_inbox = idle_on(dc, u(dc, "resel_u"), "INBOX")
    try:
        end_idle(c)
        n = c.select(CHATS)
        c.idle()
        deliver(dc, u(dc, "resel_u"), M.coi_chat(to=dc.address(u(dc, "resel_u"))))
        _, got = c.wait_exists(n + 1, EXISTS_TIMEOUT)
        assert got == n + 1
        end_idle(c)
        assert c.select("INBOX") == n_inbox
        c.idle()
        deliver(dc, u(dc, "resel_u"), M.plain_mail(to=dc.address(u(dc, "resel_u"))))
        _, got = c.wait_exists(n_inbox + 1, EXISTS_TIMEOUT)
        assert got == n_inbox + 1
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


# --------------------------------------------------------------------------- scope
def _scope_cases() -> list[tuple[str, str, bool]]:
    """(user, folder, in scope with mode "chats") for the scope check (base user names)."""
    return [
        ("scope_on", CHATS, True),        # <root>/Chats of an enabled user
        ("scope_on", "INBOX", True),      # INBOX of an enabled user
        ("scope_on", "Work", False),      # any other folder
        ("scope_off", "INBOX", False),    # INBOX of a user without COI
        ("scope_off", CHATS, True),       # <root>/Chats, whoever created it
        ("root_u", "Talk/Chats", True),   # the chats folder under the user's own root
        ("root_u", CHATS, False),         # ... and not the default one
    ]


@pytest.mark.parametrize("dc", MAILDIR_CONFIGS, indirect=True)
def test_fast_watch_is_where_the_setting_says(dc):
    """The imap process serving an IDLE connection watches the folder's index log
    exactly when the folder is in scope. Maildir only: there Dovecot itself watches
    new/ and cur/, never the index log; with dbox Dovecot watches the log itself."""
    mark = dc.log.mark()
    mode = dc.fast_mode
    enable_with_chats_folder(dc, u(dc, "scope_on"))
    dc.enable_coi(u(dc, "root_u"), "active")
    deliver(dc, u(dc, "root_u"), M.coi_chat(to=dc.address(u(dc, "root_u"))))
    with dc.imap(u(dc, "scope_on")) as s:
        s.create("Work")
        assert s.noop() == []
    for user in (u(dc, "scope_off"), u(dc, "root_u")):
        with dc.imap(user) as s:
            s.create(CHATS)
            assert s.noop() == [] and CHATS in s.list_folders()
    # CREATE of the chats folder enables COI (DESIGN §3); scope_off turns
    # it off again (NIL: the site default, off here), keeping the folder.
    with dc.imap(u(dc, "scope_off")) as s:
        s.setmetadata_ok("/private/vendor/vendor.dovecot/coi/config/enabled", None)
        assert s.noop() == []
    wrong = []
    for base, folder, in_chats_scope in _scope_cases():
        user = u(dc, base)
        expect = {"chats": in_chats_scope, "all": True, "no": False}[mode]
        c, _ = idle_on(dc, user, folder)
        try:
            pid = server_pid(dc, c)
            log = index_log_path(dc, user, folder)
            # wait for True only where True is expected; a False needs no settling
            got = watches_index_log(dc, pid, log, settle=1.0 if expect else 0.2)
            if got != expect:
                wrong.append(f"{user} {folder}: index log watched={got}, expected {expect}")
            end_idle(c)
        finally:
            c.close()
    assert not wrong, f"coi_fast_notify={mode}:\n" + "\n".join(wrong)
    assert_log_clean(dc, mark)


# --------------------------------------------------------------------------- robustness
def test_no_busy_loop_after_a_notification(dc):
    """After EXISTS the imap process goes back to sleep: a notify callback that made the
    imap process write its own index log (and so wake itself up again) would spin."""
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "loop_u"))
    c, n = idle_on(dc, u(dc, "loop_u"), CHATS)
    try:
        pid = server_pid(dc, c)
        deliver(dc, u(dc, "loop_u"), M.coi_chat(to=dc.address(u(dc, "loop_u"))))
        c.wait_exists(n + 1, EXISTS_TIMEOUT)
        time.sleep(0.7)  # let stock Dovecot's own delayed callback (0.5 s) pass as well
        cpu0, runs0 = sched_counts(pid)
        time.sleep(1.0)
        cpu1, runs1 = sched_counts(pid)
        assert runs1 - runs0 < 20, f"imap process woke {runs1 - runs0} times in 1 s while idle"
        assert cpu1 - cpu0 < 50_000_000, f"imap process used {(cpu1 - cpu0) / 1e6:.1f} ms CPU"
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)


def test_index_log_rotation_keeps_notifications_coming(dc):
    """When Dovecot rotates the index log (dovecot.index.log -> .log.2, a new file in its
    place), the fast watch must move to the new file, and EXISTS keeps arriving. Maildir
    with coi_fast_notify=no gets EXISTS from Dovecot's watch on new/; with dbox the index
    log is all anyone watches (stock Dovecot's own watch stays on the rotated file until
    mailbox_idle_check_interval, 30 s, polls), so the plugin's watch must follow it."""
    mark = dc.log.mark()
    enable_with_chats_folder(dc, u(dc, "rot_u"))
    c, n = idle_on(dc, u(dc, "rot_u"), CHATS)
    try:
        pid = server_pid(dc, c)
        log = index_log_path(dc, u(dc, "rot_u"), CHATS)
        assert watches_index_log(dc, pid, log) == fast_on(dc)
        force_index_log_rotation(dc, u(dc, "rot_u"), CHATS, log)
        for i in range(1, 3):
            deliver(dc, u(dc, "rot_u"), M.coi_chat(to=dc.address(u(dc, "rot_u"))))
            _, got = c.wait_exists(n + i, EXISTS_TIMEOUT)
            assert got == n + i
        watched = watches_index_log(dc, pid, log)
        assert watched == fast_on(dc), (
            f"after rotation the imap process {'does not watch' if fast_on(dc) else 'watches'} "
            f"the new {log.name} (inode {log.stat().st_ino}; watched inodes "
            f"{sorted(inotify_inodes(pid))}, rotated log inode "
            f"{log.with_name(log.name + '.2').stat().st_ino})")
        end_idle(c)
    finally:
        c.close()
    assert_log_clean(dc, mark)

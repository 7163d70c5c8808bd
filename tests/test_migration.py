"""docs/migration.md, run: every command block of the guide, in order, against
two real instances ("old" and "new", both with the plugin), then checks of
what each path carried (issue 17 items 4 and 5, issue 14's ``doveadm coi``).

Blocks are fenced with an info string ``migration-test:<where>``:
``old-conf`` is the old backend's doveadm service (this test configures the
old instance with it, on 127.0.0.1 and a free port), ``old`` and ``new`` are
shell commands run on that backend: ``doveadm`` there is a wrapper that adds
``-c <that instance's config>`` (and, for ``doveadm coi``, the doveadm plugin
directory, see ``harness/doveadm_coi.py``). A line ending in ``  # TEXT``
must print TEXT. The environment carries ``OLD_DOVEADM``,
``DOVEADM_SECRET``, ``OLD_IMAP_HOST``, ``OLD_IMAP_PORT``, ``BOB_PASSWORD``
and ``CAROL_PASSWORD``, as the guide says.

imapc: ``backup -R`` into a fresh account (bob), ``sync -1 -R`` into an account
already set up with seen mode and mail (carol); the plugin neither re-files
nor moves a migrated ``\\Seen`` INBOX chat, announces nothing, and a second
run is a no-op. Runs under Dovecot 2.3 and 2.4.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import PASSWORD
from tests.harness import messages as M
from tests.harness.coistate import PVT_COI, push_files, raw_coi_entries, subscribe_validated
from tests.harness.doveadm_coi import DOVEADM_PLUGIN_NAME, _module_dir
from tests.harness.dsync import DOVEADM_PASSWORD
from tests.harness.imap import IdleClient
from tests.harness.instance import free_ports
from tests.harness.paths import REPO_ROOT, SYSTEM_MODULE_DIR, find_binary

GUIDE = REPO_ROOT / "docs" / "migration.md"
VERSION = os.environ.get("COI_DOVECOT_VERSION", "2.3")


def guide_blocks() -> list[tuple[str, str]]:
    text = GUIDE.read_text()
    return [(m[1], m[2]) for m in re.finditer(
        r"^```[A-Za-z0-9_-]*[ \t]+migration-test:(\S+)[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S)]


def old_conf(port: int) -> str:
    """The guide's doveadm service block, on loopback and a free port."""
    [body] = [b for where, b in guide_blocks() if where == "old-conf"]
    body = body.replace("10.0.0.1", "127.0.0.1").replace("12345", str(port))
    body = re.sub(r"doveadm_password = \S+", f"doveadm_password = {DOVEADM_PASSWORD}", body)
    if VERSION.startswith("2.4"):
        body = body.replace("inet_listener {", "inet_listener doveadm {").replace("address =", "listen =")
    return body


def wrapper_dir(inst, name: str) -> Path:
    """A directory whose ``doveadm`` runs this instance's doveadm."""
    d = inst.tmpdir / f"bin-{name}"
    d.mkdir(exist_ok=True)
    doveadm = find_binary("doveadm")
    priv, target = _module_dir(inst), SYSTEM_MODULE_DIR / "doveadm"
    script = f"""#!/bin/sh
for arg in "$@"; do
  if [ "$arg" = coi ]; then
    exec unshare --mount --propagation private -- sh -c 'mount --bind "$0" "$1" && shift && exec "$@"' \\
      {shlex.quote(str(priv))} {shlex.quote(str(target))} {shlex.quote(doveadm)} -c {shlex.quote(str(inst.conf_path))} "$@"
  fi
done
exec {shlex.quote(doveadm)} -c {shlex.quote(str(inst.conf_path))} "$@"
"""
    (d / "doveadm").write_text(script)
    (d / "doveadm").chmod(0o755)
    assert (priv / DOVEADM_PLUGIN_NAME).is_symlink()
    return d


def run_block(body: str, bindir: Path, env: dict[str, str], cwd: Path) -> list[str]:
    """Each command line of a block; returns what they printed."""
    outputs = []
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cmd, _, want = line.partition("  # ")
        proc = subprocess.run(["sh", "-c", cmd.strip()], capture_output=True, text=True, cwd=cwd,
                              env=dict(os.environ, **env, PATH=f"{bindir}:{os.environ['PATH']}"),
                              timeout=120)
        assert proc.returncode == 0, f"$ {cmd}\n{proc.stdout}{proc.stderr}"
        assert want.strip() in proc.stdout, f"$ {cmd}: wanted {want!r} in\n{proc.stdout}"
        outputs.append(proc.stdout)
    return outputs


def folders(inst, user: str) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Folder -> [(Message-ID, flags without \\Recent)]; the bare parent
    ``COI`` is left out (dsync may make it a mailbox of its own)."""
    return {f: [((m.header("Message-ID") or "").strip("<> "),
                 tuple(sorted(x for x in m.flags if x != "\\Recent"))) for m in msgs]
            for f, msgs in inst.folders(user, strict=False).items() if f != "COI"}


@pytest.fixture(scope="module")
def sides(dovecot_factory):
    port, = free_ports(1)
    files_old, files_new = push_files("coi-old-"), push_files("coi-new-")
    users = ["alice", "bob", "carol"]
    old = dovecot_factory(users=users, plugin_settings=files_old.settings(), extra_config=old_conf(port))
    new = dovecot_factory(users=users, plugin_settings=files_new.settings())
    for inst, files in ((old, files_old), (new, files_new)):
        inst._chown_mail(files.spool)
    yield old, new, files_old, files_new, port
    files_old.remove()
    files_new.remove()


def test_the_migration_guide_runs_and_each_path_carries_what_it_says(sides, tmp_path):
    old, new, files_old, files_new, port = sides
    # -- the old server: three COI users
    mail = {}
    for user in ("alice", "bob"):
        with old.imap(user) as c:
            c.enable_coi("active")
            subscribe_validated(c, files_old, f"{user}-phone-0001", f"https://push.example.net/{user}")
            c.setmetadata_ok("/private/devicetoken", f"dc-token-{user}", mailbox="INBOX")
        mail[user] = [M.coi_chat(), M.plain_mail()]
        for m in mail[user]:
            old.lmtp_deliver(m.raw, [user])
    # carol on the old server: COI off there, a chat already tagged and read in INBOX
    carol_chat, carol_mail = M.coi_chat(), M.plain_mail()
    for m in (carol_chat, carol_mail):
        old.lmtp_deliver(m.raw, ["carol"])
    old.doveadm.run("flags", "add", "-u", "carol", "\\Seen", "mailbox", "INBOX", "all")
    old.doveadm.run("flags", "add", "-u", "carol", "$Chat", "mailbox", "INBOX", "uid", "1")
    # carol on the new server: set up already, seen mode, mail of her own
    with new.imap("carol") as c:
        c.enable_coi("seen")
    own = M.plain_mail()
    new.lmtp_deliver(own.raw, ["carol"])

    env = {"OLD_DOVEADM": f"tcp:127.0.0.1:{port}", "DOVEADM_SECRET": DOVEADM_PASSWORD,
           "OLD_IMAP_HOST": "127.0.0.1", "OLD_IMAP_PORT": str(old.imap_port),
           "BOB_PASSWORD": PASSWORD, "CAROL_PASSWORD": PASSWORD}
    bins = {"old": wrapper_dir(old, "old"), "new": wrapper_dir(new, "new")}
    blocks = [(w, b) for w, b in guide_blocks() if w in ("old", "new")]
    assert [w for w, _ in blocks] == ["new", "new", "new", "old", "new", "new"], blocks
    records_before = len(files_new.records())
    with IdleClient(new.host, new.imap_port, "carol") as c:
        assert c.select("INBOX") == 1
        for where, body in blocks:
            run_block(body, bins[where], env, tmp_path)
        # the session hears of carol's migrated messages and stays in step;
        # dsync gives her INBOX the old server's UIDVALIDITY, which resets
        # its index, and Dovecot may then end the session (stock behaviour,
        # the guide says so); the plugin moves nothing either way
        try:
            told = c.noop()
            assert any(ln.endswith(b"EXISTS") for ln in told), told
            assert len(c.check_view()) == 3
        except ConnectionError:
            # "dovecot.index reset, view is now inconsistent", then the
            # session's "IMAP session state is inconsistent" line; the log
            # process may write them after the client saw the close
            deadline = time.monotonic() + 10
            while "is inconsistent" not in new.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "is inconsistent" in new.log_text()

    # dsync path: alice's whole state, identical
    assert raw_coi_entries(new, "alice") == raw_coi_entries(old, "alice")
    assert folders(new, "alice") == folders(old, "alice")
    # imapc + export/import: bob's mail and, after the import, his COI state
    assert folders(new, "bob") == folders(old, "bob")
    assert ("$Chat",) in [f for _, f in folders(new, "bob")["COI/Chats"]]
    assert raw_coi_entries(new, "bob") == raw_coi_entries(old, "bob")
    assert any(k.startswith(PVT_COI + "webpush/") for k in raw_coi_entries(new, "bob"))
    # imapc sync -1 into carol's account: both sides' mail, the read chat stays in INBOX
    got = folders(new, "carol")
    assert sorted(got["INBOX"]) == sorted([(carol_chat.message_id, ("$Chat", "\\Seen")),
                                           (carol_mail.message_id, ("\\Seen",)),
                                           (own.message_id, ())])
    assert got.get("COI/Chats", []) == []
    # nothing the moves wrote was announced
    assert len(files_new.records()) == records_before

    # a second run of the imapc pulls is a no-op
    before = {u: folders(new, u) for u in ("bob", "carol")}
    uids = new.doveadm.run("fetch", "-u", "carol", "uid", "mailbox", "INBOX", "all").stdout
    imapc_blocks = [b for w, b in blocks if w == "new" and "imapc:" in b]
    assert len(imapc_blocks) == 2
    for body in imapc_blocks:
        run_block(body, bins["new"], env, tmp_path)
    assert {u: folders(new, u) for u in ("bob", "carol")} == before
    assert new.doveadm.run("fetch", "-u", "carol", "uid", "mailbox", "INBOX", "all").stdout == uids
    assert len(files_new.records()) == records_before

    # the guide's promise: the next chat on the new server is filed and pushed
    chat = M.coi_chat()
    new.lmtp_deliver(chat.raw, ["bob"])
    assert chat.message_id in [m for m, _ in folders(new, "bob")["COI/Chats"]]
    pushes = [r for r in files_new.records() if r.get("type") == "push" and r["user"].startswith("bob")]
    assert [t["subscription_id"] for t in pushes[-1]["webpush"]] == ["bob-phone-0001"]
    for inst in (old, new):
        inst.assert_no_panic_or_fatal()


def test_doveadm_coi_import_refuses_bad_values_and_goes_on(sides, tmp_path):
    old, new, *_ = sides
    doc = ('{"format":"coi-export","version":1,"user":"x","config":{"enabled":"maybe",'
           '"message-filter":"seen"},"devicetokens":{"0000000000000000":'
           '"{\\"token\\":\\"t\\",\\"seen_unix\\":1}"},"webpush-subscriptions":{}}')
    bindir = wrapper_dir(new, "new")
    proc = subprocess.run(["sh", "-c", "doveadm coi import -u alice"], input=doc, capture_output=True,
                          text=True, env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"),
                          timeout=60)
    assert proc.returncode != 0
    assert re.search(r"config/enabled\s+refused: COI enabled accepts only", proc.stdout), proc.stdout
    assert re.search(r"config/message-filter\s+imported", proc.stdout), proc.stdout
    assert re.search(r"devicetokens/0000000000000000\s+refused: device token: the key", proc.stdout)
    assert "coi: refused devicetoken value from import (invalid)" in proc.stderr
    status = subprocess.run(["sh", "-c", "doveadm -f tab coi status -u alice"], capture_output=True,
                            text=True, env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"))
    rows = status.stdout.splitlines()
    row = dict(zip(rows[0].split("\t"), rows[1].split("\t")))
    assert row["message-filter"] == "seen" and row["message-filter-by"] == "user"
    assert row["enabled"] == "yes"  # from the guide's move, untouched by the refused value
    # not a document at all
    bad = subprocess.run(["sh", "-c", "doveadm coi import -u alice"], input="junk", capture_output=True,
                         text=True, env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"))
    assert bad.returncode != 0 and "not a COI export document" in bad.stderr


def test_doveadm_coi_status_enable_disable_reset(sides):
    _, new, *_ = sides
    bindir = wrapper_dir(new, "new")

    def coi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["doveadm", *args], capture_output=True, text=True,
                              env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"), timeout=60)

    def status_all() -> dict[str, dict[str, str]]:
        out = coi("-f", "tab", "coi", "status", "-A").stdout.splitlines()
        rows = [dict(zip(out[0].split("\t"), ln.split("\t"))) for ln in out[1:]]
        return {r.get("username") or r.get("Username") or r.get(""): r for r in rows}

    assert set(status_all()) == {"alice", "bob", "carol"}
    # as a client would: disable stores the user's no; reset returns to the site default
    with IdleClient(new.host, new.imap_port, "carol") as c:
        assert c.select("INBOX") >= 1
        assert coi("coi", "disable", "-u", "carol").returncode == 0
        row = status_all()["carol"]
        assert (row["enabled"], row["enabled-by"]) == ("no", "user")
        chat = M.coi_chat()
        new.lmtp_deliver(chat.raw, ["carol"])
        assert any(ln.endswith(b"EXISTS") for ln in c.noop())  # off: the chat stays in INBOX
        assert coi("coi", "reset", "-u", "carol").returncode == 0
        row = status_all()["carol"]
        assert (row["enabled"], row["enabled-by"]) == ("no", "default")
        assert coi("coi", "enable", "-u", "carol", "-m", "active").returncode == 0
        later = M.coi_chat()
        new.lmtp_deliver(later.raw, ["carol"])
        assert not any(ln.endswith(b"EXISTS") for ln in c.noop())  # filed: INBOX hears nothing
    row = status_all()["carol"]
    assert (row["enabled"], row["enabled-by"], row["message-filter"]) == ("yes", "user", "active")
    assert row["chats-folder"] == "COI/Chats" and row["chats-folder-exists"] == "yes"
    bad = coi("coi", "enable", "-u", "carol", "-m", "sometimes")
    assert bad.returncode != 0 and "message-filter" in bad.stderr

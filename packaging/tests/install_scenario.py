#!/usr/bin/python3
"""The operator's first hour, inside a fresh Debian 12 or 13 system container.

Run by packaging/install-test inside a systemd-nspawn container booted from a
debootstrap root (Dovecot from Debian: 2.3 on Debian 12, 2.4 on Debian 13;
systemd as PID 1, a private network with only loopback). Expects
/coi-test/debs/*.deb (the packages under test), /coi-test/upgrade/*.deb (the
same with a higher version), /coi-test/receiver.py (the tests' webhook
receiver, stdlib only) and /coi-test/dovecot-2.4.md (docs/dovecot-2.4.md,
whose marked blocks step 6b carries out on 2.4).

Steps, each of which fails the run with a message saying what was wrong:
  1. a mail server as an operator has it: Dovecot from its packaged
     configuration (Sieve switched on in 20-lmtp.conf, and on 2.4 the
     personal script in 90-sieve.conf, the way their comments suggest), plus
     test overrides for loopback only: listen address, an LMTP TCP listener
     on 127.0.0.1:24; two system users;
  2. dpkg -i of both packages: users, groups, directories, modes, the service
     running under systemd, Dovecot reloaded with the plugin;
  3. systemd-analyze verify and security on the packaged units;
  4. the packaged sidecar config plus one webhook to a receiver on loopback
     and Web Push switched on; restart and reload under systemd;
  5. COI switched on per user with doveadm METADATA (alice) and with
     `doveadm coi enable` (bob, the packaged doveadm plugin symlink), read
     back with `doveadm coi status`; chats delivered over
     LMTP to two users (different uids: both append to one spool), found over
     IMAP in COI/Chats with $Chat, a Sieve fileinto rule still winning, plain
     mail untouched; signed webhooks received; /metrics scraped; the VAPID
     key pair's modes and the WEBPUSH capability;
  5b. coi-sidecar status as root: running (pid = systemd's MainPID),
     healthy, the webhook endpoint's last success; with the service stopped,
     exit 3 and the spool lag of a chat delivered meanwhile; started again,
     the lag is taken in, and no file the service needs became root's;
  5c. fleet mode: coi-sidecar-dispatch.service installed but not enabled;
     with a NATS JetStream server (the host's nats-server, a transient
     unit) and /etc/coi/dispatch.toml as docs/fleet.md shows, enabled and
     started; the sidecar switched to publishing; a chat's signed webhook
     arrives through the stream and the dispatcher; the sidecar switched
     back;
  6. upgrade to a higher version: edited conffile kept, module replaced by
     rename, sidecar and the enabled dispatcher restarted, delivery and
     webhooks still working;
  6b. (2.4) docs/dovecot-2.4.md, from a 2.3 configuration: each 2.3 line it
     shows is refused or read as it says, each 2.4 block makes doveconf print
     what it says, its 2.4 settings are applied
     to coi-settings.conf.ext, every command it shows runs and prints what it
     says, and a chat to a user without METADATA follows those settings;
  7. dpkg -r: Dovecot restarts and delivers without the plugin (on 2.4 with
     the operator's coi_* settings still in the kept conffile);
  8. dpkg -P: configuration and state gone (the operator's own
     dispatch.toml stays), Dovecot still works.
"""

from __future__ import annotations

import grp
import hashlib
import importlib.util
import imaplib
import json
import os
import pwd
import re
import shlex
import smtplib
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path

TEST = Path("/coi-test")
USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "dave": "dave-pw-3"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
COI_CONFIG = "/private/vendor/vendor.dovecot/coi/config/"
PLUGIN = Path("/usr/lib/dovecot/modules/lib95_coi_plugin.so")
SNIPPET = Path("/etc/dovecot/conf.d/95-coi.conf")
LOAD_CONF = Path("/var/lib/dovecot-coi/load.conf")
SIDECAR_TOML = Path("/etc/coi/sidecar.toml")
# Dovecot 2.4 only: the config module and the operator's coi_* settings.
SETTINGS_MODULE = Path("/usr/lib/dovecot/modules/settings/libcoi_settings.so")
SETTINGS_EXT = Path("/etc/dovecot/conf.d/coi-settings.conf.ext")
DOC_24 = TEST / "dovecot-2.4.md"
METRICS_URL = "http://127.0.0.1:9854/metrics"
# Fleet mode (step 5c): the dispatcher's own config, state and /metrics, and
# a single-node NATS server (the host's nats-server binary, copied in by
# packaging/install-test).
DISPATCH_TOML = Path("/etc/coi/dispatch.toml")
DISPATCH_STATE = Path("/var/lib/coi-sidecar-dispatch")
DISPATCH_METRICS_URL = "http://127.0.0.1:9855/metrics"
NATS_BIN = TEST / "nats-server"
NATS_PORT = 4222
NATS_UNIT = "coi-test-nats"
LMTP = ("127.0.0.1", 24)
IMAP = ("127.0.0.1", 143)

OVERRIDES = """\
# install test only: loopback, LMTP over TCP
listen = 127.0.0.1
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 24
  }
}
"""
# 2.4 names a listener's address "listen".
OVERRIDES_24 = OVERRIDES.replace("    address = ", "    listen = ")

#: Set by main(): the Dovecot in the container is 2.4 (Debian 13).
V24 = False


def load_receiver():
    spec = importlib.util.spec_from_file_location("receiver", TEST / "receiver.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["receiver"] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------- helpers


class Failed(Exception):
    """A check failed; the message says which and why."""


def step(title: str) -> None:
    print(f"\n--- {title}", flush=True)


def ok(text: str) -> None:
    print(f"  ok  {text}", flush=True)


def check(cond: bool, text: str, detail: str = "") -> None:
    if not cond:
        raise Failed(f"{text}{': ' + detail if detail else ''}")
    ok(text)


def run(*cmd: str, check_rc: bool = True, input: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, input=input, env=full_env)
    if check_rc and p.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def out(*cmd: str) -> str:
    return run(*cmd).stdout.strip()


def active(unit: str) -> str:
    return run("systemctl", "is-active", unit, check_rc=False).stdout.strip()


def mode_of(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return (oct(stat.S_IMODE(st.st_mode))[2:].rjust(4, "0"), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def restart_dovecot() -> None:
    # dpkg's triggers restarted Dovecot moments ago; on 2.4 (fast starts)
    # the run can pass systemd's default 5 starts in 10 s, which is the
    # test's haste, not a fault: reset the counter first.
    run("systemctl", "reset-failed", "dovecot", check_rc=False)
    run("systemctl", "restart", "dovecot")


def journal_since(unit: str, since: float) -> str:
    return run("journalctl", "-u", unit, "--no-pager", "-o", "cat",
               f"--since=@{since:.0f}", check_rc=False).stdout


def wait_for(cond, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def message(to: str, subject: str, chat: bool) -> tuple[bytes, str]:
    m = EmailMessage()
    mid = (f"chat$install.{uuid.uuid4().hex}@example.org" if chat
           else f"{uuid.uuid4().hex}@example.org")
    m["From"] = "Carol <carol@example.org>"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    m["Message-ID"] = f"<{mid}>"
    if chat:
        m["Chat-Version"] = "1.0"
    m.set_content(f"install test: {subject}\n")
    return m.as_bytes(), f"<{mid}>"


def lmtp_deliver(user: str, raw: bytes) -> None:
    with smtplib.LMTP(*LMTP, timeout=30) as s:
        refused = s.sendmail("carol@example.org", [user], raw)
    if refused:
        raise Failed(f"LMTP refused {user}: {refused}")


def imap_find(user: str, message_id: str) -> list[tuple[str, str]]:
    """(folder, flags) of every copy of message_id in user's mailboxes."""
    found = []
    c = imaplib.IMAP4(*IMAP, timeout=30)
    try:
        c.login(user, USERS[user])
        typ, boxes = c.list()
        names = []
        for line in boxes or []:
            text = line.decode()
            m = re.match(r'^\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', text)
            if m and "\\Noselect" not in m.group("attrs"):
                names.append(m.group("name").strip('"'))
        for name in names:
            c.select(f'"{name}"', readonly=True)
            typ, data = c.search(None, "HEADER", "Message-ID", message_id)
            for num in (data[0] or b"").split():
                typ, fl = c.fetch(num, "(FLAGS)")
                flags = re.search(rb"FLAGS \(([^)]*)\)", fl[0]).group(1).decode()
                found.append((name, flags))
        c.logout()
    finally:
        try:
            c.shutdown()
        except OSError:
            pass
    return found


def imap_capabilities(user: str) -> set[str]:
    c = imaplib.IMAP4(*IMAP, timeout=30)
    try:
        c.login(user, USERS[user])
        typ, data = c.capability()
        c.logout()
        return set(data[0].decode().upper().split())
    finally:
        try:
            c.shutdown()
        except OSError:
            pass


def metrics(url: str = METRICS_URL) -> dict[str, float]:
    """Every sample of /metrics as 'name{labels}' -> value (labels as exposed)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def dovecot_problems(since: float) -> list[str]:
    bad = []
    for line in journal_since("dovecot", since).splitlines():
        if re.search(r"(Panic|Fatal|Error):", line) or \
                (" coi:" in line and re.search(r"Warning:", line)):
            bad.append(line)
    return bad


def webhooks_for(receiver, message_id: str) -> list:
    hits = []
    for req in receiver.delivered():
        try:
            data = req.json().get("data", {})
        except ValueError:
            continue
        if data.get("message_id") in (message_id, message_id.strip("<>")):
            hits.append((req, data))
    return hits


# --------------------------------------------------------------------- steps


def uncomment(path: Path, block: str, what: str) -> None:
    """Removes the leading '#' of every line of `block` (as found in `path`)."""
    text = path.read_text()
    commented = block
    plain = "\n".join(line.replace("#", "", 1) for line in block.split("\n"))
    check(commented in text, f"{path.name}: {what}")
    path.write_text(text.replace(commented, plain))


def prepare_mail_server() -> None:
    if V24:
        step("1. a Debian 13 mail server (Dovecot 2.4): packaged config, Sieve on for LMTP, users")
        uncomment(Path("/etc/dovecot/conf.d/20-lmtp.conf"),
                  "  #mail_plugins {\n  #  sieve = yes\n  #}\n",
                  "mail_plugins { sieve = yes } (as its comment suggests)")
        uncomment(Path("/etc/dovecot/conf.d/90-sieve.conf"),
                  "#sieve_script personal {\n#  driver = file\n#  path = ~/sieve\n"
                  "#  active_path = ~/.dovecot.sieve\n#}\n",
                  "sieve_script personal { ... ~/.dovecot.sieve } (as its comment suggests)")
        Path("/etc/dovecot/conf.d/99-install-test.conf").write_text(OVERRIDES_24)
    else:
        step("1. a Debian 12 mail server: packaged Dovecot config, Sieve on for LMTP, users")
        lmtp_conf = Path("/etc/dovecot/conf.d/20-lmtp.conf")
        text = lmtp_conf.read_text()
        new = text.replace("  #mail_plugins = $mail_plugins\n", "  mail_plugins = $mail_plugins sieve\n")
        check(new != text, "20-lmtp.conf: mail_plugins = $mail_plugins sieve (as its comment suggests)")
        lmtp_conf.write_text(new)
        Path("/etc/dovecot/conf.d/99-install-test.conf").write_text(OVERRIDES)
    for user, password in USERS.items():
        run("useradd", "--create-home", "--shell", "/bin/bash", user)
        run("chpasswd", input=f"{user}:{password}\n")
    # bob's own Sieve rule must keep winning over COI's filing.
    sieve = Path("/home/bob/.dovecot.sieve")
    sieve.write_text('require ["fileinto", "mailbox"];\n'
                     'if header :contains "subject" "sieve-rule" { fileinto :create "Sieved"; }\n')
    bob = pwd.getpwnam("bob")
    os.chown(sieve, bob.pw_uid, bob.pw_gid)
    run("systemctl", "restart", "dovecot")
    check(active("dovecot") == "active", "Dovecot runs with the packaged config + overrides")


def install(debs: list[str]) -> float:
    step("2. dpkg -i dovecot-coi coi-sidecar")
    since = time.time()
    p = run("dpkg", "-i", *debs)
    print("  " + "\n  ".join(p.stdout.strip().splitlines()[-6:]))
    for pkg in ("dovecot-coi", "coi-sidecar"):
        status = out("dpkg-query", "-W", "-f=${Status}", pkg)
        check(status == "install ok installed", f"{pkg}: {status}")
    check(PLUGIN.is_file(), f"{PLUGIN} installed")
    check(LOAD_CONF.is_file(), f"{LOAD_CONF} written by postinst")
    check(mode_of(SNIPPET) == ("0644", "root", "root"), f"{SNIPPET} 0644 root:root")
    conffiles = out("dpkg-query", "-W", "-f=${Conffiles}", "dovecot-coi", "coi-sidecar")
    check(str(SNIPPET) in conffiles and str(SIDECAR_TOML) in conffiles,
          "95-coi.conf and sidecar.toml are conffiles")
    check(str(LOAD_CONF) not in conffiles, "load.conf is not a conffile")
    if V24:
        check(str(SETTINGS_EXT) in conffiles, "coi-settings.conf.ext is a conffile")
        check(SETTINGS_MODULE.is_file(), f"{SETTINGS_MODULE} installed")
        # Boolean lists: the global block adds coi; the lmtp filter adds
        # sieve on top (the deliveries in step 5 show both at work).
        check(out("doveconf", "-h", "mail_plugins").splitlines() == ["coi = yes"],
              "mail_plugins { coi = yes }")
        check("sieve = yes" in out("doveconf", "-f", "protocol=lmtp", "-h", "mail_plugins"),
              "the operator's sieve is still in lmtp's mail_plugins")
        check(out("doveconf", "-h", "mail_access_groups").splitlines() == ["coi-events = yes"],
              "mail_access_groups { coi-events = yes }")
        check(out("doveconf", "coi_mailbox_root") == "coi_mailbox_root = COI",
              "Dovecot's config process knows the coi_* settings (settings module)")
    else:
        for proto in ("lmtp", "lda", "imap", "doveadm"):
            plugins = out("doveconf", "-f", f"protocol={proto}", "-h", "mail_plugins").split()
            check("coi" in plugins, f"protocol {proto}: mail_plugins = {' '.join(plugins)}")
        lmtp_plugins = out("doveconf", "-f", "protocol=lmtp", "-h", "mail_plugins").split()
        check("sieve" in lmtp_plugins, "the operator's sieve is still loaded for lmtp")
        check(out("doveconf", "-h", "mail_access_groups").split() == ["coi-events"],
              "mail_access_groups = coi-events")
    warnings = run("doveconf", "-n", check_rc=False).stderr.strip()
    check(not warnings, "doveconf prints no warning", warnings)
    # Users, groups, directories.
    sidecar_user = pwd.getpwnam("coi-sidecar")
    check(sidecar_user.pw_uid < 1000 and sidecar_user.pw_shell.endswith("nologin"),
          f"system user coi-sidecar (uid {sidecar_user.pw_uid}, {sidecar_user.pw_shell})")
    grp.getgrnam("coi-events")
    ok("group coi-events exists")
    check(mode_of(Path("/var/spool/coi")) == ("2770", "coi-sidecar", "coi-events"),
          "/var/spool/coi 2770 coi-sidecar:coi-events", str(mode_of(Path("/var/spool/coi"))))
    check(mode_of(SIDECAR_TOML) == ("0640", "root", "coi-sidecar"),
          "/etc/coi/sidecar.toml 0640 root:coi-sidecar", str(mode_of(SIDECAR_TOML)))
    check(active("coi-sidecar") == "active", "coi-sidecar.service started (Type=notify: READY=1 arrived)")
    check(out("systemctl", "is-enabled", "coi-sidecar") == "enabled", "coi-sidecar.service enabled")
    check(mode_of(Path("/var/lib/coi-sidecar"))[0] == "0755", "/var/lib/coi-sidecar 0755 (traversable)")
    sock = Path("/run/coi-sidecar/events.sock")
    check(sock.is_socket() and mode_of(sock) == ("0660", "coi-sidecar", "coi-events"),
          "doorbell socket 0660 coi-sidecar:coi-events",
          str(mode_of(sock)) if sock.exists() else "missing")
    denied = run("runuser", "-u", "alice", "--", "cat", str(SIDECAR_TOML), check_rc=False)
    check(denied.returncode != 0, "a mail user cannot read the sidecar config (webhook secrets)")
    p = run("runuser", "-u", "coi-sidecar", "--", "coi-sidecar", "check-config",
            "--config", str(SIDECAR_TOML))
    ok(f"packaged config is valid: {p.stdout.strip()}")
    check(active("dovecot") == "active", "Dovecot still runs (reloaded by postinst)")
    return since


def systemd_checks() -> None:
    step("3. systemd-analyze verify / security")
    for unit in ("coi-sidecar.service", "coi-sidecar-dispatch.service"):
        p = run("systemd-analyze", "verify", f"/lib/systemd/system/{unit}", check_rc=False)
        msgs = (p.stdout + p.stderr).strip()
        check(p.returncode == 0 and not msgs, f"systemd-analyze verify {unit}: clean", msgs)
        p = run("systemd-analyze", "security", "--no-pager", unit, check_rc=False)
        m = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", p.stdout)
        check(m is not None, f"systemd-analyze security {unit} ran", p.stdout[-500:] + p.stderr)
        score = float(m.group(1))
        print(f"  systemd-analyze security exposure of {unit}: {score}")
        check(score < 2.0, f"exposure {score} < 2.0")


def configure_sidecar(receiver) -> None:
    step("4. the packaged sidecar config + one webhook to a loopback receiver + Web Push on")
    before = SIDECAR_TOML.read_text()
    check(re.search(r"^\s*\[\[webhook\]\]", before, re.M) is None, "no webhook is active by default")
    check(not Path("/var/lib/coi-sidecar/webpush/vapid-public.pem").exists(),
          "no VAPID key before Web Push is enabled")
    SIDECAR_TOML.write_text(before + f"""
# added by the install test, as an operator would
[delivery]
allow_private_addresses = true

[webpush]
enabled = true
vapid_subject = "mailto:postmaster@example.org"

[[webhook]]
name = "install-test"
url = "{receiver.url('/coi/events')}"
secrets = ["{SECRET}"]
retry_schedule_secs = [1, 1, 1, 1, 1]
""")
    pid_before = out("systemctl", "show", "-P", "MainPID", "coi-sidecar")
    run("systemctl", "restart", "coi-sidecar")
    check(active("coi-sidecar") == "active", "coi-sidecar restarted with the webhook")
    check(out("systemctl", "show", "-P", "MainPID", "coi-sidecar") != pid_before, "new MainPID")
    wait_for(lambda: metric(metrics(), "coi_build_info") == 1, 10, "/metrics")
    ok("/metrics answers")
    since = time.time()
    pid = out("systemctl", "show", "-P", "MainPID", "coi-sidecar")
    run("systemctl", "reload", "coi-sidecar")
    wait_for(lambda: "configuration reloaded" in journal_since("coi-sidecar", since - 1), 10,
             "'configuration reloaded' after systemctl reload")
    check(out("systemctl", "show", "-P", "MainPID", "coi-sidecar") == pid and active("coi-sidecar") == "active",
          "systemctl reload (SIGHUP) reloads in place")


def deliver_and_check(receiver, since: float) -> None:
    step("5. COI per user, chats over LMTP, IMAP, Sieve, webhooks, metrics")
    link = Path("/usr/lib/dovecot/modules/doveadm/lib10_doveadm_coi_plugin.so")
    check(link.is_symlink() and os.readlink(link) == "../lib95_coi_plugin.so",
          "the doveadm plugin is a symlink to the mail plugin", str(link))
    for key, value in (("enabled", "yes"), ("message-filter", "active")):
        run("doveadm", "mailbox", "metadata", "set", "-u", "alice", "-s", "", COI_CONFIG + key, value)
    run("doveadm", "coi", "enable", "-u", "bob", "-m", "active")
    for user in ("alice", "bob"):
        got = out("doveadm", "mailbox", "metadata", "get", "-u", user, "-s", "", COI_CONFIG + "enabled")
        check(got == "yes", f"{user}: COI enabled in server METADATA (doveadm)")
        rows = out("doveadm", "-f", "tab", "coi", "status", "-u", user).splitlines()
        status = dict(zip(rows[0].split("\t"), rows[1].split("\t")))
        check(status.get("enabled") == "yes" and status.get("message-filter") == "active"
              and status.get("chats-folder-exists") == "yes",
              f"{user}: doveadm coi status shows COI on, active, COI/Chats there", str(status))
    caps = imap_capabilities("alice")
    check("COI" in caps, "IMAP CAPABILITY after login has COI")

    chat_a, mid_a = message("alice", "install-test chat for alice", chat=True)
    plain_a, mid_plain = message("alice", "install-test plain mail", chat=False)
    chat_b, mid_b = message("bob", "install-test chat for bob", chat=True)
    sieved_b, mid_sieved = message("bob", "sieve-rule chat for bob", chat=True)
    for user, raw in (("alice", chat_a), ("alice", plain_a), ("bob", chat_b), ("bob", sieved_b)):
        lmtp_deliver(user, raw)
    ok("4 messages accepted over LMTP (250)")
    chat_lda, mid_lda = message("alice", "install-test chat through dovecot-lda", chat=True)
    run("/usr/lib/dovecot/dovecot-lda", "-d", "alice", "-f", "carol@example.org",
        input=chat_lda.decode())
    ok("1 chat delivered by dovecot-lda (run as root, as an MTA's pipe would)")

    where = imap_find("alice", mid_a)
    check(len(where) == 1 and where[0][0] == "COI/Chats" and "$Chat" in where[0][1],
          "alice's chat is in COI/Chats with $Chat (IMAP)", str(where))
    where = imap_find("alice", mid_plain)
    check(len(where) == 1 and where[0][0] == "INBOX" and "$Chat" not in where[0][1],
          "alice's plain mail is in INBOX without $Chat", str(where))
    where = imap_find("alice", mid_lda)
    check(len(where) == 1 and where[0][0] == "COI/Chats" and "$Chat" in where[0][1],
          "alice's dovecot-lda chat is in COI/Chats with $Chat", str(where))
    where = imap_find("bob", mid_b)
    check(len(where) == 1 and where[0][0] == "COI/Chats" and "$Chat" in where[0][1],
          "bob's chat is in COI/Chats with $Chat", str(where))
    where = imap_find("bob", mid_sieved)
    check(len(where) == 1 and where[0][0] == "Sieved" and "$Chat" in where[0][1],
          "bob's Sieve fileinto still wins, and the copy is tagged $Chat", str(where))

    events = Path("/var/spool/coi/events.log")
    check(events.exists() and mode_of(events)[2:] == ("coi-events",) and mode_of(events)[0] == "0660",
          "spool events.log 0660, group coi-events, though mail processes run with umask 0077",
          str(mode_of(events)) if events.exists() else "missing")
    for mid, user, folder in ((mid_a, "alice", "COI/Chats"), (mid_lda, "alice", "COI/Chats"),
                              (mid_b, "bob", "COI/Chats"), (mid_sieved, "bob", "Sieved")):
        hits = wait_for(lambda: webhooks_for(receiver, mid), 30, f"the webhook of {user}'s chat")
        req, data = hits[0]
        receiver_mod = sys.modules["receiver"]
        receiver_mod.verify(SECRET, req.headers, req.body)
        check(data.get("user") == user and data.get("folder") == folder and data.get("kind") == "chat",
              f"signed webhook for {user}'s chat: folder {data.get('folder')}, kind {data.get('kind')}",
              json.dumps(data))

    def delivered_all():
        m = metrics()
        done = metric(m, "coi_delivery_attempts_total", endpoint="install-test", outcome="success")
        return m if done >= 5 else None
    s = wait_for(delivered_all, 20, "5 successful webhook attempts in /metrics")
    for name, labels, least in (
            ("coi_intake_events_total", {"kind": "chat"}, 4),
            ("coi_intake_events_total", {"kind": "not-chat"}, 1),
            ("coi_plugin_messages_routed_total", {}, 3),
            ("coi_plugin_messages_tagged_total", {}, 4),
            ("coi_delivery_attempts_total", {"endpoint": "install-test", "outcome": "success"}, 5)):
        value = metric(s, name, **labels)
        check(value >= least, f"{name}{labels or ''} = {value:g} (>= {least})")
    check(metric(s, "coi_intake_datagrams_total", outcome="accepted") >= 1,
          "doorbells from Dovecot's mail processes reached the socket (outcome=accepted)",
          str(metric(s, "coi_intake_datagrams_total", outcome="accepted")))
    check(metric(s, "coi_intake_datagrams_total", outcome="peer") == 0, "no doorbell refused")
    check(metric(s, "coi_plugin_events_dropped_total") == 0, "the plugin dropped no event")
    check(metric(s, "coi_plugin_fallbacks_total") == 0, "no plugin fallback")
    check(metric(s, "process_start_time_seconds") > 0, "process metrics (process_start_time_seconds) are served")

    # [webpush] enabled: the sidecar made its key pair in the state dir, and
    # the imap processes (running as the users) can read the public half.
    vapid = Path("/var/lib/coi-sidecar/webpush/vapid-public.pem")
    private = Path("/var/lib/coi-sidecar/webpush/vapid-private.pem")
    check(vapid.is_file() and mode_of(vapid) == ("0644", "coi-sidecar", "coi-sidecar"),
          "VAPID public key written, 0644", str(mode_of(vapid)) if vapid.exists() else "missing")
    check(private.is_file() and mode_of(private)[0] == "0600", "VAPID private key 0600")
    p = run("runuser", "-u", "alice", "--", "cat", str(vapid), check_rc=False)
    check(p.returncode == 0 and "PUBLIC KEY" in p.stdout, "a mail user can read the VAPID public key")
    p = run("runuser", "-u", "alice", "--", "cat", str(private), check_rc=False)
    check(p.returncode != 0, "a mail user cannot read the VAPID private key")
    check("WEBPUSH" in imap_capabilities("alice"), "IMAP CAPABILITY has WEBPUSH")
    problems = dovecot_problems(since)
    check(not problems, "Dovecot logged no error, fatal or coi warning", "\n".join(problems))


def status_json() -> tuple[int, dict]:
    p = run("coi-sidecar", "status", "--json", check_rc=False)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError as exc:
        raise Failed(f"coi-sidecar status --json printed no JSON ({exc}): {p.stdout}{p.stderr}") from None


def sidecar_status(receiver) -> None:
    step("5b. coi-sidecar status (as root), running and stopped")
    code, st = status_json()
    check(code == 0, "status exits 0: running and healthy", json.dumps(st["daemon"]))
    pid = int(out("systemctl", "show", "-P", "MainPID", "coi-sidecar"))
    check(st["daemon"]["running"] and st["daemon"]["pid"] == pid, f"daemon running, pid {pid} = systemd's MainPID")
    hz = st["daemon"]["healthz"]
    check(hz["status"] == 200 and hz["address"] == "127.0.0.1:9854", f"/healthz {hz}")
    ep = {e["name"]: e for e in st["endpoints"]}
    hook = ep.get("install-test") or {}
    check(hook.get("state") == "ok" and hook.get("last_success") is not None
          and hook.get("consecutive_failures") == 0 and hook.get("pending") == 0,
          "webhook endpoint install-test: ok, last success recorded, nothing pending", json.dumps(hook))
    check(hook.get("target") == receiver.url("/coi/events").rsplit("/", 2)[0],
          f"its target shows scheme, host and port only: {hook.get('target')}")
    check({"push:webpush", "push:validation"} <= set(ep), "the Web Push channels are listed", str(sorted(ep)))
    check(st["queue"] is not None and st["queue"]["schema_version"] == 3, "queue read (schema 3)")
    check(st["spool"]["lag_bytes"] == 0, "spool: nothing waiting to be taken in", json.dumps(st["spool"]))
    text = out("coi-sidecar", "status")
    check(f"running, pid {pid}" in text and "install-test [webhook]" in text and ": OK" in text,
          "the text form says the same", text)
    man = run("sh", "-c", "zcat /usr/share/man/man1/coi-sidecar.1.gz").stdout
    check(re.search(r"^status\b.*\n.*daemon runs", man, re.M) is not None,
          "the man page (help2man) lists the status command", man[:2000])

    run("systemctl", "stop", "coi-sidecar")
    raw, mid = message("alice", "install-test chat while the sidecar is stopped", chat=True)
    lmtp_deliver("alice", raw)
    code, st = status_json()
    check(code == 3 and not st["daemon"]["running"] and st["daemon"]["healthz"] is None,
          "with the service stopped: exit 3, not running", json.dumps(st["daemon"]))
    check(st["spool"]["lag_bytes"] > 0,
          f"the chat delivered meanwhile waits in the spool: lag {st['spool']['lag_bytes']} bytes")
    check(st["queue"] is not None and st["endpoints"], "the queue is read with the daemon stopped")
    strangers = [f"{q} ({mode_of(q)[1]})" for q in Path("/var/lib/coi-sidecar").rglob("*")
                 if mode_of(q)[1] != "coi-sidecar"]
    check(not strangers, "status (as root) left no file the service cannot use", ", ".join(strangers))
    run("systemctl", "start", "coi-sidecar")
    check(active("coi-sidecar") == "active", "coi-sidecar started again")
    wait_for(lambda: webhooks_for(receiver, mid), 30, "the webhook of the chat delivered while stopped")
    ok("its webhook arrived after the start")
    code, st = wait_for(lambda: (lambda r: r if r[0] == 0 and r[1]["spool"]["lag_bytes"] == 0 else None)(status_json()),
                        20, "status: running, lag 0")
    ok("status: running again, spool lag 0")


def fleet_mode(receiver) -> None:
    step("5c. fleet mode: the packaged coi-sidecar-dispatch.service behind a NATS JetStream server")
    unit = "coi-sidecar-dispatch"
    check(run("systemctl", "is-enabled", unit, check_rc=False).stdout.strip() == "disabled"
          and active(unit) == "inactive", "installed, not enabled and not started by the package")
    run("systemd-run", f"--unit={NATS_UNIT}", "--property=StateDirectory=coi-test-nats",
        str(NATS_BIN), "-js", "-a", "127.0.0.1", "-p", str(NATS_PORT), "-sd", "/var/lib/coi-test-nats")

    def nats_up():
        try:
            socket.create_connection(("127.0.0.1", NATS_PORT), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(nats_up, 20, "nats-server listening")
    jetstream = f"""
[jetstream]
servers = ["nats://127.0.0.1:{NATS_PORT}"]
replicas = 1
"""
    # As docs/fleet.md says: the dispatcher has the same webhook section, its
    # own state_dir and metrics listener.
    DISPATCH_TOML.write_text(f"""# written by the install test, as an operator would (docs/fleet.md)
state_dir = "{DISPATCH_STATE}"

[metrics]
listen = "127.0.0.1:9855"

[delivery]
allow_private_addresses = true

[[webhook]]
name = "install-test"
url = "{receiver.url('/coi/events')}"
secrets = ["{SECRET}"]
retry_schedule_secs = [1, 1, 1, 1, 1]
{jetstream}""")
    run("coi-sidecar", "check-config", "--config", str(DISPATCH_TOML))
    run("systemctl", "enable", "--now", unit)
    check(active(unit) == "active", f"systemctl enable --now {unit}: active (Type=notify: READY sent)")
    wait_for(lambda: metric(metrics(DISPATCH_METRICS_URL), "coi_build_info") == 1, 10, "the dispatcher's /metrics")
    ok("the dispatcher's /metrics answers on its own port")
    check(mode_of(DISPATCH_STATE)[1:] == ("coi-sidecar", "coi-sidecar") and mode_of(DISPATCH_STATE)[0] == "0750",
          f"{DISPATCH_STATE}: its own state directory, 0750 coi-sidecar", str(mode_of(DISPATCH_STATE)))

    local_config = SIDECAR_TOML.read_text()
    SIDECAR_TOML.write_text(local_config + '\n[queue]\nengine = "jetstream"\n' + jetstream)
    run("systemctl", "restart", "coi-sidecar")
    check(active("coi-sidecar") == "active", "coi-sidecar restarted as a publisher ([queue] engine = jetstream)")
    raw, mid = message("alice", "install-test chat through the fleet", chat=True)
    lmtp_deliver("alice", raw)
    hits = wait_for(lambda: webhooks_for(receiver, mid), 30, "the webhook of a chat sent through NATS")
    req, data = hits[0]
    sys.modules["receiver"].verify(SECRET, req.headers, req.body)
    check(data.get("user") == "alice" and data.get("folder") == "COI/Chats",
          "signed webhook of alice's chat, published by the backend, sent by the dispatcher", json.dumps(data))
    published = metric(metrics(), "coi_fleet_published_events_total", result="stored")
    check(published >= 1, f"the backend published to the stream: stored {published:g}")
    acked = wait_for(lambda: metric(metrics(DISPATCH_METRICS_URL), "coi_fleet_acked_messages_total",
                                    outcome="delivered"), 20, "the dispatcher's acknowledgement")
    check(acked >= 1, f"the dispatcher acknowledged it as delivered: {acked:g}")

    # Back to the local queue for the steps after; the dispatcher stays
    # enabled and running so that the upgrade must restart it.
    SIDECAR_TOML.write_text(local_config)
    run("systemctl", "restart", "coi-sidecar")
    check(active("coi-sidecar") == "active", "coi-sidecar back on its local queue")


def upgrade(receiver, upgrade_debs: list[str]) -> None:
    step("6. upgrade to a higher version")
    inode = PLUGIN.stat().st_ino
    conf_hash = hashlib.sha256(SIDECAR_TOML.read_bytes()).hexdigest()
    pid = out("systemctl", "show", "-P", "MainPID", "coi-sidecar")
    dispatch_pid = out("systemctl", "show", "-P", "MainPID", "coi-sidecar-dispatch")
    # The steps before restarted the sidecar several times within seconds;
    # with the upgrade's stop and start that can pass systemd's default 5
    # starts in 10 s (seen on Debian 13): the test's haste, not an
    # operator's, so the counters start afresh (as restart_dovecot does).
    run("systemctl", "reset-failed", "coi-sidecar", "coi-sidecar-dispatch", check_rc=False)
    since = time.time()
    run("dpkg", "-i", *upgrade_debs)
    version = out("dpkg-query", "-W", "-f=${Version}", "dovecot-coi")
    check(version.endswith("+upgradetest1"), f"dovecot-coi upgraded to {version}")
    check(PLUGIN.stat().st_ino != inode, "module replaced by a new file (rename), not overwritten")
    check(hashlib.sha256(SIDECAR_TOML.read_bytes()).hexdigest() == conf_hash,
          "the edited /etc/coi/sidecar.toml was kept")
    check(mode_of(SIDECAR_TOML) == ("0640", "root", "coi-sidecar"), "and its mode and group")
    check(active("coi-sidecar") == "active", "coi-sidecar runs after the upgrade")
    check(out("systemctl", "show", "-P", "MainPID", "coi-sidecar") != pid, "coi-sidecar was restarted")
    check(active("coi-sidecar-dispatch") == "active"
          and out("systemctl", "show", "-P", "MainPID", "coi-sidecar-dispatch") not in (dispatch_pid, "0"),
          "the enabled fleet dispatcher was restarted too")
    run("systemctl", "disable", "--now", "coi-sidecar-dispatch")
    run("systemctl", "stop", NATS_UNIT)
    check(active("dovecot") == "active", "Dovecot runs after the upgrade")
    raw, mid = message("alice", "install-test chat after upgrade", chat=True)
    lmtp_deliver("alice", raw)
    where = imap_find("alice", mid)
    check(len(where) == 1 and where[0][0] == "COI/Chats", "a chat delivered after the upgrade is filed", str(where))
    wait_for(lambda: webhooks_for(receiver, mid), 30, "the webhook after the upgrade")
    ok("its webhook arrived")
    problems = dovecot_problems(since)
    check(not problems, "Dovecot logged no error during the upgrade", "\n".join(problems))


DOC_CHECK_CONF = Path("/etc/dovecot/conf.d/99-coi-doc-check.conf")


def doc_blocks(text: str) -> list[tuple[str, str]]:
    """(directive, body) of each fenced block whose info string carries an
    install-test directive, in document order."""
    found = []
    for m in re.finditer(r"^```[A-Za-z0-9_-]*[ \t]+(install-test\S*)[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S):
        found.append((m.group(1), m.group(2)))
    return found


def expectation(body: str) -> str:
    first = body.split("\n", 1)[0]
    if not first.startswith("# 2.4: "):
        raise Failed(f"a checked 2.3 block must start with '# 2.4: ...': {first!r}")
    return first[len("# 2.4: "):].strip()


def from_23_config(receiver) -> None:
    step("6b. docs/dovecot-2.4.md: from a 2.3 configuration, every block and command it shows")
    blocks = doc_blocks(DOC_24.read_text())
    kinds = [d.split("=", 1)[0] for d, _ in blocks]
    check(kinds.count("install-test:refused") >= 3 and "install-test:shows" in kinds
          and "install-test:append" in kinds and "install-test" in kinds,
          f"the document has its checked blocks ({len(blocks)})", str(kinds))
    for directive, body in blocks:
        if directive == "install-test:refused":
            want = expectation(body)
            DOC_CHECK_CONF.write_text(body)
            p = run("doveconf", "-n", check_rc=False)
            DOC_CHECK_CONF.unlink()
            check(p.returncode != 0 and want in p.stderr, f"2.4 refuses the 2.3 line(s): {want}", p.stderr)
        elif directive == "install-test:shows":
            # A configuration of its own (the version lines and the block),
            # so what doveconf prints comes from the block alone, not from
            # what the package already set.
            want = expectation(body)
            cmd, _, shows = want.partition(" prints ")
            alone = Path("/tmp/coi-doc-check.conf")
            alone.write_text("dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n" + body)
            p = run("doveconf", "-c", str(alone), "-n", check_rc=False)
            argv = shlex.split(cmd)
            check(argv[0] == "doveconf", f"a shows-block runs doveconf: {cmd}")
            shown = run("doveconf", "-c", str(alone), *argv[1:], check_rc=False)
            alone.unlink()
            check(p.returncode == 0 and shows.strip('"') in shown.stdout,
                  f"with only this block, {cmd} prints {shown.stdout.strip()!r}", p.stderr + shown.stderr)
        elif directive.startswith("install-test:append="):
            path = Path(directive.split("=", 1)[1])
            with path.open("a") as f:
                f.write("\n# added as docs/dovecot-2.4.md shows\n" + body)
            p = run("doveconf", "-n", check_rc=False)
            check(p.returncode == 0 and not p.stderr.strip(), f"appended to {path}: doveconf accepts it", p.stderr)
        elif directive == "install-test":
            for line in body.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                cmd, _, want = line.partition("  # ")
                p = run("sh", "-c", cmd.strip(), check_rc=False)
                check(p.returncode == 0 and want.strip() in p.stdout,
                      f"$ {cmd.strip()}" + (f"  ->  {want.strip()}" if want else ""), p.stdout + p.stderr)
        else:
            raise Failed(f"unknown directive {directive} in docs/dovecot-2.4.md")

    # What those settings do: dave has no COI METADATA at all.
    raw, mid = message("dave", "install-test chat under the 2.4 settings", chat=True)
    lmtp_deliver("dave", raw)
    where = imap_find("dave", mid)
    check(len(where) == 1 and where[0][0] == "Chat/Chats" and "$Chat" in where[0][1],
          "dave (no METADATA): filed into Chat/Chats with $Chat (coi_default_enabled, "
          "coi_default_message_filter, coi_mailbox_root)", str(where))
    check("XDELTAPUSH" in imap_capabilities("dave"), "IMAP offers XDELTAPUSH (coi_deltachat_push = yes)")
    hits = wait_for(lambda: webhooks_for(receiver, mid), 30, "dave's webhook")
    check(hits[0][1].get("folder") == "Chat/Chats", "its webhook names Chat/Chats")


def remove() -> None:
    step("7. dpkg -r: Dovecot keeps working without the plugin")
    since = time.time()
    run("dpkg", "-r", "coi-sidecar", "dovecot-coi")
    check(not LOAD_CONF.exists(), "load.conf deleted by prerm")
    check(SNIPPET.exists(), "95-coi.conf (conffile) stays until purge")
    check(not PLUGIN.exists(), "the module is gone")
    check(SIDECAR_TOML.exists(), "/etc/coi/sidecar.toml stays until purge")
    check(active("coi-sidecar") != "active", "coi-sidecar stopped")
    if V24:
        check(not SETTINGS_MODULE.exists(), "the settings module is gone")
        check("coi_" in SETTINGS_EXT.read_text().replace("#coi_", ""),
              "the operator's coi_* settings stay in coi-settings.conf.ext (conffile)")
        p = run("doveconf", "-n", check_rc=False)
        check(p.returncode == 0 and not p.stderr.strip(),
              "doveconf: no error although the settings module is gone (nothing reads them now)", p.stderr)
        check("coi" not in out("doveconf", "-h", "mail_plugins"), "mail_plugins without coi")
    else:
        plugins = out("doveconf", "-f", "protocol=lmtp", "-h", "mail_plugins").split()
        check("coi" not in plugins, f"lmtp mail_plugins without coi: {' '.join(plugins)}")
    restart_dovecot()
    check(active("dovecot") == "active", "Dovecot restarts")
    mail_still_flows(since)


def purge() -> None:
    step("8. dpkg -P: configuration and state gone, Dovecot keeps working")
    since = time.time()
    run("dpkg", "-P", "coi-sidecar", "dovecot-coi")
    # The file the operator wrote stays (dpkg removes what it installed), so
    # does /etc/coi around it; nothing else is left there.
    check(DISPATCH_TOML.exists() and [p.name for p in DISPATCH_TOML.parent.iterdir()] == [DISPATCH_TOML.name],
          "/etc/coi keeps only the operator's own dispatch.toml")
    DISPATCH_TOML.unlink()
    DISPATCH_TOML.parent.rmdir()
    for path in (SNIPPET, SIDECAR_TOML, DISPATCH_STATE, Path("/var/lib/coi-sidecar"),
                 Path("/var/spool/coi"), Path("/var/lib/dovecot-coi")) + ((SETTINGS_EXT,) if V24 else ()):
        check(not path.exists(), f"{path} removed")
    restart_dovecot()
    check(active("dovecot") == "active", "Dovecot restarts")
    mail_still_flows(since)


def mail_still_flows(since: float) -> None:
    raw, mid = message("alice", "plain mail without the plugin", chat=True)
    lmtp_deliver("alice", raw)
    where = imap_find("alice", mid)
    check(len(where) == 1 and where[0][0] == "INBOX" and "$Chat" not in where[0][1],
          "LMTP delivery and IMAP work; a chat now lands in INBOX untagged", str(where))
    problems = dovecot_problems(since)
    check(not problems, "Dovecot logged no error", "\n".join(problems))


def main() -> int:
    t0 = time.monotonic()
    debs = sorted(str(p) for p in (TEST / "debs").glob("*.deb"))
    upgrade_debs = sorted(str(p) for p in (TEST / "upgrade").glob("*.deb"))
    if len(debs) != 2 or len(upgrade_debs) != 2:
        print(f"expected 2 packages and 2 upgrade packages, got {debs} {upgrade_debs}")
        return 2
    global V24
    V24 = out("dovecot", "--version").startswith("2.4")
    print(f"Dovecot {out('dovecot', '--version')}")
    receiver_mod = load_receiver()
    receiver = receiver_mod.WebhookReceiver()
    try:
        prepare_mail_server()
        since = install(debs)
        systemd_checks()
        configure_sidecar(receiver)
        deliver_and_check(receiver, since)
        sidecar_status(receiver)
        fleet_mode(receiver)
        upgrade(receiver, upgrade_debs)
        if V24:
            from_23_config(receiver)
        remove()
        purge()
    except Exception as exc:  # noqa: BLE001 - any failure: show the journals
        what = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
        print(f"\nFAILED: {what}", flush=True)
        for unit in ("coi-sidecar", "coi-sidecar-dispatch", "dovecot"):
            print(f"\n--- journal of {unit} (last 40 lines)")
            print(run("journalctl", "-u", unit, "--no-pager", "-n", "40", check_rc=False).stdout)
        print("\n1 failed")
        return 1
    finally:
        receiver.close()
    print(f"\ninstall scenario: all checks passed in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""The operator's first hour, inside a fresh Debian 12 system container.

Run by packaging/install-test inside a systemd-nspawn container booted from a
debootstrap root (Dovecot 2.3 from Debian, systemd as PID 1, a private network
with only loopback). Expects /coi-test/debs/*.deb (the packages under test),
/coi-test/upgrade/*.deb (the same with a higher version) and
/coi-test/receiver.py (the tests' webhook receiver, stdlib only).

Steps, each of which fails the run with a message saying what was wrong:
  1. a mail server as an operator has it: Dovecot from its packaged
     configuration (Sieve switched on in 20-lmtp.conf the way the comments
     there suggest), plus test overrides for loopback only: listen address,
     an LMTP TCP listener on 127.0.0.1:24; two system users;
  2. dpkg -i of both packages: users, groups, directories, modes, the service
     running under systemd, Dovecot reloaded with the plugin;
  3. systemd-analyze verify and security on the packaged unit;
  4. the packaged sidecar config plus one webhook to a receiver on loopback
     and Web Push switched on; restart and reload under systemd;
  5. COI switched on per user with doveadm METADATA; chats delivered over
     LMTP to two users (different uids: both append to one spool), found over
     IMAP in COI/Chats with $Chat, a Sieve fileinto rule still winning, plain
     mail untouched; signed webhooks received; /metrics scraped; the VAPID
     key pair's modes and the WEBPUSH capability;
  6. upgrade to a higher version: edited conffile kept, module replaced by
     rename, sidecar restarted, delivery and webhooks still working;
  7. dpkg -r: Dovecot restarts and delivers without the plugin;
  8. dpkg -P: configuration and state gone, Dovecot still works.
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
import smtplib
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path

TEST = Path("/coi-test")
USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
COI_CONFIG = "/private/vendor/vendor.dovecot/coi/config/"
PLUGIN = Path("/usr/lib/dovecot/modules/lib95_coi_plugin.so")
SNIPPET = Path("/etc/dovecot/conf.d/95-coi.conf")
LOAD_CONF = Path("/var/lib/dovecot-coi/load.conf")
SIDECAR_TOML = Path("/etc/coi/sidecar.toml")
METRICS_URL = "http://127.0.0.1:9854/metrics"
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


def metrics() -> dict[str, float]:
    """Every sample of /metrics as 'name{labels}' -> value (labels as exposed)."""
    with urllib.request.urlopen(METRICS_URL, timeout=10) as r:
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


def prepare_mail_server() -> None:
    step("1. a Debian 12 mail server: packaged Dovecot config, Sieve on for LMTP, two users")
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
    for proto in ("lmtp", "lda", "imap", "doveadm"):
        plugins = out("doveconf", "-f", f"protocol={proto}", "-h", "mail_plugins").split()
        check("coi" in plugins, f"protocol {proto}: mail_plugins = {' '.join(plugins)}")
    lmtp_plugins = out("doveconf", "-f", "protocol=lmtp", "-h", "mail_plugins").split()
    check("sieve" in lmtp_plugins, "the operator's sieve is still loaded for lmtp")
    warnings = run("doveconf", "-n", check_rc=False).stderr.strip()
    check(not warnings, "doveconf prints no warning", warnings)
    check(out("doveconf", "-h", "mail_access_groups").split() == ["coi-events"],
          "mail_access_groups = coi-events")
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
    p = run("systemd-analyze", "verify", "/lib/systemd/system/coi-sidecar.service", check_rc=False)
    msgs = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and not msgs, "systemd-analyze verify coi-sidecar.service: clean", msgs)
    p = run("systemd-analyze", "security", "--no-pager", "coi-sidecar.service", check_rc=False)
    m = re.search(r"Overall exposure level for coi-sidecar\.service: ([0-9.]+)", p.stdout)
    check(m is not None, "systemd-analyze security ran", p.stdout[-500:] + p.stderr)
    score = float(m.group(1))
    print(f"  systemd-analyze security exposure: {score}")
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
    for user in USERS:
        for key, value in (("enabled", "yes"), ("message-filter", "active")):
            run("doveadm", "mailbox", "metadata", "set", "-u", user, "-s", "", COI_CONFIG + key, value)
        got = out("doveadm", "mailbox", "metadata", "get", "-u", user, "-s", "", COI_CONFIG + "enabled")
        check(got == "yes", f"{user}: COI enabled in server METADATA (doveadm)")
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


def upgrade(receiver, upgrade_debs: list[str]) -> None:
    step("6. upgrade to a higher version")
    inode = PLUGIN.stat().st_ino
    conf_hash = hashlib.sha256(SIDECAR_TOML.read_bytes()).hexdigest()
    pid = out("systemctl", "show", "-P", "MainPID", "coi-sidecar")
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
    check(active("dovecot") == "active", "Dovecot runs after the upgrade")
    raw, mid = message("alice", "install-test chat after upgrade", chat=True)
    lmtp_deliver("alice", raw)
    where = imap_find("alice", mid)
    check(len(where) == 1 and where[0][0] == "COI/Chats", "a chat delivered after the upgrade is filed", str(where))
    wait_for(lambda: webhooks_for(receiver, mid), 30, "the webhook after the upgrade")
    ok("its webhook arrived")
    problems = dovecot_problems(since)
    check(not problems, "Dovecot logged no error during the upgrade", "\n".join(problems))


def remove() -> None:
    step("7. dpkg -r: Dovecot keeps working without the plugin")
    since = time.time()
    run("dpkg", "-r", "coi-sidecar", "dovecot-coi")
    check(not LOAD_CONF.exists(), "load.conf deleted by prerm")
    check(SNIPPET.exists(), "95-coi.conf (conffile) stays until purge")
    check(not PLUGIN.exists(), "the module is gone")
    check(SIDECAR_TOML.exists(), "/etc/coi/sidecar.toml stays until purge")
    check(active("coi-sidecar") != "active", "coi-sidecar stopped")
    plugins = out("doveconf", "-f", "protocol=lmtp", "-h", "mail_plugins").split()
    check("coi" not in plugins, f"lmtp mail_plugins without coi: {' '.join(plugins)}")
    run("systemctl", "restart", "dovecot")
    check(active("dovecot") == "active", "Dovecot restarts")
    mail_still_flows(since)


def purge() -> None:
    step("8. dpkg -P: configuration and state gone, Dovecot keeps working")
    since = time.time()
    run("dpkg", "-P", "coi-sidecar", "dovecot-coi")
    for path in (SNIPPET, SIDECAR_TOML, Path("/etc/coi"), Path("/var/lib/coi-sidecar"),
                 Path("/var/spool/coi"), Path("/var/lib/dovecot-coi")):
        check(not path.exists(), f"{path} removed")
    run("systemctl", "restart", "dovecot")
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
    receiver_mod = load_receiver()
    receiver = receiver_mod.WebhookReceiver()
    try:
        prepare_mail_server()
        since = install(debs)
        systemd_checks()
        configure_sidecar(receiver)
        deliver_and_check(receiver, since)
        upgrade(receiver, upgrade_debs)
        remove()
        purge()
    except Exception as exc:  # noqa: BLE001 - any failure: show the journals
        what = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
        print(f"\nFAILED: {what}", flush=True)
        for unit in ("coi-sidecar", "dovecot"):
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

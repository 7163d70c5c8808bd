"""Hostile input against a real Dovecot + coi plugin + real coi-sidecar (issue 6, item 2).

Owns the hostile-input suite: about 590 messages from ``tests/harness/hostile.py``
(hand-made attack shapes plus generated noisy chats and mails; about 20 MB in
all, eight of them with 1 MB header lines) are delivered over three concurrent
LMTP sessions and, every 12th, through dovecot-lda, to three users with COI
enabled and message-filter ``active``:

* ``hm``: enabled by IMAP ``SETMETADATA`` (as a COI client does);
* ``hd``: enabled by ``coi_default_enabled``/``coi_default_message_filter``
  (per-user plugin settings from userdb extra fields);
* ``hl``: enabled by ``doveadm mailbox metadata set`` (receives dovecot-lda mail).

Each message's envelope sender carries a unique marker, which Dovecot writes into
the ``Return-Path`` it prepends, so every stored copy is found again whatever the
message looks like. Checked, one test each:

* every delivery is accepted (LMTP 250 / dovecot-lda exit 0);
* every message is stored exactly once, for its recipient, over IMAP across all folders;
* classification is sane: a message designed as a chat is in ``COI/Chats`` with
  ``$Chat``, a non-chat in INBOX without it; forged ``chat$group.`` ids follow
  the classifier's rules (12..64 of ``[0-9A-Za-z_-]`` and a unique part);
  where Dovecot's own parsing decides (NULs inside marker fields), folder and
  keyword at least agree;
* the sidecar delivered exactly one event (one webhook-id) per stored message,
  whose folder/uid/kind/group_id/routed/chat_keyword agree with IMAP, with
  bounded ``subject``/``message_id``; no drops, no rejected spool records, no
  fallbacks; ``/metrics`` kind counters equal what IMAP shows;
* the Dovecot log has no ``Panic``/``Fatal``, no child killed by a signal or
  exiting with an error; the services run under ``default_vsz_limit = 160M``
  (config override) and no lmtp process peaked near it;
* hostile bytes written straight into the spool are rejected, counted per
  reason, and do not disturb the events around them.

Hostile IMAP METADATA values (oversized, wrong types, path tricks in
subscription ids) live in ``tests/test_imap_coi.py``.

Runtime: about 11 s on 2 cores (mostly Dovecot storing 20 MB).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import smtplib
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from tests.harness import DovecotInstance
from tests.harness.hostile import Hostile, hostile_messages, marker_of
from tests.harness.lmtp import RcptResult
from tests.harness.receiver import WebhookReceiver
from tests.harness.sidecar import Metrics, SidecarProcess, Webhook

CHATS = "COI/Chats"
ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
USERS = {"hm": {}, "hd": ACTIVE, "hl": {}}
LMTP_USERS = ("hm", "hd")
LDA_USERS = ("hl", "hd")
#: Memory limit of every Dovecot service in this suite (stock default: 256M).
VSZ_LIMIT_MB = 160
LMTP_CONNECTIONS = 3
#: A dead child shows up in the master's log like this.
DEAD_CHILD = re.compile(r"service\([\w-]+\): child \d+ (killed with signal|returned error)"
                        r"|Out of memory|pool_system_malloc|[Cc]ore dumped")
KIND_OF_EXPECT = {"plain": "not-chat"}
CHAT_KINDS = {"chat", "group-chat", "read-receipt"}


# --------------------------------------------------------------------------- delivery
def _lmtp_raw(session, data: bytes, rcpt: str, sender: str) -> RcptResult:
    """One transaction whose DATA is ``data`` exactly (already dot-stuffed, with the end mark)."""
    smtp = session.smtp
    code, resp = smtp.mail(sender)
    if code != 250:
        smtp.rset()
        return RcptResult(rcpt, code, resp.decode(errors="replace"), "MAIL")
    code, resp = smtp.rcpt(rcpt)
    if code not in (250, 251):
        smtp.rset()
        return RcptResult(rcpt, code, resp.decode(errors="replace"), "RCPT")
    smtp.putcmd("data")
    code, resp = smtp.getreply()
    if code != 354:
        smtp.rset()
        return RcptResult(rcpt, code, resp.decode(errors="replace"), "DATA")
    smtp.send(data)
    code, resp = smtp.getreply()
    return RcptResult(rcpt, code, resp.decode(errors="replace"), "DELIVERY")


def _deliver_one_lmtp(session, dc: DovecotInstance, h: Hostile, user: str) -> RcptResult:
    rcpt = dc.address(user)
    if h.raw == b"":  # the empty message: DATA, then the end mark at once
        return _lmtp_raw(session, b".\r\n", rcpt, h.sender)
    return session.deliver(h.raw, [rcpt], sender=h.sender)[0]


@dataclass
class Delivered:
    """What the module fixture did and saw; the tests only look."""

    dc: DovecotInstance
    sc: SidecarProcess
    rx: WebhookReceiver
    msgs: list[Hostile]
    #: seq -> recipient user name
    rcpt: dict[int, str]
    #: seq -> problem text, for deliveries not accepted
    refused: dict[int, str]
    #: marker -> [(user, folder, uid, flags)]
    stored: dict[str, list[tuple[str, str, int, list[str]]]] = field(default_factory=dict)
    #: (user, folder) -> UIDVALIDITY
    uidvalidity: dict[tuple[str, str], int] = field(default_factory=dict)
    unmarked: list[tuple[str, str, int]] = field(default_factory=list)
    lmtp_peaks: dict[int, tuple[int, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    log_mark: int = 0

    def by_seq(self, seq: int) -> Hostile:
        return self.msgs[seq]


def _deliver_all(dc: DovecotInstance, msgs: list[Hostile]) -> tuple[dict[int, str], dict[int, str]]:
    rcpt: dict[int, str] = {}
    refused: dict[int, str] = {}
    lmtp = [h for h in msgs if h.via == "lmtp"]
    lda = [h for h in msgs if h.via == "lda"]
    for i, h in enumerate(lmtp):
        rcpt[h.seq] = LMTP_USERS[i % len(LMTP_USERS)]
    for i, h in enumerate(lda):
        rcpt[h.seq] = LDA_USERS[i % len(LDA_USERS)]
    lock = threading.Lock()

    def lmtp_worker(share: list[Hostile]) -> None:
        session = dc.lmtp_session()
        try:
            for h in share:
                try:
                    res = _deliver_one_lmtp(session, dc, h, rcpt[h.seq])
                    if res.code != 250:
                        with lock:
                            refused[h.seq] = f"LMTP {res.stage} {res.code} {res.message}"
                except (smtplib.SMTPException, OSError) as exc:
                    with lock:
                        refused[h.seq] = f"LMTP connection failed: {exc!r}"
                    session.smtp.close()
                    session = dc.lmtp_session()
        finally:
            session.close()

    def lda_worker(share: list[Hostile]) -> None:
        for h in share:
            res = dc.lda_deliver(rcpt[h.seq], h.lda_raw, sender=h.sender)
            if res.returncode != 0:
                with lock:
                    refused[h.seq] = f"dovecot-lda exit {res.returncode}: {res.stderr.strip()[:300]}"

    threads = [threading.Thread(target=lmtp_worker, args=(lmtp[c::LMTP_CONNECTIONS],), daemon=True)
               for c in range(LMTP_CONNECTIONS)]
    threads.append(threading.Thread(target=lda_worker, args=(lda,), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} delivery threads did not finish within 240 s"
    return rcpt, refused


# --------------------------------------------------------------------------- reading back
def _scan_user(dc: DovecotInstance, user: str, out: Delivered) -> None:
    """Every folder of ``user``: UIDVALIDITY, and per message UID, FLAGS and the marker."""
    with dc.imap(user) as c:
        for entry in c.list_entries():
            if "\\Noselect" in entry.attrs or "\\NonExistent" in entry.attrs:
                continue
            folder = entry.name
            typ, data = c.conn.status(f'"{folder}"', "(UIDVALIDITY)")
            assert typ == "OK", f"STATUS {user}/{folder}: {typ} {data}"
            out.uidvalidity[(user, folder)] = int(re.search(rb"UIDVALIDITY (\d+)", data[0])[1])
            if c.examine(folder) == 0:
                continue
            typ, data = c.conn.uid("FETCH", "1:*",
                                   "(UID FLAGS BODY.PEEK[HEADER.FIELDS (RETURN-PATH)])")
            assert typ == "OK", f"FETCH {user}/{folder}: {typ} {data}"
            for i, item in enumerate(data):
                if not isinstance(item, tuple):
                    continue
                trailer = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
                meta = item[0] + b" " + trailer
                uid = int(re.search(rb"UID (\d+)", meta)[1])
                flags = re.search(rb"FLAGS \(([^)]*)\)", meta)[1].decode().split()
                marker = marker_of(item[1])
                if marker is None:
                    out.unmarked.append((user, folder, uid))
                else:
                    out.stored.setdefault(marker, []).append((user, folder, uid, flags))


def _lmtp_memory(dc: DovecotInstance) -> dict[int, tuple[int, int]]:
    """pid -> (VmPeak, VmHWM) in KiB of every lmtp child of the master."""
    out = {}
    for pid, name in dc.child_processes():
        if name != "lmtp":
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        out[pid] = (int(st["VmPeak"].split()[0]), int(st["VmHWM"].split()[0]))
    return out


def _events(rx: WebhookReceiver) -> list[tuple[str, dict]]:
    """(webhook-id, data) of every 2xx-answered request."""
    return [(r.webhook_id, r.json()["data"]) for r in rx.requests if r.ok]


# --------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def delivered(dovecot_factory) -> Delivered:
    rx = WebhookReceiver()
    sc = SidecarProcess([Webhook("all", rx.url("/hook"))], scan_interval_ms=200)
    try:
        t0 = time.monotonic()
        dc = dovecot_factory(plugin=True, users=USERS, plugin_settings=sc.plugin_settings(),
                             extra_config=f"default_vsz_limit = {VSZ_LIMIT_MB}M")
        sc.start()
        dc.enable_coi("hm", "active")                 # IMAP SETMETADATA, as a COI client
        dc.doveadm.enable_coi("hl", "active")         # doveadm mailbox metadata set
        msgs = hostile_messages(run=os.urandom(3).hex())
        mark = dc.log.mark()
        t1 = time.monotonic()
        rcpt, refused = _deliver_all(dc, msgs)
        t2 = time.monotonic()
        out = Delivered(dc, sc, rx, msgs, rcpt, refused, log_mark=mark)
        out.lmtp_peaks = _lmtp_memory(dc)
        for user in USERS:
            _scan_user(dc, user, out)
        t3 = time.monotonic()
        # Every stored message should become one event; wait for them (bounded).
        want = sum(len(v) for v in out.stored.values()) + len(out.unmarked)
        try:
            rx.wait_delivered(want, timeout=60)
        except TimeoutError:
            pass  # test_one_event_per_stored_message says what is missing
        out.seconds = {"setup": t1 - t0, "deliver": t2 - t1, "imap_scan": t3 - t2,
                       "events": time.monotonic() - t3}
        print(f"\nhostile suite: {len(msgs)} messages "
              f"({sum(len(h.raw) for h in msgs) / 1e6:.1f} MB, {sum(h.via == 'lda' for h in msgs)}"
              f" via dovecot-lda); seconds {({k: round(v, 1) for k, v in out.seconds.items()})}")
        yield out
    except BaseException:
        sc.failed = True
        raise
    finally:
        try:
            sc.close()
        finally:
            rx.close()


# --------------------------------------------------------------------------- tests
def test_suite_is_big_and_covers_every_shape(delivered):
    msgs = delivered.msgs
    assert len(msgs) >= 500, len(msgs)
    cats = {h.category.split("_")[0] for h in msgs}
    for needed in ("inject", "fold", "huge", "refs", "nul", "utf8", "2047", "mime", "gid",
                   "mdn", "chat", "dup", "empty", "only", "gen"):
        assert needed in cats, f"no {needed}_* case"
    assert sum(1 for h in msgs if h.via == "lda") >= 40
    assert sum(1 for h in msgs if len(h.raw) >= 1 << 20) >= 5, "the 1 MB header cases are missing"


def test_every_delivery_accepted(delivered):
    problems = [f"{delivered.by_seq(s).short()}: {why}" for s, why in sorted(delivered.refused.items())]
    assert not problems, f"{len(problems)} deliveries not accepted:\n" + "\n".join(problems[:30])


def test_each_message_stored_exactly_once(delivered):
    d = delivered
    problems = []
    for h in d.msgs:
        copies = d.stored.get(h.marker, [])
        if len(copies) != 1:
            problems.append(f"{h.short()}: {len(copies)} stored copies {copies}")
        elif copies[0][0] != d.rcpt[h.seq]:
            problems.append(f"{h.short()}: stored for {copies[0][0]}, sent to {d.rcpt[h.seq]}")
    known = {h.marker for h in d.msgs}
    strangers = sorted(set(d.stored) - known)
    assert not d.unmarked, f"stored messages without a marker: {d.unmarked[:10]}"
    assert not strangers, f"stored messages with unknown markers: {strangers[:10]}"
    assert not problems, f"{len(problems)} messages not stored exactly once:\n" + "\n".join(problems[:30])


def test_classification_is_sane(delivered):
    d = delivered
    problems = []
    tally = Counter()
    for h in d.msgs:
        copies = d.stored.get(h.marker, [])
        if len(copies) != 1:
            continue  # reported by test_each_message_stored_exactly_once
        _, folder, _, flags = copies[0]
        tagged = "$Chat" in flags
        tally[(folder, tagged)] += 1
        if h.expect == "chat" and (folder, tagged) != (CHATS, True):
            problems.append(f"{h.short()}: designed as a chat, stored in {folder} flags {flags}")
        elif h.expect == "plain" and (folder, tagged) != ("INBOX", False):
            problems.append(f"{h.short()}: designed as plain mail, stored in {folder} flags {flags}")
        elif h.expect is None and (folder == CHATS) != tagged:
            problems.append(f"{h.short()}: folder {folder} and $Chat={tagged} disagree")
        if folder not in ("INBOX", CHATS):
            problems.append(f"{h.short()}: stored in unexpected folder {folder}")
    print(f"(folder, $Chat) counts: {dict(tally)}")
    print("cases whose verdict Dovecot's parsing decides: " + ", ".join(
        f"{h.category}->{'chat' if d.stored[h.marker][0][1] == CHATS else 'plain'}"
        for h in d.msgs if h.expect is None and len(d.stored.get(h.marker, [])) == 1))
    assert not problems, f"{len(problems)} misclassified:\n" + "\n".join(problems[:40])


def test_one_event_per_stored_message(delivered):
    d = delivered
    events = _events(d.rx)
    where = {}  # (user, folder, uid) -> marker
    for marker, copies in d.stored.items():
        for user, folder, uid, _ in copies:
            where[(user, folder, uid)] = marker
    by_marker: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    orphans = []
    for eid, ev in events:
        assert ev["id"] == eid, f"payload id {ev['id']} != webhook-id {eid}"
        key = (ev["user"].split("@")[0], ev["folder"], ev["uid"])
        marker = where.get(key)
        if marker is None:
            orphans.append((eid, ev))
            continue
        by_marker[marker].append((eid, ev))
    problems = []
    for h in d.msgs:
        copies = d.stored.get(h.marker, [])
        if len(copies) != 1:
            continue
        user, folder, uid, flags = copies[0]
        evs = by_marker.get(h.marker, [])
        ids = {eid for eid, _ in evs}
        if len(ids) != 1:
            problems.append(f"{h.short()}: {len(ids)} distinct event ids")
            continue
        ev = evs[0][1]
        want_uv = d.uidvalidity[(user, folder)]
        if ev["uidvalidity"] != want_uv:
            problems.append(f"{h.short()}: event uidvalidity {ev['uidvalidity']} != {want_uv}")
        if ev["routed"] != (folder == CHATS) or ev["chat_keyword"] != ("$Chat" in flags):
            problems.append(f"{h.short()}: event routed={ev['routed']} chat_keyword="
                            f"{ev['chat_keyword']} but stored in {folder} with {flags}")
        if (ev["kind"] in CHAT_KINDS) != ("$Chat" in flags):
            problems.append(f"{h.short()}: event kind {ev['kind']} but flags {flags}")
        want_kind = h.kind or KIND_OF_EXPECT.get(h.expect or "")
        if want_kind and ev["kind"] != want_kind:
            problems.append(f"{h.short()}: event kind {ev['kind']}, expected {want_kind}")
        if h.kind and ev["group_id"] != h.group_id:
            problems.append(f"{h.short()}: event group_id {ev['group_id']!r}, expected {h.group_id!r}")
        if ev["group_id"] is not None and not re.fullmatch(r"[0-9A-Za-z_-]{12,64}", ev["group_id"]):
            problems.append(f"{h.short()}: event group_id {ev['group_id']!r} breaks the id rules")
        for name, limit in (("subject", 256), ("message_id", 998)):
            v = ev.get(name)
            if v is not None and len(v.encode("utf-8")) > limit:
                problems.append(f"{h.short()}: event {name} is {len(v.encode())} bytes (> {limit})")
    assert not orphans, f"{len(orphans)} events match no stored message: {orphans[:3]}"
    assert not problems, f"{len(problems)} event problems:\n" + "\n".join(problems[:40])
    total = len({eid for eid, _ in events})
    assert total == len(d.msgs), f"{total} distinct events for {len(d.msgs)} messages"


def test_sidecar_counters_match(delivered):
    d = delivered
    m: Metrics = d.sc.metrics()
    kinds = Counter(ev["kind"] for _, ev in {eid: ev for eid, ev in _events(d.rx)}.items())
    problems = []

    def expect(name, want, **labels):
        got = m.value(name, **labels)
        if got != want:
            problems.append(f"{name}{labels or ''} = {got}, expected {want}")

    for kind in ("not-chat", "chat", "group-chat", "read-receipt"):
        expect("coi_intake_events_total", kinds[kind], kind=kind)
        expect("coi_plugin_messages_classified_total", kinds[kind], kind=kind)
    expect("coi_intake_events_total", 0, kind="other")
    expect("coi_intake_events_total", 0, kind="fallback")
    expect("coi_plugin_fallbacks_total", 0)
    expect("coi_plugin_events_dropped_total", 0)
    expect("coi_spool_records_rejected_total", 0)
    expect("coi_dead_letters_total", 0)
    expect("coi_queue_depth_events", 0)
    expect("coi_delivery_attempts_total", len(d.msgs), outcome="success")
    print(f"event kinds: {dict(kinds)}")
    assert not problems, "sidecar metrics:\n  " + "\n  ".join(problems)
    assert d.sc.running and d.sc.healthz()[0] == 200


def test_no_panic_fatal_or_dead_process(delivered):
    d = delivered
    d.dc.assert_no_panic_or_fatal(since=d.log_mark)
    dead = [ln for ln in d.dc.log.lines(since=d.log_mark) if DEAD_CHILD.search(ln)]
    assert not dead, "Dovecot children died:\n" + "\n".join(dead[:20])
    errors = [ln for ln in d.dc.log.lines(since=d.log_mark) if ": Error: " in ln]
    print(f"Dovecot error lines during the suite: {len(errors)}")
    for ln in errors[:5]:
        print("   ", ln[:300])
    sidecar_bad = [ln for ln in d.sc.log_text().splitlines() if "panic" in ln.lower()]
    assert not sidecar_bad, sidecar_bad[:5]


def test_memory_within_limits(delivered):
    d = delivered
    assert f"default_vsz_limit = {VSZ_LIMIT_MB}M" in d.dc.conf_path.read_text()
    limit_kib = VSZ_LIMIT_MB * 1024
    assert d.lmtp_peaks, "no lmtp process found to measure"
    print(f"lmtp (VmPeak, VmHWM) KiB per pid: {d.lmtp_peaks}; sidecar VmHWM "
          f"{d.sc.rss_kib()} KiB")
    over = {pid: v for pid, v in d.lmtp_peaks.items() if v[0] >= limit_kib * 0.9}
    assert not over, f"lmtp processes came within 10 % of the {VSZ_LIMIT_MB} MB limit: {over}"
    assert d.sc.rss_kib() < 200 * 1024, f"sidecar peak RSS {d.sc.rss_kib()} KiB"


# --------------------------------------------------------------------------- hostile spool bytes
def _spool_append(path, data: bytes) -> None:
    """Append like a plugin process: O_APPEND, shared flock, one write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def _message_record(**over) -> bytes:
    rec = {"v": 1, "type": "message", "id": "", "ts_ms": 1, "user": "u", "folder": "INBOX",
           "uid": 1, "uidvalidity": 1, "kind": "chat", "group_id": None, "chat_keyword": True,
           "routed": False, "from": None, "message_id": None, "subject": None, "pid": 1,
           "dropped_before": 0}
    rec.update(over)
    return b"\x1e" + json.dumps(rec).encode() + b"\n"


#: (bytes appended to the spool, {error_type: rejections it must cause})
HOSTILE_SPOOL = [
    (b"no record separator at all\n", {"garbage": 1}),
    (b"\x1e{not json}\n", {"garbage": 1}),
    (b"\x1e\n", {"garbage": 1}),
    (b"\x1e" + b"[" * 5000 + b"\n", {"garbage": 1}),
    # The envelope (v, type) parses; the event itself does not (invalid UTF-8).
    (b"\x1e{\"v\":1,\"type\":\"message\",\"user\":\"\xff\xfe\"}\n", {"json": 1}),
    (b"\x1e{\"v\":2,\"type\":\"message\"}\n", {"version": 1}),
    (b"\x1e{\"v\":\"1\",\"type\":\"message\"}\n", {"version": 1}),
    (b"\x1e{\"type\":\"message\"}\n", {"version": 1}),
    (b"\x1e{\"v\":1,\"type\":\"../../etc/passwd\"}\n", {"version": 1}),
    (b"\x1e{\"v\":1,\"type\":\"message\"}\n", {"json": 1}),
    (_message_record(uid=-1, id="x"), {"json": 1}),
    (_message_record(id=""), {"json": 1}),
    (b"\x1e{\"v\":1,\"type\":\"message\",\"pad\":\"" + b"x" * 17000 + b"\"}\n", {"oversized": 1}),
    (b"\x1e{\"v\":1,\"type\":\"mess" + b"\x1e{\"v\":9,\"type\":\"x\"}\n", {"torn": 1, "version": 1}),
]


def _ring(sc: SidecarProcess) -> None:
    """A doorbell, so the sidecar scans now instead of on its timer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b'{"v":1,"type":"ring","dropped":0}', str(sc.socket_path))
    finally:
        s.close()


def _rejections(sc: SidecarProcess) -> Counter:
    return Counter({k: int(v) for k, v in sc.metrics().by_label(
        "coi_spool_records_rejected_total", "error_type").items() if v})


def test_hostile_spool_bytes_rejected_and_counted(delivered):
    """Bytes in the spool that are not valid records: each rejected and counted by
    reason; the real events written around them all arrive; the sidecar stays healthy."""
    from tests.harness import messages as M
    d = delivered
    n0 = len(d.rx.delivered_ids())
    spool = d.sc.spool_dir / "events.log"
    problems, sent = [], 0
    for i, (data, counts) in enumerate(HOSTILE_SPOOL):
        before = _rejections(d.sc)
        _spool_append(spool, data)
        if i % 3 == 0:  # a real delivery right behind the hostile bytes
            msg = M.coi_chat(to=d.dc.address("hm"))
            assert d.dc.lmtp_deliver(msg.raw, ["hm"])[0].ok
            sent += 1
        _ring(d.sc)
        deadline = time.monotonic() + 5
        while True:
            delta = _rejections(d.sc) - before
            if sum(delta.values()) >= sum(counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if dict(delta) != counts:
            problems.append(f"{data[:60]!r}...: counted {dict(delta)}, expected {counts}")
    d.rx.wait_delivered(n0 + sent, timeout=30)
    assert not problems, "spool rejections:\n" + "\n".join(problems) + "\n" + d.sc.log_tail()
    assert len(d.rx.delivered_ids()) == n0 + sent, "an event was lost or invented"
    m = d.sc.metrics()
    assert m.value("coi_intake_events_total", kind="other") == 0
    assert d.sc.running and d.sc.healthz()[0] == 200
    print(f"hostile spool records rejected by reason: {dict(_rejections(d.sc))}")


# --------------------------------------------------------------------------- Hostile IMAP METADATA
# Hostile IMAP METADATA values (oversized, wrong types, path tricks in Web Push
# subscription ids) are tested in tests/test_imap_coi.py, next to the other
# METADATA conversations; this module covers hostile mail and spool bytes.

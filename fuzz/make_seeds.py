#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/.

Run from anywhere: /usr/bin/python3 fuzz/make_seeds.py
It only (re)writes files named seed-*; minimised inputs that a fuzz run
found (other names) are left alone. Deterministic: same files every run.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

P256DH = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


# ---------------------------------------------------------------- classify
def classify() -> None:
    t = "classify"
    write(t, "plain", crlf("From: a@example.org", "To: b@example.org", "Subject: hi",
                           "Message-ID: <1234@example.org>", "Content-Type: text/plain"))
    write(t, "list", crlf("List-Id: <x.lists.example>", "Message-ID: <abc@lists.example>",
                          "References: <a@b> <c@d>"))
    write(t, "coi-1to1", crlf("Message-ID: <chat$1234567890@example.org>", "Subject: Chat: hi"))
    write(t, "coi-group", crlf("Message-ID: <chat$group.abcdefABCDEF12.xyz@example.org>"))
    write(t, "coi-group-64", crlf("Message-ID: <chat$group." + "a" * 64 + ".u@example.org>"))
    write(t, "coi-group-65", crlf("Message-ID: <chat$group." + "a" * 65 + ".u@example.org>"))
    write(t, "coi-group-11", crlf("Message-ID: <chat$group." + "b" * 11 + ".u@example.org>"))
    write(t, "coi-upper", crlf("MESSAGE-ID: <CHAT$GROUP.ABCDEFGHIJKL.x@example.org>"))
    write(t, "coi-reply-refs", crlf("Message-ID: <legacy@example.org>",
                                    "References: <chat$group.abcdefABCDEF12.1@example.org> <x@y>"))
    write(t, "deltachat", crlf("Chat-Version: 1.0", "Message-ID: <Mr.abc.def@localhost>",
                               "Content-Type: text/plain; charset=utf-8"))
    write(t, "deltachat-encrypted", crlf(
        "Chat-Version: 1.0", "Message-ID: <0c2f8a9e-1b2c-4d5e@localhost>",
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";',
        ' boundary="xyz"'))
    write(t, "mdn", crlf("Chat-Version: 1.0", "Message-ID: <chat$mdn1@example.org>",
                         "Content-Type: multipart/report; report-type=disposition-notification;",
                         '\tboundary="b1"'))
    write(t, "mdn-not-chat", crlf("Message-ID: <x@example.org>",
                                  "Content-Type: multipart/report; report-type=disposition-notification"))
    write(t, "mdn-quoted", crlf("Chat-Version: 1", 'Content-Type: Multipart/Report; foo="a;b";'
                                ' Report-Type="disposition-notification"'))
    write(t, "folded-msgid", crlf("Message-ID:", " <chat$group.abcdefABCDEF12.f@example.org>"))
    write(t, "lf-only", b"Chat-Version: 1.0\nMessage-ID: <chat$x@y>\n\nbody\n")
    write(t, "encoded-chat-version", crlf("Chat-Version: =?utf-8?q?1=2E0?="))
    write(t, "empty-chat-version", crlf("Chat-Version:"))
    write(t, "wsp-before-colon", crlf("Message-ID : <chat$abc@x>"))
    write(t, "mbox-from", crlf("From a@b Mon Jan  1 00:00:00 2024", "Message-ID: <chat$a@b>"))
    write(t, "comment-in-msgid", crlf("Message-ID: (comment) <chat$a@b>"))
    write(t, "nul-and-8bit", b"Message-ID: <chat$\x00\xff@x>\r\nChat-Version\x00: 1\r\n\r\n")
    write(t, "body-only", b"\r\nChat-Version: 1.0\r\n")
    write(t, "long-references", ("Message-ID: <a@b>\r\nReferences: "
                                 + " ".join(f"<id{i}@example.org>" for i in range(1200))
                                 + "\r\n\r\n").encode())
    write(t, "dup-fields", crlf("Message-ID: <plain@x>", "Message-ID: <chat$second@x>"))
    write(t, "continuation-first", b" folded: junk\r\nMessage-ID: <chat$a@b>\r\n\r\n")
    write(t, "lone-cr", b"Message-ID: <chat$a\r@b>\rChat-Version: 1\r\n\r\n")


# ------------------------------------------------------------------- wire
def frame(obj: dict) -> bytes:
    return b"\x1e" + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def message(i: int, **over) -> dict:
    m = {"v": 1, "type": "message", "id": f"0190b1d2-0000-7000-8000-00000000000{i}",
         "ts_ms": 1700000000000 + i, "user": "alice@example.org", "folder": "COI/Chats",
         "uid": 7 + i, "uidvalidity": 1234, "kind": "group-chat", "group_id": "abcdefghijkl",
         "chat_keyword": True, "routed": True, "from": "bob@example.org",
         "message_id": "<chat$group.abcdefghijkl.x@example.org>", "subject": "Grüße",
         "pid": 4242, "dropped_before": 0, "origin": "delivery"}
    m.update(over)
    return m


def wire_records() -> dict[str, bytes]:
    fallback = {"v": 1, "type": "fallback", "id": "f1", "ts_ms": 5,
                "reason": "metadata_unreadable", "pid": 1, "dropped_before": 3}
    target = {"subscription_id": "abcdefghij", "endpoint": "https://push.example/x",
              "p256dh": P256DH, "auth": AUTH}
    push = {"v": 1, "type": "push", "id": "p1", "ts_ms": 9, "user": "alice@example.org",
            "message": {"from_email": "bob@example.org", "from_name": "Bob", "subject": "hi",
                        "date_unix": 1700000000, "message_id": "<chat$1@x>", "uid": 3,
                        "uidvalidity": 9, "folder": "INBOX", "group_id": None, "kind": "chat",
                        "content": "-----BEGIN PGP MESSAGE-----"},
            "webpush": [target], "deltachat": [{"token_key": "0123456789abcdef", "token": "tok"}],
            "pid": 2, "dropped_before": 0}
    validation = {"v": 1, "type": "webpush_validation", "id": "w1", "ts_ms": 1, "user": "alice",
                  "target": target, "secret": "0123456789abcdef0123456789abcdef", "pid": 3,
                  "dropped_before": 0}
    old = message(1)
    del old["origin"]
    return {
        "message": frame(message(1)),
        "message-seen-move": frame(message(2, origin="seen_move", kind="chat", group_id=None)),
        "message-no-origin": frame(old),
        "fallback": frame(fallback),
        "push": frame(push),
        "webpush-validation": frame(validation),
        "three-records": frame(message(1)) + frame(fallback) + frame(message(3)),
        "duplicate-ids": frame(message(1)) + frame(message(1, uid=99)),
        "empty-id": frame(message(1, id="")),
        "garbage-then-record": b"junk\x00\xff" + frame(message(4)),
        "torn": frame(message(1))[:40] + frame(message(5)),
        "unterminated-tail": frame(message(1)) + frame(message(6))[:-1],
        "wrong-version": frame({**message(1), "v": 2}),
        "unknown-type": frame({"v": 1, "type": "party"}),
        "unknown-fields": frame({**message(7), "future": {"x": [1]}}),
        "escapes": b'\x1e{"v":1,"type":"fallback","id":"\\u0041\\ud83d\\ude00","ts_ms":1,'
                   b'"reason":"internal_error","pid":1,"dropped_before":0}\n',
        "oversized": b"\x1e" + b'{"v":1,"type":"message","id":"' + b"x" * 17000 + b'"}\n',
        "doorbell": b'{"v":1,"type":"ring","dropped":17}',
        "doorbell-bad": b'{"v":"1","type":"ring","dropped":0}',
        "unencodable": b'\x1e{"v":1,"type":"unencodable"}\n',
    }


def wire() -> None:
    for name, data in wire_records().items():
        write("wire_decode", name, data)
        if name != "doorbell" and name != "doorbell-bad":
            write("spool_reader", name, data)
    # The round trip reads structured data from raw bytes: random seeds of
    # a few sizes give libFuzzer a start on every record shape.
    rng = random.Random(6)
    for n in (0, 16, 64, 200, 600, 1500, 4000):
        for shape in range(4):
            data = bytes([shape]) + bytes(rng.randrange(256) for _ in range(n))
            write("wire_roundtrip", f"random-{n}-{shape}", data)


# ----------------------------------------------------------------- config
def config() -> None:
    t = "sidecar_config"
    webhook = (f'[[webhook]]\nname = "a"\nurl = "http://127.0.0.1:9/x"\nsecrets = ["{SECRET}"]\n')
    write(t, "empty", b"")
    write(t, "example", (Path(__file__).resolve().parents[1] / "sidecar" / "sidecar.example.toml")
          .read_bytes())
    write(t, "private-loopback", ("[delivery]\nallow_private_addresses = true\n" + webhook).encode())
    write(t, "private-refused", webhook.encode())
    write(t, "full", (
        'spool_dir = "/var/spool/coi"\nspool_rotate_bytes = 65536\nspool_scan_interval_ms = 10\n'
        'state_dir = "/var/lib/coi-sidecar"\n[socket]\npath = "/run/x.sock"\nmode = "0o600"\n'
        'group = "mail"\nallowed_uids = [0, 8]\nallowed_gids = [8]\n[metrics]\nlisten = "unix:/run/m.sock"\n'
        '[logging]\nformat = "json"\nlevel = "trace"\n[delivery]\nallow_private_addresses = true\n'
        'shutdown_grace_secs = 300\n' + webhook +
        'kinds = ["chat", "read-receipt"]\nfolders = ["COI/Chats"]\nformat = "ox"\ntimeout_secs = 300\n'
        'concurrency = 256\nretry_schedule_secs = [1, 604800]\ndeadline_secs = 2592000\n'
        '[[webhook]]\nname = "b-2_X"\nurl = "https://[::1]:8443/hook"\n'
        f'secrets = ["{SECRET}", "whsec_' + "QUFB" * 40 + '"]\n').encode())
    write(t, "duplicate-names", ("[delivery]\nallow_private_addresses = true\n" + webhook + webhook).encode())
    write(t, "bad-secret", webhook.replace(SECRET, "whsec_!!").encode())
    write(t, "bad-mode", b'[socket]\nmode = "999"\n')
    write(t, "relative-paths", b'spool_dir = "spool"\nstate_dir = "state"\n')
    write(t, "unknown-key", b"typo_key = 1\n")
    write(t, "wrong-type", b'spool_rotate_bytes = "big"\n')
    write(t, "ipv6-metrics", b'[metrics]\nlisten = "[::1]:9854"\n')
    write(t, "credentials-url", ("[delivery]\nallow_private_addresses = true\n"
                                 + webhook.replace("http://", "http://u:p@")).encode())
    write(t, "not-toml", b"[[[\n= = =\n")


# ---------------------------------------------------------------- webpush
def webpush() -> None:
    t = "webpush_subscription"
    head = struct.pack("<qQI", 1_614_265_330, 86_400, 0)

    def sub(msgtype="chat", endpoint="https://push.example/x", **extra) -> bytes:
        obj = {"client": "Delta", "device": "phone", "msgtype": msgtype,
               "resource": {"endpoint": endpoint, "keys": {"p256dh": P256DH, "auth": AUTH}}}
        obj.update(extra)
        return head + json.dumps(obj).encode()

    write(t, "valid-chat", sub())
    write(t, "valid-any-extra", sub("any", extra=1))
    write(t, "valid-email-http", sub("email", "http://push.example:8080/p?q=1"))
    write(t, "bad-msgtype", sub("sms"))
    write(t, "bad-endpoint-ftp", sub(endpoint="ftp://p/x"))
    write(t, "endpoint-userinfo", sub(endpoint="https://u@p/x"))
    write(t, "endpoint-long", sub(endpoint="https://p/" + "a" * 600))
    write(t, "padded-keys", head + json.dumps({"msgtype": "all", "resource": {
        "endpoint": "https://p", "keys": {"p256dh": P256DH + "==", "auth": AUTH + "=="}}}).encode())
    write(t, "std-base64-keys", head + json.dumps({"msgtype": "all", "resource": {
        "endpoint": "https://p", "keys": {"p256dh": P256DH.replace("-", "+").replace("_", "/"),
                                          "auth": AUTH}}}).encode())
    write(t, "not-object", head + b"[]")
    write(t, "null-labels", head + json.dumps({"client": None, "device": 7, "msgtype": "mail",
                                               "resource": {}}).encode())
    write(t, "stored", head + json.dumps({
        "public": {"msgtype": "chat", "resource": {"endpoint": "https://p/x",
                   "keys": {"p256dh": P256DH, "auth": AUTH}}, "created": "2021-02-25T15:02:10Z"},
        "created_unix": 1614265330, "secret": "s", "validated": False}).encode())
    write(t, "token", head + b"openpgp:xyz")
    write(t, "token-control", head + b"a\nb")
    write(t, "stored-token", head + b'{"token":"t","seen_unix":-1}')
    write(t, "extreme-clock", struct.pack("<qQI", 2**63 - 1, 2**64 - 1, 2**32 - 1) + sub()[20:])
    write(t, "negative-clock", struct.pack("<qQI", -(2**63), 0, 31) + sub()[20:])
    write(t, "subscription-id", head + b"A-b_0123456789012345678901234567890Z")


# ---------------------------------------------------------------- recall
def recall() -> None:
    t = "recall"
    lmtp = (b"from mail.example.org ([127.0.0.1])\r\n\tby mx.example.org with LMTP\r\n\tid x\r\n"
            b"\t(envelope-from <alice@example.org>); Thu, 3 Dec 2026 11:00:00 +0000")
    sub = (b"from [127.0.0.1] (localhost [127.0.0.1])\r\n\t(Authenticated sender: alice@example.org)\r\n"
           b"\tby mail.example.org (Postfix) with ESMTPSA id 4F1A2\r\n\tfor <bob@example.org>; date")
    inbound = b"from evil (evil [192.0.2.1])\r\n\tby mail.example.org (Postfix) with ESMTP id 4F; date"
    write(t, "trust-submitted", b"\x00" + b"\x00".join([lmtp, sub, b"Alice@Example.org", b"<alice@example.org>"]))
    write(t, "trust-forged", b"\x00" + b"\x00".join([lmtp, inbound, sub, b"alice@example.org", b"alice@example.org"]))
    boundary = b"b1"
    body = (b"--b1\r\nContent-Type: text/plain\r\n\r\nread\r\n--b1\r\n"
            b"Content-Type: message/disposition-notification\r\n\r\n"
            b"Original-Message-ID:\r\n <m1@example.org>\r\n"
            b"Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--b1--\r\n")
    write(t, "mdn", b"\x01" + b'multipart/report; report-type=disposition-notification; boundary="' + boundary
          + b'"\x00' + body)
    write(t, "exec", b"\x02" + json.dumps({"request": "r", "sender": "a@b", "message_id": "<m@x>",
                                           "copies": [{"folder": "INBOX", "uidvalidity": 1, "uid": 3}]}).encode())
    write(t, "state", b"\x03" + json.dumps({
        "message-id": "<m@x>", "state": "done", "requested": 1, "remote": "out-of-reach",
        "recipients": [{"user": "bob", "outcome": "already-read", "copies": 2}]}).encode())
    write(t, "mark", b"\x03" + json.dumps({"message_id": "<m@x>", "reader": "bob", "via": "mdn"}).encode())


if __name__ == "__main__":
    classify()
    wire()
    config()
    webpush()
    recall()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {sum(1 for _ in d.iterdir())} files")

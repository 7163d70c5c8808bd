"""Deterministic generator of malformed messages for robustness tests.

Owns the hostile inputs: ``malformed_messages(n=200, seed=...)`` returns the
same ``n`` messages for the same seed. They cycle through categories (huge
header lines, NUL bytes, invalid UTF-8, broken folding, no header/body
separator, thousands of References, RFC 2047 garbage, bogus MIME, forged
``chat$group`` ids, repeated or empty Chat-Version, header-only, bare LF/CR
line endings, duplicate Message-IDs, ...). Many of them are chat-like on
purpose so that they exercise the classifier and the routing path.

Wherever the shape allows, the first line is ``X-Malformed-Seq: <n>`` so a
test can check that each message was stored exactly once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

SEQ_HEADER = b"X-Malformed-Seq"


@dataclass(frozen=True)
class MalformedMessage:
    seq: int
    category: str
    raw: bytes
    #: True if the message starts with the ``X-Malformed-Seq`` header.
    tagged: bool = True


def _mid(r: random.Random, chat: bool) -> bytes:
    tok = "%032x" % r.getrandbits(128)
    return (f"<chat${tok}@example.net>" if chat else f"<{tok}@example.net>").encode()


def _gid(r: random.Random, n: int = 16) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(r.choice(alphabet) for _ in range(n))


def _std(r: random.Random, chat: bool = True, extra: bytes = b"") -> bytes:
    return (b"From: fuzz@example.net\r\nTo: alice@example.org\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: malformed\r\n"
            b"Message-ID: " + _mid(r, chat) + b"\r\n"
            + (b"Chat-Version: 1.0\r\n" if chat else b"") + extra)


# Each generator: (random, variant index) -> (raw without the seq header, tagged?)
def g_huge_header_line(r, v):
    size = 100_000 + r.randrange(60_000)
    which = [b"Subject", b"X-Long", b"Chat-Version", b"References", b"Message-ID"][v % 5]
    val = bytes(r.choice(b"abcdefghij <>@$.") for _ in range(size))
    if which == b"References":
        val = b"<chat$group." + _gid(r).encode() + b".x@example.net> " + val
    return _std(r, chat=v % 2 == 0) + which + b": " + val + b"\r\n\r\nbody\r\n", True


def g_nul_bytes(r, v):
    spots = [
        _std(r) + b"X-Nul: a\x00b\r\n\r\nbody\x00with\x00nuls\r\n",
        b"From: fuzz@example.net\r\nMessage-ID: <chat$\x00abc@example.net>\r\n"
        b"Chat-Version: 1\x00.0\r\n\r\nx\r\n",
        _std(r, chat=False) + b"References: <chat$group.\x00" + _gid(r).encode()
        + b".a@b>\r\n\r\n\x00\x00\x00\r\n",
        _std(r) + b"\r\n" + bytes(r.randrange(256) for _ in range(4096)) + b"\r\n",
    ]
    return spots[v % len(spots)], True


def g_invalid_utf8(r, v):
    junk = bytes(r.choice([0xff, 0xfe, 0xc0, 0xc1, 0x80, 0xbf, 0xed, 0xa0, 0xf8])
                 for _ in range(40))
    return (_std(r, chat=v % 2 == 0) + b"X-Junk: " + junk + b"\r\nSubject: caf\xe9 "
            + junk + b"\r\nFrom: \"\xff\xfe\" <x@\xc3.example>\r\n\r\n" + junk + b"\r\n"), True


def g_broken_folding(r, v):
    variants = [
        # first header line is a continuation line
        (b" \tfolded-before-anything\r\nFrom: a@b\r\nChat-Version: 1.0\r\n\r\nx\r\n", False),
        (_std(r) + b"X-Fold: a\r\n \r\n \r\n\t\r\n\r\nx\r\n", True),
        (_std(r) + b"Chat-Version:\r\n 1.0\r\nX-No-Colon-Line\r\n: empty name\r\n\r\nx\r\n", True),
        (_std(r) + b"References:\r\n\r\n <chat$group." + _gid(r).encode() + b".a@b>\r\n\r\nx\r\n",
         True),
    ]
    return variants[v % len(variants)]


def g_no_body_separator(r, v):
    return (_std(r, chat=v % 2 == 0) + b"X-Last: header without blank line after\r\n"), True


def g_many_references(r, v):
    n = 2000 + r.randrange(3000)
    first = b"<chat$group." + _gid(r).encode() + b".0@example.net>" if v % 2 == 0 \
        else b"<first@example.net>"
    refs = b" ".join([first] + [f"<r{i}.{r.getrandbits(32)}@example.net>".encode()
                                for i in range(n)])
    if v % 3 == 0:
        refs = refs.replace(b" ", b"\r\n ")
    return _std(r, chat=False) + b"References: " + refs + b"\r\n\r\nx\r\n", True


def g_rfc2047_garbage(r, v):
    words = [b"=?utf-8?B?!!!not-base64?=", b"=?x-unknown?Q?=FF=FE?=", b"=?utf-8?Q?=E2=82?=",
             b"=?=?utf-8?B?Pz0=?=?=", b"=?utf-8?B?" + b"QUFB" * 5000 + b"?=",
             b"=?iso-2022-jp?B?GyRCJDMkcxsoQg?=", b"=?utf-8*en?Q?x?=", b"=?utf-8?X?bad?="]
    subj = b" ".join(r.choice(words) for _ in range(3))
    return (_std(r, chat=v % 2 == 1) + b"X-Enc: " + subj + b"\r\nFrom: =?utf-8?B?/w==?= <a@b>\r\n"
            b"\r\nx\r\n").replace(b"Subject: malformed", b"Subject: " + subj, 1), True


def g_bogus_mime(r, v):
    b = f"b{r.getrandbits(40)}".encode()
    variants = [
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\nno boundary param\r\n",
        b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\nboundary never used\r\n",
        b"Content-Type: multipart/mixed; boundary=\"" + b * 40 + b"\"\r\n\r\n--" + b * 40
        + b"\r\n\r\nx\r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"".join(b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" for _ in range(300)),
        b"Content-Type: multipart/report; report-type=disposition-notification\r\n\r\nno boundary\r\n",
        b"Content-Type: multipart/report; report-type=\"\"; boundary=\"\"\r\n\r\n--\r\n\r\n----\r\n",
        b"Content-Type: ;;;==;\"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!***\r\n",
        b"Content-Type: message/rfc822\r\n\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 200,
    ]
    return _std(r, chat=v % 2 == 0) + variants[v % len(variants)], True


def g_forged_group_ids(r, v):
    ids = [b"chat$group..x@example.net", b"chat$group.short.x@example.net",
           b"chat$group." + _gid(r, 20000).encode() + b".x@example.net",
           b"chat$group.<>\"\\;.x@example.net", b"chat$", b"chat$group.", b"chat$group",
           b"chat$group." + _gid(r).encode(), b"chat$group.\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"
           b"\xf7\xf6\xf5\xf4.x@e", b"CHAT$group." + _gid(r).encode() + b".x@e"]
    fid = ids[v % len(ids)]
    where = v % 3
    hdr = b"Message-ID: <" + fid + b">\r\n" if where == 0 else \
        b"References: <" + fid + b"> <y@e>\r\n" if where == 1 else b"Message-ID: " + fid + b"\r\n"
    return (b"From: fuzz@example.net\r\nTo: alice@example.org\r\nSubject: forged\r\n" + hdr
            + b"\r\nx\r\n"), True


def g_repeated_chat_version(r, v):
    n = [2, 5, 1000][v % 3]
    vals = [b"1.0", b"", b"2.0", b"\xff", b"1.0 1.0", b"banana"]
    hdrs = b"".join(b"Chat-Version: " + vals[i % len(vals)] + b"\r\n" for i in range(n))
    return _std(r, chat=False) + hdrs + b"\r\nx\r\n", True


def g_empty_values(r, v):
    return (b"From:\r\nTo:\r\nSubject:\r\nMessage-ID:\r\nReferences:\r\nIn-Reply-To:\r\n"
            b"Chat-Version:\r\nContent-Type:\r\nDate:\r\n\r\n"
            + (b"" if v % 2 else b"body\r\n")), True


def g_only_headers(r, v):
    variants = [_std(r) + b"\r\n", _std(r, chat=False), b"Chat-Version: 1.0\r\n\r\n",
                b"\r\n", b"Chat-Version: 1.0"]
    raw = variants[v % len(variants)]
    return raw, True


def g_line_endings(r, v):
    base = _std(r, chat=v % 2 == 0) + b"X-Mixed: a\r\n\r\nline1\r\nline2\r\n.\r\n..\r\nend\r\n"
    variants = [base.replace(b"\r\n", b"\n"), base.replace(b"\r\n", b"\r"),
                base.replace(b"\r\n", b"\n", 3), base.replace(b"\r\n", b"\n\r"),
                base.replace(b"\r\n", b"\r\r\n")]
    return variants[v % len(variants)], True


def g_duplicate_message_ids(r, v):
    a, b = _mid(r, v % 2 == 0), _mid(r, v % 2 == 1)
    return (b"From: x@example.net\r\nSubject: dup ids\r\nMessage-ID: " + a + b"\r\nMessage-ID: "
            + b + b"\r\nMessage-ID: " + b"<" * 500 + b"\r\n\r\nx\r\n"), True


def g_header_name_variants(r, v):
    names = [b"chat-version", b"CHAT-VERSION", b"Chat-Version ", b"Chat-Version\t", b" Chat-Version",
             b"Chat\x00Version", b"Chat-Versio\xffn", b"Chat_Version"]
    return _std(r, chat=False) + names[v % len(names)] + b": 1.0\r\n\r\nx\r\n", True


def g_many_headers(r, v):
    n = 3000 + r.randrange(5000)
    hdrs = b"".join(f"X-H{i}: {r.getrandbits(64)}\r\n".encode() for i in range(n))
    return _std(r, chat=v % 2 == 0) + hdrs + b"\r\nx\r\n", True


def g_binary_body(r, v):
    size = [10, 5000, 300_000][v % 3]
    body = bytes(r.randrange(256) for _ in range(size))
    return _std(r) + b"Content-Transfer-Encoding: binary\r\n\r\n" + body, True


def g_control_chars(r, v):
    ctl = bytes(r.choice([0x01, 0x07, 0x08, 0x0b, 0x0c, 0x1b, 0x7f]) for _ in range(30))
    return (_std(r, chat=v % 2 == 0).replace(b"Subject: malformed", b"Subject: " + ctl)
            + b"X-Ctl: " + ctl + b"\r\n\r\n" + ctl + b"\r\n"), True


def g_long_body_lines(r, v):
    line = bytes(r.choice(b"abcdef") for _ in range(200_000 + v * 1000))
    return _std(r) + b"\r\n" + line + (b"" if v % 2 else b"\r\n"), True


def g_weird_references(r, v):
    refs = [b"<>", b"<<chat$a@b>>", b"chat$nobrackets@example.net", b"< chat$spaced@e >",
            b"(comment) <chat$group." + _gid(r).encode() + b".x@e>", b"<chat$a@b",
            b"\"<chat$quoted@e>\"", b",,,;;;", b"<chat$\r\n folded@e>", b"<\xff@e> <chat$x@e>"]
    return _std(r, chat=False) + b"References: " + refs[v % len(refs)] + b"\r\n\r\nx\r\n", True


CATEGORIES: list[tuple[str, Callable]] = [
    ("huge_header_line", g_huge_header_line),
    ("nul_bytes", g_nul_bytes),
    ("invalid_utf8", g_invalid_utf8),
    ("broken_folding", g_broken_folding),
    ("no_body_separator", g_no_body_separator),
    ("many_references", g_many_references),
    ("rfc2047_garbage", g_rfc2047_garbage),
    ("bogus_mime", g_bogus_mime),
    ("forged_group_ids", g_forged_group_ids),
    ("repeated_chat_version", g_repeated_chat_version),
    ("empty_values", g_empty_values),
    ("only_headers", g_only_headers),
    ("line_endings", g_line_endings),
    ("duplicate_message_ids", g_duplicate_message_ids),
    ("header_name_variants", g_header_name_variants),
    ("many_headers", g_many_headers),
    ("binary_body", g_binary_body),
    ("control_chars", g_control_chars),
    ("long_body_lines", g_long_body_lines),
    ("weird_references", g_weird_references),
]


def malformed_messages(n: int = 200, seed: int = 0xC01) -> list[MalformedMessage]:
    """``n`` malformed messages, identical for identical (n, seed)."""
    r = random.Random(seed)
    out = []
    for seq in range(n):
        name, gen = CATEGORIES[seq % len(CATEGORIES)]
        raw, tagged = gen(r, seq // len(CATEGORIES))
        if tagged:
            raw = SEQ_HEADER + b": " + str(seq).encode() + b"\r\n" + raw
        out.append(MalformedMessage(seq, name, raw, tagged))
    return out

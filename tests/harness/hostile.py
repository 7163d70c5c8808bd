"""Hostile messages for the hostile-input suite (issue 6, item 2), with their expected fate.

Owns the inputs of ``tests/test_hostile_messages.py``: hand-made cases for
every attack shape the issue names (header injection with CR/LF in values,
folded headers, 1 MB header lines, thousands of ``References``, NUL bytes,
invalid UTF-8, RFC 2047 encoded-word bombs, bogus MIME boundaries, forged
``chat$group.`` ids, spoofed MDNs, odd ``Chat-Version`` values, duplicate and
missing headers, the empty message, a huge Subject) plus a deterministic
generator that wraps the valid chat shapes in classification-neutral noise.

Every case says what the plugin must do with it:

* ``expect="chat"``: filed into ``COI/Chats`` with ``$Chat`` (the recipients
  have COI enabled with message-filter ``active``), event kind ``kind``;
* ``expect="plain"``: left in INBOX without ``$Chat``, event kind ``not-chat``;
* ``expect=None``: the outcome depends on how Dovecot itself parses the bytes
  (e.g. a NUL inside a marker header); only consistency is checked (the folder,
  the keyword and the event agree with each other).

The expectations follow the classifier rules in
``plugin/core/src/classify/mod.rs``: a chat has a ``Chat-Version`` field (any
value), or a first ``Message-ID`` msg-id, or a FIRST ``References`` msg-id,
whose local part starts with ``chat$`` (ASCII case-insensitive); only the
first occurrence of each field counts; a group chat id is
``chat$group.<gid>.<unique>`` with ``gid`` = 12 to 64 of ``[0-9A-Za-z_-]``;
``multipart/report; report-type=disposition-notification`` makes a chat a
read receipt (and leaves a non-chat a non-chat).

Each case gets a unique **marker**, used as the local part of the envelope
sender: Dovecot's lmtp writes it into the ``Return-Path`` it prepends, so a
stored copy is found again whatever the message itself looks like (even an
empty message or one whose headers are garbage). dovecot-lda adds no
``Return-Path``; like an MTA, the test prepends it (``Hostile.lda_raw``), so
messages that start with a continuation line (which would fold into it) always
go over LMTP.
Nothing here talks to Dovecot.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

#: Domain of every envelope sender (the marker is the local part).
MARKER_DOMAIN = "hostile.example"
MARKER_RE = re.compile(rb"^Return-Path: <(h\d{4}\.[0-9a-z]+)@" + MARKER_DOMAIN.encode() + rb">",
                       re.MULTILINE)

GID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

MDN_CT = b"multipart/report; report-type=disposition-notification; boundary=\"mdnb\""
MDN_BODY = (b"--mdnb\r\nContent-Type: text/plain\r\n\r\nread\r\n--mdnb\r\n"
            b"Content-Type: message/disposition-notification\r\n\r\n"
            b"Disposition: manual-action/MDN-sent-automatically; displayed\r\n--mdnb--\r\n")


@dataclass(frozen=True)
class Hostile:
    """One hostile message and what must become of it."""

    seq: int
    category: str
    #: The message bytes as Dovecot should receive them (LMTP dot-stuffing is
    #: the transport's job). ``b""`` is the empty message.
    raw: bytes
    #: "chat", "plain" or None (consistency checks only).
    expect: str | None
    #: Exact event kind, or None when only ``expect`` is known.
    kind: str | None
    #: Expected ``group_id`` of the event (only checked when ``kind`` is set).
    group_id: str | None
    #: "lmtp" or "lda".
    via: str
    #: Unique marker (envelope sender local part).
    marker: str

    @property
    def sender(self) -> str:
        return f"{self.marker}@{MARKER_DOMAIN}"

    @property
    def lda_raw(self) -> bytes:
        """What an MTA hands dovecot-lda: the message with a ``Return-Path`` prepended
        (dovecot-lda does not add one itself; Postfix's pipe flag ``R`` does)."""
        return b"Return-Path: <" + self.sender.encode() + b">\r\n" + self.raw

    def short(self) -> str:
        return (f"#{self.seq} {self.category} via {self.via} expect={self.expect} "
                f"kind={self.kind} ({len(self.raw)} bytes) {self.raw[:80]!r}")


def marker_of(stored_raw: bytes) -> str | None:
    """The marker of a stored copy, from the Return-Path Dovecot prepended."""
    m = MARKER_RE.search(stored_raw[:4096])
    return m[1].decode() if m else None


# --------------------------------------------------------------------------- building blocks
class _Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def tok(self, n: int = 16) -> str:
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def gid(self, n: int = 16) -> str:
        return "".join(self.r.choice(GID_CHARS) for _ in range(n))

    def plain_mid(self) -> bytes:
        return f"<{self.tok(24)}@mua.example.net>".encode()

    def chat_mid(self) -> bytes:
        return f"<chat${self.tok(24)}@example.net>".encode()

    def group_mid(self, gid: str) -> bytes:
        return f"<chat$group.{gid}.{self.tok(10)}@example.net>".encode()

    def head(self, mid: bytes | None = None, subject: bytes = b"hostile",
             extra: bytes = b"", frm: bytes = b"Mallory <mallory@evil.example>") -> bytes:
        """A plausible header block start (no Chat-Version, no blank line)."""
        out = (b"From: " + frm + b"\r\nTo: victim@example.org\r\n"
               b"Date: Tue, 2 Jan 2024 03:04:05 +0000\r\n"
               b"Subject: " + subject + b"\r\n")
        if mid is not None:
            out += b"Message-ID: " + mid + b"\r\n"
        return out + extra


def _msg(head: bytes, body: bytes = b"body\r\n") -> bytes:
    return head + b"\r\n" + body


# Each hand-made case: (category, raw, expect, kind, group_id)
Case = tuple[str, bytes, "str | None", "str | None", "str | None"]


def _header_injection(g: _Gen) -> list[Case]:
    cm, pm = g.chat_mid(), g.plain_mid()
    gid = g.gid(20)
    return [
        # A bare CR is not a line end (only LF is): the "injected" field stays
        # inside the Subject value.
        ("inject_bare_cr", _msg(g.head(pm, b"hi\rChat-Version: 1.0")), "plain", "not-chat", None),
        ("inject_bare_cr_mid", _msg(g.head(pm, b"x\rMessage-ID: " + cm)), "plain", "not-chat", None),
        # A bare LF IS a line end: the injected field is a real field.
        ("inject_bare_lf", _msg(g.head(pm, b"hi\nChat-Version: 1.0")), "chat", "chat", None),
        ("inject_crlf", _msg(g.head(pm, b"hi\r\nChat-Version: 1.0")), "chat", "chat", None),
        ("inject_lf_cr", _msg(g.head(pm, b"hi\n\rChat-Version: 1.0")), None, None, None),
        # Folded continuation lines that merely look like fields.
        ("fold_lookalike", _msg(g.head(pm, extra=b"X-Note: a\r\n Chat-Version: 1.0\r\n")),
         "plain", "not-chat", None),
        ("fold_lookalike_tab", _msg(g.head(pm, extra=b"X-Note: a\r\n\tMessage-ID: " + cm + b"\r\n")),
         "plain", "not-chat", None),
        # Folded real fields.
        ("fold_chat_version", _msg(g.head(pm, extra=b"Chat-Version:\r\n 1.0\r\n")),
         "chat", "chat", None),
        ("fold_message_id", _msg(g.head(None, extra=b"Message-ID:\r\n\t \r\n " + cm + b"\r\n")),
         "chat", "chat", None),
        ("fold_references", _msg(g.head(pm, extra=b"References:\r\n <chat$group." + gid.encode()
                                        + b".a@x>\r\n\t<o@x>\r\n")),
         "chat", "group-chat", gid),
        ("fold_many", _msg(g.head(pm, extra=b"X-Fold: a" + b"\r\n b" * 20000 + b"\r\n")),
         "plain", "not-chat", None),
        ("fold_empty_continuations", _msg(g.head(cm, extra=b"X-Fold: a\r\n \r\n\t\r\n \r\n")),
         "chat", "chat", None),
        # A message whose first line is a continuation line.
        ("fold_first_line", b" \tcontinuation first\r\n" + _msg(g.head(pm)), None, None, None),
        # Encoded CR/LF: decoding must never create fields.
        ("inject_encoded_crlf", _msg(g.head(pm, b"=?utf-8?Q?a=0D=0AChat-Version:_1.0?=")),
         "plain", "not-chat", None),
        ("inject_encoded_mid", _msg(g.head(b"=?utf-8?B?PGNoYXQkYWJjQGV4YW1wbGUubmV0Pg==?=")),
         "plain", "not-chat", None),
        # Field-name tricks: not the field the classifier looks for.
        ("name_underscore", _msg(g.head(pm, extra=b"Chat_Version: 1.0\r\n")), "plain", "not-chat", None),
        ("name_prefix", _msg(g.head(pm, extra=b"X-Chat-Version: 1.0\r\n")), "plain", "not-chat", None),
        ("name_suffix", _msg(g.head(pm, extra=b"Chat-Versions: 1.0\r\n")), "plain", "not-chat", None),
        ("name_case", _msg(g.head(pm, extra=b"cHAT-vERSION: 1.0\r\n")), "chat", "chat", None),
        ("name_space_before_colon", _msg(g.head(pm, extra=b"Chat-Version : 1.0\r\n")),
         None, None, None),
        ("name_nul", _msg(g.head(pm, extra=b"Chat\x00Version: 1.0\r\n")), None, None, None),
        ("name_in_body_only", _msg(g.head(pm), b"Chat-Version: 1.0\r\nMessage-ID: " + cm + b"\r\n"),
         "plain", "not-chat", None),
    ]


def _huge(g: _Gen) -> list[Case]:
    mb = 1 << 20
    gid = g.gid(30)
    alnum = (b"abcdefghij" * (mb // 10 + 1))[:mb]
    return [
        ("huge_subject_plain", _msg(g.head(g.plain_mid(), alnum)), "plain", "not-chat", None),
        ("huge_subject_chat_utf8", _msg(g.head(g.chat_mid(), ("\u00e9\u4e2d\U0001F600" * (mb // 9))
                                                .encode())), "chat", "chat", None),
        ("huge_x_header", _msg(g.head(g.chat_mid(), extra=b"X-Long: " + alnum + b"\r\n")),
         "chat", "chat", None),
        ("huge_references_group", _msg(g.head(g.plain_mid(), extra=b"References: <chat$group."
                                              + gid.encode() + b".r@x> " + alnum + b"\r\n")),
         "chat", "group-chat", gid),
        ("huge_message_id_chat", _msg(g.head(b"<chat$" + alnum + b"@x>")), "chat", "chat", None),
        ("huge_chat_version", _msg(g.head(g.plain_mid(), extra=b"Chat-Version: " + alnum + b"\r\n")),
         "chat", "chat", None),
        ("huge_content_type_mdn", _msg(g.head(g.plain_mid(), extra=b"Chat-Version: 1.0\r\n"
                                              b"Content-Type: multipart/report; " + b"x=y; " * 50000
                                              + b"report-type=disposition-notification\r\n")),
         # The report-type parameter sits beyond the classifier's 16 KiB window.
         "chat", "chat", None),
        ("huge_subject_folded", _msg(g.head(g.plain_mid(), b"w " + b"\r\n word" * 100000)),
         "plain", "not-chat", None),
    ]


def _references(g: _Gen) -> list[Case]:
    gid = g.gid(16)

    def refs(first: bytes, n: int, sep: bytes = b" ") -> bytes:
        return sep.join([first] + [f"<r{i}.{g.tok(8)}@x>".encode() for i in range(n)])

    return [
        ("refs_5000_group_first", _msg(g.head(g.plain_mid(), extra=b"References: " + refs(
            b"<chat$group." + gid.encode() + b".0@x>", 5000) + b"\r\n")), "chat", "group-chat", gid),
        ("refs_5000_folded", _msg(g.head(g.plain_mid(), extra=b"References: " + refs(
            b"<chat$xyz@x>", 5000, b"\r\n ") + b"\r\n")), "chat", "chat", None),
        ("refs_5000_chat_last", _msg(g.head(g.plain_mid(), extra=b"References: " + refs(
            b"<first@x>", 5000) + b" <chat$group." + gid.encode() + b".z@x>\r\n")),
         "plain", "not-chat", None),
        ("refs_3000_fields", _msg(g.head(g.plain_mid(), extra=b"".join(
            b"References: <r" + str(i).encode() + b"@x>\r\n" for i in range(3000)))),
         "plain", "not-chat", None),
        ("refs_first_field_wins", _msg(g.head(g.plain_mid(), extra=b"References: <a@x>\r\n"
                                              b"References: <chat$b@x>\r\n")), "plain", "not-chat", None),
        ("refs_empty_ids", _msg(g.head(g.plain_mid(), extra=b"References: " + b"<> " * 20000 + b"\r\n")),
         "plain", "not-chat", None),
        ("refs_unbalanced", _msg(g.head(g.plain_mid(), extra=b"References: " + b"<" * 30000 + b"\r\n")),
         "plain", "not-chat", None),
    ]


def _nul(g: _Gen) -> list[Case]:
    return [
        ("nul_body_chat", _msg(g.head(g.chat_mid()), b"a\x00b\x00\x00c\r\n"), "chat", "chat", None),
        ("nul_body_plain", _msg(g.head(g.plain_mid()), b"\x00" * 5000 + b"\r\n"), "plain", "not-chat", None),
        ("nul_subject", _msg(g.head(g.chat_mid(), b"sub\x00ject")), "chat", "chat", None),
        ("nul_x_header", _msg(g.head(g.plain_mid(), extra=b"X-Nul: \x00\x00\x00\r\n")),
         "plain", "not-chat", None),
        # A NUL inside the marker fields: Dovecot's own parsing decides.
        ("nul_in_chat_version", _msg(g.head(g.plain_mid(), extra=b"Chat-Version: \x001.0\r\n")),
         "chat", "chat", None),
        ("nul_in_message_id", _msg(g.head(b"<chat$\x00abc@x>")), None, None, None),
        ("nul_before_prefix", _msg(g.head(b"<\x00chat$abc@x>")), None, None, None),
        ("nul_in_group_id", _msg(g.head(b"<chat$group.ABCDEF\x00GHIJKLMN.u@x>")), None, None, None),
        ("nul_in_content_type", _msg(g.head(g.chat_mid(), extra=b"Content-Type: multipart/report;"
                                            b" report-type=disposition\x00-notification\r\n")),
         "chat", None, None),
        ("nul_header_only", b"\x00\x00\x00\r\n\r\n", None, None, None),
    ]


def _utf8(g: _Gen) -> list[Case]:
    bad = b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80\xc3"
    return [
        ("utf8_subject_chat", _msg(g.head(g.chat_mid(), b"caf\xe9 " + bad)), "chat", "chat", None),
        ("utf8_subject_plain", _msg(g.head(g.plain_mid(), bad * 100)), "plain", "not-chat", None),
        ("utf8_from", _msg(g.head(g.chat_mid(), frm=b"\"\xff\xfe\" <x@\xc3.example>")), "chat", "chat", None),
        ("utf8_chat_version", _msg(g.head(g.plain_mid(), extra=b"Chat-Version: " + bad + b"\r\n")),
         "chat", "chat", None),
        ("utf8_group_id", _msg(g.head(b"<chat$group.\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                      b"abc.u@x>")), "chat", "chat", None),
        ("utf8_message_id_tail", _msg(g.head(b"<chat$" + bad + b"@x>")), "chat", "chat", None),
        ("utf8_overlong_prefix", _msg(g.head(b"<\xc1\xa3hat$abc@x>")), "plain", "not-chat", None),
        ("utf8_body", _msg(g.head(g.plain_mid()), bad * 1000), "plain", "not-chat", None),
        ("utf8_header_name", _msg(g.head(g.plain_mid(), extra=b"Ch\xe4t-Version: 1.0\r\n")),
         "plain", "not-chat", None),
        ("utf8_valid_subject_chat", _msg(g.head(g.chat_mid(), "\u00fcber \u6f22\u5b57 \U0001F4AC"
                                                .encode())), "chat", "chat", None),
    ]


def _rfc2047(g: _Gen) -> list[Case]:
    bigb64 = b"=?utf-8?B?" + b"QUFB" * 150000 + b"?="
    many = b" ".join([b"=?utf-8?Q?a=C3=A9?="] * 20000)
    nested = b"=?utf-8?B?" + b"PT91dGYtOD9CP1BUOTFkR1l0T0Q5Q1B6MD0/PQ==" * 2000 + b"?="
    return [
        ("2047_big_base64", _msg(g.head(g.chat_mid(), bigb64)), "chat", "chat", None),
        ("2047_many_words", _msg(g.head(g.plain_mid(), many)), "plain", "not-chat", None),
        ("2047_many_words_chat", _msg(g.head(g.chat_mid(), many)), "chat", "chat", None),
        ("2047_nested", _msg(g.head(g.chat_mid(), nested)), "chat", "chat", None),
        ("2047_bad_charset", _msg(g.head(g.chat_mid(), b"=?x-nonexistent-9?Q?=FF=FE?= "
                                          b"=?utf-7?B?K0FHRS0=?= =?iso-2022-jp?B?GyRCJDMbKEI=?="
                                          b" =?utf-8*en-US?Q?x?=")), "chat", "chat", None),
        ("2047_broken", _msg(g.head(g.plain_mid(), b"=?utf-8?B?!!!?= =?utf-8?Q?=E2=82?= =?=?= "
                                    b"=?utf-8?X?bad?= =?utf-8??x?= =?" * 50)), "plain", "not-chat", None),
        ("2047_in_from", _msg(g.head(g.chat_mid(), frm=b"=?utf-8?B?/w==?= " + many[:5000]
                                     + b" <m@evil.example>")), "chat", "chat", None),
        ("2047_chat_version_encoded", _msg(g.head(g.plain_mid(),
                                                  extra=b"Chat-Version: =?utf-8?B?MS4w?=\r\n")),
         "chat", "chat", None),
        ("2047_encoded_field_name", _msg(g.head(g.plain_mid(), extra=b"=?utf-8?Q?Chat-Version?=: 1\r\n")),
         "plain", "not-chat", None),
        ("2047_decodes_to_nul_crlf", _msg(g.head(g.chat_mid(), b"=?utf-8?Q?a=00b=0D=0Ac?= "
                                                 b"=?utf-8?B?AAAADQoNCg==?=")), "chat", "chat", None),
    ]


def _mime(g: _Gen) -> list[Case]:
    b = g.tok(12).encode()
    deep = b"".join(b"--d\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n" for _ in range(2000))
    cases = [
        (b"Content-Type: multipart/mixed\r\n", b"--x\r\nno boundary parameter\r\n--x--\r\n"),
        (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n", b"never used\r\n"),
        (b"Content-Type: multipart/mixed; boundary=\"" + b"B" * 5000 + b"\"\r\n",
         b"--" + b"B" * 5000 + b"\r\n\r\nx\r\n--" + b"B" * 5000 + b"--\r\n"),
        (b"Content-Type: multipart/mixed; boundary=d\r\n", deep),
        (b"Content-Type: multipart/mixed; boundary=\"\"\r\n", b"--\r\n\r\n----\r\n"),
        (b"Content-Type: multipart/alternative; boundary=a; boundary=b\r\n",
         b"--a\r\n\r\nx\r\n--b\r\n\r\ny\r\n--a--\r\n"),
        (b"Content-Type: message/rfc822\r\n", b"Content-Type: message/rfc822\r\n\r\n" * 3000),
        (b"Content-Type: ;;;==;\"\r\nContent-Transfer-Encoding: base64\r\n", b"!!!***\r\n"),
        (b"Content-Type: multipart/mixed; boundary=x\r\n",
         b"--x\r\nContent-Type: text/plain\r\n\r\n" + b"--x" * 30000 + b"\r\n"),
        (b"Content-Type: text/plain; charset=\"" + b"\\" * 10000 + b"\r\n", b"x\r\n"),
    ]
    out: list[Case] = []
    for i, (ct, body) in enumerate(cases):
        chat = i % 2 == 0
        mid = g.chat_mid() if chat else g.plain_mid()
        out.append((f"mime_{i}", _msg(g.head(mid, extra=b"MIME-Version: 1.0\r\n" + ct), body),
                    "chat" if chat else "plain", "chat" if chat else "not-chat", None))
    return out


def _forged_group(g: _Gen) -> list[Case]:
    """Forged ``chat$group.`` ids: only 12..64 of [0-9A-Za-z_-] followed by '.<unique>' count."""
    ok12, ok64, ok_mixed = g.gid(12), g.gid(64), "a_b-C_d-E_f-0123"
    C = "chat"

    def mid(s: str | bytes) -> bytes:
        return b"<" + (s.encode() if isinstance(s, str) else s) + b">"

    out: list[Case] = [
        ("gid_len12", _msg(g.head(mid(f"chat$group.{ok12}.u@x"))), C, "group-chat", ok12),
        ("gid_len64", _msg(g.head(mid(f"chat$group.{ok64}.u@x"))), C, "group-chat", ok64),
        ("gid_mixed", _msg(g.head(mid(f"chat$group.{ok_mixed}.u@x"))), C, "group-chat", ok_mixed),
        ("gid_upper_prefix", _msg(g.head(mid(f"CHAT$GROUP.{ok12}.u@x"))), C, "group-chat", ok12),
        ("gid_len11", _msg(g.head(mid(f"chat$group.{ok12[:11]}.u@x"))), C, "chat", None),
        ("gid_len65", _msg(g.head(mid(f"chat$group.{ok64}x.u@x"))), C, "chat", None),
        ("gid_huge", _msg(g.head(mid(f"chat$group.{g.gid(100000)}.u@x"))), C, "chat", None),
        ("gid_empty", _msg(g.head(mid("chat$group..u@x"))), C, "chat", None),
        ("gid_no_unique", _msg(g.head(mid(f"chat$group.{ok12}@x"))), C, "chat", None),
        ("gid_dot_at", _msg(g.head(mid(f"chat$group.{ok12}.@x"))), C, "chat", None),
        ("gid_dot_gt", _msg(g.head(mid(f"chat$group.{ok12}."))), C, "chat", None),
        ("gid_truncated", _msg(g.head(f"<chat$group.{ok12}".encode())), C, "chat", None),
        ("gid_only_prefix", _msg(g.head(mid("chat$group."))), C, "chat", None),
        ("gid_bare_chat", _msg(g.head(mid("chat$"))), C, "chat", None),
        ("gid_no_dot", _msg(g.head(mid(f"chat$group{ok12}.u@x"))), C, "chat", None),
        ("gid_quoted", _msg(g.head(mid(f"chat$group.\"{ok12}\".u@x"))), C, "chat", None),
        ("gid_path_trick", _msg(g.head(mid("chat$group.../../../etc/passwd.u@x"))), C, "chat", None),
        ("gid_json_trick", _msg(g.head(mid("chat$group.\",\"kind\":\"x.u@x"))), C, "chat", None),
        ("gid_space", _msg(g.head(b"< chat$group." + ok12.encode() + b".u@x>")), C, "group-chat", ok12),
        ("gid_comment", _msg(g.head(b"(c (nested)) <chat$group." + ok12.encode() + b".u@x>")),
         C, "group-chat", ok12),
        ("gid_unclosed_comment", _msg(g.head(b"(c <chat$group." + ok12.encode() + b".u@x>")),
         "plain", "not-chat", None),
        ("gid_no_brackets", _msg(g.head(f"chat$group.{ok12}.u@x".encode())), C, "group-chat", ok12),
        ("gid_second_mid", _msg(g.head(b"<a@x> <chat$group." + ok12.encode() + b".u@x>")),
         "plain", "not-chat", None),
        ("gid_refs_first", _msg(g.head(g.plain_mid(), extra=f"References: <chat$group.{ok12}.u@x> "
                                       "<o@x>\r\n".encode())), C, "group-chat", ok12),
        ("gid_refs_second", _msg(g.head(g.plain_mid(), extra=f"References: <o@x> "
                                        f"<chat$group.{ok12}.u@x>\r\n".encode())), "plain", "not-chat", None),
        ("gid_in_reply_to_only", _msg(g.head(g.plain_mid(), extra=f"In-Reply-To: "
                                             f"<chat$group.{ok12}.u@x>\r\n".encode())),
         "plain", "not-chat", None),
        ("gid_mid_beats_refs", _msg(g.head(mid(f"chat$group.{ok12}.u@x"), extra=(
            f"References: <chat$group.{ok_mixed}.u@x>\r\n".encode()))), C, "group-chat", ok12),
        ("gid_refs_after_bad_mid", _msg(g.head(mid(f"chat$group.{ok12[:5]}.u@x"), extra=(
            f"References: <chat$group.{ok_mixed}.u@x>\r\n".encode()))), C, "group-chat", ok_mixed),
        ("gid_chat_group_header_only", _msg(g.head(g.plain_mid(), extra=f"Chat-Group-ID: {ok12}\r\n"
                                                   .encode())), "plain", "not-chat", None),
        ("gid_prefix_lookalike", _msg(g.head(mid(f"xchat$group.{ok12}.u@x"))), "plain", "not-chat", None),
        ("gid_dollar_lookalike", _msg(g.head(mid(f"chat\uff04group.{ok12}.u@x"))), "plain", "not-chat", None),
    ]
    for bad in "!+./=~%:;,*\u00e9":
        gid = ok12[:6] + bad + ok12[6:]
        out.append((f"gid_illegal_{ord(bad):x}", _msg(g.head(mid(f"chat$group.{gid}.u@x"))),
                    C, "chat", None))
    return out


def _mdn(g: _Gen) -> list[Case]:
    cv = b"Chat-Version: 1.0\r\n"

    def mdn(ct: bytes, chat: bool = True, extra: bytes = b"") -> bytes:
        return _msg(g.head(g.plain_mid(), b"Read receipt",
                           extra=(cv if chat else b"") + b"Content-Type: " + ct + b"\r\n" + extra),
                    MDN_BODY)

    return [
        ("mdn_real", mdn(MDN_CT), "chat", "read-receipt", None),
        ("mdn_not_chat", mdn(MDN_CT, chat=False), "plain", "not-chat", None),
        ("mdn_quoted_upper", mdn(b"Multipart/Report; REPORT-TYPE=\"Disposition-Notification\"; "
                                 b"boundary=mdnb"), "chat", "read-receipt", None),
        ("mdn_comments", mdn(b"multipart (c) / report (x); (y) report-type = disposition-notification"),
         "chat", "read-receipt", None),
        ("mdn_folded", mdn(b"multipart/report;\r\n\treport-type=disposition-notification;\r\n boundary=mdnb"),
         "chat", "read-receipt", None),
        ("mdn_delivery_status", mdn(b"multipart/report; report-type=delivery-status; boundary=mdnb"),
         "chat", "chat", None),
        ("mdn_no_report_type", mdn(b"multipart/report; boundary=mdnb"), "chat", "chat", None),
        ("mdn_empty_report_type", mdn(b"multipart/report; report-type=; boundary=mdnb"),
         "chat", "chat", None),
        ("mdn_text_plain", mdn(b"text/plain; report-type=disposition-notification"), "chat", "chat", None),
        ("mdn_rfc2231", mdn(b"multipart/report; report-type*0=disposition-; "
                            b"report-type*1=notification"), "chat", "chat", None),
        ("mdn_prefix_value", mdn(b"multipart/report; report-type=disposition-notificationX"),
         "chat", "chat", None),
        ("mdn_first_param_wins", mdn(b"multipart/report; report-type=x; "
                                     b"report-type=disposition-notification"), "chat", "chat", None),
        ("mdn_second_content_type", mdn(b"text/plain", extra=b"Content-Type: " + MDN_CT + b"\r\n"),
         "chat", "chat", None),
        ("mdn_junk_params", mdn(b"multipart/report; ===; \"x; report-type=disposition-notification"),
         None, None, None),
        ("mdn_group_thread", _msg(g.head(f"<chat$group.{g.gid(14)}.m@x>".encode(),
                                         extra=b"Content-Type: " + MDN_CT + b"\r\n"), MDN_BODY),
         "chat", "read-receipt", None),
        ("mdn_chat_mid_only", _msg(g.head(g.chat_mid(), extra=b"Content-Type: " + MDN_CT + b"\r\n"),
                                   MDN_BODY), "chat", "read-receipt", None),
        ("mdn_huge_body", _msg(g.head(g.plain_mid(), extra=cv + b"Content-Type: " + MDN_CT + b"\r\n"),
                               b"--mdnb\r\n\r\n" + b"x" * 300000 + b"\r\n--mdnb--\r\n"),
         "chat", "read-receipt", None),
    ]


def _chat_version_values(g: _Gen) -> list[Case]:
    vals = [b"", b" ", b"1.0", b"0", b"99.99", b"-1", b"1.0 1.0", b"banana", b"\t\t",
            b"1.0; DROP TABLE users", b"<script>", b"=?utf-8?B?w6k=?=", b"(comment only)",
            b"\"quoted\"", b"9" * 10000]
    return [(f"chat_version_{i}", _msg(g.head(g.plain_mid(), extra=b"Chat-Version:" + (b" " if v else b"")
                                              + v + b"\r\n")), "chat", "chat", None)
            for i, v in enumerate(vals)]


def _duplicates(g: _Gen) -> list[Case]:
    gid1, gid2 = g.gid(13), g.gid(15)
    return [
        ("dup_mid_plain_first", _msg(g.head(g.plain_mid(), extra=b"Message-ID: " + g.chat_mid() + b"\r\n")),
         "plain", "not-chat", None),
        ("dup_mid_chat_first", _msg(g.head(g.chat_mid(), extra=b"Message-ID: " + g.plain_mid() + b"\r\n")),
         "chat", "chat", None),
        ("dup_mid_two_groups", _msg(g.head(f"<chat$group.{gid1}.a@x>".encode(),
                                           extra=f"Message-ID: <chat$group.{gid2}.b@x>\r\n".encode())),
         "chat", "group-chat", gid1),
        ("dup_chat_version_1000", _msg(g.head(g.plain_mid(), extra=b"Chat-Version: 1.0\r\n" * 1000)),
         "chat", "chat", None),
        ("dup_content_type", _msg(g.head(g.chat_mid(), extra=b"Content-Type: text/plain\r\n"
                                         b"Content-Type: " + MDN_CT + b"\r\n"), MDN_BODY),
         "chat", "chat", None),
        ("dup_from_subject", _msg(g.head(g.chat_mid(), extra=b"From: a@x\r\nFrom: b@y\r\nSubject: 2\r\n"
                                         b"Subject: 3\r\n" * 500)), "chat", "chat", None),
        ("dup_everything_5000", _msg(g.head(g.plain_mid(), extra=b"".join(
            b"X-Dup: " + str(i).encode() + b"\r\n" for i in range(5000)))), "plain", "not-chat", None),
    ]


def _missing(g: _Gen) -> list[Case]:
    return [
        ("empty_message", b"", "plain", "not-chat", None),
        ("only_blank_line", b"\r\n", "plain", "not-chat", None),
        ("only_body", b"\r\njust a body, no headers\r\n", "plain", "not-chat", None),
        ("no_from_no_mid", b"Subject: x\r\n\r\nbody\r\n", "plain", "not-chat", None),
        ("only_chat_version", b"Chat-Version: 1.0\r\n\r\n", "chat", "chat", None),
        ("only_chat_version_no_blank", b"Chat-Version: 1.0", "chat", "chat", None),
        ("only_chat_mid", b"Message-ID: <chat$only@x>\r\n\r\n", "chat", "chat", None),
        ("empty_values", b"From:\r\nTo:\r\nSubject:\r\nMessage-ID:\r\nReferences:\r\nContent-Type:\r\n"
                         b"\r\n", "plain", "not-chat", None),
        ("empty_values_chat", b"From:\r\nSubject:\r\nMessage-ID:\r\nChat-Version:\r\n\r\n",
         "chat", "chat", None),
        ("no_separator", g.head(g.chat_mid()) + b"X-Last: no blank line follows", "chat", "chat", None),
        ("bare_lf_everywhere", _msg(g.head(g.chat_mid())).replace(b"\r\n", b"\n"), "chat", "chat", None),
        ("bare_cr_everywhere", _msg(g.head(g.chat_mid())).replace(b"\r\n", b"\r"), None, None, None),
        ("garbage_lines", b"this is not a header\r\n: no name\r\n:::\r\n" + _msg(g.head(g.plain_mid())),
         None, None, None),
        ("dots", _msg(g.head(g.chat_mid()), b".\r\n..\r\n...\r\n.x\r\n"), "chat", "chat", None),
    ]


HAND_MADE = [_header_injection, _huge, _references, _nul, _utf8, _rfc2047, _mime, _forged_group,
             _mdn, _chat_version_values, _duplicates, _missing]


# --------------------------------------------------------------------------- generated cases
def _valid_shape(g: _Gen, i: int) -> tuple[bytes, bytes, str, str, str | None]:
    """(head without noise, body, expect, kind, group id) of a well-formed chat or plain mail."""
    shape = i % 6
    if shape == 0:
        return g.head(g.plain_mid()), b"hello\r\n", "plain", "not-chat", None
    if shape == 1:
        return g.head(g.chat_mid(), extra=b"Chat-Version: 1.0\r\n"), b"hi\r\n", "chat", "chat", None
    if shape == 2:
        gid = g.gid(12 + g.r.randrange(53))
        return (g.head(g.group_mid(gid), extra=b"Chat-Version: 1.0\r\nChat-Group-ID: "
                       + gid.encode() + b"\r\n"), b"group\r\n", "chat", "group-chat", gid)
    if shape == 3:
        gid = g.gid(12 + g.r.randrange(53))
        return (g.head(g.plain_mid(), b"Re: group", extra=b"References: " + g.group_mid(gid)
                       + b" " + g.plain_mid() + b"\r\n"), b"> quoted\r\nreply\r\n", "chat",
                "group-chat", gid)
    if shape == 4:
        return (g.head(f"<{g.tok(8)}-{g.tok(4)}@localhost>".encode(), b"[...]",
                       extra=b"Chat-Version: 1.0\r\nContent-Type: " + MDN_CT + b"\r\n"),
                MDN_BODY, "chat", "read-receipt", None)
    # A near miss: chat-looking words in the wrong places.
    return (g.head(f"<x{g.tok(6)}chat$@x>".encode(), b"Chat-Version: 1.0",
                   extra=b"X-Chat-Version: 1.0\r\nReferences: <a@x> <chat$b@x>\r\n"),
            b"Chat-Version: 1.0\r\n", "plain", "not-chat", None)


def _noise_header(g: _Gen) -> bytes:
    """One classification-neutral hostile header line."""
    r = g.r
    pick = r.randrange(10)
    if pick == 0:
        return b"X-Bin: " + bytes(r.choice(range(0x80, 0x100)) for _ in range(r.randrange(1, 300))) + b"\r\n"
    if pick == 1:
        return b"X-Nul: a\x00" + bytes(r.randrange(1, 0x7f) for _ in range(50)).replace(b"\n", b"") + b"\r\n"
    if pick == 2:
        return b"X-Enc: " + b" ".join(b"=?utf-8?B?" + bytes(r.choice(b"QUJD=/+!") for _ in range(
            r.randrange(1, 40))) + b"?=" for _ in range(r.randrange(1, 200))) + b"\r\n"
    if pick == 3:
        return b"X-Long: " + b"y" * r.randrange(1000, 60000) + b"\r\n"
    if pick == 4:
        return b"X-Folded: a" + b"\r\n b" * r.randrange(1, 2000) + b"\r\n"
    if pick == 5:
        return b"".join(b"X-Many-" + str(k).encode() + b": v\r\n" for k in range(r.randrange(10, 800)))
    if pick == 6:
        return b"Received: from " + b"(" * r.randrange(1, 500) + b" by x\r\n"
    if pick == 7:
        return b"X-Chat-Version: " + b"1.0" * r.randrange(1, 100) + b"\r\n"
    if pick == 8:
        return b"Subject-X: =?utf-8?Q?" + b"=0D=0A=00" * r.randrange(1, 300) + b"?=\r\n"
    return b"X-Ctl: " + bytes(r.choice([1, 7, 8, 11, 12, 27, 127]) for _ in range(40)) + b"\r\n"


def _noise_body(g: _Gen, body: bytes) -> bytes:
    r = g.r
    pick = r.randrange(5)
    if pick == 0:
        return body + bytes(r.randrange(256) for _ in range(r.randrange(1, 3000))).replace(b"\r", b"")
    if pick == 1:
        return body + b"z" * r.randrange(10000, 120000) + b"\r\n"
    if pick == 2:
        return body + b"\x00" * r.randrange(1, 100) + b"\r\n"
    if pick == 3:
        return body + b"--\r\n--boundary-never-declared--\r\n" * r.randrange(1, 100)
    return body


def _generated(g: _Gen, n: int) -> list[Case]:
    out: list[Case] = []
    for i in range(n):
        head, body, expect, kind, gid = _valid_shape(g, i)
        noise = b"".join(_noise_header(g) for _ in range(g.r.randrange(1, 4)))
        # Noise before or after the real fields: never changes the verdict.
        head = noise + head if g.r.random() < 0.5 else head + noise
        raw = _msg(head, _noise_body(g, body))
        if g.r.random() < 0.15:
            raw = raw.replace(b"\r\n", b"\n")
        out.append((f"gen_{['plain', 'chat', 'group', 'legacy', 'mdn', 'nearmiss'][i % 6]}",
                    raw, expect, kind, gid))
    return out


def hostile_messages(generated: int = 420, lda_every: int = 12, seed: int = 0xB0B,
                     run: str = "0") -> list[Hostile]:
    """Hand-made cases (about 160) plus ``generated`` noisy valid shapes.

    Every ``lda_every``-th message goes through dovecot-lda instead of LMTP.
    ``run`` is put into every marker so that several runs never collide. The
    result is identical for identical arguments.
    """
    g = _Gen(seed)
    cases: list[Case] = []
    for make in HAND_MADE:
        cases += make(g)
    cases += _generated(g, generated)
    out = []
    for seq, (cat, raw, expect, kind, gid) in enumerate(cases):
        via = "lda" if lda_every and seq % lda_every == lda_every - 1 else "lmtp"
        if raw[:1] in (b" ", b"\t"):
            via = "lmtp"
        out.append(Hostile(seq, cat, raw, expect, kind, gid, via, f"h{seq:04d}.{run}"))
    return out

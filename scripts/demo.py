#!/usr/bin/python3
"""The README demo: Chat over IMAP on a throwaway Dovecot, end to end, in one command.

Owns the human-facing walkthrough. It starts a local webhook receiver, the
real coi-sidecar and a private Dovecot on loopback with the coi plugin
(tests/harness), turns COI on for alice the way a COI client does (IMAP
SETMETADATA enabled=yes, message-filter=active), registers her phone for Web
Push over IMAP (subscription, validation push, answer), delivers a plain mail
and a COI chat over LMTP and a message the real Delta Chat 2.65 sent
(captured, header-protected: tests/fixtures/deltachat/) through dovecot-lda, then
shows over IMAP where each message landed (folder, flags, Subject), the
plugin's own log lines, the Web Push notifications the phone decrypted, the
signed webhooks the sidecar pushed, and its metrics; then stops everything it
started.

Usage: /usr/bin/python3 scripts/demo.py [--keep]
Exit status: 0 if the chats landed in COI/Chats with $Chat, the plain mail in
INBOX without it, a verified webhook arrived for each, and the phone got one
decrypted, VAPID-signed push per chat and none for the plain mail; 1
otherwise; 2 if
Dovecot or the sidecar could not be started.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import (COI_ENABLED, COI_MESSAGE_FILTER, DovecotInstance,  # noqa: E402
                           messages as M)
from tests.harness.checks import locate  # noqa: E402
from tests.harness.receiver import WebhookReceiver, verify  # noqa: E402
from tests.harness.pushreceiver import PushReceiver, PushSidecar  # noqa: E402
from tests.harness.sidecar import TEST_SECRET, SidecarProcess, Webhook  # noqa: E402

CHATS = "COI/Chats"
SUBSCRIPTIONS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
VAPID_SUBJECT = "mailto:postmaster@example.org"


def title(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


def short_log_line(line: str) -> str:
    """'Nov 23 11:00:00 lmtp(alice@x)<pid><session>: Debug: ... coi: ...' -> compact form."""
    m = re.match(r"^\w{3} [ \d]\d [\d:]{8} (\w[\w-]*)(?:\(([^)]*)\))?(?:<[^>]*>)*: (\w+): (.*)$",
                 line)
    if not m:
        return line
    proc, user, level, msg = m.groups()
    msg = re.sub(r"^lmtp-server: conn [^:]+:\d+ \[\d+\]: rcpt \S+: ", "", msg)
    who = f"{proc}({user})" if user else proc
    return f"{who:<26} {level:<7} {msg}"


def enable_coi(dc: DovecotInstance, user: str) -> None:
    title(f"1. {user} turns COI on (IMAP METADATA, as a COI client would)")
    with dc.imap(user) as c:
        for key, value in ((COI_ENABLED, "yes"), (COI_MESSAGE_FILTER, "active")):
            status, text = c.setmetadata(key, value)
            print(f'   C: SETMETADATA "" ({key} "{value}")')
            print(f"   S: {status} {text}")
        print(f"   GETMETADATA enabled -> {c.getmetadata(COI_ENABLED)!r}, "
              f"message-filter -> {c.getmetadata(COI_MESSAGE_FILTER)!r}")


def register_phone(dc: DovecotInstance, user: str, push: PushReceiver):
    """Web Push over IMAP, as a COI client on a phone does it."""
    title(f"2. {user}'s phone registers for Web Push (IMAP WebPush extension)")
    sub = push.make_subscription("alice-phone-1")
    with dc.imap(user) as c:
        caps = [cap for cap in c.capabilities() if cap in ("COI", "WEBPUSH", "XDELTAPUSH", "METADATA")]
        print(f"   capabilities after login include: {' '.join(caps)}")
        pem = c.getmetadata("/private/vendor/vendor.dovecot/webpush/vapid") or ""
        print(f"   GETMETADATA .../webpush/vapid -> {pem.splitlines()[0] if pem else None} ...")
        status, text = c.setmetadata(SUBSCRIPTIONS + sub.id, sub.client_json("chat"))
        print(f'   C: SETMETADATA "" ({SUBSCRIPTIONS}{sub.id} {{"msgtype":"chat",...}})')
        print(f"   S: {status} {text}")
        try:
            req = push.wait_for(1, sub, timeout=20)[0]
            secret = req.json()["validation"]
        except (TimeoutError, AssertionError, KeyError) as exc:
            print(f"   no validation push arrived: {exc}")
            return sub
        print(f"   push service got the validation push (WebPush-Validation header, "
              f"decrypted by the phone: {{\"validation\": \"{secret[:8]}...\"}})")
        status, text = c.setmetadata(SUBSCRIPTIONS + sub.id + "/validate", secret)
        print(f'   C: SETMETADATA "" ({SUBSCRIPTIONS}{sub.id}/validate "{secret[:8]}...")')
        print(f"   S: {status} {text}")
    return sub


def show_pushes(push: PushReceiver, sub, sent: dict[str, M.TestMessage]) -> bool:
    """The notifications the phone got: decrypted with the phone's own keys,
    VAPID JWT checked against the key IMAP served."""
    title("5. Web Push notifications on the phone (decrypted, VAPID signature checked)")
    chats = [m for m in sent.values() if m.is_chat]
    try:
        push.wait_for(1 + len(chats), sub, timeout=30)
    except TimeoutError as exc:
        print(f"   {exc}")
    reqs = push.requests(sub)[1:]
    ok = len(reqs) == len(chats)
    for req in reqs:
        if req.errors:
            print(f"   BAD PUSH: {req.errors}")
            ok = False
            continue
        p = req.json()
        print(f"   POST {req.path} TTL={req.header('ttl')} {len(req.body)} bytes aes128gcm, "
              f"JWT aud={req.claims.get('aud')}")
        print(f"      from={p.get('from-email')} subject={p.get('subject')!r} folder={p.get('folder')} "
              f"uid={p.get('uid')} msg-id={p.get('msg-id')}")
    mids = {r.json().get("msg-id") for r in reqs if not r.errors}
    ok &= mids == {m.message_id for m in chats}
    print(f"   {len(reqs)} push(es) for {len(chats)} chat(s); the plain mail is not pushed "
          f"(msgtype chat)")
    return ok


def deliver(dc: DovecotInstance, user: str) -> dict[str, M.TestMessage]:
    title("3. Mail arrives")
    to = dc.address(user)
    sent = {
        "plain mail (LMTP)": M.plain_mail(subject="Invoice for March", to=to),
        "COI chat (LMTP)": M.coi_chat(subject="Chat: lunch?", to=to, body="Lunch at noon?"),
        # what the real Delta Chat 2.65 sent in tests/capture_deltachat.py:
        # header-protected, nothing chat-specific outside the encryption
        "Delta Chat 2.65, captured (dovecot-lda)": M.deltachat_captured(),
    }
    for label, msg in sent.items():
        if "lda" in label:
            res = dc.lda_deliver(user, msg.raw)
            outcome = "exit 0 (delivered)" if res.ok else f"exit {res.returncode}: {res.stderr}"
        else:
            r = dc.lmtp_deliver(msg.raw, [user])[0]
            outcome = f"{r.code} {r.message}"
        print(f"   {label:<34} Message-ID <{msg.message_id}>")
        print(f"   {'':<34} -> {outcome}")
    return sent


def show_mailbox(dc: DovecotInstance, user: str) -> dict:
    title(f"4. What {user}'s IMAP client sees")
    with dc.imap(user) as c:
        entries = c.list_entries()
        subscribed = set(c.subscribed())
        folders = c.fetch_all_folders()
    print("   Folders:")
    for e in entries:
        sub = "subscribed" if e.name in subscribed else ""
        print(f"     {e.name:<14} {' '.join(e.attrs):<32} {sub}")
    print()
    print(f"   {'folder':<12} {'uid':>4}  {'flags':<22} subject")
    for name in sorted(folders):
        for m in folders[name]:
            flags = " ".join(f for f in m.flags if f != "\\Recent") or "-"
            print(f"   {name:<12} {m.uid:>4}  {flags:<22} {m.header('Subject')}")
    return folders


def show_plugin_log(dc: DovecotInstance) -> None:
    title("6. The coi plugin's log lines (mail_debug = yes)")
    # Dovecot's own dict debug lines mention our attribute keys; not ours
    lines = [ln for ln in dc.log.plugin_lines() if "dict(" not in ln]
    if not lines:
        print("   (no lines from the coi plugin)")
    for line in lines:
        print("   " + short_log_line(line))


SHOWN_METRICS = (
    "coi_intake_events_total", "coi_plugin_messages_classified_total",
    "coi_plugin_messages_routed_total", "coi_plugin_messages_tagged_total",
    "coi_delivery_attempts_total", "coi_queue_depth_events", "coi_dead_letters_pending",
    "coi_push_requests_total",
)


def show_sidecar(sidecar: SidecarProcess, receiver: WebhookReceiver, expected: int) -> bool:
    """The events of step 2, as the operator's systems and Prometheus see them."""
    title("7. Webhooks pushed by coi-sidecar (Standard Webhooks, signature verified)")
    try:
        delivered = receiver.wait_delivered(expected, timeout=30)
    except AssertionError as exc:
        print(f"   only {len(receiver.delivered())} of {expected} webhooks arrived: {exc}")
        delivered = receiver.delivered()
    ok = len({r.webhook_id for r in delivered}) >= expected
    for req in delivered:
        try:
            verify(TEST_SECRET, req.headers, req.body)
            signature = "signature ok"
        except AssertionError as exc:
            signature = f"BAD SIGNATURE: {exc}"
            ok = False
        data = req.json().get("data", {})
        print(f"   {req.method} {req.path} webhook-id={req.webhook_id} ({signature})")
        print(f"      user={data.get('user')} folder={data.get('folder')} uid={data.get('uid')} "
              f"kind={data.get('kind')} $Chat={data.get('chat_keyword')} "
              f"routed={data.get('routed')} subject={data.get('subject')!r}"
              + (" headers_protected=true" if data.get("headers_protected") else ""))

    title("8. coi-sidecar /metrics (excerpt)")
    for line in sidecar.metrics_text().splitlines():
        # zero-valued series are pre-registered label values: skip them
        if line.startswith(SHOWN_METRICS) and not line.endswith(" 0"):
            print("   " + line)
    return ok


def verdict(folders: dict, sent: dict[str, M.TestMessage]) -> bool:
    title("Result")
    ok = True
    for label, msg in sent.items():
        copies = locate(folders, msg.message_id)
        want = CHATS if msg.is_chat else "INBOX"
        good = (len(copies) == 1 and copies[0].folder == want
                and copies[0].has_chat_keyword == msg.is_chat)
        where = ", ".join(f"{c.folder} [{' '.join(c.flags)}]" for c in copies) or "not found"
        expect = f"{want}{' + $Chat' if msg.is_chat else ', no $Chat'}"
        print(f"   [{'ok' if good else 'FAIL'}] {label:<34} expected {expect:<22} got {where}")
        ok &= good
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Chat over IMAP demo on a throwaway Dovecot")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs afterwards")
    args = ap.parse_args(argv)
    user = "alice"
    receiver = WebhookReceiver()
    sidecar = dc = push = None
    ok = False
    try:
        try:
            sidecar = PushSidecar([Webhook("demo", receiver.url("/coi/events"))],
                                  keep_tmp=args.keep, subject=VAPID_SUBJECT)
            sidecar.push_sections = sidecar.push_config()
            sidecar.start()
            push = PushReceiver(vapid_public_key=sidecar.vapid_public_key, subject=VAPID_SUBJECT)
            settings = dict(sidecar.plugin_settings())
            settings["coi_webpush_vapid_key"] = str(sidecar.vapid_public_key)
            dc = DovecotInstance(plugin=True, mail_debug=True, keep_tmp=args.keep,
                                 plugin_settings=settings)
            dc.start()
        except Exception as exc:  # noqa: BLE001 - human-facing script
            print(f"could not start Dovecot and coi-sidecar: {exc}", file=sys.stderr)
            return 2
        print(f"Dovecot {dc.tmpdir}: IMAP 127.0.0.1:{dc.imap_port}, "
              f"LMTP 127.0.0.1:{dc.lmtp_port}, plugin {dc.layout.module_dir}/lib95_coi_plugin.so")
        print(f"coi-sidecar pid {sidecar.pid}: spool {sidecar.spool_dir}, "
              f"metrics http://127.0.0.1:{sidecar.metrics_port}/metrics, "
              f"webhook receiver {receiver.url('/coi/events')}")
        enable_coi(dc, user)
        phone = register_phone(dc, user, push)
        sent = deliver(dc, user)
        folders = show_mailbox(dc, user)
        notified = show_pushes(push, phone, sent)
        show_plugin_log(dc)
        pushed = show_sidecar(sidecar, receiver, expected=len(sent))
        ok = verdict(folders, sent) and pushed and notified
        bad = dc.log.panics_and_fatals()
        if bad:
            print("   Dovecot logged Panic/Fatal:\n   " + "\n   ".join(bad))
            ok = False
    finally:
        if dc is not None:
            dc.failed = not ok
            dc.stop()
        if sidecar is not None:
            sidecar.failed = not ok
            sidecar.close()
        receiver.close()
        if push is not None:
            push.close()
        print("\nDovecot and coi-sidecar stopped.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

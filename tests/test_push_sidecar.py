"""Push end to end on the sidecar's side: spool records -> real coi-sidecar -> push services.

Owns the checks of the sidecar's Web Push and Delta Chat work (issue 4, items 5
and 6), with records written into the sidecar's spool exactly as the plugin
writes them (RS + JSON + LF, shared flock), so the plugin is not needed:

  * the receiver's own RFC 8291 / RFC 8292 code is right (RFC 8291 Appendix A,
    tampering detected) before it judges the sidecar;
  * a push record reaches each subscription encrypted (aes128gcm) and VAPID
    signed; the decrypted payload carries the spec's fields; TTL 86400;
  * a validation record is pushed with the ``WebPush-Validation`` header and
    ``{"validation": secret}``;
  * 429 with Retry-After is retried after the delay;
  * 410 makes the sidecar unset the subscription in a REAL Dovecot through the
    doveadm HTTP API, and the target is not pushed again;
  * Delta Chat tokens are POSTed raw to the proxy, once per distinct token,
    and a 410 unsets every METADATA key holding the token (real Dovecot).

Runs with ``/usr/bin/python3 -m pytest tests/test_push_sidecar.py``; needs
``COI_SIDECAR_BIN`` (or target/release/coi-sidecar) and Debian's
python3-cryptography. About 20 s on 2 cores.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.harness import DovecotInstance, free_ports
from tests.harness.pushreceiver import (DecryptError, PushReceiver, PushSidecar, VapidError,
                                        decrypt_aes128gcm, doveadm_http_config, unb64url,
                                        verify_vapid)
from tests.harness.receiver import Reply, WebhookReceiver

SUBJECT = "mailto:postmaster@example.org"
SUBSCRIPTIONS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
DEVICETOKENS = "/private/vendor/vendor.dovecot/coi/devicetokens/"
API_KEY = "coi-test-doveadm-key"
WAIT = 30.0


def wait_until(what: str, cond, timeout: float = WAIT, diag=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{diag()}")
        time.sleep(0.05)


def push_record(user: str, subs=(), tokens=(), **message) -> dict:
    msg = {"from_email": "Bob@Example.org", "from_name": "Bob", "subject": "Chat: hi",
           "date_unix": 1577834450, "message_id": "<chat$abc@example.org>", "uid": 7,
           "uidvalidity": 1700000000, "folder": "COI/Chats", "group_id": None, "kind": "chat",
           "content": "-----BEGIN PGP MESSAGE-----"}
    msg.update(message)
    return {"v": 1, "type": "push", "id": str(uuid.uuid4()), "ts_ms": int(time.time() * 1000),
            "user": user, "message": msg, "webpush": [s.target() for s in subs],
            "deltachat": [{"token_key": k, "token": t} for k, t in tokens],
            "pid": os.getpid(), "dropped_before": 0}


def validation_record(user: str, sub, secret: str) -> dict:
    return {"v": 1, "type": "webpush_validation", "id": str(uuid.uuid4()),
            "ts_ms": int(time.time() * 1000), "user": user, "target": sub.target(),
            "secret": secret, "pid": os.getpid(), "dropped_before": 0}


@pytest.fixture
def push_env(tmp_path):
    """A push receiver and a sidecar whose config is set by the test (``configure``)."""
    made = []

    def make(**push_kw):
        sc = PushSidecar(log_level="debug")
        rx = PushReceiver(vapid_public_key=sc.vapid_public_key, subject=SUBJECT)
        sc.push_sections = sc.push_config(**push_kw)
        made.append((sc, rx))
        sc.start()
        return sc, rx

    yield make
    for sc, rx in made:
        rx.close()
        sc.close()


@pytest.fixture(scope="module")
def dovecot_doveadm(tmp_path_factory):
    """A real Dovecot (plugin not loaded: the sidecar is under test) with the doveadm HTTP API."""
    port = free_ports(1)[0]
    inst = DovecotInstance(plugin=False, extra_config=doveadm_http_config(port, API_KEY))
    inst.start()
    key_file = tmp_path_factory.mktemp("doveadm") / "api-key"
    key_file.write_text(API_KEY + "\n")
    deadline = time.monotonic() + 20
    while True:
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield inst, f"http://127.0.0.1:{port}/doveadm/v1", key_file
    inst.stop()


# --------------------------------------------------------------------------- the receiver itself
RFC8291 = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
    "body": "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}


def test_receiver_decrypts_rfc8291_appendix_a_and_detects_tampering():
    ua = ec.derive_private_key(int.from_bytes(unb64url(RFC8291["ua_private"]), "big"), ec.SECP256R1())
    body = unb64url(RFC8291["body"])
    assert decrypt_aes128gcm(body, ua, unb64url(RFC8291["auth"])) == RFC8291["plaintext"]
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(DecryptError):
        decrypt_aes128gcm(tampered, ua, unb64url(RFC8291["auth"]))
    with pytest.raises(DecryptError):
        decrypt_aes128gcm(body, ua, b"\x00" * 16)


def test_receiver_vapid_check_refuses_foreign_keys_and_bad_claims(push_env):
    sc, rx = push_env()
    sub = rx.make_subscription()
    sc.append_records([push_record("alice", [sub])])
    req = rx.wait_for(1)[0]
    assert not req.errors, req.errors
    pem = sc.vapid_public_key.read_bytes()
    auth = req.header("authorization")
    verify_vapid(auth, sub.endpoint, pem, SUBJECT)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    from cryptography.hazmat.primitives import serialization
    other_pem = other.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(VapidError):
        verify_vapid(auth, sub.endpoint, other_pem)
    with pytest.raises(VapidError, match="aud"):
        verify_vapid(auth, "http://127.0.0.1:1/push/x", pem)
    with pytest.raises(VapidError, match="sub"):
        verify_vapid(auth, sub.endpoint, pem, "mailto:someone-else@example.org")
    with pytest.raises(VapidError, match="exp"):
        verify_vapid(auth, sub.endpoint, pem, now=time.time() + 2 * 86400)


# --------------------------------------------------------------------------- Web Push
def test_push_is_encrypted_signed_and_carries_the_spec_payload(push_env):
    sc, rx = push_env()
    subs = [rx.make_subscription(), rx.make_subscription()]
    sc.append_records([push_record("alice@example.org", subs, subject="ü" * 80)])
    for sub in subs:
        req = rx.wait_for(1, sub)[0]
        assert not req.errors, req.errors
        assert req.method == "POST"
        assert req.header("ttl") == "86400"
        assert req.header("urgency") == "normal"
        assert req.header("content-encoding") == "aes128gcm"
        assert req.header("webpush-validation") is None
        assert len(req.body) <= 4096
        assert req.claims["sub"] == SUBJECT
        payload = req.json()
        assert payload == {
            "from-email": "bob@example.org", "from-name": "Bob",
            "subject": "ü" * 50 + "…", "date": "2019-12-31T23:20:50Z",
            "msg-id": "chat$abc@example.org", "uid": 7, "uidvalidity": 1700000000,
            "folder": "COI/Chats", "content": "-----BEGIN PGP MESSAGE-----"}
    mode = stat.S_IMODE(sc.vapid_public_key.stat().st_mode)
    assert mode == 0o644, oct(mode)
    assert sc.vapid_public_key.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    private = sc.state_dir / "webpush" / "vapid-private.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    wait_until("metrics", lambda: sc.metrics().value(
        "coi_push_requests_total", channel="webpush", outcome="success") == 2)


def test_content_that_does_not_fit_4096_bytes_is_left_out(push_env):
    sc, rx = push_env()
    sub = rx.make_subscription()
    sc.append_records([push_record("alice", [sub], content="x" * 3999)])
    req = rx.wait_for(1, sub)[0]
    assert not req.errors, req.errors
    assert "content" not in req.json()
    assert req.json()["uid"] == 7


def test_validation_push_has_the_header_and_the_secret(push_env):
    sc, rx = push_env()
    sub = rx.make_subscription()
    sc.append_records([validation_record("alice", sub, "abc$123$xyz")])
    req = rx.wait_for(1, sub)[0]
    assert not req.errors, req.errors
    assert req.header("webpush-validation") == ""
    assert json.loads(req.plaintext) == {"validation": "abc$123$xyz"}
    assert int(req.header("ttl")) <= 300


def test_429_is_retried_after_retry_after(push_env):
    sc, rx = push_env()
    rx.fail_first(1, status=429, retry_after=2)
    sub = rx.make_subscription()
    sc.append_records([push_record("alice", [sub])])
    first, second = rx.wait_for(2, sub)[:2]
    assert first.status == 429 and second.status == 201
    assert second.at - first.at >= 1.9, second.at - first.at
    assert first.plaintext == second.plaintext and first.body != second.body
    wait_until("metrics", lambda: sc.metrics().value(
        "coi_push_requests_total", channel="webpush", outcome="rate_limited") == 1)


def test_410_unsets_the_subscription_in_dovecot_and_stops_pushing(push_env, dovecot_doveadm):
    dc, url, key_file = dovecot_doveadm
    sc, rx = push_env(doveadm_url=url, doveadm_key_file=key_file)
    gone, kept = rx.make_subscription("gone-subscription-1"), rx.make_subscription("kept-subscription-1")
    for s in (gone, kept):
        dc.doveadm.metadata_set("alice", SUBSCRIPTIONS + s.id, s.client_json())
    assert dc.doveadm.metadata_get("alice", SUBSCRIPTIONS + gone.id) is not None
    rx.reply_for(gone, 410)
    sc.append_records([push_record("alice", [gone, kept])])
    wait_until("the subscription unset in Dovecot",
               lambda: dc.doveadm.metadata_get("alice", SUBSCRIPTIONS + gone.id) is None,
               diag=lambda: sc.log_tail() + "\n" + rx.log_tail())
    assert dc.doveadm.metadata_get("alice", SUBSCRIPTIONS + kept.id) is not None
    wait_until("metrics", lambda: sc.metrics().value(
        "coi_push_metadata_removals_total", target="webpush", result="removed") == 1)
    # A push that still lists it (sent before the unset was seen) does not reach it.
    sc.append_records([push_record("alice", [gone, kept])])
    rx.wait_for(2, kept)
    wait_until("skipped", lambda: sc.metrics().value(
        "coi_push_targets_total", channel="webpush", result="known_dead") == 1)
    assert len(rx.requests(gone)) == 1


# --------------------------------------------------------------------------- Delta Chat
def test_deltachat_tokens_posted_once_and_410_unsets_every_key(push_env, dovecot_doveadm):
    dc, url, key_file = dovecot_doveadm
    with WebhookReceiver() as proxy:
        proxy.set_policy(lambda req, i: Reply(410 if req.body == b"dead-token" else 200))
        sc, rx = push_env(webpush=True, deltachat_proxy=proxy.url("/notify"),
                          doveadm_url=url, doveadm_key_file=key_file)
        keys = {"00000000000000b1": "live-token", "00000000000000b2": "dead-token",
                "00000000000000b3": "dead-token", "00000000000000b4": "live-token"}
        # What doveadm shows for a token key with the plugin loaded: the
        # token (the clean-up compares it before unsetting the key).
        for k, t in keys.items():
            dc.doveadm.metadata_set("bob", DEVICETOKENS + k, t)
        sc.append_records([push_record("bob", tokens=list(keys.items()))])
        wait_until("both dead keys unset", lambda: all(
            dc.doveadm.metadata_get("bob", DEVICETOKENS + k) is None
            for k in ("00000000000000b2", "00000000000000b3")),
            diag=lambda: sc.log_tail() + "\n" + proxy.log_tail())
        for k in ("00000000000000b1", "00000000000000b4"):
            assert dc.doveadm.metadata_get("bob", DEVICETOKENS + k) is not None
        bodies = sorted(r.body for r in proxy.requests)
        assert bodies == [b"dead-token", b"live-token"], bodies
        assert all(r.method == "POST" and r.path == "/notify" for r in proxy.requests)
        wait_until("metrics", lambda: sc.metrics().value(
            "coi_push_targets_total", channel="deltachat", result="deduplicated") == 2)

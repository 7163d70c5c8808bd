//! Push channels of the real binary: Web Push (encrypted, VAPID-signed,
//! decrypted here with this file's own RFC 8291 code), validation pushes,
//! 404/410 -> doveadm clean-up (a fake doveadm) or local record, 429 with
//! Retry-After, Delta Chat tokens (posted once, 410 removes every key),
//! and the VAPID key files across restarts.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use coi_core::wire::{
    new_event_id, DeltaChatTargetV1, PushEventV1, PushMessageV1, Record, WebPushTargetV1, WebPushValidationV1,
};
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use crate::harness::{wait_for, Env};
use crate::receiver::{Receiver, Request};

const LONG: Duration = Duration::from_secs(30);

/// A browser-side subscription: its key pair and auth secret.
struct Subscriber {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Subscriber {
    fn new() -> Subscriber {
        Subscriber { secret: SecretKey::random(&mut OsRng), auth: rand16() }
    }

    fn target(&self, id: &str, endpoint: &str) -> WebPushTargetV1 {
        WebPushTargetV1 {
            subscription_id: id.into(),
            endpoint: endpoint.into(),
            p256dh: URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }

    /// RFC 8291 §3.4 + RFC 8188 from the receiving side.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap());
        assert_eq!(rs, 4096);
        let idlen = body[20] as usize;
        assert_eq!(idlen, 65);
        let as_public = PublicKey::from_sec1_bytes(&body[21..21 + idlen]).unwrap();
        let ciphertext = &body[21 + idlen..];
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), as_public.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(self.secret.public_key().to_encoded_point(false).as_bytes());
        info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let mut plain = Aes128Gcm::new_from_slice(&cek).unwrap().decrypt(Nonce::from_slice(&nonce), ciphertext).unwrap();
        // Last record: strip zero padding, then the 0x02 delimiter.
        while plain.last() == Some(&0) {
            plain.pop();
        }
        assert_eq!(plain.pop(), Some(2), "last-record delimiter");
        plain
    }
}

fn rand16() -> [u8; 16] {
    let mut a = [0u8; 16];
    for b in &mut a {
        *b = fastrand::u8(..);
    }
    a
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn push_record(webpush: Vec<WebPushTargetV1>, deltachat: Vec<DeltaChatTargetV1>) -> Record {
    Record::Push(PushEventV1 {
        id: new_event_id(),
        ts_ms: now_ms(),
        user: "alice@example.org".into(),
        message: PushMessageV1 {
            from_email: Some("Bob@Example.org".into()),
            from_name: Some("Bob".into()),
            subject: Some("Chat: hello".into()),
            date_unix: Some(1_577_834_450),
            message_id: Some("<chat$abc@example.org>".into()),
            uid: 42,
            uidvalidity: 1_700_000_000,
            folder: "COI/Chats".into(),
            group_id: None,
            kind: "chat".into(),
            content: Some("-----BEGIN PGP MESSAGE-----".into()),
        },
        webpush,
        deltachat,
        pid: std::process::id(),
        dropped_before: 0,
        targets_dropped: 0,
    })
}

fn webpush_section(env: &Env) -> String {
    format!(
        "[webpush]\nenabled = true\nvapid_subject = \"mailto:postmaster@example.org\"\n\
         vapid_private_key = {:?}\nvapid_public_key = {:?}\nallow_private_addresses = true\n\
         retry_schedule_secs = [1, 1, 1]\ntimeout_secs = 5\n",
        env.state.join("webpush/vapid-private.pem"),
        env.dir.path().join("public/vapid-public.pem"),
    )
}

fn public_key_file(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("public/vapid-public.pem")
}

/// Checks the `Authorization: vapid t=<JWT>, k=<key>` header against the
/// public key file; returns the JWT claims.
fn verify_vapid(env: &Env, req: &Request) -> serde_json::Value {
    let auth = req.header("authorization");
    let rest = auth.strip_prefix("vapid ").expect("vapid scheme");
    let (t, k) = rest.split_once(", ").unwrap();
    let (t, k) = (t.strip_prefix("t=").unwrap(), k.strip_prefix("k=").unwrap());
    let pem = std::fs::read_to_string(public_key_file(env)).unwrap();
    let public = PublicKey::from_public_key_pem(pem.trim()).unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(k).unwrap(), public.to_encoded_point(false).as_bytes(), "k is the PEM key");
    let parts: Vec<&str> = t.split('.').collect();
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    VerifyingKey::from(&public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("ES256 signature verifies");
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

/// A doveadm HTTP API over an in-memory METADATA store: answers
/// `mailboxMetadataGet` (value, `""` when unset) and `mailboxMetadataUnset`
/// as Dovecot 2.3 does (tests/test_push_sidecar.py checks the real one).
struct FakeDoveadm {
    rx: Receiver,
    store: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>>,
}

impl FakeDoveadm {
    fn new() -> FakeDoveadm {
        let store: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>> = Default::default();
        let st = store.clone();
        let rx = Receiver::with_body(move |r, _| {
            let cmd = r.json();
            let (name, args, tag) = (cmd[0][0].as_str().unwrap(), &cmd[0][1], cmd[0][2].clone());
            let id = (args["user"].as_str().unwrap().to_string(), args["key"].as_str().unwrap().to_string());
            let mut map = st.lock().unwrap();
            let answer = match name {
                "mailboxMetadataGet" => {
                    serde_json::json!([["doveadmResponse", [{"value": map.get(&id).cloned().unwrap_or_default()}], tag]])
                }
                _ => {
                    map.remove(&id);
                    serde_json::json!([["doveadmResponse", [], tag]])
                }
            };
            (200, vec![], serde_json::to_vec(&answer).unwrap())
        });
        FakeDoveadm { rx, store }
    }

    fn set(&self, user: &str, key: &str, value: &str) {
        self.store.lock().unwrap().insert((user.into(), key.into()), value.into());
    }

    fn get(&self, user: &str, key: &str) -> Option<String> {
        self.store.lock().unwrap().get(&(user.to_string(), key.to_string())).cloned()
    }

    fn url(&self, path: &str) -> String {
        self.rx.url(path)
    }

    /// The unset requests received.
    fn unsets(&self) -> Vec<Request> {
        self.rx.requests().into_iter().filter(|r| r.json()[0][0] == "mailboxMetadataUnset").collect()
    }
}

/// What GETMETADATA (and doveadm) shows for a subscription to `endpoint`.
fn public_subscription(endpoint: &str) -> String {
    serde_json::json!({"msgtype": "chat", "resource": {"endpoint": endpoint, "keys": {"p256dh": "x", "auth": "y"}},
                       "created": "2026-01-01T00:00:00Z"})
    .to_string()
}

const SUBSCRIPTIONS: &str = "/private/vendor/vendor.dovecot/webpush/subscriptions/";

#[test]
fn web_push_is_encrypted_vapid_signed_and_carries_the_payload() {
    let env = Env::new();
    let rx = Receiver::with(|_, _| (201, vec![]));
    env.write_config_with(&[], &webpush_section(&env));
    let sc = env.start();
    let sub = Subscriber::new();
    env.append_record(&push_record(vec![sub.target("subscription-1", &rx.url("/push/1"))], vec![]));
    env.ring();
    wait_for("the push", LONG, || rx.count() >= 1);
    let req = &rx.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/push/1");
    assert_eq!(req.header("content-encoding"), "aes128gcm");
    assert_eq!(req.header("ttl"), "86400");
    assert_eq!(req.header("urgency"), "normal");
    assert!(!req.headers.contains_key("webpush-validation"));
    let claims = verify_vapid(&env, req);
    assert_eq!(claims["aud"], format!("http://{}", rx.addr));
    assert_eq!(claims["sub"], "mailto:postmaster@example.org");
    let exp = claims["exp"].as_u64().unwrap();
    let now = now_ms() / 1000;
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp} within 24 h of {now}");
    assert!(req.body.len() <= 4096);
    let payload: serde_json::Value = serde_json::from_slice(&sub.decrypt(&req.body)).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"from-email": "bob@example.org", "from-name": "Bob", "subject": "Chat: hello",
            "date": "2019-12-31T23:20:50Z", "msg-id": "chat$abc@example.org", "uid": 42,
            "uidvalidity": 1_700_000_000u32, "folder": "COI/Chats", "content": "-----BEGIN PGP MESSAGE-----"})
    );
    // Key files: private 0600, public 0644.
    assert_eq!(std::fs::metadata(env.state.join("webpush/vapid-private.pem")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(public_key_file(&env)).unwrap().mode() & 0o777, 0o644);
    wait_for("success counted", LONG, || {
        let m = sc.scrape();
        m.value("coi_push_requests_total", &[("channel", "webpush"), ("outcome", "success")]) == 1.0
            && m.value("coi_push_targets_total", &[("channel", "webpush"), ("result", "queued")]) == 1.0
            && m.value("coi_intake_events_total", &[("kind", "push")]) == 1.0
            && m.value("coi_queue_depth_deliveries", &[("kind", "webpush")]) == 0.0
    });
    assert_eq!(sc.scrape().value("coi_plugin_messages_classified_total", &[]), 0.0, "push records are not messages");
}

#[test]
fn validation_push_carries_the_secret_and_the_header() {
    let env = Env::new();
    let rx = Receiver::with(|_, _| (201, vec![]));
    env.write_config_with(&[], &webpush_section(&env));
    let sc = env.start();
    let sub = Subscriber::new();
    env.append_record(&Record::WebPushValidation(WebPushValidationV1 {
        id: new_event_id(),
        ts_ms: now_ms(),
        user: "alice@example.org".into(),
        target: sub.target("subscription-1", &rx.url("/v")),
        secret: "abc$123$xyz".into(),
        pid: 1,
        dropped_before: 0,
    }));
    env.ring();
    wait_for("the validation push", LONG, || rx.count() >= 1);
    let req = &rx.requests()[0];
    assert_eq!(req.headers.get("webpush-validation").map(String::as_str), Some(""), "present, no value");
    let ttl: u64 = req.header("ttl").parse().unwrap();
    assert!((290..=300).contains(&ttl), "no longer than what is left of the validation window: {ttl}");
    verify_vapid(&env, req);
    assert_eq!(sub.decrypt(&req.body), br#"{"validation":"abc$123$xyz"}"#);
    wait_for("counted", LONG, || {
        sc.scrape().value("coi_push_requests_total", &[("channel", "validation"), ("outcome", "success")]) == 1.0
    });
}

fn validation_record(ts_ms: u64, target: WebPushTargetV1) -> Record {
    Record::WebPushValidation(WebPushValidationV1 {
        id: new_event_id(),
        ts_ms,
        user: "alice@example.org".into(),
        target,
        secret: "s3cret".into(),
        pid: 1,
        dropped_before: 0,
    })
}

#[test]
fn validation_window_counts_from_the_subscription_not_from_the_queue() {
    // Issue 12 item 12: after a backlog (sidecar down), a validation whose
    // window (300 s from the subscription) is over is never sent; one
    // with 10 s left is sent with a TTL of at most those 10 s.
    let env = Env::new();
    let rx = Receiver::with(|_, _| (201, vec![]));
    env.write_config_with(&[], &webpush_section(&env));
    let sub = Subscriber::new();
    env.append_record(&validation_record(now_ms() - 301_000, sub.target("subscription-late", &rx.url("/late"))));
    env.append_record(&validation_record(now_ms() - 290_000, sub.target("subscription-soon", &rx.url("/soon"))));
    let sc = env.start();
    env.ring();
    wait_for("the one still in its window", LONG, || rx.count() >= 1);
    wait_for("the late one given up", LONG, || {
        sc.scrape().value("coi_dead_letters_total", &[("endpoint", "push:validation")]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    let reqs = rx.requests();
    assert_eq!(reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), vec!["/soon"], "no push after the window");
    let ttl: u64 = reqs[0].header("ttl").parse().unwrap();
    assert!((1..=10).contains(&ttl), "TTL {ttl} outlives the window");
    let list = String::from_utf8_lossy(&env.cli(&["dead-letters", "list"]).stdout).into_owned();
    assert!(list.contains("validation window closed"), "{list}");
}

#[test]
fn gone_subscription_is_unset_through_doveadm_and_not_pushed_again() {
    let env = Env::new();
    let rx = Receiver::with(|r, _| (if r.path == "/gone" { 410 } else { 201 }, vec![]));
    let doveadm = FakeDoveadm::new();
    let key_file = env.dir.path().join("doveadm.key");
    std::fs::write(&key_file, "s3cret\n").unwrap();
    let sections = format!(
        "{}\n[dovecot]\ndoveadm_url = {:?}\ndoveadm_api_key_file = {key_file:?}\nretry_schedule_secs = [1]\n",
        webpush_section(&env),
        doveadm.url("/doveadm/v1")
    );
    env.write_config_with(&[], &sections);
    let sc = env.start();
    let sub = Subscriber::new();
    let gone = sub.target("Subscription-Gone", &rx.url("/gone"));
    let key = format!("{SUBSCRIPTIONS}Subscription-Gone");
    doveadm.set("alice@example.org", &key, &public_subscription(&gone.endpoint));
    env.append_record(&push_record(vec![gone.clone(), sub.target("subscription-ok", &rx.url("/ok"))], vec![]));
    env.ring();
    wait_for("the doveadm clean-up", LONG, || !doveadm.unsets().is_empty());
    let reqs = doveadm.rx.requests();
    assert_eq!(reqs.len(), 2, "read, then unset");
    for (req, command) in reqs.iter().zip(["mailboxMetadataGet", "mailboxMetadataUnset"]) {
        assert_eq!(req.path, "/doveadm/v1");
        assert_eq!(req.header("authorization"), "X-Dovecot-API czNjcmV0");
        assert_eq!(
            req.json(),
            serde_json::json!([[command,
                {"user": "alice@example.org", "mailbox": "", "key": key, "allowEmptyMailboxName": true}, "coi-unset"]])
        );
    }
    assert_eq!(doveadm.get("alice@example.org", &key), None);
    wait_for("metrics", LONG, || {
        let m = sc.scrape();
        m.value("coi_push_requests_total", &[("channel", "webpush"), ("outcome", "gone")]) == 1.0
            && m.value("coi_push_targets_gone_total", &[("target", "webpush")]) == 1.0
            && m.value("coi_push_metadata_removals_total", &[("target", "webpush"), ("result", "removed")]) == 1.0
            && m.value("coi_dead_letters_total", &[]) == 0.0
    });
    // The plugin may still list it until the unset is seen: no push to it.
    let before = rx.requests().iter().filter(|r| r.path == "/gone").count();
    env.append_record(&push_record(vec![gone], vec![]));
    env.ring();
    wait_for("skipped as known dead", LONG, || {
        sc.scrape().value("coi_push_targets_total", &[("channel", "webpush"), ("result", "known_dead")]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.requests().iter().filter(|r| r.path == "/gone").count(), before);
    assert_eq!(doveadm.unsets().len(), 1, "one clean-up");
}

#[test]
fn gone_subscription_id_that_now_holds_a_new_endpoint_is_kept() {
    // Issue 12 item 8: the client re-subscribed under the same id (new
    // endpoint) before the clean-up ran: only the dead target may go.
    let env = Env::new();
    let rx = Receiver::with(|r, _| (if r.path == "/gone" { 410 } else { 201 }, vec![]));
    let doveadm = FakeDoveadm::new();
    let key_file = env.dir.path().join("doveadm.key");
    std::fs::write(&key_file, "k\n").unwrap();
    env.write_config_with(
        &[],
        &format!(
            "{}\n[dovecot]\ndoveadm_url = {:?}\ndoveadm_api_key_file = {key_file:?}\nretry_schedule_secs = [1]\n",
            webpush_section(&env),
            doveadm.url("/doveadm/v1")
        ),
    );
    let sc = env.start();
    let key = format!("{SUBSCRIPTIONS}subscription-1");
    let renewed = public_subscription(&rx.url("/new-endpoint"));
    doveadm.set("alice@example.org", &key, &renewed);
    env.append_record(&push_record(vec![Subscriber::new().target("subscription-1", &rx.url("/gone"))], vec![]));
    env.ring();
    wait_for("the clean-up decided", LONG, || {
        sc.scrape().value("coi_push_metadata_removals_total", &[("target", "webpush"), ("result", "changed")]) == 1.0
    });
    assert!(doveadm.unsets().is_empty(), "the new subscription was unset");
    assert_eq!(doveadm.get("alice@example.org", &key), Some(renewed));
    assert_eq!(sc.scrape().value("coi_dead_letters_total", &[]), 0.0);
}

#[test]
fn gone_without_doveadm_is_recorded_counted_and_warned_once() {
    let env = Env::new();
    let rx = Receiver::with(|_, _| (404, vec![]));
    env.write_config_with(&[], &webpush_section(&env));
    let sc = env.start();
    let sub = Subscriber::new();
    env.append_record(&push_record(vec![sub.target("subscription-1", &rx.url("/a")), sub.target("subscription-2", &rx.url("/b"))], vec![]));
    env.ring();
    wait_for("both gone", LONG, || {
        sc.scrape().value("coi_push_metadata_removals_total", &[("target", "webpush"), ("result", "not_configured")]) == 2.0
    });
    let log = sc.log();
    assert_eq!(log.matches("doveadm_url is not set: it is only recorded").count(), 1, "{log}");
    assert_eq!(sc.scrape().value("coi_dead_letters_pending", &[]), 0.0);
}

#[test]
fn rate_limited_push_is_retried_after_retry_after() {
    let env = Env::new();
    let rx = Receiver::with(|_, n| if n == 1 { (429, vec![("retry-after".into(), "2".into())]) } else { (201, vec![]) });
    env.write_config_with(&[], &webpush_section(&env));
    let sc = env.start();
    let sub = Subscriber::new();
    env.append_record(&push_record(vec![sub.target("subscription-1", &rx.url("/p"))], vec![]));
    env.ring();
    wait_for("the retry", LONG, || rx.count() >= 2);
    let reqs = rx.requests();
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(1900), "Retry-After 2 s honoured");
    assert_eq!(sub.decrypt(&reqs[0].body), sub.decrypt(&reqs[1].body), "same payload, fresh encryption");
    assert_ne!(reqs[0].body, reqs[1].body);
    wait_for("metrics", LONG, || {
        let m = sc.scrape();
        m.value("coi_push_requests_total", &[("channel", "webpush"), ("outcome", "rate_limited")]) == 1.0
            && m.value("coi_push_requests_total", &[("channel", "webpush"), ("outcome", "success")]) == 1.0
    });
}

#[test]
fn delta_chat_tokens_are_posted_once_and_410_removes_every_key() {
    let env = Env::new();
    let proxy = Receiver::with(|r, _| (if r.body == b"dead-token" { 410 } else { 200 }, vec![]));
    let doveadm = FakeDoveadm::new();
    for k in ["00000000000000a2", "00000000000000a4"] {
        doveadm.set("alice@example.org", &format!("/private/vendor/vendor.dovecot/coi/devicetokens/{k}"), "dead-token");
    }
    let key_file = env.dir.path().join("doveadm.key");
    std::fs::write(&key_file, "k").unwrap();
    env.write_config_with(
        &[],
        &format!(
            "[deltachat]\nproxy_url = {:?}\nallow_private_addresses = true\nretry_schedule_secs = [1]\n\
             [dovecot]\ndoveadm_url = {:?}\ndoveadm_api_key_file = {key_file:?}\n",
            proxy.url("/notify"),
            doveadm.url("/doveadm/v1")
        ),
    );
    let sc = env.start();
    let dc = |k: &str, t: &str| DeltaChatTargetV1 { token_key: k.into(), token: t.into() };
    env.append_record(&push_record(
        vec![],
        vec![dc("00000000000000a1", "live-token"), dc("00000000000000a2", "dead-token"), dc("00000000000000a3", "live-token"), dc("00000000000000a4", "dead-token")],
    ));
    env.ring();
    wait_for("two clean-ups", LONG, || doveadm.unsets().len() >= 2);
    let posted: Vec<Vec<u8>> = proxy.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(posted.iter().filter(|b| b.as_slice() == b"live-token").count(), 1, "deduplicated");
    assert_eq!(posted.iter().filter(|b| b.as_slice() == b"dead-token").count(), 1);
    assert!(proxy.requests().iter().all(|r| r.path == "/notify" && r.method == "POST"));
    let mut keys: Vec<String> = doveadm.unsets().iter().map(|r| r.json()[0][1]["key"].as_str().unwrap().to_string()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "/private/vendor/vendor.dovecot/coi/devicetokens/00000000000000a2",
            "/private/vendor/vendor.dovecot/coi/devicetokens/00000000000000a4"
        ]
    );
    wait_for("metrics", LONG, || {
        let m = sc.scrape();
        m.value("coi_push_targets_total", &[("channel", "deltachat"), ("result", "deduplicated")]) == 2.0
            && m.value("coi_push_requests_total", &[("channel", "deltachat"), ("outcome", "gone")]) == 1.0
            && m.value("coi_push_metadata_removals_total", &[("target", "deltachat"), ("result", "removed")]) == 2.0
    });
}

#[test]
fn delta_chat_errors_other_than_410_are_retried() {
    let env = Env::new();
    let proxy = Receiver::with(|_, n| (if n <= 2 { 404 } else { 200 }, vec![]));
    env.write_config_with(
        &[],
        &format!("[deltachat]\nproxy_url = {:?}\nallow_private_addresses = true\nretry_schedule_secs = [1, 1, 1]\n", proxy.url("/n")),
    );
    let sc = env.start();
    env.append_record(&push_record(vec![], vec![DeltaChatTargetV1 { token_key: "k1".into(), token: "tok".into() }]));
    env.ring();
    wait_for("three posts", LONG, || proxy.count() >= 3);
    wait_for("delivered", LONG, || {
        sc.scrape().value("coi_push_requests_total", &[("channel", "deltachat"), ("outcome", "success")]) == 1.0
    });
    assert_eq!(sc.scrape().value("coi_push_targets_gone_total", &[]), 0.0);
}

#[test]
fn vapid_keys_survive_restarts_and_a_corrupt_key_stops_the_start() {
    let env = Env::new();
    env.write_config_with(&[], &webpush_section(&env));
    let sc = env.start();
    let first = std::fs::read(public_key_file(&env)).unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(sc.terminate().code(), Some(0));
    let sc = env.start();
    assert_eq!(std::fs::read(public_key_file(&env)).unwrap(), first, "never regenerated");
    assert_eq!(sc.terminate().code(), Some(0));
    let out = env.cli(&["check-config"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("webpush: on"), "{out:?}");
    std::fs::write(env.state.join("webpush/vapid-private.pem"), "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    let out = std::process::Command::new(crate::harness::BIN).arg("--config").arg(&env.config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vapid-private.pem") && err.contains("not a valid P-256 private key"), "{err}");
    assert_eq!(std::fs::read(public_key_file(&env)).unwrap(), first, "nothing overwritten");
    let out = env.cli(&["check-config"]);
    assert!(!out.status.success(), "check-config reports the broken key too");
}

#[test]
fn push_channels_refuse_private_endpoints_unless_allowed() {
    let env = Env::new();
    let rx = Receiver::with(|_, _| (201, vec![]));
    env.write_config_with(&[], &webpush_section(&env).replace("allow_private_addresses = true", "allow_private_addresses = false"));
    let sc = env.start();
    let sub = Subscriber::new();
    env.append_record(&push_record(vec![sub.target("subscription-1", &rx.url("/p").replace("http:", "https:"))], vec![]));
    env.ring();
    wait_for("refused at intake", LONG, || {
        sc.scrape().value("coi_push_targets_total", &[("channel", "webpush"), ("result", "private_address")]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), 0);
    let cfg = env.config_text(&[], "") + "\n[deltachat]\nproxy_url = \"http://127.0.0.1:9/notify\"\n";
    std::fs::write(&env.config, cfg).unwrap();
    let out = env.cli(&["check-config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deltachat.allow_private_addresses"), "{out:?}");
}

#[test]
fn endpoint_paths_never_reach_logs_metrics_or_dead_letters() {
    // Issue 12 item 7: a Web Push endpoint's path is the device's push
    // token, a webhook's may hold a secret; only scheme and host may show.
    let env = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let push_secret = "Device-Push-Token-5d2e";
    let hook_secret = "Hook-Path-Secret-0b7a";
    let hook = crate::harness::Hook::new("ops", &format!("http://{closed}/hooks/{hook_secret}?sig=Query-Secret-31"))
        .extra("retry_schedule_secs = [1]\ntimeout_secs = 2\n");
    let sections = webpush_section(&env).replace("retry_schedule_secs = [1, 1, 1]", "retry_schedule_secs = [1]");
    env.write_config_with(&[hook], &sections);
    let sc = env.start();
    let target = Subscriber::new().target("subscription-1", &format!("http://{closed}/wpush/{push_secret}?auth=Query-Secret-92"));
    env.append_record(&push_record(vec![target], vec![]));
    env.append("chat", "INBOX");
    env.ring();
    wait_for("both dead letters", LONG, || {
        let m = sc.scrape();
        m.value("coi_dead_letters_total", &[("endpoint", "push:webpush")]) == 1.0
            && m.value("coi_dead_letters_total", &[("endpoint", "ops")]) == 1.0
    });
    let out = env.cli(&["dead-letters", "list"]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(list.contains(&format!("http://{closed}")), "the origin is named: {list}");
    let metrics = sc.metrics_text();
    let log = sc.log();
    for secret in [push_secret, hook_secret, "Query-Secret", "/wpush", "/hooks"] {
        assert!(!list.contains(secret), "{secret} in the dead letters:\n{list}");
        assert!(!log.contains(secret), "{secret} in the log (debug level):\n{log}");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}

#[test]
fn one_users_hanging_endpoints_cannot_hold_the_shared_web_push_slots() {
    // Issue 12 item 6: 10 subscriptions of mallory and 10 of trudy on a
    // server that accepts and never answers, 8 slots in all. Without
    // per-user and per-host limits they held every slot for the whole
    // timeout and alice's push waited behind them.
    let env = Env::new();
    let hang = Receiver::with(|_, _| {
        std::thread::sleep(Duration::from_secs(8));
        (201, vec![])
    });
    let fast = Receiver::with(|_, _| (201, vec![]));
    let sections = webpush_section(&env).replace("timeout_secs = 5\n", "timeout_secs = 5\nconcurrency = 8\nrequests_in_flight_per_host = 6\n");
    env.write_config_with(&[], &sections);
    let sc = env.start();
    let sub = Subscriber::new();
    let targets = |user: &str, rx: &Receiver, n: usize| -> Vec<WebPushTargetV1> {
        (0..n).map(|i| sub.target(&format!("{user}-sub-{i:02}"), &rx.url(&format!("/{user}/{i}")))).collect()
    };
    let record = |user: &str, t: Vec<WebPushTargetV1>| {
        let mut r = push_record(t, vec![]);
        if let Record::Push(p) = &mut r {
            p.user = user.into();
        }
        r
    };
    env.append_record(&record("mallory", targets("mallory", &hang, 10)));
    env.append_record(&record("trudy", targets("trudy", &hang, 10)));
    env.append_record(&record("alice", targets("alice", &fast, 1)));
    let start = std::time::Instant::now();
    env.ring();
    wait_for("alice's push", Duration::from_secs(4), || fast.count() >= 1);
    let alice_after = start.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    // Nothing at the hanging server has finished yet (it answers after 8 s,
    // the sidecar gives up after 5 s): what arrived is what is in flight.
    let arrived = hang.requests();
    let of = |user: &str| arrived.iter().filter(|r| r.path.starts_with(&format!("/{user}/"))).count();
    assert!(of("mallory") <= 4 && of("trudy") <= 4, "per user: mallory {} trudy {}", of("mallory"), of("trudy"));
    assert!(arrived.len() <= 6, "per host: {} in flight", arrived.len());
    assert!(alice_after < Duration::from_secs(3), "alice waited {alice_after:?}");
    let m = sc.scrape();
    assert!(m.value("coi_delivery_held_back_total", &[("endpoint", "push:webpush"), ("limit", "user")]) >= 1.0);
    assert!(m.value("coi_delivery_held_back_total", &[("endpoint", "push:webpush"), ("limit", "host")]) >= 1.0);
}

#[test]
fn validation_pushes_are_limited_per_user_per_hour() {
    // Issue 12 item 6: re-setting the same subscription id queues a new
    // validation each time; past the hourly limit none is sent.
    let env = Env::new();
    let rx = Receiver::with(|_, _| (201, vec![]));
    env.write_config_with(&[], &format!("{}validations_per_user_per_hour = 3\n", webpush_section(&env)));
    let sc = env.start();
    let sub = Subscriber::new();
    for _ in 0..6 {
        env.append_record(&validation_record(now_ms(), sub.target("subscription-1", &rx.url("/alice"))));
    }
    let mut bob = validation_record(now_ms(), sub.target("subscription-1", &rx.url("/bob")));
    if let Record::WebPushValidation(v) = &mut bob {
        v.user = "bob@example.org".into();
    }
    env.append_record(&bob);
    env.ring();
    wait_for("the limited ones counted", LONG, || {
        sc.scrape().value("coi_push_requests_total", &[("channel", "validation"), ("outcome", "user_rate_limited")]) == 3.0
    });
    wait_for("the allowed ones sent", LONG, || rx.count() >= 4);
    std::thread::sleep(Duration::from_millis(300));
    let paths: Vec<String> = rx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.iter().filter(|p| *p == "/alice").count(), 3, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| *p == "/bob").count(), 1, "{paths:?}");
    let m = sc.scrape();
    assert_eq!(m.value("coi_queue_depth_deliveries", &[("kind", "validation")]), 0.0, "nothing left queued");
    assert_eq!(m.value("coi_dead_letters_total", &[]), 0.0);
}

//! Per-message cost of classification on the delivery hot path.
//!
//! Two measurements over a small fixed corpus (plain mail, mailing-list mail,
//! COI 1:1, COI group, Delta Chat unencrypted, Delta Chat 1.x encrypted and
//! its `Gr.` group form, an MDN, Delta Chat 2.x header-protected as stored
//! (captured from 2.65, tests/fixtures/deltachat/), and the near misses the
//! header-protected rule must reject late: Thunderbird for Android/K-9 and
//! Thunderbird encrypted mail):
//! - `classify/values/*`: [`coi_core::classify`] on pre-extracted values, i.e.
//!   what the plugin pays after Dovecot's `mail_get_first_header()`;
//! - `classify/block/*`: [`coi_core::classify_header_block`], parsing the raw
//!   header block too.
//!
//! Each benchmark iteration classifies the whole corpus; `Throughput::Elements`
//! makes criterion report messages per second, so time per message is the
//! reciprocal. Kept short so `cargo bench -p coi-core --bench classify` runs in
//! well under a minute on two cores.

use std::hint::black_box;
use std::time::Duration;

use coi_core::classify::{verdict_header_block, Evidence};
use coi_core::{classify, classify_header_block, extract_headers, ChatHeaders, Kind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CORPUS: &[(&str, &[u8])] = &[
    (
        "plain",
        b"Return-Path: <a@example.org>\r\n\
          Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\
          \tby mail.example.net with ESMTPS id abc123 for <b@example.net>;\r\n\
          \tSun, 1 Jun 2025 10:00:00 +0000\r\n\
          DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n\
          \th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
          \tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgbG9uZyBlbm91Z2g=\r\n\
          From: Alice <a@example.org>\r\nTo: b@example.net\r\nSubject: lunch?\r\n\
          Date: Sun, 1 Jun 2025 10:00:00 +0000\r\n\
          Message-ID: <CAF=abc123def456@mail.example.org>\r\nMIME-Version: 1.0\r\n\
          Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\n",
    ),
    (
        "list",
        b"From: someone@lists.example.org\r\nList-Id: Dev list <dev.lists.example.org>\r\n\
          List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\nPrecedence: list\r\n\
          Message-ID: <20250601100000.GA12345@host.example.org>\r\n\
          References: <20250531.abc@host.example.org> <20250531.def@host.example.org>\r\n\
          \t<20250531.ghi@host.example.org>\r\n\
          In-Reply-To: <20250531.ghi@host.example.org>\r\n\
          Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    ),
    (
        "coi",
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Chat: hi\r\n\
          Date: Sun, 1 Jun 2025 10:00:00 +0000\r\n\
          Message-ID: <chat$1234567890abcdef@example.org>\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\r\n",
    ),
    (
        "coi-group",
        b"From: a@example.org\r\nTo: b@example.org, c@example.org\r\nSubject: Chat: team\r\n\
          Message-ID: <chat$group.abcdefABCDEF12.0001@example.org>\r\n\
          References: <chat$group.abcdefABCDEF12.0000@example.org>\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\r\n",
    ),
    (
        "deltachat",
        b"Chat-Version: 1.0\r\n\
          Message-ID: <a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d@localhost>\r\n\
          From: alice@example.org\r\nTo: bob@example.net\r\n\
          Subject: Message from alice@example.org\r\n\
          Content-Type: text/plain; charset=utf-8; format=flowed; delsp=no\r\n\r\n",
    ),
    (
        "deltachat-1x-encrypted",
        b"From: alice@example.org\r\nTo: bob@example.net\r\n\
          Date: Sun, 1 Jun 2025 10:00:00 +0000\r\nChat-Version: 1.0\r\nSubject: [...]\r\n\
          Message-ID: <0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0@localhost>\r\n\
          Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
          \tboundary=\"1234567890abcdef\"\r\n\r\n",
    ),
    (
        "mdn",
        b"Chat-Version: 1.0\r\n\
          Message-ID: <f00dfeed-0000-1111-2222-333344445555@localhost>\r\n\
          From: bob@example.net\r\nTo: alice@example.org\r\nSubject: Receipt Notification\r\n\
          Content-Type: multipart/report; report-type=disposition-notification;\r\n\
          \tboundary=\"xyz\"\r\n\r\n",
    ),
    (
        "deltachat-1x-group",
        b"Chat-Version: 1.0\r\nFrom: alice@example.org\r\nTo: bob@example.net, carol@example.net\r\n\
          Subject: Chat: trio\r\nMessage-ID: <Gr.abcdefghijk.mnopqrstuvw@example.org>\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\r\n",
    ),
    (
        "deltachat-2x-protected",
        b"Return-Path: <bob@example.org>\r\nDelivered-To: alice@example.org\r\n\
          Received: from mx.example.org\r\n\tby mx.example.org with LMTP id 0A1uLEtJEWscTgAAg+zDdQ\r\n\
          \tfor <alice@example.org>; Thu, 03 Dec 2026 10:49:47 +0000\r\n\
          Received: from client (localhost [127.0.0.1])\r\n\tby relay.example.org with ESMTPA;\r\n\
          \tThu, 03 Dec 2026 10:49:47 -0000\r\n\
          From: <bob@example.org>\r\nDate: Tue, 1 Dec 2026 08:49:26 +0000\r\n\
          Message-ID: <4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@localhost>\r\nMIME-Version: 1.0\r\n\
          To: \"hidden-recipients\": ;\r\nSubject: [...]\r\n\
          Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
          \tboundary=\"18edb75f18b70a59_c4a0d98e3fab25cb_912410fe33ce853d\"\r\n\r\n",
    ),
    (
        "k9-encrypted",
        b"MIME-Version: 1.0\r\nDate: Tue, 01 Dec 2026 10:20:38 +0100\r\n\
          Message-ID: <6F2B9C41-3A5D-4E8F-9B7C-1D2E3F4A5B6C@example.net>\r\nSubject: [...]\r\n\
          From: Alice <alice@example.net>\r\nTo: Bob <bob@example.org>\r\n\
          Content-Type: multipart/encrypted; boundary=\"b\";\r\n protocol=\"application/pgp-encrypted\"\r\n\r\n",
    ),
    (
        "thunderbird-encrypted",
        b"Message-ID: <0b6a3c2e-5d47-4f1a-9c3e-2a7d8e9f1b20@example.net>\r\n\
          Date: Tue, 1 Dec 2026 10:20:38 +0100\r\nMIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\n\
          To: Bob <bob@example.org>\r\nFrom: Alice Example <alice@example.net>\r\nSubject: ...\r\n\
          Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n boundary=\"b\"\r\n\r\n",
    ),
];

fn bench(c: &mut Criterion) {
    // Guard against benchmarking a corpus that no longer means what it says.
    let kinds: Vec<Kind> = CORPUS
        .iter()
        .map(|(_, b)| classify_header_block(b))
        .collect();
    assert_eq!(kinds[0], Kind::NotChat);
    assert_eq!(kinds[2], Kind::Chat);
    assert!(matches!(kinds[3], Kind::GroupChat { .. }));
    assert_eq!(kinds[6], Kind::ReadReceipt);
    assert_eq!(kinds[7], Kind::GroupChat { group_id: "abcdefghijk".into() });
    assert_eq!(verdict_header_block(CORPUS[8].1).evidence, Evidence::HeaderProtected);
    assert_eq!(kinds[9], Kind::NotChat);
    assert_eq!(kinds[10], Kind::NotChat);

    let values: Vec<ChatHeaders<'static>> =
        CORPUS.iter().map(|(_, b)| extract_headers(b)).collect();

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(CORPUS.len() as u64));
    group.bench_function("values/mixed", |b| {
        b.iter(|| {
            for h in &values {
                black_box(classify(black_box(h)));
            }
        })
    });
    group.bench_function("block/mixed", |b| {
        b.iter(|| {
            for (_, block) in CORPUS {
                black_box(classify_header_block(black_box(block)));
            }
        })
    });
    group.finish();

    let mut single = c.benchmark_group("classify_one");
    single.throughput(Throughput::Elements(1));
    for ((name, block), h) in CORPUS.iter().zip(&values) {
        single.bench_function(format!("values/{name}"), |b| {
            b.iter(|| classify(black_box(h)))
        });
        single.bench_function(format!("block/{name}"), |b| {
            b.iter(|| classify_header_block(black_box(block)))
        });
    }
    single.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

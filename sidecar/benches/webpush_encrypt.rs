//! What one Web Push encryption (RFC 8291) costs the sidecar, old way and new.
//!
//! Every push needs a fresh ephemeral P-256 key and one ECDH (the RFC
//! forbids reuse), then HKDF and AES-128-GCM over at most 4 KiB. This times
//! `push::ece::encrypt` (ring for the key pair and ECDH) against the same
//! derivation fed by p256 (`encrypt_with` with a fresh `SecretKey`, what
//! `encrypt` did before), alternating in rounds on one thread, and prints
//! microseconds per message for each. `COI_BENCH_PUSHES=n` changes the count.
//!
//! Run: `cargo bench -p coi-sidecar --bench webpush_encrypt`

use std::time::Instant;

use coi_sidecar::push::ece::{encrypt, encrypt_with, Subscriber};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;

fn main() {
    let n: usize = std::env::var("COI_BENCH_PUSHES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let ua = SecretKey::random(&mut OsRng);
    let to = Subscriber::from_bytes(ua.public_key().to_encoded_point(false).as_bytes(), &[5; 16]).unwrap();
    let body = vec![b'x'; 1200];
    let mut best = [f64::MAX; 2];
    for _round in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(encrypt(&body, &to).unwrap());
        }
        best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            let eph = SecretKey::random(&mut OsRng);
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            std::hint::black_box(encrypt_with(&body, &to, &eph, &salt).unwrap());
        }
        best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    println!("webpush encrypt, 1200-byte body, best of 5 rounds x {n}:");
    println!("  ring (push::ece::encrypt):       {:8.1} us/message", best[0]);
    println!("  p256 (fresh SecretKey + encrypt_with, before): {:8.1} us/message", best[1]);
    println!("  ratio p256/ring: {:.1}", best[1] / best[0]);
}

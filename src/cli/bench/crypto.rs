//! `orderflow bench crypto`: the config cipher and registry lookups.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use crate::connectors::Registry;
use crate::crypto::{Keyring, connection_aad, generate_key_hex};

fn per_op_ns(start: Instant, n: u32) -> f64 {
    start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
}

pub(super) fn run(size: usize, iterations: u32) -> anyhow::Result<()> {
    let keyring = Keyring::from_hex(&generate_key_hex(), "")?;
    let aad = connection_aad(Uuid::new_v4(), Uuid::new_v4());
    // A JSON object padded to `size` bytes, like a config with a long private key.
    let filler = "x".repeat(size.saturating_sub(r#"{"k":""}"#.len()));
    let plaintext = serde_json::to_vec(&json!({ "k": filler }))?;

    let start = Instant::now();
    for _ in 0..iterations {
        let blob = keyring.encrypt(aad.as_bytes(), black_box(&plaintext))?;
        black_box(keyring.decrypt(aad.as_bytes(), &blob)?);
    }
    let roundtrip_ns = per_op_ns(start, iterations);

    let registry = Registry::default();
    let lookups = iterations.saturating_mul(10);
    let start = Instant::now();
    for _ in 0..lookups {
        black_box(registry.by_slug(black_box("dropzone-json-v1")));
        black_box(registry.by_type(black_box("DROPZONE_JSON_V1")));
    }
    let lookup_ns = per_op_ns(start, lookups.saturating_mul(2));

    eprintln!(
        "encrypt+decrypt of {} bytes: {:.2} µs; registry lookup: {:.1} ns",
        plaintext.len(),
        roundtrip_ns / 1000.0,
        lookup_ns
    );
    println!(
        "{}",
        json!({
            "plaintext_bytes": plaintext.len(),
            "iterations": iterations,
            "encrypt_decrypt_us": (roundtrip_ns / 10.0).round() / 100.0,
            "registry_lookup_ns": (lookup_ns * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

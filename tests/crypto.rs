//! The config cipher against the shared known-answer vectors (from an independent
//! implementation), plus properties.

use std::path::Path;

use orderflow::crypto::{CryptoError, Keyring};
use proptest::prelude::*;
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/config-encryption.json");

fn vectors() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn aad(v: &Value) -> Vec<u8> {
    // null means "no associated data", which AES-GCM treats as empty.
    v["aad_utf8"].as_str().unwrap_or("").as_bytes().to_vec()
}

#[test]
fn copies_match_the_shared_contract_byte_for_byte() {
    // CI runs with ../shared beside the repo; a plain `cargo test` elsewhere has the copies only.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if !shared.exists() {
        eprintln!("skipped: ../shared not present");
        return;
    }
    let pairs = [
        (
            "tests/fixtures/config-encryption.json",
            "test-vectors/config-encryption.json",
        ),
        (
            "schemas/orderflow_export_json_v1.schema.json",
            "schemas/orderflow_export_json_v1.schema.json",
        ),
    ];
    for (ours, theirs) in pairs {
        let ours = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(ours)).unwrap();
        let theirs = std::fs::read(shared.join(theirs)).unwrap();
        assert!(
            ours == theirs,
            "copy of {} drifted from ../shared",
            ours.len()
        );
    }
}

#[test]
fn every_shared_vector_gives_its_expected_answer() {
    let all = vectors();
    assert!(all.len() >= 8, "vectors missing");
    for v in all {
        let name = v["name"].as_str().unwrap();
        let blob = hex::decode(v["blob_hex"].as_str().unwrap()).unwrap();
        let keyring = match v["key_hex"].as_str() {
            Some(key) => Keyring::from_hex(key, "").unwrap(),
            None => {
                let previous: Vec<&str> = v["previous_keys_hex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                Keyring::from_hex(v["current_key_hex"].as_str().unwrap(), &previous.join(","))
                    .unwrap()
            }
        };
        let result = keyring.decrypt(&aad(&v), &blob);
        match v["expect"].as_str().unwrap() {
            "decrypts_to_config" | "decrypts_with_previous_key" => {
                let decrypted = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let config: Value = serde_json::from_slice(decrypted.plaintext.expose()).unwrap();
                assert_eq!(config, v["config"], "{name}");
                let expected_key = usize::from(v["expect"] == "decrypts_with_previous_key");
                assert_eq!(decrypted.key_index, expected_key, "{name}");
                if let Some(iv) = v["iv_hex"].as_str() {
                    assert_eq!(
                        hex::encode(&blob[..12]),
                        iv,
                        "{name}: IV is not the blob's prefix"
                    );
                }
            }
            "authentication_failure" => {
                assert_eq!(result.err(), Some(CryptoError::Authentication), "{name}");
            }
            "malformed" => assert!(matches!(result, Err(CryptoError::Malformed(_))), "{name}"),
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[test]
fn a_blob_we_encrypt_opens_only_with_the_same_row_and_a_known_key() {
    let v = &vectors()[1];
    let keyring = Keyring::from_hex(v["key_hex"].as_str().unwrap(), "").unwrap();
    let plaintext = serde_json::to_vec(&v["config"]).unwrap();
    let blob = keyring.encrypt(&aad(v), &plaintext).unwrap();
    assert_eq!(
        keyring.decrypt(&aad(v), &blob).unwrap().plaintext.expose(),
        &plaintext
    );
    assert_eq!(
        keyring.decrypt(b"erp_connection:other:row", &blob).err(),
        Some(CryptoError::Authentication)
    );
    let other = Keyring::from_hex(&orderflow::crypto::generate_key_hex(), "").unwrap();
    assert_eq!(
        other.decrypt(&aad(v), &blob).err(),
        Some(CryptoError::Authentication)
    );
}

fn json_config() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    prop::collection::btree_map("[a-z_]{1,16}", leaf, 0..12).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_json_config_round_trips_and_no_two_blobs_are_equal(config in json_config(), row in "[a-f0-9-]{1,36}") {
        let keyring = Keyring::from_hex(&orderflow::crypto::generate_key_hex(), "").unwrap();
        let aad = format!("erp_connection:{row}:{row}");
        let plaintext = serde_json::to_vec(&config).unwrap();
        let a = keyring.encrypt(aad.as_bytes(), &plaintext).unwrap();
        let b = keyring.encrypt(aad.as_bytes(), &plaintext).unwrap();
        prop_assert_ne!(&a, &b);
        prop_assert_ne!(&a[..12], &b[..12]);
        let back: serde_json::Map<String, Value> =
            serde_json::from_slice(keyring.decrypt(aad.as_bytes(), &a).unwrap().plaintext.expose()).unwrap();
        prop_assert_eq!(back, config);
    }
}

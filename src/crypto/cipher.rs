//! AES-256-GCM keyring: the current key encrypts, every key (current first) may decrypt.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::SecretBytes;

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// IV (nonce) length in bytes, stored in front of the ciphertext.
pub const IV_LEN: usize = 12;
/// Authentication tag length in bytes, stored after the ciphertext.
pub const TAG_LEN: usize = 16;

/// Why a key from the environment was refused. Never carries the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The variable is not set or empty.
    #[error("{0} is not set; generate one with `orderflow keys generate`")]
    Missing(&'static str),
    /// Not 64 characters.
    #[error("{name} must be 64 hex characters (32 bytes), got {len} characters")]
    WrongLength {
        /// Variable name.
        name: &'static str,
        /// Length that was given.
        len: usize,
    },
    /// Contains a character that is not a hex digit.
    #[error("{0} must contain only hex digits (0-9, a-f)")]
    NotHex(&'static str),
}

/// Why a blob could not be encrypted or decrypted. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Too short to hold an IV and a tag.
    #[error("encrypted blob is malformed ({0} bytes, need at least 28)")]
    Malformed(usize),
    /// No key authenticated the blob for this associated data (wrong key, tampering, moved row).
    #[error("encrypted blob failed authentication with every configured key")]
    Authentication,
    /// The cipher refused to encrypt (input too long).
    #[error("encryption failed")]
    Encrypt,
}

/// Plaintext recovered from a blob, and which key opened it (0 = current).
pub struct Decrypted {
    /// The plaintext, wiped on drop.
    pub plaintext: SecretBytes,
    /// Index into the keyring: 0 is the current key, 1.. the previous keys in order.
    pub key_index: usize,
}

/// The current key plus older keys still accepted for decryption during a rotation.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Aes256Gcm>,
    /// Each key's check value, in the same order.
    checks: Vec<String>,
}

/// What the key check value authenticates; changing it would orphan every recorded value.
const KEY_CHECK_LABEL: &[u8] = b"orderflow/encryption-key-check/v1";

/// `HMAC-SHA256(key, label)` as hex: identifies a key without revealing anything about it, so
/// the database can record which key its configs are sealed with.
fn check_value(key: &[u8; KEY_LEN]) -> Option<String> {
    use hmac::{KeyInit as _, Mac};
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key).ok()?;
    mac.update(KEY_CHECK_LABEL);
    Some(hex::encode(mac.finalize().into_bytes()))
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys, [redacted])", self.keys.len())
    }
}

/// The associated data that binds a config blob to its row and org.
pub fn connection_aad(org_id: Uuid, connection_id: Uuid) -> String {
    // Uuid's Display is the lowercase hyphenated form the spec requires.
    format!("erp_connection:{org_id}:{connection_id}")
}

/// A fresh random 32-byte key as 64 lowercase hex characters.
pub fn generate_key_hex() -> String {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(key.as_mut());
    hex::encode(key.as_ref())
}

fn parse_key(name: &'static str, text: &str) -> Result<(Aes256Gcm, String), KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Missing(name));
    }
    if text.len() != KEY_LEN * 2 {
        return Err(KeyError::WrongLength {
            name,
            len: text.chars().count(),
        });
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(text, bytes.as_mut()).map_err(|_| KeyError::NotHex(name))?;
    let cipher = Aes256Gcm::new_from_slice(bytes.as_ref())
        .map_err(|_| KeyError::WrongLength { name, len: 0 })?;
    let check = check_value(&bytes).ok_or(KeyError::WrongLength { name, len: 0 })?;
    Ok((cipher, check))
}

impl Keyring {
    /// Builds a keyring from `ENCRYPTION_MASTER_KEY` and the comma-separated
    /// `ENCRYPTION_PREVIOUS_KEYS` (empty entries are ignored).
    pub fn from_hex(current: &str, previous: &str) -> Result<Self, KeyError> {
        let (mut keys, mut checks) = (Vec::new(), Vec::new());
        let parts = std::iter::once(("ENCRYPTION_MASTER_KEY", current)).chain(
            previous
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| ("ENCRYPTION_PREVIOUS_KEYS", p)),
        );
        for (name, text) in parts {
            let (cipher, check) = parse_key(name, text)?;
            keys.push(cipher);
            checks.push(check);
        }
        Ok(Self { keys, checks })
    }

    /// The current key's check value (recorded in the database when configs are sealed).
    pub fn check_value(&self) -> &str {
        &self.checks[0]
    }

    /// Which key (0 = current) a recorded check value belongs to, if any.
    pub fn key_for_check(&self, check: &str) -> Option<usize> {
        self.checks.iter().position(|c| c == check)
    }

    /// Encrypts with the current key and a fresh random IV: `IV ‖ ciphertext ‖ tag`.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        self.encrypt_with_iv(aad, plaintext, iv)
    }

    fn encrypt_with_iv(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = Nonce::from(iv);
        let sealed = self.keys[0]
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut blob = Vec::with_capacity(IV_LEN + sealed.len());
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Decrypts a blob, trying the current key first and then each previous key.
    pub fn decrypt(&self, aad: &[u8], blob: &[u8]) -> Result<Decrypted, CryptoError> {
        if blob.len() < IV_LEN + TAG_LEN {
            return Err(CryptoError::Malformed(blob.len()));
        }
        let (iv, sealed) = blob.split_at(IV_LEN);
        let mut nonce_bytes = [0u8; IV_LEN];
        nonce_bytes.copy_from_slice(iv);
        let nonce = Nonce::from(nonce_bytes);
        for (key_index, key) in self.keys.iter().enumerate() {
            if let Ok(plain) = key.decrypt(&nonce, Payload { msg: sealed, aad }) {
                return Ok(Decrypted {
                    plaintext: SecretBytes::new(plain),
                    key_index,
                });
            }
        }
        Err(CryptoError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_errors_name_the_variable_and_never_echo_the_value() {
        let bad = "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let err = Keyring::from_hex(bad, "").unwrap_err();
        assert_eq!(err, KeyError::NotHex("ENCRYPTION_MASTER_KEY"));
        assert!(!err.to_string().contains(bad));
        let err = Keyring::from_hex("abcd", "").unwrap_err();
        assert!(err.to_string().contains("64 hex characters"), "{err}");
        assert!(!err.to_string().contains("abcd"));
        assert_eq!(
            Keyring::from_hex("", "").unwrap_err(),
            KeyError::Missing("ENCRYPTION_MASTER_KEY")
        );
        assert!(matches!(
            Keyring::from_hex(K1, "1234").unwrap_err(),
            KeyError::WrongLength {
                name: "ENCRYPTION_PREVIOUS_KEYS",
                ..
            }
        ));
    }

    #[test]
    fn known_iv_produces_the_reference_layout() {
        let ring = Keyring::from_hex(K1, "").unwrap();
        let blob = ring.encrypt_with_iv(b"aad", b"{}", [7u8; IV_LEN]).unwrap();
        assert_eq!(&blob[..IV_LEN], &[7u8; IV_LEN]);
        assert_eq!(blob.len(), IV_LEN + 2 + TAG_LEN);
        assert_eq!(
            ring.decrypt(b"aad", &blob).unwrap().plaintext.expose(),
            b"{}"
        );
    }

    #[test]
    fn check_values_identify_keys_without_revealing_them() {
        const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
        let ring = Keyring::from_hex(K2, K1).unwrap();
        let old = Keyring::from_hex(K1, "").unwrap();
        assert_eq!(ring.key_for_check(ring.check_value()), Some(0));
        assert_eq!(ring.key_for_check(old.check_value()), Some(1));
        assert_eq!(old.key_for_check(ring.check_value()), None);
        assert_eq!(ring.check_value().len(), 64);
        assert!(!ring.check_value().contains(&K2[..16]));
    }

    #[test]
    fn debug_hides_keys() {
        let ring = Keyring::from_hex(K1, "").unwrap();
        assert!(!format!("{ring:?}").contains("0001"));
    }
}

//! List cursors that say nothing and cannot be forged.
//!
//! A page's position is an insertion sequence shared by every org, so handing it out would
//! tell a tenant how much all tenants write. A cursor is therefore that position encrypted
//! (AES-256-GCM, a fresh nonce each time) under a key derived from `JWT_SECRET`, with the
//! listing it belongs to (org, list, filter) as associated data: a cursor from another
//! listing, another org or made up fails to open and is answered 422.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use rand::RngCore;

use super::SecretString;
use crate::domain::FieldError;

/// What a cursor looks like: URL-safe base64 of nonce, sealed position and tag (48 chars).
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{48}$";

/// Seals and opens list cursors.
#[derive(Clone)]
pub struct Cursors {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors([redacted])")
    }
}

impl Cursors {
    /// The cursor key derived from `JWT_SECRET` (HMAC with a label of its own, so it is
    /// unrelated to the token signing key and to the console's CSRF key).
    pub fn new(secret: &SecretString) -> Self {
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret.expose().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"orderflow/list-cursor-key/v1");
        let key = zeroize::Zeroizing::new(mac.finalize().into_bytes());
        let cipher = Aes256Gcm::new_from_slice(key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 gives 32 bytes"));
        Self { cipher }
    }

    /// The cursor for `position` in `listing`.
    pub fn seal(&self, listing: &str, position: i64) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &position.to_be_bytes(),
                    aad: listing.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut blob = Vec::with_capacity(12 + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(blob)
    }

    /// The position a cursor of `listing` stands for; 422 on `cursor` for anything else.
    pub fn open(&self, listing: &str, cursor: &str) -> Result<i64, FieldError> {
        let refused = || FieldError::new("cursor", "not a cursor returned by this listing");
        let blob = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
        if blob.len() != 12 + 8 + 16 {
            return Err(refused());
        }
        let (nonce, sealed) = blob.split_at(12);
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes.copy_from_slice(nonce);
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: sealed,
                    aad: listing.as_bytes(),
                },
            )
            .map_err(|_| refused())?;
        let bytes: [u8; 8] = plain.as_slice().try_into().map_err(|_| refused())?;
        Ok(i64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_open_only_in_their_own_listing_and_reveal_nothing() {
        let cursors = Cursors::new(&SecretString::new("k".repeat(40)));
        let a = cursors.seal("org-a:exports:", 42);
        assert!(regex_like(&a), "{a}");
        assert_eq!(cursors.open("org-a:exports:", &a), Ok(42));
        // Fresh nonce: the same position never gives the same text.
        assert_ne!(cursors.seal("org-a:exports:", 42), a);
        assert!(!a.contains("42"));
        for (listing, text) in [
            ("org-b:exports:", a.as_str()),
            ("org-a:exports:FAILED", a.as_str()),
            ("org-a:drafts:", a.as_str()),
            ("org-a:exports:", "42"),
            ("org-a:exports:", ""),
            ("org-a:exports:", "%%%"),
        ] {
            assert_eq!(
                cursors.open(listing, text).unwrap_err().field,
                "cursor",
                "{listing} {text}"
            );
        }
        // Another server secret cannot open it either.
        let other = Cursors::new(&SecretString::new("x".repeat(40)));
        assert!(other.open("org-a:exports:", &a).is_err());
        // Flipping one character breaks the tag.
        let mut forged = a.into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(cursors.open("org-a:exports:", &forged).is_err());
    }

    fn regex_like(text: &str) -> bool {
        text.len() == 48
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

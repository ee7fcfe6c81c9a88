//! Config cipher and secret wrapper types.
//!
//! Connector configs are stored as AES-256-GCM blobs (`IV ‖ ciphertext ‖ tag`) whose associated
//! data binds each blob to its row, see [`connection_aad`].

mod cipher;
pub mod cursor;
mod secret;

pub use cipher::{
    CryptoError, Decrypted, IV_LEN, KEY_LEN, KeyError, Keyring, TAG_LEN, connection_aad,
    generate_key_hex,
};
pub use secret::{Secret, SecretBytes, SecretString};

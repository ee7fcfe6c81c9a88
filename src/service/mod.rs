//! Use cases shared by the API and the CLI. They validate, call the store and write the audit
//! log; they know nothing about HTTP.

pub mod accounts;
pub mod connections;

use crate::domain::FieldError;
use crate::store::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The named thing does not exist (in this org).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// An input broke a rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored connector config cannot be decrypted or parsed (details are logged, never shown).
    #[error("Configuration error")]
    ConfigUnreadable,
    /// Something that should not happen (hashing, signing) failed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ServiceError::NotFound("not found".into()),
            other => ServiceError::Store(other),
        }
    }
}

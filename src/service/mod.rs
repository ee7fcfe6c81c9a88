//! Use cases shared by the API and the CLI. They validate, call the store and write the audit
//! log; they know nothing about HTTP.

pub mod accounts;
pub mod ack_poll;
pub mod acks;
pub mod audit;
pub mod connections;
pub mod delivery;
pub mod limits;
pub mod login;
pub mod operations;
pub mod orders;
pub mod preview;
mod push_batch;
pub mod targets;

use crate::domain::FieldError;
use crate::store::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The named thing does not exist (in this org).
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong credentials (the message is the same whatever was wrong).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Too many failed attempts; retry after this many seconds.
    #[error("too many failed attempts; retry in {retry_after_secs} s")]
    Throttled {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// The caller already has as much of this work running as it may (connection tests, ack
    /// polls); retry when some of it finished.
    #[error("{message}")]
    TooMuchAtOnce {
        /// What is limited, for the caller.
        message: &'static str,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// A bounded resource (the password hashing workers) stayed busy; retry shortly.
    #[error("temporarily busy; retry in {retry_after_secs} s")]
    Busy {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The request conflicts with the current state; `details` names what it conflicts with.
    #[error("{message}")]
    ConflictWith {
        /// Human message.
        message: String,
        /// e.g. `{"erp_export_id": …}`.
        details: serde_json::Value,
    },
    /// The tenant's own server (an ERP, an SFTP host) could not be reached or refused; the
    /// message says what happened there.
    #[error("{0}")]
    Unreachable(String),
    /// Something the service depends on (object storage) failed.
    #[error("{0}")]
    Dependency(String),
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

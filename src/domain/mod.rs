//! Domain types and their rules. Nothing here does I/O.

pub mod ack;
pub mod audit;
pub mod connection;
pub mod delivery;
pub mod draft;
pub mod export;
pub mod order;
pub mod org;
pub mod page;
pub mod text;
pub mod user;

/// A value that broke a domain rule, naming the field for a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The offending field (dotted path for nested values).
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

//! The closed set of failures a connector reports: each has a code a user can act on, a fixed
//! headline message, and whether retrying can help.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a connection test or an export failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The server refused the credentials.
    AuthFailed,
    /// No answer within `timeout_secs`.
    ConnectionTimeout,
    /// Nothing listens on that port.
    ConnectionRefused,
    /// The host name does not resolve.
    DnsFailure,
    /// The host resolves into `CONNECTOR_BLOCKED_NETWORKS`.
    HostBlocked,
    /// The server's host key differs from the pinned or recorded one.
    HostKeyMismatch,
    /// The server or filesystem refused the operation.
    PermissionDenied,
    /// The folder or file does not exist.
    PathNotFound,
    /// The connection dropped mid-operation.
    ConnectionLost,
    /// The export file already exists with different content.
    FileExistsDifferent,
    /// The rendered file does not match the export schema.
    SchemaInvalid,
    /// The stored config cannot be decrypted or parsed.
    ConfigUnreadable,
    /// The ERP rejected the order (from its error file).
    ErpRejected,
    /// The SSH peer speaks something we cannot work with (no common algorithm, not SSH).
    ProtocolError,
    /// Another local I/O failure (disk full, …).
    IoError,
    /// The export's connection was disabled before it could be delivered.
    ConnectionDisabled,
    /// The export archive (object storage) could not be written or read.
    StorageUnavailable,
    /// The ERP answered with a redirect; orders are never sent anywhere else than configured.
    RedirectRefused,
    /// The ERP answered "try later" (HTTP 408, 425, 429 or 5xx).
    ErpUnavailable,
    /// The TLS handshake failed (unknown CA, wrong name, expired, client certificate refused).
    TlsError,
    /// The export was claimed more often than `EXPORT_MAX_ATTEMPTS` without an outcome being
    /// recorded (crashes or lost leases): whether it arrived is unknown.
    AttemptsExhausted,
    /// The order cannot be written in the connection's format (e.g. a character the chosen
    /// encoding lacks); the same order fails the same way until the order or format changes.
    RenderFailed,
}

impl ErrorCode {
    /// The wire name, e.g. `AUTH_FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::ConnectionTimeout => "CONNECTION_TIMEOUT",
            ErrorCode::ConnectionRefused => "CONNECTION_REFUSED",
            ErrorCode::DnsFailure => "DNS_FAILURE",
            ErrorCode::HostBlocked => "HOST_BLOCKED",
            ErrorCode::HostKeyMismatch => "HOST_KEY_MISMATCH",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::PathNotFound => "PATH_NOT_FOUND",
            ErrorCode::ConnectionLost => "CONNECTION_LOST",
            ErrorCode::FileExistsDifferent => "FILE_EXISTS_DIFFERENT",
            ErrorCode::SchemaInvalid => "SCHEMA_INVALID",
            ErrorCode::ConfigUnreadable => "CONFIG_UNREADABLE",
            ErrorCode::ErpRejected => "ERP_REJECTED",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
            ErrorCode::IoError => "IO_ERROR",
            ErrorCode::ConnectionDisabled => "CONNECTION_DISABLED",
            ErrorCode::StorageUnavailable => "STORAGE_UNAVAILABLE",
            ErrorCode::RedirectRefused => "REDIRECT_REFUSED",
            ErrorCode::ErpUnavailable => "ERP_UNAVAILABLE",
            ErrorCode::TlsError => "TLS_ERROR",
            ErrorCode::AttemptsExhausted => "ATTEMPTS_EXHAUSTED",
            ErrorCode::RenderFailed => "RENDER_FAILED",
        }
    }

    /// The user-facing headline.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::AuthFailed => "Authentication failed",
            ErrorCode::ConnectionTimeout => "Connection timeout",
            ErrorCode::ConnectionRefused => "Connection refused",
            ErrorCode::DnsFailure => "Host name could not be resolved",
            ErrorCode::HostBlocked => "Host is in a blocked network",
            ErrorCode::HostKeyMismatch => "Host key verification failed",
            ErrorCode::PermissionDenied => "Permission denied",
            ErrorCode::PathNotFound => "Path not found",
            ErrorCode::ConnectionLost => "Connection lost",
            ErrorCode::FileExistsDifferent => "File already exists with different content",
            ErrorCode::SchemaInvalid => "Export file does not match the schema",
            ErrorCode::ConfigUnreadable => "Configuration error",
            ErrorCode::ErpRejected => "The ERP rejected the order",
            ErrorCode::ProtocolError => "SSH protocol error",
            ErrorCode::IoError => "I/O error",
            ErrorCode::ConnectionDisabled => "The connection was disabled before delivery",
            ErrorCode::StorageUnavailable => "The export archive is unavailable",
            ErrorCode::RedirectRefused => {
                "The ERP answered with a redirect, which is never followed"
            }
            ErrorCode::ErpUnavailable => "The ERP is temporarily unavailable",
            ErrorCode::TlsError => "TLS handshake failed",
            ErrorCode::AttemptsExhausted => "Delivery attempts exhausted without an outcome",
            ErrorCode::RenderFailed => "The order cannot be written in the connection's format",
        }
    }

    /// Whether a later retry may succeed without anyone changing anything (timeout,
    /// refused, DNS and a lost connection; everything else, `IO_ERROR` included, needs a person).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::ConnectionTimeout
                | ErrorCode::ConnectionRefused
                | ErrorCode::DnsFailure
                | ErrorCode::ConnectionLost
                // The ERP itself said "later" (HTTP 408, 425, 429, 5xx).
                | ErrorCode::ErpUnavailable
                // Not the ERP's fault and not a config problem: our own storage was down.
                | ErrorCode::StorageUnavailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector failure: a code plus a message for the user. Messages may name hosts and paths
/// but never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ConnectorError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human message, starting with the code's headline.
    pub message: String,
    /// How long the peer asked us to wait before retrying (HTTP `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// Facts for the export's `error_json` beside code and message (e.g. `http_status` and
    /// the start of the ERP's answer).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl From<crate::formats::RenderError> for ConnectorError {
    fn from(err: crate::formats::RenderError) -> Self {
        use crate::formats::RenderError;
        match err {
            RenderError::Unwritable(why) => Self::with_detail(ErrorCode::RenderFailed, why),
            RenderError::SchemaInvalid(why) => Self::with_detail(ErrorCode::SchemaInvalid, why),
        }
    }
}

/// Why an inbound callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefused {
    /// This connection takes no callbacks (another connector type or ack mode): 404.
    #[error("this connection does not accept callbacks")]
    NotAccepted,
    /// Missing or wrong signature, or a timestamp outside the tolerance: 401.
    #[error("{0}")]
    Unauthenticated(&'static str),
}

/// Longest detail kept in a connector error's message.
pub const MAX_DETAIL_CHARS: usize = 2000;

impl ConnectorError {
    /// The code's headline alone.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.message().to_owned(),
            retry_after: None,
            details: None,
        }
    }

    /// The headline followed by a detail, e.g. `Path not found: /import/orders`. The detail
    /// often quotes a peer (a server's status message, an ERP's answer): it is cleaned of
    /// characters the database refuses and bounded, like everything from outside.
    pub fn with_detail(code: ErrorCode, detail: impl fmt::Display) -> Self {
        let detail = crate::domain::text::clean(&detail.to_string(), MAX_DETAIL_CHARS);
        Self {
            code,
            message: format!("{}: {detail}", code.message()),
            retry_after: None,
            details: None,
        }
    }

    /// The same failure, with facts for `error_json` (cleaned like the message).
    pub fn details(mut self, details: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut value = serde_json::Value::Object(details);
        crate::domain::text::clean_json(&mut value);
        if let serde_json::Value::Object(details) = value {
            self.details = Some(details);
        }
        self
    }

    /// The same failure, with the wait the peer asked for.
    pub fn retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_messages_and_retry_classes() {
        assert_eq!(ErrorCode::AuthFailed.message(), "Authentication failed");
        assert_eq!(ErrorCode::ConnectionTimeout.message(), "Connection timeout");
        assert_eq!(
            ErrorCode::HostKeyMismatch.message(),
            "Host key verification failed"
        );
        assert_eq!(ErrorCode::PermissionDenied.message(), "Permission denied");
        for transient in [
            "CONNECTION_TIMEOUT",
            "CONNECTION_REFUSED",
            "DNS_FAILURE",
            "CONNECTION_LOST",
        ] {
            let code: ErrorCode = serde_json::from_value(serde_json::json!(transient))
                .unwrap_or(ErrorCode::AuthFailed);
            assert_eq!(code.as_str(), transient);
            assert!(code.is_transient(), "{transient}");
        }
        for permanent in [
            ErrorCode::AuthFailed,
            ErrorCode::PermissionDenied,
            ErrorCode::SchemaInvalid,
            ErrorCode::HostKeyMismatch,
            ErrorCode::IoError,
        ] {
            assert!(!permanent.is_transient());
        }
        let json = serde_json::to_value(ErrorCode::HostBlocked).unwrap();
        assert_eq!(json, "HOST_BLOCKED");
    }
}

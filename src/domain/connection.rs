//! ERP connections: one org's configured way of reaching its ERP.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether a connection is the org's live one. At most one `ACTIVE` per org (database index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    /// In use.
    Active,
    /// Kept as history.
    Disabled,
}

impl ConnectionStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "ACTIVE",
            ConnectionStatus::Disabled => "DISABLED",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(ConnectionStatus::Active),
            "DISABLED" => Ok(ConnectionStatus::Disabled),
            other => Err(format!("unknown connection status {other:?}")),
        }
    }
}

/// A stored connection, including its encrypted config blob.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// Connection id (part of the cipher's associated data).
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Connector type, e.g. `DROPZONE_JSON_V1`.
    pub connector_type: String,
    /// `IV ‖ ciphertext ‖ tag`.
    pub config_encrypted: Vec<u8>,
    /// Incremented on every config write; keys the SFTP session pool.
    pub config_version: i64,
    /// Status.
    pub status: ConnectionStatus,
    /// Last successful test.
    pub last_test_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("connector_type", &self.connector_type)
            .field(
                "config_encrypted",
                &format_args!("[{} bytes]", self.config_encrypted.len()),
            )
            .field("config_version", &self.config_version)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

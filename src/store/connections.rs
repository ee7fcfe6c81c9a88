//! ERP connections and the encryption key check. Every change is written with its audit row in
//! one transaction; sealing a config also records which key sealed it (the key check value) if
//! nothing is recorded yet.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::NewAuditEntry;
use crate::domain::connection::{Connection, ConnectionStatus};

/// A connection to insert (always ACTIVE, version 1).
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// Chosen by the caller: it is part of the blob's associated data.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Connector type.
    pub connector_type: String,
    /// Encrypted config.
    pub config_encrypted: Vec<u8>,
    /// Set when the config was tested before saving.
    pub last_test_at: Option<DateTime<Utc>>,
}

/// A compare-and-swap of a connection's sealed config.
#[derive(Debug, Clone)]
pub struct ConfigUpdate<'a> {
    /// Owning org.
    pub org_id: Uuid,
    /// Connection id.
    pub id: Uuid,
    /// The version the new config was derived from; the write fails if the row moved on.
    pub expected_version: i64,
    /// The new sealed config.
    pub config_encrypted: &'a [u8],
    /// Set when the config was just tested.
    pub last_test_at: Option<DateTime<Utc>>,
    /// The sealing key's check value.
    pub key_check: &'a str,
}

/// Connections and the key check.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Inserts an ACTIVE connection with its audit row; `Conflict` if the org already has an
    /// active one.
    async fn insert_connection(
        &self,
        new: &NewConnection,
        key_check: &str,
        audit: &NewAuditEntry,
    ) -> Result<Connection, StoreError>;
    /// The org's active connection, if any.
    async fn active_connection(&self, org_id: Uuid) -> Result<Option<Connection>, StoreError>;
    /// One of the org's connections.
    async fn connection_by_id(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Connection>, StoreError>;
    /// All the org's connections, oldest first.
    async fn list_connections(&self, org_id: Uuid) -> Result<Vec<Connection>, StoreError>;
    /// Connections by id, across orgs (the delivery worker loads a claimed batch's at once).
    async fn connections_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Connection>, StoreError>;
    /// Every active connection of every org (the acknowledgement poller's work list).
    async fn active_connections(&self) -> Result<Vec<Connection>, StoreError>;
    /// Replaces an active connection's config if its version is still the expected one
    /// (bumping it), writing `audit` with it. None if the row moved on or is gone.
    async fn update_connection_config(
        &self,
        update: &ConfigUpdate<'_>,
        audit: Option<&NewAuditEntry>,
    ) -> Result<Option<Connection>, StoreError>;
    /// Records a connection test: `passed_at` sets `last_test_at`; the audit row either way.
    async fn record_connection_test(
        &self,
        org_id: Uuid,
        id: Option<Uuid>,
        passed_at: Option<DateTime<Utc>>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Sets the status with its audit row; `Conflict` if activating while another is active,
    /// `NotFound` if absent.
    async fn set_connection_status(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: ConnectionStatus,
        audit: &NewAuditEntry,
    ) -> Result<Connection, StoreError>;
    /// Every connection id, across orgs (operator commands: key rotation).
    async fn all_connection_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// A connection by id, across orgs (operator commands).
    async fn connection_by_id_any_org(&self, id: Uuid) -> Result<Option<Connection>, StoreError>;
    /// Swaps the blob if it is still `old` (one atomic statement, so rotation is safe to
    /// interrupt and to run beside a live server), with its audit row. True if swapped.
    async fn replace_connection_blob(
        &self,
        id: Uuid,
        old: &[u8],
        new: &[u8],
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;
    /// The recorded key check value, if any config was ever sealed.
    async fn key_check(&self) -> Result<Option<String>, StoreError>;
    /// Records `value` as the key check (after a rotation moved every config to that key).
    async fn set_key_check(&self, value: &str) -> Result<(), StoreError>;
}

macro_rules! select_connections {
    ($where:literal) => {
        concat!(
            "SELECT id, org_id, connector_type, config_encrypted, config_version, status, \
             last_test_at, created_at, updated_at FROM erp_connection ",
            $where
        )
    };
}

pub(super) const INSERT_CONNECTION: &str = "INSERT INTO erp_connection \
    (id, org_id, connector_type, config_encrypted, config_version, status, last_test_at, \
    created_at, updated_at) VALUES ($1, $2, $3, $4, 1, 'ACTIVE', $5, $6, $6) \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const ACTIVE_CONNECTION: &str =
    select_connections!("WHERE org_id = $1 AND status = 'ACTIVE'");
pub(super) const CONNECTION_BY_ID: &str = select_connections!("WHERE org_id = $1 AND id = $2");
pub(super) const LIST_CONNECTIONS: &str =
    select_connections!("WHERE org_id = $1 ORDER BY created_at, id");
pub(super) const ACTIVE_CONNECTIONS: &str =
    select_connections!("WHERE status = 'ACTIVE' ORDER BY created_at, id");
pub(super) const CONNECTION_BY_ID_ANY_ORG: &str = select_connections!("WHERE id = $1");
pub(super) const UPDATE_CONNECTION_CONFIG: &str = "UPDATE erp_connection \
    SET config_encrypted = $4, config_version = config_version + 1, \
    last_test_at = COALESCE($5, last_test_at), updated_at = $6 \
    WHERE org_id = $1 AND id = $2 AND config_version = $3 AND status = 'ACTIVE' \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const RECORD_CONNECTION_TEST: &str =
    "UPDATE erp_connection SET last_test_at = $3 WHERE org_id = $1 AND id = $2";
pub(super) const SET_CONNECTION_STATUS: &str = "UPDATE erp_connection \
    SET status = $3, updated_at = $4 WHERE org_id = $1 AND id = $2 \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const ALL_CONNECTION_IDS: &str = "SELECT id FROM erp_connection ORDER BY created_at, id";
pub(super) const REPLACE_CONNECTION_BLOB: &str = "UPDATE erp_connection \
    SET config_encrypted = $3 WHERE id = $1 AND config_encrypted = $2";
pub(super) const KEY_CHECK: &str = "SELECT check_value FROM key_check WHERE id = 1";
pub(super) const RECORD_KEY_CHECK_IF_ABSENT: &str = "INSERT INTO key_check \
    (id, check_value, updated_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";
pub(super) const SET_KEY_CHECK: &str = "INSERT INTO key_check (id, check_value, updated_at) \
    VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET check_value = $1, updated_at = $2";

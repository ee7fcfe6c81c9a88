//! Row types shared by both backends, and their conversion into domain types.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{StoreError, UserWithHash};
use crate::domain::audit::AuditEntry;
use crate::domain::connection::Connection;
use crate::domain::org::{Org, Slug};
use crate::domain::user::{Email, User};

#[derive(sqlx::FromRow)]
pub(super) struct OrgRow {
    id: Uuid,
    slug: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<OrgRow> for Org {
    type Error = StoreError;

    fn try_from(row: OrgRow) -> Result<Self, StoreError> {
        Ok(Org {
            id: row.id,
            slug: Slug::parse(&row.slug).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: row.name,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Uuid,
    org_id: Uuid,
    email: String,
    password_hash: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for UserWithHash {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let corrupt = |e: crate::domain::FieldError| StoreError::Corrupt(e.to_string());
        Ok(UserWithHash {
            user: User {
                id: row.id,
                org_id: row.org_id,
                email: Email::parse(&row.email).map_err(corrupt)?,
                role: row.role.parse().map_err(corrupt)?,
                disabled: row.disabled,
                created_at: row.created_at,
            },
            password_hash: row.password_hash,
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        UserWithHash::try_from(row).map(|u| u.user)
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    seq: i64,
    id: Uuid,
    org_id: Uuid,
    actor_user_id: Option<Uuid>,
    actor: String,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    details: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            id: row.id,
            org_id: row.org_id,
            actor_user_id: row.actor_user_id,
            actor: row.actor,
            action: row.action,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            details: row.details.0,
            created_at: row.created_at,
            seq: row.seq,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ConnectionRow {
    id: Uuid,
    org_id: Uuid,
    connector_type: String,
    config_encrypted: Vec<u8>,
    config_version: i64,
    status: String,
    last_test_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ConnectionRow> for Connection {
    type Error = StoreError;

    fn try_from(row: ConnectionRow) -> Result<Self, StoreError> {
        Ok(Connection {
            id: row.id,
            org_id: row.org_id,
            connector_type: row.connector_type,
            config_encrypted: row.config_encrypted,
            config_version: row.config_version,
            status: row.status.parse().map_err(StoreError::Corrupt)?,
            last_test_at: row.last_test_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

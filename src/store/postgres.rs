//! PostgreSQL backend: production, and the one several `orderflow` processes share.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::rows::{AuditRow, ConnectionRow, OrgRow, UserRow};
use super::sql::{self, impl_store};
use super::{NewConnection, StoreError, UserWithHash};
use crate::domain::audit::{AuditEntry, NewAuditEntry};
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::org::Org;
use crate::domain::page::{Page, PageRequest};
use crate::domain::user::{Email, Role, User};
use crate::store;

/// The PostgreSQL implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

    /// Connects to `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad DATABASE_URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a schema via `search_path`).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The underlying pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PostgresStore);

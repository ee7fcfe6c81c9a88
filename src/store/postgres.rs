//! PostgreSQL backend: production, and the one several `orderflow` processes share. Claims
//! lock their candidates with `FOR UPDATE SKIP LOCKED`; a push notifies the channel
//! `orderflow_exports` so every worker process wakes at once.

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::accounts::impl_account_store;
use super::audit::impl_audit_store;
use super::connections::impl_connection_store;
use super::exports::{export_columns, impl_export_store};
use super::orders::impl_order_store;
use super::{ClaimRequest, StoreError, impl_store};
use crate::domain::export::Export;

/// The channel pushes notify.
const EXPORTS_CHANNEL: &str = "orderflow_exports";

/// The PostgreSQL implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Locks up to 4×limit due candidates (skipping rows another worker holds), keeps at most
/// `per_connection` of each connection, and leases the first `limit` of those.
const CLAIM: &str = concat!(
    "WITH candidates AS (
        SELECT id, erp_connection_id, next_attempt_at, seq FROM erp_export
        WHERE status = 'PENDING' AND next_attempt_at <= $1
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
          AND NOT (erp_connection_id = ANY($2))
        ORDER BY next_attempt_at, seq LIMIT $3
        FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT id, next_attempt_at, seq, row_number() OVER (
            PARTITION BY erp_connection_id ORDER BY next_attempt_at, seq) AS rn
        FROM candidates
    ), chosen AS (
        SELECT id AS chosen_id FROM ranked WHERE rn <= $4 ORDER BY next_attempt_at, seq LIMIT $5
    )
    UPDATE erp_export SET lease_owner = $6, lease_expires_at = $7,
        attempts = erp_export.attempts + 1, updated_at = $1
    FROM chosen WHERE erp_export.id = chosen.chosen_id
    RETURNING ",
    export_columns!()
);

impl PostgresStore {
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
    /// Serialises pushes of one draft (a second waits, then sees the first's export).
    const LOCK_DRAFT: &str =
        "SELECT status FROM draft_order WHERE org_id = $1 AND id = $2 FOR UPDATE";

    /// Connects to `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad DATABASE_URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a schema via `search_path`).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The underlying pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Delivered at commit, so a worker never wakes before the export is visible.
    async fn notify_exports(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EXPORTS_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn listen_exports(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EXPORTS_CHANNEL).await?;
        // A lost connection reconnects inside the listener; an error item just means "look".
        Ok(Some(listener.into_stream().map(|_| ()).boxed()))
    }

    async fn claim(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError> {
        let rows: Vec<super::rows::ExportRow> = sqlx::query_as(CLAIM)
            .bind(claim.now)
            .bind(claim.exclude_connections)
            .bind(i64::from(claim.limit) * 4)
            .bind(i64::from(claim.per_connection))
            .bind(i64::from(claim.limit))
            .bind(claim.worker)
            .bind(claim.lease_until)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

impl_store!(PostgresStore);
impl_account_store!(PostgresStore);
impl_audit_store!(PostgresStore);
impl_connection_store!(PostgresStore);
impl_order_store!(PostgresStore, sqlx::Postgres);
impl_export_store!(PostgresStore, sqlx::Postgres);

//! SQLite backend: the zero-setup default. One file, WAL journal, a busy timeout so concurrent
//! writers wait for each other instead of failing, and every write transaction `BEGIN
//! IMMEDIATE`, so two transactions never both read and then both try to write (which SQLite
//! answers with an immediate "database is locked" the busy timeout cannot help).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

use super::exports::{claim_probe, export_columns};
use super::{Backend, ClaimRequest, StoreError};
use crate::domain::export::Export;

/// The SQLite implementation of [`super::Store`].
pub type SqliteStore = super::SqlStore<sqlx::Sqlite>;

/// SQLite's claim, first half: the same candidate selection as PostgreSQL's, read outside any
/// write transaction (WAL readers never wait), so walking past exports that cannot be taken
/// now does not hold the one write lock everyone shares. Excluded connections come as a JSON
/// array of hex ids, allowances as `[[hex id, n], …]` (SQLite has no arrays).
const CLAIM_CANDIDATES: &str = "WITH candidates AS (
        SELECT id, erp_connection_id, next_attempt_at, seq FROM erp_export
        WHERE status = 'PENDING' AND next_attempt_at <= $1
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
          AND lower(hex(erp_connection_id)) NOT IN (SELECT value FROM json_each($2))
          AND NOT EXISTS (SELECT 1 FROM connection_health h
              WHERE h.connection_id = erp_export.erp_connection_id AND h.state <> 'closed')
        ORDER BY next_attempt_at, seq LIMIT $3
    ), ranked AS (
        SELECT id, erp_connection_id, next_attempt_at, seq, row_number() OVER (
            PARTITION BY erp_connection_id ORDER BY next_attempt_at, seq) AS rn
        FROM candidates
    ), allowances AS (
        SELECT json_extract(value, '$[0]') AS connection, json_extract(value, '$[1]') AS allowance
        FROM json_each($6)
    ), chosen AS (
        SELECT r.id FROM ranked r
        LEFT JOIN allowances a ON a.connection = lower(hex(r.erp_connection_id))
        WHERE r.rn <= COALESCE(a.allowance, $4)
        ORDER BY r.rn, r.next_attempt_at, r.seq LIMIT $5
    )
    SELECT id FROM chosen";

/// SQLite's claim, second half, in a `BEGIN IMMEDIATE` transaction: leases the candidates
/// still free (another process may have taken one meanwhile), ids as a JSON array.
const CLAIM_LEASE: &str = concat!(
    "UPDATE erp_export SET lease_owner = $2, lease_expires_at = $3, attempts = attempts + 1,
        updated_at = $1
    WHERE id IN (SELECT unhex(value) FROM json_each($4))
      AND status = 'PENDING' AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
    RETURNING ",
    export_columns!()
);

impl SqliteStore {
    /// Opens (creating if needed) the database at `sqlite://PATH`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad DATABASE_URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        if let Some(dir) = options
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let pool = super::pool_options::<sqlx::Sqlite>(8)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

/// SQLite keeps the trait's defaults for the fast paths and wake-ups: one writer at a time
/// leaves a batch nothing to share, and one process wakes its worker in-process.
impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;

    const CLAIM_PROBE: &'static str = claim_probe!("");
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
    const LOCK_DRAFT: &'static str = "SELECT status FROM draft_order WHERE org_id = $1 AND id = $2";

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn claim(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError> {
        let exclude: Vec<String> = claim
            .exclude_connections
            .iter()
            .map(|id| id.simple().to_string())
            .collect();
        let exclude = serde_json::to_string(&exclude).unwrap_or_else(|_| "[]".into());
        let allowances: Vec<(String, u32)> = claim
            .allowances
            .iter()
            .map(|(id, n)| (id.simple().to_string(), *n))
            .collect();
        let allowances = serde_json::to_string(&allowances).unwrap_or_else(|_| "[]".into());
        let candidates: Vec<uuid::Uuid> = sqlx::query_scalar(CLAIM_CANDIDATES)
            .bind(claim.now)
            .bind(exclude)
            .bind(i64::from(claim.limit) * 4)
            .bind(i64::from(claim.per_connection))
            .bind(i64::from(claim.limit))
            .bind(allowances)
            .fetch_all(&self.pool)
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = candidates
            .iter()
            .map(|id| id.simple().to_string())
            .collect();
        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        let mut tx = self.begin_write().await?;
        let rows: Vec<super::rows::ExportRow> = sqlx::query_as(CLAIM_LEASE)
            .bind(claim.now)
            .bind(claim.worker)
            .bind(claim.lease_until)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

/// The sqlx database the shared implementations in `sql/` are compiled for here.
type Db = sqlx::Sqlite;

#[path = "sql/mod.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend on purpose, as a generic impl would be"
)]
mod sql;

//! Persistence. [`Store`] is the one interface the rest of the service uses; it has one
//! implementation per backend (SQLite for a laptop, PostgreSQL for production), chosen once
//! from the URL by [`connect`]. Every tenant-owned query takes the caller's org id.
//!
//! The trait is split per aggregate (accounts, audit, connections, orders, exports, health);
//! each aggregate's trait and SQL live in its file, and its implementation in `sql/`, ordinary
//! code compiled once per backend. Statements that need nothing backend-specific live as
//! generic code in [`Queries`], whose `where` clause states once what a backend must bind. A
//! state change and its audit row are always one transaction.

mod accounts;
mod audit;
mod connections;
mod error;
mod exports;
mod health;
mod orders;
mod postgres;
mod queries;
pub(crate) mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::export::Export;
use crate::domain::page::{Page, PageRequest};

pub use accounts::{AccountStore, NewUser, UserWithHash};
pub use audit::AuditStore;
pub use connections::{ConfigUpdate, ConnectionStore, NewConnection};
pub use error::StoreError;
pub use exports::{
    AckApply, ArchiveRecord, AttemptOutcome, ClaimRequest, ExportStore, FinishedAttempt, NewPush,
    PushOutcome,
};
pub use health::{CircuitWrite, HealthStore, QueueChange};
pub use orders::OrderStore;
pub use postgres::PostgresStore;
pub(crate) use queries::Queries;
pub use sqlite::SqliteStore;

/// The service's database: one trait per aggregate, and the housekeeping every backend has.
#[async_trait]
pub trait Store:
    AccountStore
    + AuditStore
    + ConnectionStore
    + OrderStore
    + ExportStore
    + HealthStore
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// True when the database answers and every embedded migration is applied.
    async fn is_ready(&self) -> Result<bool, StoreError>;
    /// Closes the pool.
    async fn close(&self);
    /// Waits until another process pushes an export (PostgreSQL `LISTEN`); None when the
    /// backend has no such channel (SQLite: one process, woken in-process).
    async fn export_notifications(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError>;
    /// Tells other processes' delivery workers that exports were pushed (PostgreSQL
    /// `NOTIFY`, on its own after the pushes committed; nothing on SQLite).
    async fn announce_exports(&self) -> Result<(), StoreError>;
    /// Refreshes the query planner's statistics (`ANALYZE`) now rather than when autovacuum
    /// next looks: a database filled within the last minute is otherwise planned as if empty.
    async fn refresh_statistics(&self) -> Result<(), StoreError>;
}

/// The store over one backend's pool; [`SqliteStore`] and [`PostgresStore`] are its two
/// instances, each with its own constructor and the statements only it runs.
pub struct SqlStore<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// The underlying pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &DB::NAME)
            .finish_non_exhaustive()
    }
}

/// What each backend provides itself, beside [`Queries`]: its constants, its write
/// transactions, its fast paths (None: use the general path), its claim and its cross-process
/// wake-ups. The fast paths and wake-ups default to having none, so a backend overrides only
/// what it has (SQLite: one writer, one process, so nothing). The aggregate implementations
/// call only these and [`Queries`].
pub(crate) trait Backend {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// The migrations of this backend's schema.
    const MIGRATOR: sqlx::migrate::Migrator;
    /// Whether plain pushes are recorded together ([`Backend::push_many`]); by default one by
    /// one.
    const PUSHES_TOGETHER: bool = false;
    /// Reads a draft's status (org, id), locking it where the backend can, so pushes of one
    /// draft are serialised.
    const LOCK_DRAFT: &'static str;
    /// Leases a connection's next PENDING export for a probe (connection, owner, until, now).
    const CLAIM_PROBE: &'static str;

    /// Opens a transaction that will write (SQLite takes its write lock at once).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;
    /// Tells other processes that exports were pushed; by default there are none to tell (one
    /// process, whose pushes wake its worker in-process).
    async fn announce(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The common push in one statement; None (the default) when the general path must
    /// answer.
    async fn push_fast(&self, _push: &NewPush<'_>) -> Result<Option<Export>, StoreError> {
        Ok(None)
    }
    /// Plain pushes of distinct drafts together; None (the default) when the backend pushes
    /// one by one.
    async fn push_many(
        &self,
        _pushes: &[NewPush<'_>],
    ) -> Result<Option<Vec<Option<Export>>>, StoreError> {
        Ok(None)
    }
    /// Acknowledgements in one statement; None (the default) when the general, chunked path
    /// applies them.
    async fn apply_acks_fast(
        &self,
        _acks: &[AckApply<'_>],
    ) -> Result<Option<Vec<uuid::Uuid>>, StoreError> {
        Ok(None)
    }
    /// A stream that yields when another process pushed; None (the default) without such a
    /// channel.
    async fn listen_exports(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError> {
        Ok(None)
    }
    /// Leases due exports fairly across connections.
    async fn claim(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError>;
}

/// What [`is_supported_url`] asks of a database URL, in words.
pub const SUPPORTED_URLS: &str = "must start with sqlite:// or postgres://";

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// True when [`connect`] knows the URL's backend: the one rule the settings check at start and
/// `connect` applies.
pub fn is_supported_url(url: &str) -> bool {
    is_postgres_url(url) || url.starts_with("sqlite:")
}

/// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`). SQLite creates the
/// file and its folder if missing.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres_url(url) {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if is_supported_url(url) {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "DATABASE_URL {SUPPORTED_URLS}"
        )))
    }
}

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Pool options both backends share. sqlx pings every connection it hands out by default: a
/// second round trip for every statement, about as costly as a short query. A connection in
/// steady use is known to be alive, so only one that sat idle (where a restarted server or a
/// dropped idle connection shows up) is pinged; one that still dies mid-use fails that
/// statement, which callers already treat as a passing outage.
fn pool_options<DB: sqlx::Database>(max_connections: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// The current time truncated to microseconds, the precision both backends keep, so a value
/// read back compares equal to the one written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// A JSON value as it may be stored: PostgreSQL refuses `\u0000` in `jsonb`, and one such
/// string fails a whole batched statement (other orgs' rows with it), so every string is
/// cleaned on the way in whatever the caller already did.
pub(crate) fn storable(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    crate::domain::text::clean_json(&mut value);
    value
}

/// `COUNT(*)` of the applied migrations, for readiness.
const COUNT_APPLIED_MIGRATIONS: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";

/// Appends `(v, v, …)` to `q`, every value bound: the list form both backends read (SQLite has
/// no arrays), for `IN` over a batch.
pub(crate) fn push_list<DB, T>(
    q: &mut sqlx::QueryBuilder<DB>,
    values: impl IntoIterator<Item = T>,
) -> &mut sqlx::QueryBuilder<DB>
where
    DB: sqlx::Database,
    for<'t> T: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    q.push(")")
}

/// Turns `limit + 1` rows (newest first) into a page that continues after the last item.
pub(crate) fn paginate<T>(mut rows: Vec<T>, page: PageRequest, seq: impl Fn(&T) -> i64) -> Page<T> {
    let limit = page.limit as usize;
    let next_seq = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(seq)
    } else {
        None
    };
    Page {
        items: rows,
        next_seq,
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::connection::ConnectionStatus;
    use crate::domain::delivery::CircuitState;
    use crate::domain::draft::DraftStatus;
    use crate::domain::export::ExportStatus;

    /// The SQL of every store file (the statuses in it are literals where a partial index's
    /// predicate needs them, and for the planner elsewhere).
    const SOURCES: [&str; 17] = [
        include_str!("accounts.rs"),
        include_str!("audit.rs"),
        include_str!("connections.rs"),
        include_str!("exports.rs"),
        include_str!("health.rs"),
        include_str!("orders.rs"),
        include_str!("postgres.rs"),
        include_str!("queries.rs"),
        include_str!("rows.rs"),
        include_str!("sqlite.rs"),
        include_str!("sql/accounts.rs"),
        include_str!("sql/audit.rs"),
        include_str!("sql/connections.rs"),
        include_str!("sql/exports.rs"),
        include_str!("sql/health.rs"),
        include_str!("sql/mod.rs"),
        include_str!("sql/orders.rs"),
    ];

    /// The words of `source` between single quotes that match `word`, where `before` (the
    /// text just ahead of the quote) allows.
    fn quoted(source: &str, word: fn(char) -> bool, before: fn(&str) -> bool) -> Vec<&str> {
        let mut found = Vec::new();
        for (start, _) in source.match_indices('\'') {
            let rest = &source[start + 1..];
            let end = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
            if end >= 2 && rest[end..].starts_with('\'') && before(&source[..start]) {
                found.push(&rest[..end]);
            }
        }
        found
    }

    /// Every status the SQL writes or compares as a literal is one the domain enums name, so a
    /// renamed or misspelt status fails here instead of silently matching no row.
    #[test]
    fn every_status_literal_in_the_sql_is_a_domain_status() {
        let statuses: Vec<&str> = DraftStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(ExportStatus::ALL.iter().map(|s| s.as_str()))
            .chain([ConnectionStatus::Active, ConnectionStatus::Disabled].map(|s| s.as_str()))
            .collect();
        let states = [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ]
        .map(CircuitState::as_str);
        let (mut upper, mut lower) = (0, 0);
        for source in SOURCES {
            for literal in quoted(source, |c| c.is_ascii_uppercase() || c == '_', |_| true) {
                assert!(
                    statuses.contains(&literal),
                    "'{literal}' is no domain status"
                );
                upper += 1;
            }
            let after_state = |text: &str| {
                let text = text.trim_end();
                ["state =", "state <>", "state,"]
                    .iter()
                    .any(|p| text.ends_with(p))
            };
            for literal in quoted(source, |c| c.is_ascii_lowercase() || c == '_', after_state) {
                assert!(states.contains(&literal), "'{literal}' is no circuit state");
                lower += 1;
            }
        }
        // The scan must see the literals at all, or it proves nothing.
        assert!(
            upper >= 40 && lower >= 8,
            "saw {upper} statuses, {lower} states"
        );
    }
}

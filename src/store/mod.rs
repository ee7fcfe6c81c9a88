//! Persistence. [`Store`] is the one interface the rest of the service uses; it has one
//! implementation per backend (SQLite for a laptop, PostgreSQL for production), chosen once
//! from the URL by [`connect`]. Every tenant-owned query takes the caller's org id.

mod error;
mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::audit::{AuditEntry, NewAuditEntry};
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::org::Org;
use crate::domain::page::{Page, PageRequest};
use crate::domain::user::{Email, User};

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A user together with its password hash (only the login path needs the hash).
#[derive(Debug, Clone)]
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// PHC-format Argon2id hash.
    pub password_hash: String,
}

/// The service's database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// True when the database answers and every embedded migration is applied.
    async fn is_ready(&self) -> Result<bool, StoreError>;
    /// Closes the pool.
    async fn close(&self);

    /// Creates an org; `Conflict` if the slug is taken.
    async fn create_org(&self, slug: &str, name: &str) -> Result<Org, StoreError>;
    /// Looks an org up by slug (login and bootstrap; not tenant-scoped by nature).
    async fn org_by_slug(&self, slug: &str) -> Result<Option<Org>, StoreError>;
    /// Looks an org up by id.
    async fn org_by_id(&self, org_id: Uuid) -> Result<Option<Org>, StoreError>;

    /// Creates a user; `Conflict` if the e-mail exists in the org.
    async fn create_user(
        &self,
        org_id: Uuid,
        email: &Email,
        password_hash: &str,
        role: crate::domain::user::Role,
    ) -> Result<User, StoreError>;
    /// A user of `org_id` by e-mail, with the hash.
    async fn user_by_email(
        &self,
        org_id: Uuid,
        email: &Email,
    ) -> Result<Option<UserWithHash>, StoreError>;
    /// A user of `org_id` by id.
    async fn user_by_id(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<User>, StoreError>;
    /// Sets the disabled flag; `NotFound` if no such user in the org.
    async fn set_user_disabled(
        &self,
        org_id: Uuid,
        email: &Email,
        disabled: bool,
    ) -> Result<User, StoreError>;

    /// Appends an audit entry.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;
    /// The org's audit entries, newest first.
    async fn list_audit(
        &self,
        org_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError>;

    /// Inserts an ACTIVE connection; `Conflict` if the org already has an active one.
    async fn insert_connection(&self, new: &NewConnection) -> Result<Connection, StoreError>;
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
    /// Replaces an active connection's config if its version is still `expected_version`
    /// (bumping it); sets `last_test_at` when given. None if the row moved on or is gone.
    async fn update_connection_config(
        &self,
        org_id: Uuid,
        id: Uuid,
        expected_version: i64,
        config_encrypted: &[u8],
        last_test_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Connection>, StoreError>;
    /// Records a passed test.
    async fn record_connection_test(
        &self,
        org_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Sets the status; `Conflict` if activating while another is active, `NotFound` if absent.
    async fn set_connection_status(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError>;

    /// Every connection id, across orgs (operator commands: key rotation).
    async fn all_connection_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// A connection by id, across orgs (operator commands).
    async fn connection_by_id_any_org(&self, id: Uuid) -> Result<Option<Connection>, StoreError>;
    /// Swaps the blob if it is still `old` (one atomic statement, so rotation is safe to
    /// interrupt and to run beside a live server). True if it was swapped.
    async fn replace_connection_blob(
        &self,
        id: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;
}

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

/// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`). SQLite creates the
/// file and its folder if missing.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Unavailable(
            "DATABASE_URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

/// The current time truncated to microseconds, the precision both backends keep, so a value
/// read back compares equal to the one written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Turns `limit + 1` rows (newest first) into a page whose cursor points past the last item.
fn paginate<T>(mut rows: Vec<T>, page: PageRequest, seq: impl Fn(&T) -> i64) -> Page<T> {
    let limit = page.limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|last| crate::domain::page::encode_cursor(seq(last)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

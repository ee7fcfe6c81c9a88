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

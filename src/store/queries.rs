//! Statements both backends run alike, written once as the default methods of [`Queries`].
//! The trait's `where` clause is the one place that says what a backend must bind; each
//! backend implements it with an empty block, which is where those bounds are checked.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::{StoreError, now, paginate, storable};
use crate::domain::audit::NewAuditEntry;
use crate::domain::page::{Page, PageRequest};

/// The start of an audit insert; the rows follow as `VALUES`, in this column order.
const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (id, org_id, actor_user_id, actor, action, entity_type, entity_id, details, created_at) ";

/// Shared statements, for every backend that binds the types the schema uses.
pub(crate) trait Queries: sqlx::Database + Sized
where
    Self::Arguments: IntoArguments<Self>,
    for<'c> &'c mut Self::Connection: Executor<'c, Database = Self>,
    for<'t> Uuid: Encode<'t, Self> + Type<Self>,
    for<'t> Option<Uuid>: Encode<'t, Self> + Type<Self>,
    for<'t> i64: Encode<'t, Self> + Type<Self>,
    for<'t> Option<i64>: Encode<'t, Self> + Type<Self>,
    for<'t> &'t str: Encode<'t, Self> + Type<Self>,
    for<'t> Option<&'t str>: Encode<'t, Self> + Type<Self>,
    for<'t> DateTime<Utc>: Encode<'t, Self> + Type<Self>,
    for<'t> Json<Value>: Encode<'t, Self> + Type<Self>,
{
    /// The row `sql` finds by `keys` (bound in order), as its domain type.
    async fn find<R, T>(
        pool: &sqlx::Pool<Self>,
        sql: &'static str,
        keys: &[Uuid],
    ) -> Result<Option<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, Self::Row> + TryInto<T, Error = StoreError> + Send + Unpin,
    {
        let mut query = sqlx::query_as::<Self, R>(sql);
        for key in keys {
            query = query.bind(*key);
        }
        let row = query.fetch_optional(pool).await?;
        row.map(TryInto::try_into).transpose()
    }

    /// One page of an org's list, newest first. `sql` takes the org, the page's `before_seq`,
    /// an optional filter and a limit; the one row asked beyond the page tells whether another
    /// follows.
    async fn list_page<R, T>(
        pool: &sqlx::Pool<Self>,
        sql: &'static str,
        org_id: Uuid,
        filter: Option<&str>,
        page: PageRequest,
        item: impl Fn(R) -> Result<T, StoreError> + Send,
        seq: impl Fn(&T) -> i64 + Send,
    ) -> Result<Page<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, Self::Row> + Send + Unpin,
        T: Send,
    {
        let rows: Vec<R> = sqlx::query_as(sql)
            .bind(org_id)
            .bind(page.before_seq)
            .bind(filter)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(pool)
            .await?;
        let items = rows.into_iter().map(item).collect::<Result<Vec<T>, _>>()?;
        Ok(paginate(items, page, seq))
    }

    /// Appends audit rows through `executor` (the pool, or the transaction of the change they
    /// record) in one statement.
    async fn insert_audits<'e, E>(executor: E, entries: &[&NewAuditEntry]) -> Result<(), StoreError>
    where
        E: Executor<'e, Database = Self>,
    {
        if entries.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut q = sqlx::QueryBuilder::<Self>::new(INSERT_AUDIT);
        q.push_values(entries, |mut row, e| {
            row.push_bind(Uuid::new_v4())
                .push_bind(e.org_id)
                .push_bind(e.actor.user_id)
                .push_bind(e.actor.label.as_str())
                .push_bind(e.action)
                .push_bind(e.entity_type)
                .push_bind(e.entity_id.as_deref())
                .push_bind(Json(storable(&e.details)))
                .push_bind(at);
        });
        q.build().execute(executor).await?;
        Ok(())
    }
}

impl Queries for sqlx::Sqlite {}
impl Queries for sqlx::Postgres {}

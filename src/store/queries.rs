//! Queries both backends run alike, written once over any sqlx database that binds the key
//! types the schema uses: the one place where the bounds that say so are written.

use uuid::Uuid;

use super::{StoreError, paginate};
use crate::domain::page::{Page, PageRequest};

/// Shared reads, for every backend the blanket implementation below covers.
pub(crate) trait Queries: sqlx::Database {
    /// The row `sql` finds by `keys` (bound in order), as its domain type.
    async fn find<R, T>(
        pool: &sqlx::Pool<Self>,
        sql: &'static str,
        keys: &[Uuid],
    ) -> Result<Option<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, Self::Row> + TryInto<T, Error = StoreError> + Send + Unpin;

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
        T: Send;
}

impl<DB> Queries for DB
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> Uuid: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    async fn find<R, T>(
        pool: &sqlx::Pool<Self>,
        sql: &'static str,
        keys: &[Uuid],
    ) -> Result<Option<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, Self::Row> + TryInto<T, Error = StoreError> + Send + Unpin,
    {
        let mut query = sqlx::query_as::<DB, R>(sql);
        for key in keys {
            query = query.bind(*key);
        }
        let row = query.fetch_optional(pool).await?;
        row.map(TryInto::try_into).transpose()
    }

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
            .bind(filter.map(str::to_owned))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(pool)
            .await?;
        let items = rows.into_iter().map(item).collect::<Result<Vec<T>, _>>()?;
        Ok(paginate(items, page, seq))
    }
}

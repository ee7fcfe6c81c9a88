//! The aggregates' implementations, written once as ordinary code over `Db` and compiled once
//! per backend: `sqlite.rs` and `postgres.rs` each name their sqlx database `Db` and include
//! this folder with `#[path]`. A generic `impl<DB> … for SqlStore<DB>` would have to restate,
//! on every impl, the bounds sqlx needs to bind, decode and execute (`Uuid: Encode<DB>`,
//! `&mut DB::Connection: Executor`, …): Rust does not carry a trait's `where` clauses to the
//! places the trait is used (rust-lang/rust#20671). Over a concrete `Db` no bound is needed,
//! and what differs between the backends stays behind [`Backend`].

mod accounts;
mod audit;
mod connections;
mod exports;
mod health;
mod orders;

use super::Db;
use crate::domain::audit::NewAuditEntry;
use crate::store::{Backend, COUNT_APPLIED_MIGRATIONS, Queries, SqlStore, Store, StoreError};

/// A built statement whose rows decode as `R`.
type RowQuery<'q, R> = sqlx::query::QueryAs<'q, Db, R, <Db as sqlx::Database>::Arguments>;

impl SqlStore<Db> {
    /// Runs `update` and records `audit` in one write transaction: the one row it changed,
    /// converted, or `NotFound` with nothing written when it matched no row (another org's
    /// object reads as absent).
    async fn update_one_audited<R, T>(
        &self,
        update: RowQuery<'_, R>,
        audit: &NewAuditEntry,
    ) -> Result<T, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row>
            + TryInto<T, Error = StoreError>
            + Send
            + Unpin,
    {
        let mut tx = self.begin_write().await?;
        let Some(row) = update.fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        };
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        row.try_into()
    }
}

#[async_trait::async_trait]
impl Store for SqlStore<Db> {
    async fn migrate(&self) -> Result<(), StoreError> {
        Self::MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn is_ready(&self) -> Result<bool, StoreError> {
        let applied: Result<i64, sqlx::Error> = sqlx::query_scalar(COUNT_APPLIED_MIGRATIONS)
            .fetch_one(&self.pool)
            .await;
        match applied {
            Ok(n) => Ok(n >= Self::MIGRATOR.iter().count() as i64),
            // No migrations table yet: reachable but not migrated.
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn export_notifications(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError> {
        self.listen_exports().await
    }

    async fn announce_exports(&self) -> Result<(), StoreError> {
        self.announce().await
    }

    async fn refresh_statistics(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }
}

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
use crate::store::{Backend, COUNT_APPLIED_MIGRATIONS, SqlStore, Store, StoreError};

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

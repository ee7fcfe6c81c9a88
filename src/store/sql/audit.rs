//! The audit log: [`AuditStore`] for the backend whose sqlx database is `Db`, compiled once per
//! backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::audit::{AuditEntry, NewAuditEntry};
use crate::domain::page::{Page, PageRequest};
use crate::store::{AuditStore, Queries, SqlStore, StoreError, audit, rows};

#[async_trait::async_trait]
impl AuditStore for SqlStore<Db> {
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        Db::insert_audits(&self.pool, &[entry]).await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        org_id: Uuid,
        action: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        Db::list_page(
            &self.pool,
            audit::LIST_AUDIT,
            org_id,
            action,
            page,
            |row: rows::AuditRow| Ok(row.into()),
            |e: &AuditEntry| e.seq,
        )
        .await
    }
}

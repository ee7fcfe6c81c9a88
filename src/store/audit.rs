//! The audit log: appended alone for events (a login, a test), or inside the transaction of
//! the state change it records, so a change never lands without its row or the other way round.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::{AuditEntry, NewAuditEntry};
use crate::domain::page::{Page, PageRequest};

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry on its own.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;
    /// The org's audit entries, newest first, optionally of one action.
    async fn list_audit(
        &self,
        org_id: Uuid,
        action: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (id, org_id, actor_user_id, actor, action, entity_type, entity_id, details, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(super) const LIST_AUDIT: &str = "SELECT seq, id, org_id, actor_user_id, actor, action, \
    entity_type, entity_id, details, created_at FROM audit_log \
    WHERE org_id = $1 AND ($2 IS NULL OR seq < $2) AND ($3 IS NULL OR action = $3) \
    ORDER BY seq DESC LIMIT $4";

/// Inserts `$entry` through `$executor` (a pool or an open transaction).
macro_rules! insert_audit {
    ($executor:expr, $entry:expr) => {{
        let entry: &$crate::domain::audit::NewAuditEntry = $entry;
        sqlx::query($crate::store::audit::INSERT_AUDIT)
            .bind(uuid::Uuid::new_v4())
            .bind(entry.org_id)
            .bind(entry.actor.user_id)
            .bind(&entry.actor.label)
            .bind(entry.action)
            .bind(entry.entity_type)
            .bind(entry.entity_id.as_deref())
            .bind(sqlx::types::Json($crate::store::storable(&entry.details)))
            .bind($crate::store::now())
            .execute($executor)
            .await
    }};
}
pub(super) use insert_audit;

/// Inserts several audit rows through `$executor` in one statement (`$db` is the backend).
macro_rules! insert_audits {
    ($executor:expr, $db:ty, $entries:expr) => {{
        let entries: &[&$crate::domain::audit::NewAuditEntry] = $entries;
        if !entries.is_empty() {
            let now = $crate::store::now();
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO audit_log (id, org_id, actor_user_id, actor, action, entity_type, \
                 entity_id, details, created_at) ",
            );
            q.push_values(entries, |mut row, e| {
                row.push_bind(uuid::Uuid::new_v4())
                    .push_bind(e.org_id)
                    .push_bind(e.actor.user_id)
                    .push_bind(e.actor.label.clone())
                    .push_bind(e.action)
                    .push_bind(e.entity_type)
                    .push_bind(e.entity_id.clone())
                    .push_bind(sqlx::types::Json($crate::store::storable(&e.details)))
                    .push_bind(now);
            });
            q.build().execute($executor).await?;
        }
    }};
}
pub(super) use insert_audits;

/// Implements [`AuditStore`] for a backend.
macro_rules! impl_audit_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AuditStore for $backend {
            async fn append_audit(
                &self,
                entry: &$crate::domain::audit::NewAuditEntry,
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::audit::insert_audit!(&self.pool, entry)?;
                Ok(())
            }

            async fn list_audit(
                &self,
                org_id: uuid::Uuid,
                action: Option<&str>,
                page: $crate::domain::page::PageRequest,
            ) -> Result<
                $crate::domain::page::Page<$crate::domain::audit::AuditEntry>,
                $crate::store::StoreError,
            > {
                $crate::store::Queries::list_page(
                    &self.pool,
                    $crate::store::audit::LIST_AUDIT,
                    org_id,
                    action,
                    page,
                    |row: $crate::store::rows::AuditRow| Ok(row.into()),
                    |e: &$crate::domain::audit::AuditEntry| e.seq,
                )
                .await
            }
        }
    };
}
pub(super) use impl_audit_store;

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

pub(super) const LIST_AUDIT: &str = "SELECT seq, id, org_id, actor_user_id, actor, action, \
    entity_type, entity_id, details, created_at FROM audit_log \
    WHERE org_id = $1 AND ($2 IS NULL OR seq < $2) AND ($3 IS NULL OR action = $3) \
    ORDER BY seq DESC LIMIT $4";

//! Reading the audit log (writing happens inside each use case's own transaction).

use std::sync::Arc;

use uuid::Uuid;

use super::ServiceError;
use crate::domain::FieldError;
use crate::domain::audit::AuditEntry;
use crate::domain::page::{Page, PageRequest};
use crate::store::Store;

/// The audit log of an org.
#[derive(Clone)]
pub struct AuditService {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").finish_non_exhaustive()
    }
}

impl AuditService {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The org's entries, newest first, optionally of one action (1-64 visible ASCII
    /// characters, else 422 on `action`).
    pub async fn list(
        &self,
        org_id: Uuid,
        action: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, ServiceError> {
        if action.is_some_and(|a| {
            a.is_empty() || a.len() > 64 || !a.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return Err(FieldError::new("action", "must be 1-64 visible ASCII characters").into());
        }
        Ok(self.store.list_audit(org_id, action, page).await?)
    }
}

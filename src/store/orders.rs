//! Draft orders and their lines. A draft and its lines are inserted in one transaction with the
//! audit row; status changes are conditional updates (`WHERE status = …`), so a race between
//! two approvals has one winner.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::NewAuditEntry;
use crate::domain::draft::{DraftOrder, DraftStatus, NewDraft};
use crate::domain::page::{Page, PageRequest};

/// Draft orders.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Stores a new `READY` draft with its lines and audit row.
    async fn insert_draft(
        &self,
        id: Uuid,
        org_id: Uuid,
        draft: &NewDraft,
        audit: &NewAuditEntry,
    ) -> Result<DraftOrder, StoreError>;
    /// One of the org's drafts with its lines.
    async fn draft(&self, org_id: Uuid, id: Uuid) -> Result<Option<DraftOrder>, StoreError>;
    /// Drafts with their lines by id, across orgs (the delivery worker loads a claimed batch's
    /// at once; callers check the org).
    async fn drafts_by_ids(&self, ids: &[Uuid]) -> Result<Vec<DraftOrder>, StoreError>;
    /// The org's drafts, newest first, without lines.
    async fn list_drafts(
        &self,
        org_id: Uuid,
        status: Option<DraftStatus>,
        page: PageRequest,
    ) -> Result<Page<DraftOrder>, StoreError>;
    /// `READY → APPROVED`, recording who and when, with the audit row. None when the draft is
    /// missing or not `READY`.
    async fn approve_draft(
        &self,
        org_id: Uuid,
        id: Uuid,
        approver: &str,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<Option<DraftOrder>, StoreError>;
}

pub(super) const INSERT_DRAFT: &str = "INSERT INTO draft_order (id, org_id, status, \
    external_order_number, order_date, currency, requested_delivery_date, notes, customer_id, \
    customer_erp_number, customer_name, source_document, created_at, updated_at) \
    VALUES ($1, $2, 'READY', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)";
pub(super) const INSERT_LINE_PREFIX: &str = "INSERT INTO draft_order_line (draft_order_id, \
    line_no, internal_sku, qty, uom, unit_price, currency, customer_sku_raw, description) ";
pub(super) const DRAFT_BY_ID: &str = "SELECT seq, id, org_id, status, external_order_number, \
    order_date, currency, requested_delivery_date, notes, customer_id, customer_erp_number, \
    customer_name, source_document, approved_at, approved_by, erp_order_id, created_at, \
    updated_at FROM draft_order WHERE org_id = $1 AND id = $2";
pub(super) const LINES_OF_DRAFT: &str = "SELECT line_no, internal_sku, qty, uom, unit_price, \
    currency, customer_sku_raw, description FROM draft_order_line WHERE draft_order_id = $1 \
    ORDER BY line_no";
pub(super) const DRAFTS_BY_IDS: &str = "SELECT seq, id, org_id, status, external_order_number, \
    order_date, currency, requested_delivery_date, notes, customer_id, customer_erp_number, \
    customer_name, source_document, approved_at, approved_by, erp_order_id, created_at, \
    updated_at FROM draft_order WHERE id IN ";
pub(super) const LINES_OF_DRAFTS: &str = "SELECT draft_order_id, line_no, internal_sku, qty, uom, \
    unit_price, currency, customer_sku_raw, description FROM draft_order_line \
    WHERE draft_order_id IN ";
pub(super) const LIST_DRAFTS: &str = "SELECT seq, id, org_id, status, external_order_number, \
    order_date, currency, requested_delivery_date, notes, customer_id, customer_erp_number, \
    customer_name, source_document, approved_at, approved_by, erp_order_id, created_at, \
    updated_at FROM draft_order WHERE org_id = $1 AND ($2 IS NULL OR seq < $2) \
    AND ($3 IS NULL OR status = $3) ORDER BY seq DESC LIMIT $4";
pub(super) const APPROVE_DRAFT: &str = "UPDATE draft_order SET status = 'APPROVED', \
    approved_at = $3, approved_by = $4, updated_at = $3 \
    WHERE org_id = $1 AND id = $2 AND status = 'READY'";

/// Lines per multi-row INSERT (9 values each stays far below SQLite's 32766 bind limit).
pub(super) const LINES_PER_INSERT: usize = 1000;

/// Implements [`OrderStore`] for a backend whose sqlx database type is `$db`.
macro_rules! impl_order_store {
    ($backend:ty, $db:ty) => {
        impl $backend {
            async fn load_draft<'e, E>(
                executor: E,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::rows::DraftRow>, $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                Ok(sqlx::query_as($crate::store::orders::DRAFT_BY_ID)
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(executor)
                    .await?)
            }

            async fn draft_with_lines(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::domain::draft::DraftOrder>, $crate::store::StoreError> {
                let Some(row) = Self::load_draft(&self.pool, org_id, id).await? else {
                    return Ok(None);
                };
                let lines: Vec<$crate::store::rows::LineRow> =
                    sqlx::query_as($crate::store::orders::LINES_OF_DRAFT)
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                row.into_draft(lines).map(Some)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::OrderStore for $backend {
            async fn insert_draft(
                &self,
                id: uuid::Uuid,
                org_id: uuid::Uuid,
                draft: &$crate::domain::draft::NewDraft,
                audit: &$crate::domain::audit::NewAuditEntry,
            ) -> Result<$crate::domain::draft::DraftOrder, $crate::store::StoreError> {
                use $crate::store::orders as q;
                let now = $crate::store::now();
                let source = draft
                    .source_document
                    .as_ref()
                    .map(|s| sqlx::types::Json($crate::store::rows::source_document_json(s)));
                let mut tx = self.begin_write().await?;
                sqlx::query(q::INSERT_DRAFT)
                    .bind(id)
                    .bind(org_id)
                    .bind(draft.header.external_order_number.as_deref())
                    .bind(draft.header.order_date.map(|d| d.to_string()))
                    .bind(draft.header.currency.as_deref())
                    .bind(draft.header.requested_delivery_date.map(|d| d.to_string()))
                    .bind(draft.header.notes.as_deref())
                    .bind(draft.customer.id)
                    .bind(draft.customer.erp_customer_number.as_deref())
                    .bind(draft.customer.name.as_deref())
                    .bind(source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                for chunk in draft.lines.chunks(q::LINES_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(q::INSERT_LINE_PREFIX);
                    insert.push_values(chunk, |mut row, line| {
                        row.push_bind(id)
                            .push_bind(i32::try_from(line.line_no).unwrap_or(i32::MAX))
                            .push_bind(line.internal_sku.clone())
                            .push_bind(line.qty.as_str().to_owned())
                            .push_bind(line.uom.clone())
                            .push_bind(line.unit_price.as_ref().map(|p| p.as_str().to_owned()))
                            .push_bind(line.currency.clone())
                            .push_bind(line.customer_sku_raw.clone())
                            .push_bind(line.description.clone());
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                <$db as $crate::store::Queries>::insert_audits(&mut *tx, &[audit]).await?;
                tx.commit().await?;
                self.draft_with_lines(org_id, id)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            async fn draft(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::domain::draft::DraftOrder>, $crate::store::StoreError> {
                self.draft_with_lines(org_id, id).await
            }

            async fn drafts_by_ids(
                &self,
                ids: &[uuid::Uuid],
            ) -> Result<Vec<$crate::domain::draft::DraftOrder>, $crate::store::StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let in_list = |sql: &'static str| {
                    let mut q = sqlx::QueryBuilder::<$db>::new(sql);
                    $crate::store::push_list(&mut q, ids.iter().copied());
                    q
                };
                // Drafts and lines are read at once, on two connections: this is on the
                // delivery worker's path from claim to delivery.
                let mut drafts_q = in_list($crate::store::orders::DRAFTS_BY_IDS);
                let mut lines_q = in_list($crate::store::orders::LINES_OF_DRAFTS);
                let (drafts, lines): (
                    Vec<$crate::store::rows::DraftRow>,
                    Vec<$crate::store::rows::DraftLineRow>,
                ) = futures::try_join!(
                    drafts_q.build_query_as().fetch_all(&self.pool),
                    lines_q.build_query_as().fetch_all(&self.pool),
                )?;
                let mut by_draft: std::collections::HashMap<
                    uuid::Uuid,
                    Vec<$crate::store::rows::LineRow>,
                > = std::collections::HashMap::new();
                for line in lines {
                    by_draft
                        .entry(line.draft_order_id)
                        .or_default()
                        .push(line.line);
                }
                drafts
                    .into_iter()
                    .map(|d| {
                        let lines = by_draft.remove(&d.id()).unwrap_or_default();
                        d.into_draft(lines)
                    })
                    .collect()
            }

            async fn list_drafts(
                &self,
                org_id: uuid::Uuid,
                status: Option<$crate::domain::draft::DraftStatus>,
                page: $crate::domain::page::PageRequest,
            ) -> Result<
                $crate::domain::page::Page<$crate::domain::draft::DraftOrder>,
                $crate::store::StoreError,
            > {
                $crate::store::Queries::list_page(
                    &self.pool,
                    $crate::store::orders::LIST_DRAFTS,
                    org_id,
                    status.map(|s| s.as_str()),
                    page,
                    |row: $crate::store::rows::DraftRow| row.into_draft(Vec::new()),
                    |d: &$crate::domain::draft::DraftOrder| d.seq,
                )
                .await
            }

            async fn approve_draft(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                approver: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: &$crate::domain::audit::NewAuditEntry,
            ) -> Result<Option<$crate::domain::draft::DraftOrder>, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::orders::APPROVE_DRAFT)
                    .bind(org_id)
                    .bind(id)
                    .bind(at)
                    .bind(approver)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                <$db as $crate::store::Queries>::insert_audits(&mut *tx, &[audit]).await?;
                tx.commit().await?;
                self.draft_with_lines(org_id, id).await
            }
        }
    };
}
pub(super) use impl_order_store;

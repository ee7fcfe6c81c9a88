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

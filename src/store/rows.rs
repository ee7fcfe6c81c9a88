//! Row types shared by both backends, and their conversion into domain types. A row that does
//! not convert is `Corrupt`, never a panic.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{StoreError, UserWithHash};
use crate::domain::audit::AuditEntry;
use crate::domain::connection::Connection;
use crate::domain::draft::DraftOrder;
use crate::domain::export::Export;
use crate::domain::order::{Customer, OrderHeader, OrderLine, SourceDocument};
use crate::domain::org::{Org, Slug};
use crate::domain::user::{Email, User};

#[derive(sqlx::FromRow)]
pub struct OrgRow {
    id: Uuid,
    slug: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<OrgRow> for Org {
    type Error = StoreError;

    fn try_from(row: OrgRow) -> Result<Self, StoreError> {
        Ok(Org {
            id: row.id,
            slug: Slug::parse(&row.slug).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: row.name,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: Uuid,
    org_id: Uuid,
    email: String,
    password_hash: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
}

/// A user with whether the token presented was revoked.
#[derive(sqlx::FromRow)]
pub struct TokenUserRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub revoked: bool,
}

impl TryFrom<UserRow> for UserWithHash {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let corrupt = |e: crate::domain::FieldError| StoreError::Corrupt(e.to_string());
        Ok(UserWithHash {
            user: User {
                id: row.id,
                org_id: row.org_id,
                email: Email::parse(&row.email).map_err(corrupt)?,
                role: row.role.parse().map_err(corrupt)?,
                disabled: row.disabled,
                created_at: row.created_at,
            },
            password_hash: row.password_hash,
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        UserWithHash::try_from(row).map(|u| u.user)
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    seq: i64,
    id: Uuid,
    org_id: Uuid,
    actor_user_id: Option<Uuid>,
    actor: String,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    details: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            id: row.id,
            org_id: row.org_id,
            actor_user_id: row.actor_user_id,
            actor: row.actor,
            action: row.action,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            details: row.details.0,
            created_at: row.created_at,
            seq: row.seq,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ConnectionRow {
    id: Uuid,
    org_id: Uuid,
    connector_type: String,
    config_encrypted: Vec<u8>,
    config_version: i64,
    status: String,
    last_test_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ConnectionRow> for Connection {
    type Error = StoreError;

    fn try_from(row: ConnectionRow) -> Result<Self, StoreError> {
        Ok(Connection {
            id: row.id,
            org_id: row.org_id,
            connector_type: row.connector_type,
            config_encrypted: row.config_encrypted,
            config_version: row.config_version,
            status: row.status.parse().map_err(StoreError::Corrupt)?,
            last_test_at: row.last_test_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A source document as stored (JSON), with every key present.
pub fn source_document_json(s: &SourceDocument) -> serde_json::Value {
    serde_json::json!({
        "document_id": s.document_id,
        "file_name": s.file_name,
        "sha256": s.sha256,
    })
}

#[derive(sqlx::FromRow)]
pub struct DraftRow {
    seq: i64,
    id: Uuid,
    org_id: Uuid,
    status: String,
    external_order_number: Option<String>,
    order_date: Option<String>,
    currency: Option<String>,
    requested_delivery_date: Option<String>,
    notes: Option<String>,
    customer_id: Option<Uuid>,
    customer_erp_number: Option<String>,
    customer_name: Option<String>,
    source_document: Option<Json<serde_json::Value>>,
    approved_at: Option<DateTime<Utc>>,
    approved_by: Option<String>,
    erp_order_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn parse_date(what: &str, text: Option<String>) -> Result<Option<chrono::NaiveDate>, StoreError> {
    text.map(|t| t.parse().map_err(|e| corrupt(what, e)))
        .transpose()
}

/// A line with its draft's id (batch loads).
#[derive(sqlx::FromRow)]
pub struct DraftLineRow {
    /// The draft.
    pub draft_order_id: Uuid,
    /// The line.
    #[sqlx(flatten)]
    pub line: LineRow,
}

impl DraftRow {
    /// The draft's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The draft with these lines.
    pub fn into_draft(self, lines: Vec<LineRow>) -> Result<DraftOrder, StoreError> {
        let source_document = match self.source_document {
            None => None,
            Some(Json(value)) => {
                let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                Some(SourceDocument {
                    document_id: field("document_id")
                        .map(|id| Uuid::parse_str(&id).map_err(|e| corrupt("source_document", e)))
                        .transpose()?,
                    file_name: field("file_name"),
                    sha256: field("sha256"),
                })
            }
        };
        Ok(DraftOrder {
            id: self.id,
            org_id: self.org_id,
            status: self
                .status
                .parse()
                .map_err(|e| corrupt("draft status", e))?,
            customer: Customer {
                id: self.customer_id,
                erp_customer_number: self.customer_erp_number,
                name: self.customer_name,
            },
            header: OrderHeader {
                external_order_number: self.external_order_number,
                order_date: parse_date("order_date", self.order_date)?,
                currency: self.currency,
                requested_delivery_date: parse_date(
                    "requested_delivery_date",
                    self.requested_delivery_date,
                )?,
                notes: self.notes,
            },
            source_document,
            lines: lines
                .into_iter()
                .map(OrderLine::try_from)
                .collect::<Result<_, _>>()?,
            approved_at: self.approved_at,
            approved_by: self.approved_by,
            erp_order_id: self.erp_order_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            seq: self.seq,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct LineRow {
    line_no: i32,
    internal_sku: String,
    qty: String,
    uom: String,
    unit_price: Option<String>,
    currency: Option<String>,
    customer_sku_raw: Option<String>,
    description: Option<String>,
}

impl TryFrom<LineRow> for OrderLine {
    type Error = StoreError;

    fn try_from(row: LineRow) -> Result<Self, StoreError> {
        let decimal = |what: &str, text: &str| {
            crate::domain::order::DecimalText::parse(text)
                .ok_or_else(|| corrupt(what, format!("{text:?} is not a number")))
        };
        Ok(OrderLine {
            line_no: u32::try_from(row.line_no).map_err(|e| corrupt("line_no", e))?,
            internal_sku: row.internal_sku,
            qty: decimal("qty", &row.qty)?,
            uom: row.uom,
            unit_price: row
                .unit_price
                .as_deref()
                .map(|p| decimal("unit_price", p))
                .transpose()?,
            currency: row.currency,
            customer_sku_raw: row.customer_sku_raw,
            description: row.description,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ExportRow {
    seq: i64,
    id: Uuid,
    org_id: Uuid,
    draft_order_id: Uuid,
    erp_connection_id: Uuid,
    /// Read by the push to tell a FAILED latest export.
    pub status: String,
    file_name: String,
    dropzone_path: Option<String>,
    export_storage_key: Option<String>,
    content_sha256: Option<String>,
    erp_order_id: Option<String>,
    error_json: Option<Json<serde_json::Value>>,
    attempts: i32,
    idempotency_key: Option<String>,
    next_attempt_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    acked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ExportRow> for Export {
    type Error = StoreError;

    fn try_from(row: ExportRow) -> Result<Self, StoreError> {
        Ok(Export {
            id: row.id,
            org_id: row.org_id,
            draft_order_id: row.draft_order_id,
            erp_connection_id: row.erp_connection_id,
            status: row
                .status
                .parse()
                .map_err(|e| corrupt("export status", e))?,
            file_name: row.file_name,
            dropzone_path: row.dropzone_path,
            export_storage_key: row.export_storage_key,
            content_sha256: row.content_sha256,
            erp_order_id: row.erp_order_id,
            error_json: row.error_json.map(|j| j.0),
            attempts: u32::try_from(row.attempts).map_err(|e| corrupt("attempts", e))?,
            idempotency_key: row.idempotency_key,
            next_attempt_at: row.next_attempt_at,
            sent_at: row.sent_at,
            acked_at: row.acked_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            seq: row.seq,
        })
    }
}

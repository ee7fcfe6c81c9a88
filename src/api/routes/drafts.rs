//! Draft orders: store, list, show, approve, push, retry-push.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::exports::ExportView;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiJson, AuthUser, ListQuery, parse_uuid};
use crate::api::state::AppState;
use crate::domain::draft::{DraftInput, DraftOrder, DraftStatus};
use crate::domain::export::{Export, parse_idempotency_key};
use crate::domain::order::{DecimalText, OrderLine};
use crate::domain::page::listing;
use crate::domain::user::Role;
use crate::service::orders::{PushKind, Pushed};
use crate::service::preview::PreviewWith;

/// The customer.
#[derive(Serialize, ToSchema)]
pub struct CustomerView {
    id: Option<Uuid>,
    erp_customer_number: Option<String>,
    name: Option<String>,
}

/// The source document.
#[derive(Serialize, ToSchema)]
pub struct SourceDocumentView {
    document_id: Option<Uuid>,
    file_name: Option<String>,
    sha256: Option<String>,
}

/// One line; quantities and prices are the exact decimals that arrived.
#[derive(Serialize, ToSchema)]
pub struct LineView {
    line_no: u32,
    internal_sku: String,
    #[schema(value_type = f64)]
    qty: DecimalText,
    uom: String,
    #[schema(value_type = Option<f64>)]
    unit_price: Option<DecimalText>,
    currency: Option<String>,
    customer_sku_raw: Option<String>,
    description: Option<String>,
}

impl From<&OrderLine> for LineView {
    fn from(l: &OrderLine) -> Self {
        Self {
            line_no: l.line_no,
            internal_sku: l.internal_sku.clone(),
            qty: l.qty.clone(),
            uom: l.uom.clone(),
            unit_price: l.unit_price.clone(),
            currency: l.currency.clone(),
            customer_sku_raw: l.customer_sku_raw.clone(),
            description: l.description.clone(),
        }
    }
}

/// A draft order without its lines (lists).
#[derive(Serialize, ToSchema)]
pub struct DraftSummary {
    id: Uuid,
    status: DraftStatus,
    external_order_number: Option<String>,
    #[schema(value_type = Option<String>, format = Date)]
    order_date: Option<NaiveDate>,
    currency: Option<String>,
    #[schema(value_type = Option<String>, format = Date)]
    requested_delivery_date: Option<NaiveDate>,
    notes: Option<String>,
    customer: CustomerView,
    source_document: Option<SourceDocumentView>,
    approved_at: Option<DateTime<Utc>>,
    approved_by: Option<String>,
    erp_order_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&DraftOrder> for DraftSummary {
    fn from(d: &DraftOrder) -> Self {
        Self {
            id: d.id,
            status: d.status,
            external_order_number: d.header.external_order_number.clone(),
            order_date: d.header.order_date,
            currency: d.header.currency.clone(),
            requested_delivery_date: d.header.requested_delivery_date,
            notes: d.header.notes.clone(),
            customer: CustomerView {
                id: d.customer.id,
                erp_customer_number: d.customer.erp_customer_number.clone(),
                name: d.customer.name.clone(),
            },
            source_document: d.source_document.as_ref().map(|s| SourceDocumentView {
                document_id: s.document_id,
                file_name: s.file_name.clone(),
                sha256: s.sha256.clone(),
            }),
            approved_at: d.approved_at,
            approved_by: d.approved_by.clone(),
            erp_order_id: d.erp_order_id.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// A draft order with its lines (by `line_no`) and exports (newest first).
#[derive(Serialize, ToSchema)]
pub struct DraftView {
    #[serde(flatten)]
    summary: DraftSummary,
    lines: Vec<LineView>,
    exports: Vec<ExportView>,
}

impl DraftView {
    fn new(draft: &DraftOrder, exports: &[Export]) -> Self {
        Self {
            summary: DraftSummary::from(draft),
            lines: draft.lines.iter().map(LineView::from).collect(),
            exports: exports.iter().map(ExportView::from).collect(),
        }
    }
}

/// A page of drafts.
#[derive(Serialize, ToSchema)]
pub struct DraftPage {
    /// Newest first.
    items: Vec<DraftSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// The answer to a push.
#[derive(Serialize, ToSchema)]
pub struct PushResponse {
    /// The draft's status (`PUSHING` for a new push).
    status: DraftStatus,
    /// The export.
    erp_export_id: Uuid,
}

/// Stores a draft as it arrives from OrderFlow's intake (status READY).
#[utoipa::path(post, path = "/api/v1/draft-orders", tag = "drafts", security(("bearer" = [])),
    request_body = DraftInput,
    responses(
        (status = 201, body = DraftView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(input): ApiJson<DraftInput>,
) -> Result<(StatusCode, Json<DraftView>), ApiError> {
    auth.require(Role::DRAFT_WRITERS)?;
    let draft = state
        .orders
        .create(&auth.actor(), auth.org_id(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(DraftView::new(&draft, &[]))))
}

/// The org's drafts, newest first, optionally of one status.
#[utoipa::path(get, path = "/api/v1/draft-orders", tag = "drafts", security(("bearer" = [])),
    params(
        ("status" = Option<DraftStatus>, Query, description = "only drafts in this status"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "1-200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page of this same listing (same filters); opaque, and any other value is 422"),
    ),
    responses((status = 200, body = DraftPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    query: ListQuery,
) -> Result<Json<DraftPage>, ApiError> {
    auth.require(Role::ALL)?;
    let status = query.parsed::<DraftStatus>("status")?;
    let listing = listing(auth.org_id(), "drafts", status.map(DraftStatus::as_str));
    let page = state
        .orders
        .list(auth.org_id(), status, query.page(&state.cursors, &listing)?)
        .await?;
    Ok(Json(DraftPage {
        items: page.items.iter().map(DraftSummary::from).collect(),
        next_cursor: page.next_seq.map(|s| state.cursors.seal(&listing, s)),
    }))
}

/// One draft with its lines and exports.
#[utoipa::path(get, path = "/api/v1/draft-orders/{id}", tag = "drafts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DraftView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn details(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    auth.require(Role::ALL)?;
    let id = parse_uuid("id", &id)?;
    let (draft, exports) = state.orders.get(auth.org_id(), id).await?;
    Ok(Json(DraftView::new(&draft, &exports)))
}

/// `READY → APPROVED` (ADMIN, OPS); 409 from any other status.
#[utoipa::path(post, path = "/api/v1/draft-orders/{id}/approve", tag = "drafts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DraftView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    auth.require(Role::ORDER_OPERATORS)?;
    let id = parse_uuid("id", &id)?;
    let draft = state
        .orders
        .approve(&auth.actor(), auth.user.email.as_str(), auth.org_id(), id)
        .await?;
    let exports = state.orders.exports_of_draft(auth.org_id(), id).await?;
    Ok(Json(DraftView::new(&draft, &exports)))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))
                .and_then(|k| Ok(parse_idempotency_key(k)?))
        })
        .transpose()
}

async fn push_with(
    state: &AppState,
    auth: &AuthUser,
    id: &str,
    headers: &HeaderMap,
    kind: PushKind,
) -> Result<(StatusCode, Json<PushResponse>), ApiError> {
    auth.require(Role::ORDER_OPERATORS)?;
    let id = parse_uuid("id", id)?;
    let key = idempotency_key(headers)?;
    let Pushed {
        export,
        draft_status,
        ..
    } = state
        .orders
        .push(&auth.actor(), auth.org_id(), id, key.as_deref(), kind)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PushResponse {
            status: draft_status,
            erp_export_id: export.id,
        }),
    ))
}

/// The draft as a push now would deliver it, without creating anything: the exact bytes in the
/// active connection's format (or, with `{"config": {...}}`, an unsaved config's; that needs
/// ADMIN or INTEGRATOR), their content type and, in `X-File-Name` and `Content-Disposition`,
/// the file name. A draft not yet approved is shown as if approved now. Values that only exist
/// once the export does (its id in a name or in EDIFACT references, the push time) are this
/// preview's own.
#[utoipa::path(post, path = "/api/v1/draft-orders/{id}/preview", tag = "drafts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The file a push would deliver"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    auth.require(Role::ALL)?;
    let id = parse_uuid("id", &id)?;
    let body = super::connectors::preview_body(req).await?;
    let with = match &body {
        Some(config) => {
            auth.require(Role::CONNECTOR_MANAGERS)?;
            PreviewWith::Unsaved(config)
        }
        None => PreviewWith::Active,
    };
    let preview = state
        .previews
        .draft(&auth.actor(), auth.org_id(), id, with)
        .await?;
    Ok(super::connectors::preview_response(preview))
}

/// Pushes an APPROVED draft: creates an export for the org's active connection and answers at
/// once. With an `Idempotency-Key` (per draft) a repeat answers the same export and the draft's
/// current status; without one, a push while an export is pending or sent is 409 naming it.
#[utoipa::path(post, path = "/api/v1/draft-orders/{id}/push", tag = "drafts", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; repeats return the same export")),
    responses((status = 202, body = PushResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn push(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<PushResponse>), ApiError> {
    push_with(&state, &auth, &id, &headers, PushKind::Push).await
}

/// Pushes a draft again after its latest export FAILED (draft in ERROR): a new export.
#[utoipa::path(post, path = "/api/v1/draft-orders/{id}/retry-push", tag = "drafts", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; repeats return the same export")),
    responses((status = 202, body = PushResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retry_push(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<PushResponse>), ApiError> {
    push_with(&state, &auth, &id, &headers, PushKind::Retry).await
}

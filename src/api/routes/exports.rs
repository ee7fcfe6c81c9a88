//! Exports: list, show, and the archived file.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{AuthUser, ListQuery, parse_uuid};
use crate::api::state::AppState;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::listing;
use crate::domain::user::Role;

/// An export.
#[derive(Serialize, ToSchema)]
pub struct ExportView {
    id: Uuid,
    draft_order_id: Uuid,
    erp_connection_id: Uuid,
    status: ExportStatus,
    /// `sales_order_<draft id>_<YYYYMMDDTHHMMSSZ>.json`.
    file_name: String,
    /// The final path as the connector sees it (absolute for sftp, under the org's folder for
    /// filesystem); null until delivered.
    dropzone_path: Option<String>,
    /// Object storage key of the archived file; null until archived.
    export_storage_key: Option<String>,
    /// Lowercase hex SHA-256 of the file.
    content_sha256: Option<String>,
    /// The ERP's order number, once acknowledged.
    erp_order_id: Option<String>,
    /// The last error: `{code, message, at, attempt}` (ERP rejections: `{code: "ERP_REJECTED",
    /// error_code, message, processed_at}`); null when there is none.
    #[schema(value_type = Option<Object>)]
    error_json: Option<Value>,
    /// Delivery attempts started.
    attempts: u32,
    /// When a PENDING export is next due.
    next_attempt_at: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    acked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Export> for ExportView {
    fn from(e: &Export) -> Self {
        Self {
            id: e.id,
            draft_order_id: e.draft_order_id,
            erp_connection_id: e.erp_connection_id,
            status: e.status,
            file_name: e.file_name.clone(),
            dropzone_path: e.dropzone_path.clone(),
            export_storage_key: e.export_storage_key.clone(),
            content_sha256: e.content_sha256.clone(),
            erp_order_id: e.erp_order_id.clone(),
            error_json: e.error_json.clone(),
            attempts: e.attempts,
            next_attempt_at: (e.status == ExportStatus::Pending).then_some(e.next_attempt_at),
            sent_at: e.sent_at,
            acked_at: e.acked_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A page of exports.
#[derive(Serialize, ToSchema)]
pub struct ExportPage {
    /// Newest first.
    items: Vec<ExportView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// The org's exports, newest first, optionally of one status.
#[utoipa::path(get, path = "/api/v1/exports", tag = "exports", security(("bearer" = [])),
    params(
        ("status" = Option<ExportStatus>, Query, description = "only exports in this status"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "1-200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page of this same listing (same filters); opaque, and any other value is 422"),
    ),
    responses((status = 200, body = ExportPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    query: ListQuery,
) -> Result<Json<ExportPage>, ApiError> {
    auth.require(Role::ALL)?;
    let status = query.parsed::<ExportStatus>("status")?;
    let listing = listing(auth.org_id(), "exports", status.map(ExportStatus::as_str));
    let page = state
        .orders
        .list_exports(auth.org_id(), status, query.page(&state.cursors, &listing)?)
        .await?;
    Ok(Json(ExportPage {
        items: page.items.iter().map(ExportView::from).collect(),
        next_cursor: page.next_seq.map(|s| state.cursors.seal(&listing, s)),
    }))
}

/// One export.
#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ExportView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn details(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ExportView>, ApiError> {
    auth.require(Role::ALL)?;
    let id = parse_uuid("id", &id)?;
    let export = state.orders.export(auth.org_id(), id).await?;
    Ok(Json(ExportView::from(&export)))
}

/// The archived export file, byte for byte as delivered, in its format's media type; 404 until
/// it is archived.
#[utoipa::path(get, path = "/api/v1/exports/{id}/file", tag = "exports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The export file", content_type = "application/json", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require(Role::ALL)?;
    let id = parse_uuid("id", &id)?;
    let (export, bytes) = state.orders.export_file(auth.org_id(), id).await?;
    let disposition = format!("inline; filename=\"{}\"", export.file_name);
    Ok((
        [
            (
                CONTENT_TYPE,
                crate::formats::media_type_of(&bytes).to_owned(),
            ),
            (CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

//! `GET /api/v1/audit-log`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::AuthUser;
use crate::api::state::AppState;
use crate::domain::audit::AuditEntry;
use crate::domain::page::PageRequest;
use crate::domain::user::Role;

/// A page of audit entries.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Reads `limit` and `cursor` from a query string; bad values are 422.
pub fn page_request(
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<PageRequest, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    Ok(PageRequest::parse(
        params.get("limit").map(String::as_str),
        params.get("cursor").map(String::as_str),
    )?)
}

/// The org's audit log, newest first (ADMIN, INTEGRATOR).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1-200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let page = state
        .store
        .list_audit(auth.org_id(), page_request(query)?)
        .await?;
    Ok(Json(AuditPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

//! `GET /api/v1/audit-log`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{AuthUser, ListQuery};
use crate::api::state::AppState;
use crate::domain::audit::AuditEntry;
use crate::domain::page::listing;
use crate::domain::user::Role;

/// A page of audit entries.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// The org's audit log, newest first (ADMIN, INTEGRATOR).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1-200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page of this same listing (same filters); opaque, and any other value is 422"),
        ("action" = Option<String>, Query, description = "only entries with this action, e.g. EXPORT_SENT"),
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
    query: ListQuery,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let action = query.get("action")?;
    let listing = listing(auth.org_id(), "audit", action);
    let page = state
        .audit
        .list(auth.org_id(), action, query.page(&state.cursors, &listing)?)
        .await?;
    Ok(Json(AuditPage {
        items: page.items,
        next_cursor: page.next_seq.map(|s| state.cursors.seal(&listing, s)),
    }))
}

//! `GET /api/v1/me`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::AuthUser;
use crate::api::state::AppState;
use crate::domain::user::Role;

/// The caller.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// User id.
    id: Uuid,
    /// E-mail.
    email: String,
    /// Role.
    role: Role,
    /// Org id.
    org_id: Uuid,
    /// Org slug.
    org_slug: String,
    /// Org name.
    org_name: String,
}

/// The authenticated user and their org.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, auth: AuthUser) -> Result<Json<Me>, ApiError> {
    let org = state.login.org_of(&auth.session).await?;
    let user = auth.user;
    Ok(Json(Me {
        id: user.id,
        email: user.email.to_string(),
        role: user.role,
        org_id: org.id,
        org_slug: org.slug.to_string(),
        org_name: org.name,
    }))
}

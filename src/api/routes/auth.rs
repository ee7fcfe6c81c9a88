//! `POST /api/v1/auth/login`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ApiJson;
use crate::api::state::AppState;
use crate::auth::password;
use crate::auth::token::DEFAULT_TTL_SECS;
use crate::crypto::SecretString;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::user::Email;

/// Login credentials.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The org's slug.
    org_slug: String,
    /// The user's e-mail.
    email: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// An access token.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// HS256 JWT.
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Lifetime in seconds.
    expires_in: u64,
}

const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("Invalid org, e-mail or password");

/// Exchanges credentials for an access token. Wrong credentials: 401; disabled user: 403.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong credentials", body = ErrorBody),
        (status = 403, description = "User disabled", body = ErrorBody),
        (status = 422, description = "Malformed request", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let password = req.password;
    let Some(org) = state.store.org_by_slug(req.org_slug.trim()).await? else {
        run_dummy_verify(password).await;
        tracing::info!(org_slug = %req.org_slug, "login failed: unknown org");
        return Err(BAD_CREDENTIALS);
    };
    let audit = |action, details| NewAuditEntry {
        org_id: org.id,
        actor: Actor {
            user_id: None,
            // What was typed, bounded: it is untrusted input headed for the audit log.
            label: req.email.trim().to_lowercase().chars().take(320).collect(),
        },
        action,
        entity_type: "user",
        entity_id: None,
        details,
    };
    let found = match Email::parse(&req.email) {
        Ok(email) => state.store.user_by_email(org.id, &email).await?,
        Err(_) => None,
    };
    let Some(found) = found else {
        run_dummy_verify(password).await;
        state
            .store
            .append_audit(&audit(
                action::LOGIN_FAILED,
                json!({"reason": "unknown_user"}),
            ))
            .await?;
        return Err(BAD_CREDENTIALS);
    };
    let hash = found.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let user = found.user;
    let entry = |action, details| NewAuditEntry {
        actor: Actor::user(user.id, user.email.as_str()),
        entity_id: Some(user.id.to_string()),
        ..audit(action, details)
    };
    if !matches {
        state
            .store
            .append_audit(&entry(
                action::LOGIN_FAILED,
                json!({"reason": "wrong_password"}),
            ))
            .await?;
        return Err(BAD_CREDENTIALS);
    }
    if user.disabled {
        state
            .store
            .append_audit(&entry(action::LOGIN_FAILED, json!({"reason": "disabled"})))
            .await?;
        return Err(ApiError::Forbidden("User is disabled"));
    }
    let access_token = state
        .tokens
        .issue(&user, DEFAULT_TTL_SECS)
        .map_err(ApiError::internal)?;
    state
        .store
        .append_audit(&entry(action::LOGIN_SUCCEEDED, json!({})))
        .await?;
    Ok(Json(LoginResponse {
        access_token,
        token_type: "bearer",
        expires_in: DEFAULT_TTL_SECS,
    }))
}

async fn run_dummy_verify(password: SecretString) {
    let _ = tokio::task::spawn_blocking(move || password::verify_dummy(&password)).await;
}

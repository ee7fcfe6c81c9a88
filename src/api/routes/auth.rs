//! `POST /api/v1/auth/login`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiJson, AuthUser, ClientAddr};
use crate::api::state::AppState;
use crate::crypto::SecretString;
use crate::service::login::LoginAttempt;

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

/// Exchanges credentials for an access token. Wrong credentials: 401; disabled user: 403;
/// too many failures from this client or for this account: 429; hashing busy: 503.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong credentials", body = ErrorBody),
        (status = 403, description = "User disabled", body = ErrorBody),
        (status = 422, description = "Malformed request", body = ErrorBody),
        (status = 429, description = "Too many failed logins (see Retry-After)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Busy (see Retry-After)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let logged_in = state
        .login
        .login(LoginAttempt {
            org_slug: &req.org_slug,
            email: &req.email,
            password: req.password,
            client: client.0,
        })
        .await?;
    Ok(Json(LoginResponse {
        access_token: logged_in.access_token,
        token_type: "bearer",
        expires_in: logged_in.expires_in,
    }))
}

/// Signs out: the token presented stops working at once (here and in the console).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out; the token no longer works"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "User disabled", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<axum::http::StatusCode, ApiError> {
    state.login.logout(&auth.session).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

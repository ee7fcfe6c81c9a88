//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::state::AppState;

/// What a liveness or readiness probe answers.
#[derive(Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `ok`, `ready` or `not_ready`.
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = ProbeStatus)))]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "ok" })
}

/// The database is reachable and every migration is applied; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = ProbeStatus), (status = 503, body = ProbeStatus)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ProbeStatus>) {
    match state.operations.is_ready().await {
        Ok(true) => (StatusCode::OK, Json(ProbeStatus { status: "ready" })),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProbeStatus {
                status: "not_ready",
            }),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ProbeStatus {
                    status: "not_ready",
                }),
            )
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.operations.metrics(),
    )
}

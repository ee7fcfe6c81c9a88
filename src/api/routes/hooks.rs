//! Inbound calls from ERPs: acknowledgements sent back to us. No bearer token: each
//! call is authenticated by its connection's signing secret (Standard Webhooks headers).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::state::AppState;
use crate::service::acks::CallbackResult;

/// Largest callback body accepted (an acknowledgement is a few hundred bytes).
pub const CALLBACK_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The body an ERP sends (documentation of the accepted shape; the raw bytes are what is
/// signed, so the handler reads them itself).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CallbackAckBody {
    /// The export acknowledged (or give `file_name`).
    export_id: Option<uuid::Uuid>,
    /// The export's file name (when `export_id` is not given).
    file_name: Option<String>,
    /// `ACKED` or `FAILED`.
    #[schema(pattern = "^(ACKED|FAILED)$")]
    status: String,
    /// The ERP's order number (ACKED).
    erp_order_id: Option<String>,
    /// The ERP's error code (FAILED).
    error_code: Option<String>,
    /// The ERP's message (FAILED).
    message: Option<String>,
    /// When the ERP processed the order.
    processed_at: Option<String>,
}

/// What the callback did.
#[derive(Serialize, ToSchema)]
pub struct CallbackAnswer {
    /// `applied`, or `unchanged` when the export was already final (a replay changes nothing).
    result: CallbackResult,
}

/// An ERP's acknowledgement of one export, for `HTTP_JSON_V1` connections in `callback` mode.
/// Signed like our deliveries (Standard Webhooks: `webhook-id`, `webhook-timestamp` within 5
/// minutes, `webhook-signature` with the connection's signing secret). The same effects and
/// audit rows as an ack file; a replay answers 200 and changes nothing.
#[utoipa::path(post, path = "/api/v1/hooks/{connection_id}/acks", tag = "hooks",
    params(("connection_id" = String, Path),
        ("webhook-id" = String, Header), ("webhook-timestamp" = String, Header), ("webhook-signature" = String, Header)),
    request_body(content = CallbackAckBody, content_type = "application/json"),
    responses((status = 200, body = CallbackAnswer),
        (status = 401, description = "Missing or wrong signature, or a stale timestamp", body = ErrorBody),
        (status = 404, description = "No such callback endpoint, or no such export of the connection", body = ErrorBody),
        (status = 409, description = "The export is not recorded as sent yet; retry", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "The signed body is not a valid acknowledgement", body = ErrorBody)))]
pub async fn acks(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CallbackAnswer>, ApiError> {
    let not_found = || {
        ApiError::from(crate::service::ServiceError::NotFound(
            "No such callback endpoint".into(),
        ))
    };
    let connection_id = uuid::Uuid::parse_str(&connection_id).map_err(|_| not_found())?;
    // Read no further than an acknowledgement can need, before anything else is done.
    let body = axum::body::to_bytes(body, CALLBACK_BODY_LIMIT_BYTES)
        .await
        .map_err(|_| ApiError::PayloadOver(CALLBACK_BODY_LIMIT_BYTES / 1024))?;
    let result = state
        .callbacks
        .receive(connection_id, &headers, &body)
        .await?;
    Ok(Json(CallbackAnswer { result }))
}

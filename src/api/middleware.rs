//! Cross-cutting request handling: request-id scope, uniform error bodies, metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::error::{REQUEST_ID, error_response};
use crate::telemetry::metric;

/// Header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Assigns the request id (the client's `X-Request-Id` if it is sane, else a fresh UUID), makes
/// it available to logs and error bodies, echoes it on the response, and rewrites any error
/// response that is not already ours (timeouts, body limits, unknown methods) into the standard
/// error shape.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|v| is_sane_request_id(v))
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let header = HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID_HEADER, header.clone());
    let mut response = REQUEST_ID
        .scope(
            request_id,
            async move { normalize_error(next.run(req).await) },
        )
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

/// Client-supplied ids end up in logs: accept only short printable ASCII.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn normalize_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "request body is larger than 1 MiB"),
        StatusCode::NOT_FOUND => ("NOT_FOUND", "No such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "Method not allowed here"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("TIMEOUT", "The request took too long and was stopped")
        }
        s if s.is_server_error() => ("INTERNAL_ERROR", "Internal server error"),
        _ => ("BAD_REQUEST", "Bad request"),
    };
    let mut fresh = error_response(status, code, message.to_owned(), Value::Null);
    // Keep headers the inner layer set (e.g. Allow on 405), but not its body's length/type.
    for (name, value) in response.headers() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name, value.clone());
        }
    }
    fresh
}

/// Records `http_requests_total` and `http_request_duration_seconds` by matched route, so
/// unknown paths cannot blow up label cardinality.
pub async fn record_metrics(req: Request<Body>, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(metric::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(metric::HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

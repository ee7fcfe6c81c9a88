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
use super::server::{MAX_HEADER_BYTES, MAX_HEADER_COUNT};
use crate::telemetry::{method_label, metric};

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
        .scope(request_id, async move {
            if let Some(too_large) = oversized_headers(&req) {
                return too_large;
            }
            normalize_error(next.run(req).await)
        })
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

/// The standard 431 for a request whose headers exceed [`MAX_HEADER_COUNT`] or
/// [`MAX_HEADER_BYTES`] (hyper only answers bare 431s far above these).
fn oversized_headers(req: &Request) -> Option<Response> {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() <= MAX_HEADER_COUNT && bytes <= MAX_HEADER_BYTES {
        return None;
    }
    Some(error_response(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "HEADERS_TOO_LARGE",
        format!(
            "request headers exceed {MAX_HEADER_COUNT} fields or {} KiB",
            MAX_HEADER_BYTES / 1024
        ),
        Value::Null,
    ))
}

/// Client-supplied ids end up in logs: accept only short printable ASCII.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn normalize_error(response: Response) -> Response {
    let status = response.status();
    // JSON errors are ours already; HTML ones are the console's pages, which explain
    // themselves to a person.
    let is_ours = response.headers().get(CONTENT_TYPE).is_some_and(|ct| {
        ct.as_bytes().starts_with(b"application/json") || ct.as_bytes().starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "request body is larger than 1 MiB"),
        StatusCode::NOT_FOUND => ("NOT_FOUND", "No such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "Method not allowed here"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("HEADERS_TOO_LARGE", "request headers are too large")
        }
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

/// Records `http_requests_total` and `http_request_duration_seconds`, and writes the access
/// log line (one per request, at INFO, inside the request's span so it carries the request id).
/// Labels are bounded: the matched route (one `unmatched` label for every unknown path) and the
/// method by name only when it is a standard one (`other` otherwise).
pub async fn observe(req: Request<Body>, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    metrics::counter!(metric::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(metric::HTTP_DURATION, "method" => method, "route" => route.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(
        method,
        route,
        status,
        latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

//! Cross-cutting request handling: request-id scope, uniform error bodies, metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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

/// Runs the rest of the request in a task of its own and waits for it. When the client goes
/// away (or the request timeout fires) only the waiting stops: the handler runs to completion,
/// so a transaction is never abandoned between `BEGIN` and `COMMIT` — which on PostgreSQL would
/// hand the pooled connection to the next caller still inside it, its locks held and its writes
/// never committed. Handlers are bounded on their own (statement and connector timeouts), so
/// detached work always ends.
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let request_id = super::error::REQUEST_ID.try_with(Clone::clone).ok();
    let work = next.run(req).instrument(tracing::Span::current());
    let task = match request_id {
        Some(id) => tokio::spawn(super::error::REQUEST_ID.scope(id, work)),
        None => tokio::spawn(work),
    };
    match task.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "request handler panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error".to_owned(),
                Value::Null,
            )
        }
    }
}

/// Requests one client address may have in progress on the routes that wait on a tenant's
/// server (connection tests, acknowledgement polls). Far below the server's connection cap,
/// so one client holding many of them open cannot fill it. (A save with `test_on_save` tests
/// too; it is bounded per org by the service, like every test.)
pub const SLOW_REQUESTS_PER_CLIENT: usize = 8;

/// The routes [`limit_slow_requests`] counts (POST only).
const SLOW_ROUTES: &[&str] = &[
    "/api/v1/connectors/{slug}/test",
    "/api/v1/connectors/{slug}/poll-acks",
    "/ui/connector/{slug}/{action}",
    "/ui/acks/poll",
];

/// Answers 429 (with `Retry-After`) to a client address that already has
/// [`SLOW_REQUESTS_PER_CLIENT`] slow requests in progress; the per-org bound is the service's.
pub async fn limit_slow_requests(
    axum::extract::State(limit): axum::extract::State<
        std::sync::Arc<crate::service::limits::KeyedLimit<std::net::IpAddr>>,
    >,
    req: Request,
    next: Next,
) -> Response {
    let slow = req.method() == axum::http::Method::POST
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| SLOW_ROUTES.contains(&p.as_str()));
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let (true, Some(client)) = (slow, client) else {
        return next.run(req).await;
    };
    let Some(_place) = limit.try_enter(client) else {
        return super::error::ApiError::TooManyRequests {
            message: "Too many connection tests or polls in progress from this address; retry when one has finished",
            retry_after_secs: 5,
        }
        .into_response();
    };
    next.run(req).await
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

//! The admin console: server-rendered HTML at `/ui/` for the people who run the service (an
//! integrator wiring up the ERP, ops chasing a failed order), from the same binary.
//!
//! Decisions:
//! - HTML is rendered on the server with `maud` (compile-time, escaping by default); the one
//!   script is htmx 2.0.11 (0BSD), vendored into the binary, used only to refresh a PENDING
//!   export's status. Every page works without it: plain links and forms.
//! - It calls the same services as the API with the same role lists, and the server checks
//!   them again on every form; the console adds no rules of its own.
//! - Sessions, CSRF: see [`session`]. Headers: a strict Content-Security-Policy (no inline
//!   script or style), `X-Frame-Options: DENY`, `nosniff`, no caching of pages.

pub mod pages;
pub mod session;
pub mod views;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::state::AppState;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, `/` included (it redirects to `/ui/`).
pub fn router() -> Router<AppState> {
    use pages::{audit, auth, connector, exports, orders};
    let ui = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(home))
        .route("/ui/login", get(auth::form).post(auth::submit))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/drafts", get(orders::list))
        .route("/ui/drafts/{id}", get(orders::details))
        .route("/ui/drafts/{id}/{action}", post(orders::act))
        .route("/ui/exports", get(exports::list))
        .route("/ui/exports/{id}", get(exports::details))
        .route("/ui/exports/{id}/live", get(exports::live_part))
        .route("/ui/exports/{id}/file", get(exports::file))
        .route("/ui/acks/poll", post(exports::poll_acks))
        .route("/ui/connector", get(connector::show))
        .route("/ui/connector/{slug}", post(connector::submit))
        .route("/ui/connector/{slug}/{action}", post(connector::act))
        .route("/ui/connections/{id}/enable", post(connector::enable))
        .route("/ui/health/retry-now", post(connector::retry_now))
        .route("/ui/audit", get(audit::list))
        .route("/ui/assets/{name}", get(asset))
        .layer(axum::middleware::from_fn(security_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .merge(ui)
}

async fn home(user: Option<session::ConsoleUser>) -> Redirect {
    match user {
        Some(_) => Redirect::to("/ui/drafts"),
        None => Redirect::to("/ui/login"),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "htmx.min.js" => (include_str!("assets/htmx.min.js"), "text/javascript"),
        "console.css" => (include_str!("assets/console.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

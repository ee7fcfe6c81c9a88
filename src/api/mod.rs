//! The HTTP API: router, middleware, error mapping and handlers.

/// The admin console (HTML at `/ui/`).
pub mod console;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::telemetry::Bounded;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;
pub use self::server::ServerLimits;
pub use self::state::AppState;

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// Builds the router and the OpenAPI document from the same handler list, so every endpoint
/// is documented by construction.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::health::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(routes::auth::login))
        .routes(routes!(routes::auth::logout))
        .routes(routes!(routes::me::me))
        .routes(routes!(routes::audit::list))
        .routes(routes!(routes::connectors::types))
        .routes(routes!(routes::connectors::list))
        .routes(routes!(
            routes::connectors::save,
            routes::connectors::details
        ))
        .routes(routes!(routes::connectors::test))
        .routes(routes!(routes::connectors::disable))
        .routes(routes!(routes::connectors::enable))
        .routes(routes!(routes::connectors::poll_acks))
        .routes(routes!(routes::connectors::retry_now))
        .routes(routes!(routes::connectors::preview))
        .routes(routes!(routes::drafts::create, routes::drafts::list))
        .routes(routes!(routes::drafts::details))
        .routes(routes!(routes::drafts::approve))
        .routes(routes!(routes::drafts::push))
        .routes(routes!(routes::drafts::retry_push))
        .routes(routes!(routes::drafts::preview))
        .routes(routes!(routes::exports::list))
        .routes(routes!(routes::exports::details))
        .routes(routes!(routes::exports::file))
        .routes(routes!(routes::hooks::acks))
        .split_for_parts();

    let trace = TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
        let request_id = req
            .headers()
            .get(middleware::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // The path is the client's: bounded, like every client string in the logs.
        tracing::info_span!("request", request_id, path = %Bounded(req.uri().path()))
    });

    let document = openapi::finalize(openapi, state.connections.registry());
    router
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound("No such endpoint".into()) })
        .layer(Extension(Arc::new(openapi::Document(document))))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::request_context))
                .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
                .layer(trace)
                .layer(axum::middleware::from_fn(middleware::observe))
                .layer(axum::middleware::from_fn_with_state(
                    crate::service::limits::KeyedLimit::new(middleware::SLOW_REQUESTS_PER_CLIENT),
                    middleware::limit_slow_requests,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    request_timeout,
                ))
                // Inside the timeout: a timed-out or abandoned request stops being waited
                // for, never stops mid-transaction.
                .layer(axum::middleware::from_fn(middleware::run_to_completion))
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES)),
        )
}

/// A bound, not yet running, HTTP server. Binding first lets tests use port 0.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
}

impl Application {
    /// Binds `addr` and prepares the router.
    pub async fn bind(
        addr: SocketAddr,
        state: AppState,
        request_timeout: Duration,
        limits: ServerLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: router(state, request_timeout),
            limits,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets requests in progress finish (within the
    /// shutdown grace period).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(self.listener, self.router, self.limits, shutdown).await
    }
}

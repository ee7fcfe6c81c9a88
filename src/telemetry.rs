//! Logging and metrics setup, done once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Metric names (SPEC §9).
pub mod metric {
    /// Counter: HTTP requests by method, route, status.
    pub const HTTP_REQUESTS: &str = "http_requests_total";
    /// Histogram: HTTP request latency by method, route.
    pub const HTTP_DURATION: &str = "http_request_duration_seconds";
    /// Counter: connection tests by result.
    pub const CONNECTION_TESTS: &str = "orderflow_connection_tests_total";
}

const DEFAULT_FILTER: &str = "info,sqlx=warn,russh=warn,russh_sftp=warn";

/// Starts structured logging to stderr. `RUST_LOG` overrides the default filter.
pub fn init_logging(format: LogFormat) {
    init_logging_to(format, None, std::io::stderr);
}

/// Starts logging to `writer` with `filter` (default: `RUST_LOG`, else info). Tests capture
/// logs this way. Later calls are ignored.
pub fn init_logging_to<W>(format: LogFormat, filter: Option<&str>, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // Already initialised (a second app in the same test process): keep the first subscriber.
    drop(result);
}

/// The process-wide Prometheus recorder; installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

//! Logging and metrics setup, done once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Metric names.
pub mod metric {
    /// Counter: HTTP requests by method, route, status.
    pub const HTTP_REQUESTS: &str = "http_requests_total";
    /// Histogram: HTTP request latency by method, route.
    pub const HTTP_DURATION: &str = "http_request_duration_seconds";
    /// Counter: failed logins refused by the throttle or the hashing bound, by reason.
    pub const LOGIN_REFUSED: &str = "orderflow_login_refused_total";
    /// Counter: delivery attempts by outcome (`success`, `transient`, `permanent`).
    pub const DELIVERY_ATTEMPTS: &str = "orderflow_export_attempts_total";
    /// Histogram: one delivery attempt's duration.
    pub const DELIVERY_ATTEMPT_DURATION: &str = "orderflow_export_attempt_duration_seconds";
    /// Counter: exports reaching a status (`PENDING` on push, then `SENT`, `FAILED`, …).
    pub const EXPORTS: &str = "orderflow_exports_total";
    /// Histogram: push → SENT.
    pub const EXPORT_DELIVERY: &str = "orderflow_export_delivery_seconds";
    /// Gauge: PENDING exports.
    pub const EXPORT_QUEUE_DEPTH: &str = "orderflow_export_queue_depth";
    /// Counter: ack files by outcome.
    pub const ACK_FILES: &str = "orderflow_ack_files_total";
    /// Histogram: SENT → ACKED.
    pub const ACK_LAG: &str = "orderflow_ack_lag_seconds";
    /// Gauge: of every active connection this process polls, the Unix time of the one whose
    /// last successful poll is oldest (alert when it lags: some connection is not being read).
    /// No per-connection series: orgs are unbounded, and a connection id is the secret part of
    /// a callback URL.
    pub const ACK_OLDEST_POLL: &str = "orderflow_ack_oldest_successful_poll_timestamp_seconds";
    /// Counter: connection tests by result.
    pub const CONNECTION_TESTS: &str = "orderflow_connection_tests_total";
    /// Gauge: active connections by health (`healthy`, `degraded`, `open`, `half_open`).
    pub const CONNECTION_HEALTH: &str = "orderflow_connections";
    /// Counter: circuits opened.
    pub const CIRCUIT_OPENINGS: &str = "orderflow_circuit_openings_total";
    /// Histogram: push → first claim.
    pub const QUEUE_WAIT: &str = "orderflow_export_queue_wait_seconds";
}

const DEFAULT_FILTER: &str = "info,sqlx=warn,russh=warn,russh_sftp=warn";

/// Longest client-supplied string written to a log line, in characters.
pub const LOG_VALUE_MAX_CHARS: usize = 128;

/// Displays an untrusted string bounded to [`LOG_VALUE_MAX_CHARS`] characters, marking a cut:
/// a 1 MB org slug must not make a 1 MB log line.
pub struct Bounded<'a>(pub &'a str);

impl std::fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(LOG_VALUE_MAX_CHARS) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}…[cut {} bytes]", &self.0[..cut], self.0.len() - cut),
        }
    }
}

impl std::fmt::Debug for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A log writer that escapes every control character but the line's final newline, so a value
/// holding `\n` or ESC cannot forge a log line or a terminal sequence, in any format. (JSON
/// escapes them already; the human format would write them raw.)
#[derive(Clone)]
pub struct EscapingWriter<W>(pub W);

fn escape_controls(buf: &[u8]) -> Vec<u8> {
    let (body, newline) = match buf.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (buf, false),
    };
    let mut out = Vec::with_capacity(buf.len() + 8);
    for &b in body {
        if b.is_ascii_control() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.iter().any(u8::is_ascii_control) {
            self.0.write_all(&escape_controls(buf))?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Makes [`EscapingWriter`]s around another writer maker.
pub struct EscapingMakeWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for EscapingMakeWriter<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

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
        // Colours are ESC sequences, which the escaping writer refuses to pass through.
        .with_ansi(false)
        .with_writer(EscapingMakeWriter(writer));
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

/// The `method` label: the standard methods by name, anything else `other`, so made-up methods
/// cannot grow the metrics without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn bounded_cuts_long_values_and_keeps_short_ones() {
        assert_eq!(Bounded("acme").to_string(), "acme");
        let long = "é".repeat(1000);
        let shown = Bounded(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(128)));
        assert!(shown.ends_with("…[cut 1744 bytes]"), "{shown}");
    }

    #[test]
    fn control_characters_are_escaped_but_the_line_end_kept() {
        let mut out = Vec::new();
        EscapingWriter(&mut out)
            .write_all(b"login failed org=a\nFAKE LINE \x1b[31m\n")
            .unwrap();
        assert_eq!(out, b"login failed org=a\\x0aFAKE LINE \\x1b[31m\n");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let made_up = axum::http::Method::from_bytes(b"XYZZY").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
    }
}

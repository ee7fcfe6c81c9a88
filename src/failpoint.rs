//! Named pause points for crash tests: with `ORDERFLOW_FAILPOINT=<name>` a debug build stops
//! at that point (logging that it did) until the test kills it with SIGKILL. Release builds
//! compile this to nothing, so no environment variable can stall a production process.

/// Pauses forever here when `ORDERFLOW_FAILPOINT` names this point (debug builds only).
pub async fn pause_if_named(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("ORDERFLOW_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached; pausing until killed");
        std::future::pending::<()>().await;
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

//! Shared state handed to every handler.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenIssuer;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::store::Store;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Access tokens.
    pub tokens: Arc<TokenIssuer>,
    /// Config cipher keys.
    pub keyring: Arc<Keyring>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// Builds the state from settings and an open store.
    pub fn new(settings: &Settings, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            tokens: Arc::new(TokenIssuer::new(&settings.jwt_secret)),
            keyring: Arc::new(settings.keyring.clone()),
            metrics: crate::telemetry::metrics_handle(),
        }
    }
}

//! Shared state handed to every handler.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenIssuer;
use crate::config::Settings;
use crate::connectors::{ConnectorEnv, Registry};
use crate::crypto::Keyring;
use crate::service::connections::ConnectionService;
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
    /// Connection use cases (and the connector registry).
    pub connections: ConnectionService,
}

impl AppState {
    /// Builds the state from settings and an open store, with the built-in connector types.
    pub fn new(settings: &Settings, store: Arc<dyn Store>) -> Self {
        Self::with_registry(settings, store, Registry::default())
    }

    /// Builds the state with a chosen registry (tests add the `MOCK` type).
    pub fn with_registry(settings: &Settings, store: Arc<dyn Store>, registry: Registry) -> Self {
        let keyring = Arc::new(settings.keyring.clone());
        let env = Arc::new(ConnectorEnv::from_settings(settings));
        Self {
            connections: ConnectionService::new(
                store.clone(),
                keyring.clone(),
                Arc::new(registry),
                env,
            ),
            store,
            tokens: Arc::new(TokenIssuer::new(&settings.jwt_secret)),
            keyring,
            metrics: crate::telemetry::metrics_handle(),
        }
    }
}

//! What operators and their monitors ask the running service: is it ready, and its metrics.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::store::{Store, StoreError};

/// Readiness and metrics.
#[derive(Clone)]
pub struct OperationsService {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
}

impl std::fmt::Debug for OperationsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationsService").finish_non_exhaustive()
    }
}

impl OperationsService {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>, metrics: PrometheusHandle) -> Self {
        Self { store, metrics }
    }

    /// True when the database answers and every migration is applied.
    pub async fn is_ready(&self) -> Result<bool, StoreError> {
        self.store.is_ready().await
    }

    /// Every metric in the Prometheus text format.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }
}

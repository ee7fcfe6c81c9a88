//! Which connector types exist. One plain function lists them; no link-time magic.

use std::sync::Arc;

use super::Connector;
use super::dropzone_json_v1::DropzoneJsonV1;
use super::http_json_v1::HttpJsonV1;

/// Every connector type a normal `serve` offers.
pub fn builtin() -> Vec<Arc<dyn Connector>> {
    vec![Arc::new(DropzoneJsonV1), Arc::new(HttpJsonV1::default())]
}

/// A lookup table over a list of connector types.
#[derive(Clone)]
pub struct Registry {
    connectors: Vec<Arc<dyn Connector>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.connectors.iter().map(|c| c.connector_type()))
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(builtin())
    }
}

impl Registry {
    /// A registry of exactly these types.
    pub fn new(connectors: Vec<Arc<dyn Connector>>) -> Self {
        Self { connectors }
    }

    /// This registry plus one more type (tests add `MOCK` this way).
    pub fn with(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connectors.push(connector);
        self
    }

    /// All types, in registration order.
    pub fn all(&self) -> &[Arc<dyn Connector>] {
        &self.connectors
    }

    /// Looks a type up by its slug (`dropzone-json-v1`).
    pub fn by_slug(&self, slug: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.slug() == slug)
    }

    /// Looks a type up by its name (`DROPZONE_JSON_V1`).
    pub fn by_type(&self, connector_type: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors
            .iter()
            .find(|c| c.connector_type() == connector_type)
    }
}

//! The one way to reach a stored connection: its connector type, its decrypted config and the
//! context it acts in. Deliveries, acknowledgement polls and connection tests all open their
//! target here. Decrypting and parsing a config is done once per connection and config
//! version (a passphrase-protected key would otherwise be derived again for every export).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::connectors::{Connector, ConnectorConfig, ConnectorContext};
use crate::domain::connection::Connection;

/// A connection ready to be used.
#[derive(Clone)]
pub struct Target {
    /// The stored row, as read for this use.
    pub connection: Connection,
    /// Its connector type.
    pub connector: Arc<dyn Connector>,
    /// Its decrypted config.
    pub config: Arc<ConnectorConfig>,
    /// Who it acts for.
    pub ctx: ConnectorContext,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("connection_id", &self.connection.id)
            .field("connector_type", &self.connector.connector_type())
            .finish_non_exhaustive()
    }
}

/// Most configs kept open at once; past it the cache starts over (it only saves work).
const MAX_OPEN_CONFIGS: usize = 10_000;

/// Decrypted configs by connection and config version.
#[derive(Default)]
pub struct OpenConfigs(Mutex<HashMap<(Uuid, i64), Arc<ConnectorConfig>>>);

impl std::fmt::Debug for OpenConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenConfigs([redacted])")
    }
}

impl OpenConfigs {
    /// The config of this connection version, opened with `open` the first time.
    pub fn get_or_open<E>(
        &self,
        connection: &Connection,
        open: impl FnOnce() -> Result<ConnectorConfig, E>,
    ) -> Result<Arc<ConnectorConfig>, E> {
        let key = (connection.id, connection.config_version);
        if let Some(config) = self.lock().get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(open()?);
        let mut configs = self.lock();
        if configs.len() >= MAX_OPEN_CONFIGS {
            configs.clear();
        }
        // An older version of the same connection is never used again.
        configs.retain(|(id, _), _| *id != connection.id);
        configs.insert(key, config.clone());
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, i64), Arc<ConnectorConfig>>> {
        match self.0.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

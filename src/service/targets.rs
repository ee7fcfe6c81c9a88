//! The one way to reach a stored connection: its connector type, its decrypted config (the
//! type's own fields apart from the delivery format) and the context it acts in. Deliveries,
//! acknowledgement polls and connection tests all open their target here. Decrypting and
//! parsing a config is done once per connection and config version (a passphrase-protected key
//! would otherwise be derived again for every export).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::connectors::{Connector, ConnectorConfig, ConnectorContext};
use crate::domain::FieldError;
use crate::domain::connection::Connection;
use crate::formats::{DELIVERY_FIELDS, DeliveryFormat};

/// A config split in two: the connector type's own fields, which only the connector type
/// reads, and the format and file naming every type shares, which only the service reads.
#[derive(Clone)]
pub struct OpenedConfig {
    /// What the connector type is given.
    pub transport: ConnectorConfig,
    /// How exports are rendered and named.
    pub delivery: DeliveryFormat,
}

impl std::fmt::Debug for OpenedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedConfig")
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl OpenedConfig {
    /// Splits a whole config, checking the shared fields (naming the one at fault).
    pub fn split(mut config: ConnectorConfig) -> Result<Self, FieldError> {
        let delivery = DeliveryFormat::parse(config.fields())?;
        for field in DELIVERY_FIELDS {
            config.remove(field);
        }
        Ok(Self {
            transport: config,
            delivery,
        })
    }

    /// The whole config again, shared fields in their normal form (what is stored).
    pub fn joined(&self) -> ConnectorConfig {
        let mut fields = self.transport.fields().clone();
        self.delivery.store_into(&mut fields);
        ConnectorConfig::new(fields)
    }
}

/// A connection ready to be used.
#[derive(Clone)]
pub struct Target {
    /// The stored row, as read for this use.
    pub connection: Connection,
    /// Its connector type.
    pub connector: Arc<dyn Connector>,
    /// Its decrypted config, split.
    pub opened: Arc<OpenedConfig>,
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

impl Target {
    /// The config the connector type is given.
    pub fn config(&self) -> &ConnectorConfig {
        &self.opened.transport
    }

    /// How its exports are rendered and named.
    pub fn delivery(&self) -> &DeliveryFormat {
        &self.opened.delivery
    }
}

/// Decrypted configs by connection and config version.
#[derive(Default)]
pub struct OpenConfigs(Mutex<HashMap<(Uuid, i64), Arc<OpenedConfig>>>);

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
        open: impl FnOnce() -> Result<OpenedConfig, E>,
    ) -> Result<Arc<OpenedConfig>, E> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, i64), Arc<OpenedConfig>>> {
        match self.0.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

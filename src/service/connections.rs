//! ERP connections: saving (encrypted), showing (without secrets), testing, enabling and
//! disabling, and the operator's decrypt and key rotation.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ServiceError;
use super::limits::{KeyedLimit, Place};
use super::targets::{OpenConfigs, OpenedConfig, Target};
use crate::connectors::{
    ConnectionKey, Connector, ConnectorConfig, ConnectorContext, ConnectorEnv, Learned, Registry,
    TestResult, run_test,
};
use crate::crypto::{Keyring, connection_aad};
use crate::domain::FieldError;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::org::Org;
use crate::store::{ConfigUpdate, NewConnection, Store, StoreError};

/// The message for the one-active-connection rule.
pub const ONLY_ONE_ACTIVE: &str = "Only one active connector per org";

/// What a save writes, beside the connection it replaces.
struct ConfigWrite<'a> {
    actor: &'a Actor,
    org_id: Uuid,
    connector_type: &'static str,
    config: &'a ConnectorConfig,
    tested_at: Option<chrono::DateTime<chrono::Utc>>,
    details: Value,
}

/// The result of `POST /connectors/{slug}`.
#[derive(Debug)]
pub enum SaveOutcome {
    /// Stored (created or updated).
    Saved {
        /// The connection after the write.
        connection: Connection,
        /// The test result when `test_on_save` was set.
        test_result: Option<TestResult>,
        /// Secrets the service generated for this save (shown once, never again).
        generated_secrets: Map<String, Value>,
    },
    /// `test_on_save` failed; nothing was stored.
    TestFailed(TestResult),
}

/// A connection as shown by `GET /connectors/{slug}`: no secrets, only which ones are set.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionDetails {
    /// The stored row (the blob is never serialised).
    #[serde(skip)]
    pub connection: Connection,
    /// Every non-secret config field.
    pub config: Map<String, Value>,
    /// Names of secret fields holding a value.
    pub secrets_set: Vec<String>,
}

/// How a connection is doing, as users see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionHealth {
    /// `healthy`, `degraded` (recent deliveries failed), `open` (not tried until the next
    /// probe) or `half_open` (a probe is on its way).
    pub state: crate::domain::delivery::Health,
    /// When it entered that state.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Transient failures since the last success.
    pub consecutive_failures: u32,
    /// The last failure's code.
    pub last_error_code: Option<String>,
    /// The last failure's message.
    pub last_error_message: Option<String>,
    /// When an open circuit tries the connection again.
    pub next_probe_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Exports waiting for the connection (PENDING).
    pub queued_exports: i64,
}

impl ConnectionHealth {
    fn of(circuit: Option<&crate::domain::delivery::Circuit>, queued_exports: i64) -> Self {
        use crate::domain::delivery::Health;
        match circuit {
            None => Self {
                state: Health::Healthy,
                since: None,
                consecutive_failures: 0,
                last_error_code: None,
                last_error_message: None,
                next_probe_at: None,
                queued_exports,
            },
            Some(c) => Self {
                state: c.health(),
                since: Some(c.since),
                consecutive_failures: c.consecutive_failures,
                last_error_code: c.last_error.as_ref().map(|(code, _)| code.clone()),
                last_error_message: c.last_error.as_ref().map(|(_, m)| m.clone()),
                next_probe_at: c.next_probe_at,
                queued_exports,
            },
        }
    }
}

/// The configured keys do not match the database's configs.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// Neither the master key nor a previous key is the one the configs are sealed with.
    #[error(
        "ENCRYPTION_MASTER_KEY does not match the key this database's connector configs are sealed with \
         (nor does any key in ENCRYPTION_PREVIOUS_KEYS); set the right key, or add it to \
         ENCRYPTION_PREVIOUS_KEYS and run `orderflow keys rotate`"
    )]
    Mismatch,
    /// The database could not be read.
    #[error("cannot read the key check: {0}")]
    Store(#[from] StoreError),
}

/// Outcome of `keys rotate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Blobs re-encrypted under the current key.
    pub rewrote: usize,
    /// Connections seen.
    pub total: usize,
    /// Connections no configured key could open.
    pub unreadable: Vec<Uuid>,
}

/// Connection use cases over a store, the keyring and the connector registry.
#[derive(Clone)]
pub struct ConnectionService {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    registry: Arc<Registry>,
    env: Arc<ConnectorEnv>,
    slow_work: Arc<KeyedLimit<Uuid>>,
    open_configs: Arc<OpenConfigs>,
}

/// Connection tests and acknowledgement polls one org may have running at once. Each may wait
/// up to its connection's timeout on a server that never answers; beyond this the org is
/// asked to come back (429) rather than taking sessions, threads and HTTP connections that
/// other orgs' deliveries need.
pub const SLOW_WORK_PER_ORG: usize = 4;
/// What a caller over [`SLOW_WORK_PER_ORG`] is told.
const TOO_MUCH_SLOW_WORK: &str = "This org already has 4 connection tests or acknowledgement polls running; retry when one has finished";

impl std::fmt::Debug for ConnectionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionService")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Copies each of `fields` that the submission omits (absent, not null) from the stored config;
/// returns the names copied.
fn fill_omitted(
    merged: &mut ConnectorConfig,
    stored: Option<&ConnectorConfig>,
    fields: &[&'static str],
) -> Vec<&'static str> {
    let Some(stored) = stored else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    for &field in fields {
        if merged.get(field).is_none()
            && let Some(value) = stored.get(field).filter(|v| !v.is_null())
        {
            merged.insert(field, value.clone());
            kept.push(field);
        }
    }
    kept
}

/// True when the field differs between two configs (absent and null are the same).
fn differs(a: &ConnectorConfig, b: &ConnectorConfig, field: &str) -> bool {
    let value = |c: &ConnectorConfig| c.get(field).filter(|v| !v.is_null()).cloned();
    value(a) != value(b)
}

impl ConnectionService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        registry: Arc<Registry>,
        env: Arc<ConnectorEnv>,
    ) -> Self {
        Self {
            store,
            keyring,
            registry,
            env,
            slow_work: KeyedLimit::new(SLOW_WORK_PER_ORG),
            open_configs: Arc::default(),
        }
    }

    /// A stored connection ready to use — for deliveries, acknowledgement polls and tests of
    /// the stored config alike: its connector type, its config (decrypted once per config
    /// version) and its context. A disabled connection, a foreign org or an unreadable config
    /// is an error a delivery can record.
    pub fn open_target(
        &self,
        connection: &Connection,
        org: &Org,
    ) -> Result<Target, crate::connectors::ConnectorError> {
        use crate::connectors::{ConnectorError, ErrorCode};
        if connection.status != ConnectionStatus::Active {
            return Err(ConnectorError::new(ErrorCode::ConnectionDisabled));
        }
        if connection.org_id != org.id {
            return Err(ConnectorError::with_detail(
                ErrorCode::ConfigUnreadable,
                "the connection belongs to another org",
            ));
        }
        let connector = self
            .registry
            .by_type(&connection.connector_type)
            .cloned()
            .ok_or_else(|| {
                ConnectorError::with_detail(
                    ErrorCode::ConfigUnreadable,
                    format!("unknown connector type {}", connection.connector_type),
                )
            })?;
        let config = self
            .open_configs
            .get_or_open(connection, || self.open_split(connection))
            .map_err(|_| ConnectorError::new(ErrorCode::ConfigUnreadable))?;
        Ok(Target {
            connection: connection.clone(),
            connector,
            opened: config,
            ctx: self.context(org, Some(connection)),
        })
    }

    /// A place for one slow piece of work (a connection test, an ack poll) of the org, or
    /// 429 when it has [`SLOW_WORK_PER_ORG`] running.
    pub fn enter_slow_work(&self, org_id: Uuid) -> Result<Place<Uuid>, ServiceError> {
        self.slow_work
            .try_enter(org_id)
            .ok_or(ServiceError::TooMuchAtOnce {
                message: TOO_MUCH_SLOW_WORK,
                retry_after_secs: 5,
            })
    }

    /// The connector registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The shared SFTP session pool (the server prunes it periodically).
    pub fn sftp_pool(&self) -> &Arc<crate::connectors::transport::sftp::pool::SessionPool> {
        &self.env.sftp_pool
    }

    fn connector(&self, slug: &str) -> Result<Arc<dyn Connector>, ServiceError> {
        self.registry
            .by_slug(slug)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("Unknown connector type '{slug}'")))
    }

    async fn org(&self, org_id: Uuid) -> Result<Org, ServiceError> {
        self.store
            .org_by_id(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("org not found".into()))
    }

    fn context(&self, org: &Org, connection: Option<&Connection>) -> ConnectorContext {
        ConnectorContext {
            org_id: org.id,
            org_slug: org.slug.clone(),
            connection: connection.map(|c| ConnectionKey {
                id: c.id,
                version: c.config_version,
            }),
            env: self.env.clone(),
        }
    }

    fn seal(
        &self,
        org_id: Uuid,
        id: Uuid,
        config: &ConnectorConfig,
    ) -> Result<Vec<u8>, ServiceError> {
        let aad = connection_aad(org_id, id);
        self.keyring
            .encrypt(aad.as_bytes(), config.to_plaintext().expose())
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Decrypts and parses a stored config. Failure is `ConfigUnreadable`, never a crash, and
    /// carries no config values.
    pub fn open(&self, connection: &Connection) -> Result<ConnectorConfig, ServiceError> {
        let aad = connection_aad(connection.org_id, connection.id);
        let unreadable = |reason: String| {
            tracing::error!(connection_id = %connection.id, reason, "stored connector config is unreadable");
            ServiceError::ConfigUnreadable
        };
        let decrypted = self
            .keyring
            .decrypt(aad.as_bytes(), &connection.config_encrypted)
            .map_err(|e| unreadable(e.to_string()))?;
        ConnectorConfig::from_plaintext(&decrypted.plaintext)
            .map_err(|_| unreadable("decrypted config is not a JSON object".into()))
    }

    /// A stored config, split into the connector type's fields and the delivery format.
    pub fn open_split(&self, connection: &Connection) -> Result<OpenedConfig, ServiceError> {
        OpenedConfig::split(self.open(connection)?).map_err(|e| {
            tracing::error!(connection_id = %connection.id, field = %e.field, "stored delivery format is unreadable");
            ServiceError::ConfigUnreadable
        })
    }

    /// The split config of the org's active connection (None without one).
    pub async fn active_config(
        &self,
        org_id: Uuid,
    ) -> Result<Option<(Connection, Arc<OpenedConfig>)>, ServiceError> {
        let Some(connection) = self.store.active_connection(org_id).await? else {
            return Ok(None);
        };
        let opened = self
            .open_configs
            .get_or_open(&connection, || self.open_split(&connection))?;
        Ok(Some((connection, opened)))
    }

    /// The active connection of this connector type, if the org has one.
    async fn active_of_type(
        &self,
        org_id: Uuid,
        connector: &dyn Connector,
    ) -> Result<Option<Connection>, ServiceError> {
        Ok(self
            .store
            .active_connection(org_id)
            .await?
            .filter(|c| c.connector_type == connector.connector_type()))
    }

    fn no_active(connector: &dyn Connector) -> ServiceError {
        ServiceError::NotFound(format!(
            "No active {} connection",
            connector.connector_type()
        ))
    }

    /// The active connection of this type, or `NotFound`.
    async fn require_active_of_type(
        &self,
        org_id: Uuid,
        connector: &dyn Connector,
    ) -> Result<Connection, ServiceError> {
        self.active_of_type(org_id, connector)
            .await?
            .ok_or_else(|| Self::no_active(connector))
    }

    /// Validates a submitted config, merged with the stored one: the delivery format on its
    /// own, the connector type's fields by the type (see [`Self::merge_transport`]).
    fn prepare(
        &self,
        connector: &dyn Connector,
        submitted: &ConnectorConfig,
        stored: Option<&ConnectorConfig>,
    ) -> Result<OpenedConfig, FieldError> {
        let submitted = OpenedConfig::split(submitted.clone())?;
        let stored = stored.and_then(|s| OpenedConfig::split(s.clone()).ok());
        let transport = self.merge_transport(
            connector,
            &submitted.transport,
            stored.as_ref().map(|s| &s.transport),
        )?;
        Ok(OpenedConfig {
            transport,
            delivery: submitted.delivery,
        })
    }

    /// Merges the connector type's part of a submitted config with the stored one and
    /// validates it.
    ///
    /// An omitted (absent) secret keeps its stored value only while the identity fields (host,
    /// port, username, mode) are unchanged; otherwise it must be given again. A secret given as
    /// null is cleared. Sticky fields (a recorded host key) follow the same rule, so an update
    /// that does not repeat the fingerprint never silently re-enables trust on first use.
    fn merge_transport(
        &self,
        connector: &dyn Connector,
        submitted: &ConnectorConfig,
        stored: Option<&ConnectorConfig>,
    ) -> Result<ConnectorConfig, FieldError> {
        let env = self.env.validation();
        // With another identity, nothing stored is kept: the submission must stand alone, and
        // a missing secret is reported as one to give again.
        let alone = || {
            connector.validate(submitted, &env).map_err(|err| {
                let omitted = submitted.get(&err.field).is_none();
                if omitted && connector.secret_fields().contains(&err.field.as_str()) {
                    FieldError::new(
                        err.field,
                        "must be given again because host, port, username or mode changed",
                    )
                } else {
                    err
                }
            })
        };
        let Some(stored) = stored else {
            return connector.validate(submitted, &env);
        };
        let identity_differs = |config: &ConnectorConfig, only_given: bool| {
            connector
                .identity_fields()
                .iter()
                .any(|f| (!only_given || config.has(f)) && differs(config, stored, f))
        };
        // An identity field given with another value (switching sftp to filesystem, another
        // host): the old secrets may not even be fields of the new config.
        if identity_differs(submitted, true) {
            return alone();
        }
        let mut merged = submitted.clone();
        let kept_secrets = fill_omitted(&mut merged, Some(stored), connector.secret_fields());
        let kept_sticky = fill_omitted(&mut merged, Some(stored), connector.sticky_fields());
        let validated = match connector.validate(&merged, &env) {
            Err(err) if kept_secrets.contains(&err.field.as_str()) => {
                return Err(FieldError::new(
                    err.field,
                    format!("{} (stored value kept)", err.message),
                ));
            }
            other => other?,
        };
        if (!kept_secrets.is_empty() || !kept_sticky.is_empty())
            && identity_differs(&validated, false)
        {
            // An omitted field's default differs from the stored value (port 22 vs 2222).
            return alone();
        }
        Ok(validated)
    }

    /// Names (never values) of the fields that differ from the stored config.
    fn changed_fields(new: &ConnectorConfig, old: Option<&ConnectorConfig>) -> Vec<String> {
        let mut names: Vec<String> = new.fields().keys().cloned().collect();
        if let Some(old) = old {
            names.extend(old.fields().keys().cloned());
        }
        names.sort();
        names.dedup();
        names.retain(|f| old.is_none_or(|o| differs(new, o, f)));
        names
    }

    /// An audit row about a connection (never with secrets).
    fn entry(
        org_id: Uuid,
        actor: &Actor,
        action: &'static str,
        entity_id: Option<Uuid>,
        details: Value,
    ) -> NewAuditEntry {
        NewAuditEntry {
            org_id,
            actor: actor.clone(),
            action,
            entity_type: "erp_connection",
            entity_id: entity_id.map(|id| id.to_string()),
            details,
        }
    }

    fn apply_learned(config: &mut ConnectorConfig, learned: &Learned) {
        if let Some(fp) = &learned.host_key_fingerprint {
            config.insert("host_key_fingerprint", json!(fp));
        }
    }

    /// `POST /connectors/{slug}`: creates the org's active connection of this type or updates
    /// it; with `test_on_save`, tests first and stores nothing if the test fails.
    pub async fn save(
        &self,
        actor: &Actor,
        org_id: Uuid,
        slug: &str,
        mut body: Map<String, Value>,
    ) -> Result<SaveOutcome, ServiceError> {
        let connector = self.connector(slug)?;
        let test_on_save = match body.remove("test_on_save") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(FieldError::new("test_on_save", "must be true or false").into()),
        };
        let active = self.store.active_connection(org_id).await?;
        if active
            .as_ref()
            .is_some_and(|a| a.connector_type != connector.connector_type())
        {
            return Err(ServiceError::Conflict(ONLY_ONE_ACTIVE.into()));
        }
        // A stored config that no longer decrypts can still be replaced by a complete new one.
        let stored = active.as_ref().and_then(|a| self.open(a).ok());
        let submitted = ConnectorConfig::new(body);
        let mut opened = self.prepare(connector.as_ref(), &submitted, stored.as_ref())?;
        let generated = connector.generate_secrets(&mut opened.transport);
        let generated_secrets: Map<String, Value> = generated
            .iter()
            .filter_map(|f| {
                opened
                    .transport
                    .get(f)
                    .map(|v| ((*f).to_owned(), v.clone()))
            })
            .collect();
        let org = self.org(org_id).await?;
        let ctx = self.context(&org, None);
        connector.check_before_save(&ctx, &opened.transport).await?;

        let mut test_result = None;
        if test_on_save {
            let _place = self.enter_slow_work(org_id)?;
            let result = run_test(connector.as_ref(), &ctx, &opened.transport).await;
            let tested = active.as_ref().map(|a| a.id);
            let audit = Self::test_entry(actor, org_id, tested, connector.as_ref(), &result)
                .with_detail("on_save", true);
            self.store
                .record_connection_test(org_id, None, None, &audit)
                .await?;
            if !result.success {
                return Ok(SaveOutcome::TestFailed(result));
            }
            Self::apply_learned(&mut opened.transport, &result.learned);
            test_result = Some(result);
        }
        let config = opened.joined();
        let tested_at = test_result.as_ref().map(|_| crate::store::now());
        let changed = Self::changed_fields(&config, stored.as_ref());
        let details =
            json!({ "connector_type": connector.connector_type(), "changed_fields": changed });
        let write = ConfigWrite {
            actor,
            org_id,
            connector_type: connector.connector_type(),
            config: &config,
            tested_at,
            details,
        };
        let connection = self.write_config(write, active).await?;
        Ok(SaveOutcome::Saved {
            connection,
            test_result,
            generated_secrets,
        })
    }

    /// The audit row of a connection test, of a saved connection or of an unsaved config.
    fn test_entry(
        actor: &Actor,
        org_id: Uuid,
        connection_id: Option<Uuid>,
        connector: &dyn Connector,
        result: &TestResult,
    ) -> NewAuditEntry {
        Self::entry(
            org_id,
            actor,
            action::CONNECTION_TESTED,
            connection_id,
            json!({ "connector_type": connector.connector_type(), "success": result.success,
                    "error_code": result.error_code, "latency_ms": result.latency_ms }),
        )
    }

    /// Seals and stores a saved config: a new version of the active connection, or a new
    /// active connection; with its audit row.
    async fn write_config(
        &self,
        write: ConfigWrite<'_>,
        active: Option<Connection>,
    ) -> Result<Connection, ServiceError> {
        let ConfigWrite {
            actor,
            org_id,
            connector_type,
            config,
            tested_at,
            details,
        } = write;
        let key_check = self.keyring.check_value();
        let connection = match active {
            Some(active) => {
                let blob = self.seal(org_id, active.id, config)?;
                let audit = Self::entry(
                    org_id,
                    actor,
                    action::CONNECTION_UPDATED,
                    Some(active.id),
                    details,
                );
                let update = ConfigUpdate {
                    org_id,
                    id: active.id,
                    expected_version: active.config_version,
                    config_encrypted: &blob,
                    last_test_at: tested_at,
                    key_check,
                };
                self.store
                    .update_connection_config(&update, Some(&audit))
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Conflict(
                            "The connection was changed concurrently; try again".into(),
                        )
                    })?
            }
            None => {
                let id = Uuid::new_v4();
                let new = NewConnection {
                    id,
                    org_id,
                    connector_type: connector_type.to_owned(),
                    config_encrypted: self.seal(org_id, id, config)?,
                    last_test_at: tested_at,
                };
                let audit =
                    Self::entry(org_id, actor, action::CONNECTION_CREATED, Some(id), details);
                match self.store.insert_connection(&new, key_check, &audit).await {
                    Err(StoreError::Conflict(_)) => {
                        return Err(ServiceError::Conflict(ONLY_ONE_ACTIVE.into()));
                    }
                    other => other?,
                }
            }
        };
        Ok(connection)
    }

    /// The org's connections (all statuses).
    pub async fn list(&self, org_id: Uuid) -> Result<Vec<Connection>, ServiceError> {
        Ok(self.store.list_connections(org_id).await?)
    }

    /// The health of each of these connections (of one org), in order.
    pub async fn health(
        &self,
        connections: &[Connection],
    ) -> Result<Vec<ConnectionHealth>, ServiceError> {
        let ids: Vec<Uuid> = connections.iter().map(|c| c.id).collect();
        let circuits = self.store.circuits(&ids).await?;
        let mut out = Vec::with_capacity(connections.len());
        for c in connections {
            let queued = self.store.queued_exports(c.id).await?;
            out.push(ConnectionHealth::of(circuits.get(&c.id), queued));
        }
        Ok(out)
    }

    /// The health of the org's active connection, if it has one (for the console's banner).
    pub async fn active_health(
        &self,
        org_id: Uuid,
    ) -> Result<Option<(Connection, ConnectionHealth)>, ServiceError> {
        let Some(active) = self.store.active_connection(org_id).await? else {
            return Ok(None);
        };
        let health = self.health(std::slice::from_ref(&active)).await?;
        Ok(health.into_iter().next().map(|h| (active, h)))
    }

    /// "Retry now": closes the active connection's circuit by hand and makes its waiting
    /// exports due at once. Audited.
    pub async fn retry_now(
        &self,
        actor: &Actor,
        org_id: Uuid,
        slug: &str,
    ) -> Result<ConnectionHealth, ServiceError> {
        let connection = self.active_for_slug(org_id, slug).await?;
        self.reset_circuit(actor, connection).await
    }

    /// [`ConnectionService::retry_now`] for the org's active connection, whatever its type.
    pub async fn retry_active(
        &self,
        actor: &Actor,
        org_id: Uuid,
    ) -> Result<ConnectionHealth, ServiceError> {
        let connection = self
            .store
            .active_connection(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("No active connection".into()))?;
        self.reset_circuit(actor, connection).await
    }

    async fn reset_circuit(
        &self,
        actor: &Actor,
        connection: Connection,
    ) -> Result<ConnectionHealth, ServiceError> {
        let org_id = connection.org_id;
        let before = self.health(std::slice::from_ref(&connection)).await?;
        let audit = Self::entry(
            org_id,
            actor,
            action::CIRCUIT_RESET,
            Some(connection.id),
            json!({ "health_before": before.first().map(|h| h.state) }),
        );
        if !self
            .store
            .reset_circuit(org_id, connection.id, crate::store::now(), &audit)
            .await?
        {
            return Err(ServiceError::NotFound("No such connection".into()));
        }
        tracing::info!(org_id = %org_id, connection_id = %connection.id, "circuit closed by hand: deliveries resume now");
        let after = self.health(std::slice::from_ref(&connection)).await?;
        after
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::Internal("health vanished".into()))
    }

    /// The org's active connection of this connector type (404 if none).
    pub async fn active_for_slug(
        &self,
        org_id: Uuid,
        slug: &str,
    ) -> Result<Connection, ServiceError> {
        let connector = self.connector(slug)?;
        self.require_active_of_type(org_id, connector.as_ref())
            .await
    }

    /// `GET /connectors/{slug}`: the active connection of this type, without secrets.
    pub async fn details(
        &self,
        org_id: Uuid,
        slug: &str,
    ) -> Result<ConnectionDetails, ServiceError> {
        let connector = self.connector(slug)?;
        let connection = self
            .require_active_of_type(org_id, connector.as_ref())
            .await?;
        let config = self.open(&connection)?;
        let secrets_set = connector
            .secret_fields()
            .iter()
            .filter(|f| config.has(f))
            .map(|f| (*f).to_owned())
            .collect();
        Ok(ConnectionDetails {
            config: config.without(connector.secret_fields()),
            secrets_set,
            connection,
        })
    }

    /// `POST /connectors/{slug}/test`: tests the stored active config, or `body` (an unsaved
    /// config, merged with the stored secrets like an update would be).
    pub async fn test(
        &self,
        actor: &Actor,
        org_id: Uuid,
        slug: &str,
        body: Option<Map<String, Value>>,
    ) -> Result<TestResult, ServiceError> {
        let connector = self.connector(slug)?;
        let _place = self.enter_slow_work(org_id)?;
        let active = self.active_of_type(org_id, connector.as_ref()).await?;
        let org = self.org(org_id).await?;
        let (opened, tested_connection) = match body {
            Some(mut body) => {
                body.remove("test_on_save");
                let stored = active.as_ref().and_then(|a| self.open(a).ok());
                let mut opened = self.prepare(
                    connector.as_ref(),
                    &ConnectorConfig::new(body),
                    stored.as_ref(),
                )?;
                // An unsaved config is tested with a throwaway secret where one would be made.
                connector.generate_secrets(&mut opened.transport);
                connector
                    .check_before_save(&self.context(&org, None), &opened.transport)
                    .await?;
                (opened, None)
            }
            None => {
                let active = active.ok_or_else(|| Self::no_active(connector.as_ref()))?;
                let target = self
                    .open_target(&active, &org)
                    .map_err(|_| ServiceError::ConfigUnreadable)?;
                ((*target.opened).clone(), Some(active))
            }
        };
        let ctx = self.context(&org, tested_connection.as_ref());
        let result = run_test(connector.as_ref(), &ctx, &opened.transport).await;
        let passed_at = result.success.then(crate::store::now);
        if let (Some(at), Some(connection)) = (passed_at, &tested_connection) {
            self.record_learned(actor, connection, opened, &result.learned, Some(at))
                .await?;
        }
        let tested = tested_connection.as_ref().map(|c| c.id);
        let audit = Self::test_entry(actor, org_id, tested, connector.as_ref(), &result)
            .with_detail("unsaved_config", tested_connection.is_none());
        self.store
            .record_connection_test(
                org_id,
                tested_connection.as_ref().map(|c| c.id),
                passed_at,
                &audit,
            )
            .await?;
        Ok(result)
    }

    /// Records a host key learned on first use (by a connection test or an export) into the
    /// stored config: a compare-and-swap on the config version, so a config changed meanwhile
    /// is never overwritten (it will learn its own key). `tested_at` also sets `last_test_at`.
    pub async fn record_learned(
        &self,
        actor: &Actor,
        connection: &Connection,
        mut config: OpenedConfig,
        learned: &Learned,
        tested_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ServiceError> {
        let Some(fingerprint) = &learned.host_key_fingerprint else {
            return Ok(());
        };
        Self::apply_learned(&mut config.transport, learned);
        let blob = self.seal(connection.org_id, connection.id, &config.joined())?;
        let audit = Self::entry(
            connection.org_id,
            actor,
            action::HOST_KEY_RECORDED,
            Some(connection.id),
            json!({ "host_key_fingerprint": fingerprint }),
        );
        let update = ConfigUpdate {
            org_id: connection.org_id,
            id: connection.id,
            expected_version: connection.config_version,
            config_encrypted: &blob,
            last_test_at: tested_at,
            key_check: self.keyring.check_value(),
        };
        self.store
            .update_connection_config(&update, Some(&audit))
            .await?;
        Ok(())
    }

    /// `POST /connectors/{slug}/disable`.
    pub async fn disable(
        &self,
        actor: &Actor,
        org_id: Uuid,
        slug: &str,
    ) -> Result<Connection, ServiceError> {
        let connector = self.connector(slug)?;
        let active = self
            .require_active_of_type(org_id, connector.as_ref())
            .await?;
        let audit = Self::entry(
            org_id,
            actor,
            action::CONNECTION_DISABLED,
            Some(active.id),
            json!({ "connector_type": active.connector_type }),
        );
        Ok(self
            .store
            .set_connection_status(org_id, active.id, ConnectionStatus::Disabled, &audit)
            .await?)
    }

    /// `POST /connections/{id}/enable`: 409 if another connection is active.
    pub async fn enable(
        &self,
        actor: &Actor,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<Connection, ServiceError> {
        let connection = self
            .store
            .connection_by_id(org_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Connection not found".into()))?;
        if connection.status == ConnectionStatus::Active {
            return Ok(connection);
        }
        let audit = Self::entry(
            org_id,
            actor,
            action::CONNECTION_ENABLED,
            Some(id),
            json!({ "connector_type": connection.connector_type }),
        );
        match self
            .store
            .set_connection_status(org_id, id, ConnectionStatus::Active, &audit)
            .await
        {
            Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(ONLY_ONE_ACTIVE.into())),
            other => Ok(other?),
        }
    }

    /// `orderflow connector decrypt`: one config in full, for an operator; audited.
    pub async fn decrypt_for_operator(&self, id: Uuid) -> Result<ConnectorConfig, ServiceError> {
        let connection = self
            .store
            .connection_by_id_any_org(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no connection {id}")))?;
        let config = self.open(&connection)?;
        self.store
            .append_audit(&Self::entry(
                connection.org_id,
                &Actor::cli(),
                action::CONFIG_DECRYPTED,
                Some(id),
                json!({}),
            ))
            .await?;
        Ok(config)
    }

    /// `orderflow keys rotate`: re-encrypts every blob not under the current key. Each row is
    /// its own compare-and-swap, so an interrupted run loses nothing and a second run rewrites
    /// only what the first did not.
    pub async fn rotate_keys(&self) -> Result<RotationReport, ServiceError> {
        let ids = self.store.all_connection_ids().await?;
        let mut report = RotationReport {
            rewrote: 0,
            total: ids.len(),
            unreadable: Vec::new(),
        };
        for id in ids {
            let Some(connection) = self.store.connection_by_id_any_org(id).await? else {
                continue;
            };
            let aad = connection_aad(connection.org_id, connection.id);
            let decrypted = match self
                .keyring
                .decrypt(aad.as_bytes(), &connection.config_encrypted)
            {
                Ok(d) => d,
                Err(_) => {
                    report.unreadable.push(id);
                    continue;
                }
            };
            if decrypted.key_index == 0 {
                continue;
            }
            let blob = self
                .keyring
                .encrypt(aad.as_bytes(), decrypted.plaintext.expose())
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let audit = Self::entry(
                connection.org_id,
                &Actor::cli(),
                action::CONFIG_REENCRYPTED,
                Some(id),
                json!({}),
            );
            if self
                .store
                .replace_connection_blob(id, &connection.config_encrypted, &blob, &audit)
                .await?
            {
                report.rewrote += 1;
            }
        }
        // Every readable config is under the current key now: so is the recorded check.
        if report.unreadable.is_empty() {
            self.store.set_key_check(self.keyring.check_value()).await?;
        }
        Ok(report)
    }

    /// Refuses to start with keys that cannot open this database's configs: when a key check
    /// is recorded, the master key or a previous key must match it. With none recorded (a
    /// database from before the check existed), the first config that opens under any key
    /// records it.
    pub async fn verify_key_check(&self) -> Result<(), KeyCheckError> {
        match self.store.key_check().await? {
            Some(recorded) if self.keyring.key_for_check(&recorded).is_some() => Ok(()),
            Some(_) => Err(KeyCheckError::Mismatch),
            None => {
                for id in self.store.all_connection_ids().await? {
                    let Some(connection) = self.store.connection_by_id_any_org(id).await? else {
                        continue;
                    };
                    let aad = connection_aad(connection.org_id, connection.id);
                    if let Ok(d) = self
                        .keyring
                        .decrypt(aad.as_bytes(), &connection.config_encrypted)
                    {
                        if d.key_index == 0 {
                            self.store.set_key_check(self.keyring.check_value()).await?;
                        }
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
    }
}

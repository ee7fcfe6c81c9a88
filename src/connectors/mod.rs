//! The connector framework. A connector type knows how to validate its config (pure), test a
//! connection and export an order; the framework around it applies the timeout, measures
//! latency, counts and logs results, so no connector does that itself.
//!
//! Connector types are listed by one plain function, [`registry::builtin`]. Each type lives in
//! its own folder; transports (`filesystem`, `sftp`) sit behind [`transport::Transport`] so the
//! dropzone logic is written once.

pub mod config;
pub mod dropzone_json_v1;
pub mod error;
pub mod fields;
pub mod http_json_v1;
pub mod mock;
pub mod network;
pub mod registry;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipnet::IpNet;
use serde::Serialize;
use sha2::Digest;
use uuid::Uuid;

pub use self::config::ConnectorConfig;
pub use self::error::{CallbackRefused, ConnectorError, ErrorCode};
pub use self::registry::Registry;
use self::transport::sftp::pool::SessionPool;
use crate::domain::FieldError;
use crate::domain::ack::AckOutcome;
use crate::domain::order::ApprovedOrder;
use crate::domain::org::Slug;
use crate::telemetry::metric;

/// Facts a pure validation may use.
#[derive(Debug, Clone, Default)]
pub struct ValidationEnv {
    /// Networks an SFTP host literal may not be in.
    pub blocked_networks: Vec<IpNet>,
    /// Whether `http://` URLs are allowed (`CONNECTOR_ALLOW_PLAIN_HTTP`).
    pub allow_plain_http: bool,
}

/// Process-wide resources connectors share (folders, network policy, session pools).
#[derive(Debug)]
pub struct ConnectorEnv {
    /// Root of every org's `filesystem` dropzone.
    pub dropzone_fs_root: PathBuf,
    /// Networks SFTP hosts may not resolve to.
    pub blocked_networks: Vec<IpNet>,
    /// Whether `http://` URLs are allowed (`CONNECTOR_ALLOW_PLAIN_HTTP`).
    pub allow_plain_http: bool,
    /// Reused SFTP sessions.
    pub sftp_pool: Arc<SessionPool>,
    /// Per-org lanes for blocking filesystem work.
    pub fs_lanes: Arc<transport::filesystem::Lanes>,
}

impl ConnectorEnv {
    /// The environment the settings describe.
    pub fn from_settings(settings: &crate::config::ConnectorSettings) -> Self {
        Self::new(
            settings.dropzone_fs_root.clone(),
            settings.blocked_networks.clone(),
        )
        .with_plain_http(settings.allow_plain_http)
    }

    /// An environment with a fresh SFTP session pool.
    pub fn new(dropzone_fs_root: PathBuf, blocked_networks: Vec<IpNet>) -> Self {
        Self {
            dropzone_fs_root,
            blocked_networks,
            allow_plain_http: false,
            sftp_pool: Arc::new(SessionPool::default()),
            fs_lanes: Arc::default(),
        }
    }

    /// The same environment, allowing `http://` URLs or not.
    pub fn with_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// The pure part, for [`Connector::validate`].
    pub fn validation(&self) -> ValidationEnv {
        ValidationEnv {
            blocked_networks: self.blocked_networks.clone(),
            allow_plain_http: self.allow_plain_http,
        }
    }
}

/// Identifies a stored connection's config version (pooled sessions are keyed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// Connection id.
    pub id: Uuid,
    /// Config version.
    pub version: i64,
}

/// Who a connector acts for.
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    /// The org.
    pub org_id: Uuid,
    /// The org's slug (names its filesystem dropzone folder).
    pub org_slug: Slug,
    /// The stored connection, or None for an unsaved config being tested.
    pub connection: Option<ConnectionKey>,
    /// Shared resources.
    pub env: Arc<ConnectorEnv>,
}

/// What a successful connection test or export learned that the caller should store or show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// A host key fingerprint recorded on first use (`SHA256:…`).
    pub host_key_fingerprint: Option<String>,
    /// A passing test's own message (else [`TEST_SUCCESS_MESSAGE`]).
    pub test_message: Option<String>,
    /// Facts a passing test reports beside its message (e.g. a TLS certificate's expiry).
    pub test_details: Option<serde_json::Value>,
}

/// An export to render and deliver in one go ([`Connector::export`]).
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The order.
    pub order: ApprovedOrder,
    /// The file name, fixed when the export was created.
    pub file_name: String,
}

/// A rendered export: the exact bytes to deliver and their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file content.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl Rendered {
    /// Wraps bytes, hashing them.
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        Self { bytes, sha256 }
    }
}

/// One delivery: these bytes under this name.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The export id (stable across retries; a connector may use it to let the ERP drop
    /// duplicates).
    pub export_id: Uuid,
    /// The file name, fixed when the export was created.
    pub file_name: &'a str,
    /// What to deliver.
    pub content: &'a Rendered,
    /// Its media type (the connection's format's).
    pub content_type: &'a str,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The final path (or URL) as the connector sees it.
    pub dropzone_path: String,
    /// True when an identical file was already there (a retried delivery).
    pub already_present: bool,
    /// Facts to store.
    pub learned: Learned,
    /// The ERP's verdict when it answered the delivery itself (an HTTP response naming its
    /// order number); applied exactly like an ack file.
    pub ack: Option<AckOutcome>,
}

/// A verified inbound callback: the message id the sender gave it (stable across its retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCallback {
    /// The sender's message id (`webhook-id`).
    pub message_id: String,
}

/// A delivered export ([`Connector::export`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportResult {
    /// Always true; failures are `Err`.
    pub success: bool,
    /// The file name.
    pub file_name: String,
    /// The final path as the connector sees it.
    pub dropzone_path: String,
    /// The bytes written.
    pub content: Vec<u8>,
    /// Lowercase hex SHA-256 of `content`.
    pub content_sha256: String,
    /// True when an identical file was already there (a retried delivery).
    pub already_present: bool,
    /// Facts to store.
    pub learned: Learned,
}

/// Where a handled acknowledgement file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckFolder {
    /// `processed/`: applied, or answering an export that is already final.
    Processed,
    /// `error/`: malformed, or naming no export of the org.
    Error,
}

impl AckFolder {
    /// The folder's name under the ack folder.
    pub fn name(self) -> &'static str {
        match self {
            AckFolder::Processed => "processed",
            AckFolder::Error => "error",
        }
    }
}

/// An acknowledgement folder the ERP writes into (file-based connectors).
#[async_trait]
pub trait AckInbox: Send + Sync {
    /// The names of the files waiting in it.
    async fn list(&self) -> Result<Vec<String>, ConnectorError>;
    /// A file's content; None when it is larger than `limit` bytes (not read then).
    async fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ConnectorError>;
    /// Moves a file into `processed/` or `error/` (created when missing), under a suffixed
    /// name when that name is taken (an earlier file is never overwritten). The final path.
    async fn settle(&self, name: &str, to: AckFolder) -> Result<String, ConnectorError>;
}

/// What names a connector type and sorts its config fields: one constant per type, so a type
/// states these facts once instead of in six trait methods.
#[derive(Debug)]
pub struct ConnectorInfo {
    /// Type name, e.g. `DROPZONE_JSON_V1`.
    pub connector_type: &'static str,
    /// URL slug, e.g. `dropzone-json-v1`.
    pub slug: &'static str,
    /// Human name.
    pub display_name: &'static str,
    /// Names of the secret fields (never shown, kept on update when the identity is unchanged).
    pub secret_fields: &'static [&'static str],
    /// Fields that identify whom the secrets are for; changing one requires the secrets again.
    pub identity_fields: &'static [&'static str],
    /// Fields the service keeps across updates like secrets (e.g. a host key recorded on first
    /// use), unless the identity changes or the caller sets them explicitly.
    pub sticky_fields: &'static [&'static str],
    /// The config's JSON Schema (2020-12), served to clients and read by the console's form.
    pub schema: fn() -> serde_json::Value,
    /// Checks a config without I/O and returns the normal form to store.
    pub validate: fn(&ConnectorConfig, &ValidationEnv) -> Result<ConnectorConfig, FieldError>,
}

/// A connector type.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The type's names and field classes.
    fn info(&self) -> &'static ConnectorInfo;
    /// Type name, e.g. `DROPZONE_JSON_V1`.
    fn connector_type(&self) -> &'static str {
        self.info().connector_type
    }
    /// URL slug, e.g. `dropzone-json-v1`.
    fn slug(&self) -> &'static str {
        self.info().slug
    }
    /// Human name.
    fn display_name(&self) -> &'static str {
        self.info().display_name
    }
    /// JSON Schema of the config; secret fields are `writeOnly`.
    fn config_schema(&self) -> serde_json::Value {
        (self.info().schema)()
    }
    /// See [`ConnectorInfo::secret_fields`].
    fn secret_fields(&self) -> &'static [&'static str] {
        self.info().secret_fields
    }
    /// See [`ConnectorInfo::identity_fields`].
    fn identity_fields(&self) -> &'static [&'static str] {
        self.info().identity_fields
    }
    /// See [`ConnectorInfo::sticky_fields`].
    fn sticky_fields(&self) -> &'static [&'static str] {
        self.info().sticky_fields
    }
    /// Fills in secrets the service generates when the config has none (e.g. a signing
    /// secret); the names filled. The save response shows them once.
    fn generate_secrets(&self, _config: &mut ConnectorConfig) -> Vec<&'static str> {
        Vec::new()
    }
    /// Authenticates a callback the ERP sent to `POST /hooks/{connection_id}/acks` (headers
    /// and the raw body). Types that take no callbacks refuse every one.
    fn verify_callback(
        &self,
        _config: &ConnectorConfig,
        _headers: &reqwest::header::HeaderMap,
        _body: &[u8],
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedCallback, CallbackRefused> {
        Err(CallbackRefused::NotAccepted)
    }
    /// Checks a submitted config without I/O and returns it normalised (defaults filled in).
    fn validate(
        &self,
        config: &ConnectorConfig,
        env: &ValidationEnv,
    ) -> Result<ConnectorConfig, FieldError> {
        (self.info().validate)(config, env)
    }
    /// Checks what needs the disk before saving (e.g. symlinks leading out of the org folder).
    async fn check_before_save(
        &self,
        _ctx: &ConnectorContext,
        _config: &ConnectorConfig,
    ) -> Result<(), FieldError> {
        Ok(())
    }
    /// The timeout for one test of this (validated) config: its `timeout_secs`.
    fn timeout(&self, config: &ConnectorConfig) -> Duration {
        fields::TimeoutSecs::of_stored(config)
    }
    /// Rehearses an export without sending an order. Called through [`run_test`].
    async fn test_connection(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<Learned, ConnectorError>;
    /// Delivers rendered bytes. Called through [`run_export`]; must be safe to repeat (a
    /// retry after a crash delivers the same bytes under the same name again).
    async fn deliver(
        &self,
        ctx: &ConnectorContext,
        delivery: &Delivery<'_>,
        config: &ConnectorConfig,
    ) -> Result<Delivered, ConnectorError>;
    /// The connection's acknowledgement folder, when this connector type reads ack files and
    /// the config names one (None otherwise: nothing to poll).
    async fn ack_inbox(
        &self,
        _ctx: &ConnectorContext,
        _config: &ConnectorConfig,
    ) -> Result<Option<Box<dyn AckInbox>>, ConnectorError> {
        Ok(None)
    }
    /// Renders (as JSON v1) and delivers in one step (tools and tests; the worker renders in
    /// the connection's format and archives in between).
    async fn export(
        &self,
        ctx: &ConnectorContext,
        request: &ExportRequest,
        config: &ConnectorConfig,
    ) -> Result<ExportResult, ConnectorError> {
        let content = Rendered::new(crate::formats::json_v1::render(&request.order)?);
        let delivery = Delivery {
            export_id: request.order.draft_order_id,
            file_name: &request.file_name,
            content: &content,
            content_type: "application/json",
        };
        let delivered = self.deliver(ctx, &delivery, config).await?;
        Ok(ExportResult {
            success: true,
            file_name: request.file_name.clone(),
            dropzone_path: delivered.dropzone_path,
            content_sha256: content.sha256.clone(),
            content: content.bytes,
            already_present: delivered.already_present,
            learned: delivered.learned,
        })
    }
}

/// Delivers one export with at most `limit` of time (the config's timeout, capped by the
/// caller so a delivery cannot outlive its lease), then counts, times and logs it. A timeout is
/// `CONNECTION_TIMEOUT` (transient).
pub async fn run_export(
    connector: &dyn Connector,
    ctx: &ConnectorContext,
    config: &ConnectorConfig,
    delivery: &Delivery<'_>,
    limit: Duration,
) -> Result<Delivered, ConnectorError> {
    let timeout = connector.timeout(config).min(limit);
    let start = Instant::now();
    let outcome =
        match tokio::time::timeout(timeout, connector.deliver(ctx, delivery, config)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectorError::with_detail(
                ErrorCode::ConnectionTimeout,
                format!("delivery took longer than {} s", timeout.as_secs()),
            )),
        };
    let elapsed = start.elapsed();
    let label = match &outcome {
        Ok(_) => "success",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "permanent",
    };
    metrics::counter!(metric::DELIVERY_ATTEMPTS, "outcome" => label).increment(1);
    metrics::histogram!(metric::DELIVERY_ATTEMPT_DURATION).record(elapsed.as_secs_f64());
    match &outcome {
        Ok(d) => tracing::info!(
            org_id = %ctx.org_id,
            export_id = %delivery.export_id,
            connector_type = connector.connector_type(),
            file_name = delivery.file_name,
            already_present = d.already_present,
            latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "export delivered"
        ),
        Err(e) => tracing::warn!(
            org_id = %ctx.org_id,
            export_id = %delivery.export_id,
            connector_type = connector.connector_type(),
            file_name = delivery.file_name,
            error_code = e.code.as_str(),
            error = %e.message,
            latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "export delivery failed"
        ),
    }
    outcome
}

/// The outcome of a connection test, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    /// Whether the test passed.
    pub success: bool,
    /// On success, what was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On failure, the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// On failure, the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Time the test took.
    pub latency_ms: u64,
    /// On success, what the test found out besides (connector specific, e.g. the server
    /// certificate's subject and days until it expires).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// Facts to store after a pass (not part of the API answer).
    #[serde(skip)]
    pub learned: Learned,
}

/// What a passing test says.
pub const TEST_SUCCESS_MESSAGE: &str = "Test file written and cleaned up successfully";

/// Runs a connection test with the config's timeout, measures it, and counts and logs the
/// result. A test never errors: failures are results.
pub async fn run_test(
    connector: &dyn Connector,
    ctx: &ConnectorContext,
    config: &ConnectorConfig,
) -> TestResult {
    let timeout = connector.timeout(config);
    let start = Instant::now();
    let outcome = match tokio::time::timeout(timeout, connector.test_connection(ctx, config)).await
    {
        Ok(result) => result,
        Err(_) => Err(ConnectorError::with_detail(
            ErrorCode::ConnectionTimeout,
            format!("no answer within {} s", timeout.as_secs()),
        )),
    };
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let result = match outcome {
        Ok(mut learned) => TestResult {
            success: true,
            message: Some(
                learned
                    .test_message
                    .take()
                    .unwrap_or_else(|| TEST_SUCCESS_MESSAGE.to_owned()),
            ),
            error_code: None,
            error_message: None,
            latency_ms,
            details: learned.test_details.take(),
            learned,
        },
        Err(err) => TestResult {
            success: false,
            message: None,
            error_code: Some(err.code),
            error_message: Some(err.message),
            latency_ms,
            details: None,
            learned: Learned::default(),
        },
    };
    let label = if result.success { "success" } else { "failure" };
    metrics::counter!(metric::CONNECTION_TESTS, "result" => label).increment(1);
    tracing::info!(
        org_id = %ctx.org_id,
        connector_type = connector.connector_type(),
        success = result.success,
        error_code = result.error_code.map(ErrorCode::as_str),
        latency_ms,
        "connection test finished"
    );
    result
}

/// What the config parsers' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ConnectorConfig, ValidationEnv};

    /// A config from a JSON object literal.
    pub fn cfg(value: serde_json::Value) -> ConnectorConfig {
        let serde_json::Value::Object(map) = value else {
            panic!("not an object")
        };
        ConnectorConfig::new(map)
    }

    /// The default blocked networks; plain http allowed or not.
    pub fn env(allow_plain_http: bool) -> ValidationEnv {
        ValidationEnv {
            blocked_networks: crate::config::parse_networks(
                crate::config::DEFAULT_BLOCKED_NETWORKS,
            )
            .expect("the default networks parse"),
            allow_plain_http,
        }
    }
}

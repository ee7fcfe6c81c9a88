//! The one place the application is built: database, keyring, connector registry, archive and
//! services, for `serve`, `worker`, the CLI and the tests alike. Building also checks that the
//! configured encryption keys fit the database, so a wrong key stops the process at
//! start instead of answering 500 for every connection later.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;

use crate::archive::{Archive, ArchiveError};
use crate::auth::TokenIssuer;
use crate::auth::password::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::config::Settings;
use crate::connectors::{ConnectorEnv, Registry};
use crate::crypto::Keyring;
use crate::crypto::cursor::Cursors;
use crate::service::ack_poll::AckPollService;
use crate::service::acks::CallbackService;
use crate::service::audit::AuditService;
use crate::service::connections::{ConnectionService, KeyCheckError};
use crate::service::delivery::DeliveryService;
use crate::service::login::LoginService;
use crate::service::operations::OperationsService;
use crate::service::orders::OrderService;
use crate::service::preview::PreviewService;
use crate::store::{self, Store, StoreError};

/// Why the application could not be built; each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database is unreachable or a migration failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The archive cannot be opened.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The encryption keys do not fit the stored configs.
    #[error(transparent)]
    KeyCheck(#[from] KeyCheckError),
}

/// Everything the API, the workers and the CLI use. Cheap to share (`Arc<App>`).
pub struct App {
    /// The settings it was built from.
    pub settings: Settings,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Config cipher keys.
    pub keyring: Arc<Keyring>,
    /// Access tokens.
    pub tokens: Arc<TokenIssuer>,
    /// List cursors (sealed positions).
    pub cursors: Cursors,
    /// Connector types.
    pub registry: Arc<Registry>,
    /// Shared connector resources (dropzone root, network policy, SFTP session pool).
    pub connector_env: Arc<ConnectorEnv>,
    /// The export archive.
    pub archive: Archive,
    /// Connection use cases.
    pub connections: ConnectionService,
    /// Logging in.
    pub login: LoginService,
    /// Drafts, pushes and exports.
    pub orders: OrderService,
    /// What a push would deliver.
    pub previews: PreviewService,
    /// The audit log.
    pub audit: AuditService,
    /// Delivering exports.
    pub delivery: DeliveryService,
    /// Reading acknowledgement files.
    pub ack_polls: AckPollService,
    /// Readiness and metrics.
    pub operations: OperationsService,
    /// Acknowledgements the ERP sends to us (signed callbacks).
    pub callbacks: CallbackService,
    /// Notified on every push, so an in-process delivery worker starts at once.
    pub wake_delivery: Arc<Notify>,
    /// Notified on every push, so other processes' workers are told (`workers/announce.rs`).
    pub announce_pushes: Arc<Notify>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("registry", &self.registry)
            .field("archive", &self.archive)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens the database named in the settings, applies migrations and builds everything.
    pub async fn build(settings: Settings) -> Result<Arc<App>, BuildError> {
        let store = store::connect(&settings.database.url).await?;
        store.migrate().await?;
        Self::assemble(settings, store, Registry::default()).await
    }

    /// Builds on an open, migrated store with a chosen registry (tests add `MOCK`).
    pub async fn assemble(
        settings: Settings,
        store: Arc<dyn Store>,
        registry: Registry,
    ) -> Result<Arc<App>, BuildError> {
        let keyring = Arc::new(settings.keyring.clone());
        let tokens = Arc::new(TokenIssuer::new(&settings.jwt_secret));
        let cursors = Cursors::new(&settings.jwt_secret);
        let registry = Arc::new(registry);
        let connector_env = Arc::new(ConnectorEnv::from_settings(&settings.connectors));
        let archive = Archive::open(&settings.object_storage)?;
        let wake_delivery = Arc::new(Notify::new());
        let announce_pushes = Arc::new(Notify::new());
        let connections = ConnectionService::new(
            store.clone(),
            keyring.clone(),
            registry.clone(),
            connector_env.clone(),
        );
        connections.verify_key_check().await?;
        let login = LoginService::new(
            store.clone(),
            tokens.clone(),
            Arc::new(Hasher::for_this_machine()),
            Arc::new(LoginThrottle::default()),
        );
        let orders = OrderService::new(
            store.clone(),
            connections.clone(),
            archive.clone(),
            [wake_delivery.clone(), announce_pushes.clone()],
        );
        let previews = PreviewService::new(store.clone(), connections.clone());
        let callbacks = CallbackService::new(store.clone(), registry.clone(), connections.clone());
        let audit_store = store.clone();
        let operations = OperationsService::new(store.clone(), crate::telemetry::metrics_handle());
        let ack_polls =
            AckPollService::new(store.clone(), connections.clone(), settings.ack_poll.lease);
        let delivery = DeliveryService::new(
            store.clone(),
            connections.clone(),
            archive.clone(),
            settings.delivery.policy,
            settings.delivery.lease,
        );
        Ok(Arc::new(App {
            settings,
            store,
            keyring,
            tokens,
            cursors,
            registry,
            connector_env,
            archive,
            connections,
            login,
            orders,
            previews,
            audit: AuditService::new(audit_store),
            delivery,
            ack_polls,
            operations,
            callbacks,
            wake_delivery,
            announce_pushes,
            metrics: crate::telemetry::metrics_handle(),
        }))
    }
}

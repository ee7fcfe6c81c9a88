//! What handlers may use: the use cases (never the store), and the few facts about the running
//! service that pages need. Built once from the application.

use std::sync::Arc;

use crate::app::App;
use crate::crypto::SecretString;
use crate::crypto::cursor::Cursors;
use crate::service::ack_poll::AckPollService;
use crate::service::acks::CallbackService;
use crate::service::audit::AuditService;
use crate::service::connections::ConnectionService;
use crate::service::login::LoginService;
use crate::service::operations::OperationsService;
use crate::service::orders::OrderService;
use crate::service::preview::PreviewService;

/// The handlers' view of the application; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Logging in and out, and checking tokens.
    pub login: LoginService,
    /// Connector configs, tests and health.
    pub connections: ConnectionService,
    /// Drafts, pushes and exports.
    pub orders: OrderService,
    /// What a push would deliver.
    pub previews: PreviewService,
    /// The audit log.
    pub audit: AuditService,
    /// Reading acknowledgement files now.
    pub ack_polls: AckPollService,
    /// Acknowledgements the ERP sends to us.
    pub callbacks: CallbackService,
    /// Readiness and metrics.
    pub operations: OperationsService,
    /// List cursors.
    pub cursors: Cursors,
    /// Where users reach the service (`PUBLIC_URL`).
    pub public_url: Option<String>,
    /// The secret the console derives its CSRF tokens from (`JWT_SECRET`).
    pub console_secret: SecretString,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl From<Arc<App>> for AppState {
    fn from(app: Arc<App>) -> Self {
        Self {
            login: app.login.clone(),
            connections: app.connections.clone(),
            orders: app.orders.clone(),
            previews: app.previews.clone(),
            audit: app.audit.clone(),
            ack_polls: app.ack_polls.clone(),
            callbacks: app.callbacks.clone(),
            operations: app.operations.clone(),
            cursors: app.cursors.clone(),
            public_url: app.settings.http.public_url.clone(),
            console_secret: app.settings.jwt_secret.clone(),
        }
    }
}

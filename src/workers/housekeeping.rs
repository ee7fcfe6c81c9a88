//! Periodic tidying: idle SFTP sessions are closed even when no export comes along to notice,
//! expired login-throttle state is forgotten so spraying accounts cannot grow memory, and
//! revocations of tokens that expired anyway are purged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;

/// How often to tidy.
const INTERVAL: Duration = Duration::from_secs(30);

/// One round of tidying.
pub async fn tidy_once(app: &App) {
    app.connector_env.sftp_pool.prune();
    app.login.throttle().prune();
    if let Err(err) = app.login.forget_expired_revocations().await {
        tracing::warn!(error = %err, "could not purge expired token revocations");
    }
}

/// Tidies every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => tidy_once(&app).await,
            _ = shutdown.changed() => break,
        }
    }
}

//! Announces pushes to the delivery workers of other processes (PostgreSQL `NOTIFY`),
//! coalesced: however many pushes arrive, at most one announcement per [`GATHER`] plus the
//! time one takes. The pushing process's own worker is woken in-process at once.
//!
//! Why not `NOTIFY` inside each push's transaction (delivered exactly at commit)? PostgreSQL
//! serialises the commits of notifying transactions on one lock that is held across the WAL
//! flush, so every push waited for the previous one's flush: about one push per flush, ~1,000/s
//! on this machine, and no group commit. An announcement after the commit keeps the guarantee
//! that matters (no worker wakes before the export is visible); the workers' poll interval
//! remains the fallback if one is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::store::StoreError;

/// How long an announcement waits for more pushes to join it.
pub const GATHER: Duration = Duration::from_millis(2);

/// Sends one announcement.
pub async fn announce_once(app: &App) -> Result<(), StoreError> {
    app.delivery.announce_pushes().await
}

/// Announces after pushes (`App::announce_pushes`) until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = app.announce_pushes.notified() => {}
            _ = shutdown.changed() => break,
        }
        tokio::time::sleep(GATHER).await;
        if let Err(err) = announce_once(&app).await {
            tracing::warn!(error = %err, "could not announce pushes; other workers find them on their next poll");
        }
    }
}

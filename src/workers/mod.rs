//! Background work. Each worker is a public single step that tests call directly, plus a loop
//! that runs it until shutdown:
//!
//! - `delivery`: [`delivery::DeliveryWorker::deliver_one`] — claim and deliver exports.
//! - `announce`: [`announce::announce_once`] — tell other processes' workers about pushes.
//! - `acks`: [`acks::poll_once`] — read one connection's acknowledgement files.
//! - `housekeeping`: [`housekeeping::tidy_once`] — close idle SFTP sessions, forget expired
//!   login throttle state.
//!
//! `orderflow serve` runs them beside the HTTP API; `orderflow worker` runs them alone. Neither
//! knows about HTTP.

pub mod acks;
pub mod announce;
pub mod delivery;
pub mod housekeeping;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;

/// The running workers of one process.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Starts every background worker.
    pub fn spawn(app: Arc<App>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let delivery = delivery::DeliveryWorker::new(app.clone(), app.settings.delivery.limits);
        tasks.spawn(delivery.run(stopped.clone()));
        tasks.spawn(announce::run(app.clone(), stopped.clone()));
        tasks.spawn(acks::run(app.clone(), stopped.clone()));
        tasks.spawn(housekeeping::run(app, stopped));
        Self { stop, tasks }
    }

    /// Asks every worker to stop and waits up to `grace` for work in progress to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("workers did not finish within the shutdown grace period");
            self.tasks.abort_all();
        }
    }
}

//! The acknowledgement poller: every `ACK_POLL_INTERVAL_SECS`, one poll of each active
//! connection whose circuit is closed (`service::ack_poll` reads and applies the files).
//!
//! - With several workers on one database, a lease per connection makes one poll at a time.
//! - Every connection is polled in a task of its own with its own time limit, so one slow or
//!   failing server never delays another org's polling.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::app::App;
use crate::service::ack_poll::AckPollError;

/// The longest one poll may run (a hung server costs its own connection, nobody else).
const POLL_TIME_LIMIT: Duration = Duration::from_secs(600);

/// Polls every active connection each `ACK_POLL_INTERVAL_SECS` until `shutdown` turns true.
/// A connection whose previous poll still runs is skipped that round.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let running: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut tick = tokio::time::interval(app.settings.ack_poll.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let connections = match app.ack_polls.connections_to_poll().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list connections to poll");
                continue;
            }
        };
        for connection in connections {
            let fresh = running
                .lock()
                .map(|mut r| r.insert(connection.id))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let app = app.clone();
            let running = running.clone();
            tokio::spawn(async move {
                // Bounded: a server that hangs costs its own connection a round, nobody else.
                match tokio::time::timeout(POLL_TIME_LIMIT, app.ack_polls.poll_once(&connection))
                    .await
                {
                    Ok(Ok(_)) | Ok(Err(AckPollError::Busy | AckPollError::NoInbox)) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(connection_id = %connection.id, error = %err, "ack poll failed")
                    }
                    Err(_) => {
                        tracing::warn!(connection_id = %connection.id, "ack poll took too long and was stopped")
                    }
                }
                if let Ok(mut r) = running.lock() {
                    r.remove(&connection.id);
                }
            });
        }
    }
}

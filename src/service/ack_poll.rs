//! Reading acknowledgement files: for a connection whose connector reads ack files,
//! list the folder, read the `ack_`/`error_` files, apply them to the org's SENT exports in
//! one transaction with their audit rows, then move each file to `processed/` or `error/`.
//! The background poller (`workers::acks`) and "poll now" (API, console) both run this.
//!
//! - Idempotent: only SENT exports change, so a file seen twice (a crash between the commit and
//!   the move) changes nothing and writes no second audit row; it just moves.
//! - An ack for an export still PENDING waits in place until the export is SENT.
//! - With several workers on one database, a lease per connection makes one poll at a time.
//! - Every connection is polled in a task of its own with its own time limit, so one slow or
//!   failing server never delays another org's polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::connectors::{AckFolder, AckInbox, ConnectorError, ErrorCode};
use crate::domain::ack::{
    AckKind, AckOutcome, MAX_ACK_FILE_BYTES, Malformed, classify_name, parse_body,
};
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::connection::Connection;
use crate::domain::export::{Export, ExportStatus};
use crate::service::ServiceError;
use crate::service::acks::Verdict;
use crate::service::connections::ConnectionService;
use crate::store::{Store, StoreError};
use crate::telemetry::metric;

/// What one poll did with the files it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AckCounts {
    /// `ack_` files moved to `processed/`.
    pub processed: u64,
    /// `error_` files moved to `processed/`.
    pub rejected: u64,
    /// Files moved to `error/` because they could not be read.
    pub malformed: u64,
    /// Files moved to `error/` because they name no export of the org.
    pub unmatched: u64,
    /// Files left in place: their export is not SENT yet.
    pub waiting: u64,
}

/// Why a poll did not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AckPollError {
    /// Another worker is polling this connection right now.
    #[error("another worker is polling this connection")]
    Busy,
    /// The connection has no acknowledgement folder to poll.
    #[error("the connection has no ack_path")]
    NoInbox,
    /// The folder could not be listed, or the config read.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Files read and handled at once.
const CONCURRENCY: usize = 32;
/// Files per batch (see `poll_leased`).
const BATCH: usize = 1000;

/// One file read: what it answers and what it says.
struct Judged<'a> {
    name: String,
    kind: AckKind,
    export: Option<&'a Export>,
    body: Result<AckOutcome, Malformed>,
}

/// One file and what to do with it.
struct Handled {
    name: String,
    to: AckFolder,
    kind: AckKind,
    audit: Option<(&'static str, serde_json::Value)>,
}

impl AckCounts {
    fn add(&mut self, other: AckCounts) {
        self.processed += other.processed;
        self.rejected += other.rejected;
        self.malformed += other.malformed;
        self.unmatched += other.unmatched;
        self.waiting += other.waiting;
    }
}

/// Acknowledgement polls.
#[derive(Clone)]
pub struct AckPollService {
    store: Arc<dyn Store>,
    connections: ConnectionService,
    lease: Duration,
}

impl std::fmt::Debug for AckPollService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckPollService").finish_non_exhaustive()
    }
}

/// How long "poll now" waits for a poll of the same connection that is already running.
const WAIT_FOR_RUNNING_POLL: Duration = Duration::from_secs(30);

impl AckPollService {
    /// Builds the service; a poll's lease on its connection lasts `lease` unless renewed.
    pub fn new(store: Arc<dyn Store>, connections: ConnectionService, lease: Duration) -> Self {
        Self {
            store,
            connections,
            lease,
        }
    }

    /// The connections the background poller reads now: active ones whose circuit is closed
    /// (an ERP that cannot be reached is not polled until a delivery probe finds it back).
    pub async fn connections_to_poll(&self) -> Result<Vec<Connection>, StoreError> {
        let active = self.store.active_connections().await?;
        let ids: Vec<Uuid> = active.iter().map(|c| c.id).collect();
        let circuits = self.store.circuits(&ids).await?;
        poll_ages().active(&active);
        Ok(active
            .into_iter()
            .filter(|c| {
                circuits.get(&c.id).is_none_or(|circuit| {
                    circuit.state == crate::domain::delivery::CircuitState::Closed
                })
            })
            .collect())
    }

    /// One poll of the org's active connection of type `slug`, for the API and the console
    /// alike: waits up to 30 s for a poll already running (the background poller, another
    /// request), then polls. Counts as one of the org's slow pieces of work.
    pub async fn poll_now(&self, org_id: Uuid, slug: &str) -> Result<AckCounts, ServiceError> {
        let connection = self.connections.active_for_slug(org_id, slug).await?;
        self.poll_connection(connection).await
    }

    /// [`AckPollService::poll_now`] for the org's active connection, whatever its type.
    pub async fn poll_active(&self, org_id: Uuid) -> Result<AckCounts, ServiceError> {
        let connection =
            self.store.active_connection(org_id).await?.ok_or_else(|| {
                ServiceError::Conflict("There is no active connector to poll".into())
            })?;
        self.poll_connection(connection).await
    }

    async fn poll_connection(&self, connection: Connection) -> Result<AckCounts, ServiceError> {
        let _place = self.connections.enter_slow_work(connection.org_id)?;
        let deadline = tokio::time::Instant::now() + WAIT_FOR_RUNNING_POLL;
        loop {
            match self.poll_once(&connection).await {
                Ok(counts) => return Ok(counts),
                Err(AckPollError::Busy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(AckPollError::Busy) => {
                    return Err(ServiceError::Conflict(
                        "Another acknowledgement poll of this connection is still running".into(),
                    ));
                }
                Err(AckPollError::NoInbox) => {
                    return Err(ServiceError::Conflict(
                        "The connection reads no acknowledgement folder (no ack_path, or its type is acknowledged by answers or callbacks); there is nothing to poll".into(),
                    ));
                }
                Err(AckPollError::Connector(err)) if err.code == ErrorCode::ConfigUnreadable => {
                    return Err(ServiceError::ConfigUnreadable);
                }
                Err(AckPollError::Connector(err)) => {
                    return Err(ServiceError::Unreachable(format!(
                        "{}: {}",
                        err.code, err.message
                    )));
                }
                Err(AckPollError::Store(err)) => return Err(err.into()),
            }
        }
    }

    /// Polls one connection's ack folder once, under its lease (renewed while the poll runs, so
    /// a crashed worker's lease runs out within `ACK_POLL_LEASE_SECS`).
    pub async fn poll_once(&self, connection: &Connection) -> Result<AckCounts, AckPollError> {
        let owner = Uuid::new_v4();
        let lease = self.lease;
        let until = || crate::store::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        if !self
            .store
            .acquire_ack_lease(connection.id, owner, until())
            .await?
        {
            return Err(AckPollError::Busy);
        }
        let renew = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                match self
                    .store
                    .acquire_ack_lease(connection.id, owner, until())
                    .await
                {
                    Ok(true) => {}
                    // Taken over after a stall: harmless (applying is idempotent), worth a line.
                    Ok(false) => {
                        tracing::warn!(connection_id = %connection.id, "ack lease lost to another worker")
                    }
                    Err(err) => {
                        tracing::warn!(connection_id = %connection.id, error = %err, "could not renew the ack lease")
                    }
                }
            }
        };
        let result = tokio::select! {
            result = poll_leased(&self.store, &self.connections, connection) => result,
            never = renew => never,
        };
        if let Err(err) = self.store.release_ack_lease(connection.id, owner).await {
            tracing::warn!(connection_id = %connection.id, error = %err, "could not release the ack lease; it runs out by itself");
        }
        if result.is_ok() {
            poll_ages().succeeded(connection.id);
        }
        result
    }
}

/// When each connection's acknowledgements were last read successfully (or, never read yet,
/// first seen), for the one gauge [`metric::ACK_OLDEST_POLL`].
#[derive(Default)]
struct PollAges(Mutex<HashMap<Uuid, i64>>);

fn poll_ages() -> &'static PollAges {
    static AGES: std::sync::OnceLock<PollAges> = std::sync::OnceLock::new();
    AGES.get_or_init(PollAges::default)
}

impl PollAges {
    fn succeeded(&self, connection: Uuid) {
        self.update(|ages| {
            ages.insert(connection, chrono::Utc::now().timestamp());
        });
    }

    /// The connections to poll now: new ones count from now, gone ones are forgotten.
    fn active(&self, connections: &[Connection]) {
        let now = chrono::Utc::now().timestamp();
        self.update(|ages| {
            ages.retain(|id, _| connections.iter().any(|c| c.id == *id));
            for c in connections {
                ages.entry(c.id).or_insert(now);
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut HashMap<Uuid, i64>)) {
        let mut ages = match self.0.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut ages);
        if let Some(oldest) = ages.values().min() {
            metrics::gauge!(metric::ACK_OLDEST_POLL).set(*oldest as f64);
        }
    }
}

async fn poll_leased(
    store: &Arc<dyn Store>,
    connections: &ConnectionService,
    connection: &Connection,
) -> Result<AckCounts, AckPollError> {
    let Some(inbox) = open_inbox(store, connections, connection).await? else {
        return Err(AckPollError::NoInbox);
    };
    let inbox = inbox.as_ref();
    let started = std::time::Instant::now();
    let names = inbox.list().await?;
    let listed = started.elapsed();
    let candidates: Vec<(String, AckKind, String)> = names
        .into_iter()
        .filter_map(|name| {
            let (kind, export) = classify_name(&name)?;
            let export = export.to_owned();
            Some((name, kind, export))
        })
        .collect();
    if candidates.is_empty() {
        return Ok(AckCounts::default());
    }
    let mut wanted: Vec<String> = candidates.iter().map(|(_, _, e)| e.clone()).collect();
    wanted.sort();
    wanted.dedup();
    let exports: HashMap<String, Export> = store
        .exports_by_file_names(connection.org_id, &wanted)
        .await?
        .into_iter()
        .map(|e| (e.file_name.clone(), e))
        .collect();

    // In batches, so that the database work and the moves of one batch overlap the reads of
    // the next (on SFTP each is a round trip per file, pipelined over the pooled sessions).
    let mut batches = candidates.chunks(BATCH);
    let mut counts = AckCounts::default();
    let mut audits = Vec::new();
    let mut judged = match batches.next() {
        Some(batch) => read_batch(inbox, &exports, batch).await,
        None => Vec::new(),
    };
    loop {
        let next = batches.next();
        let (next_judged, settled) = futures::join!(
            async {
                match next {
                    Some(batch) => Some(read_batch(inbox, &exports, batch).await),
                    None => None,
                }
            },
            settle_batch(store, connection, inbox, judged),
        );
        let (batch_counts, batch_audits) = settled?;
        counts.add(batch_counts);
        audits.extend(batch_audits);
        match next_judged {
            Some(j) => judged = j,
            None => break,
        }
    }
    tracing::debug!(?listed, total = ?started.elapsed(), files = candidates.len(), "ack poll timings");
    for audit in audits {
        store.append_audit(&audit).await?;
    }
    metrics::counter!(metric::ACK_FILES, "outcome" => "waiting").increment(counts.waiting);
    tracing::info!(connection_id = %connection.id, processed = counts.processed, rejected = counts.rejected,
        malformed = counts.malformed, unmatched = counts.unmatched, waiting = counts.waiting, "ack poll finished");
    Ok(counts)
}

/// Reads and judges one batch of files (concurrently: on SFTP the reads are pipelined).
async fn read_batch<'a>(
    inbox: &dyn AckInbox,
    exports: &'a HashMap<String, Export>,
    batch: &[(String, AckKind, String)],
) -> Vec<Judged<'a>> {
    futures::stream::iter(batch.iter().cloned())
            .map(|(name, kind, export_name)| {
                let export = exports.get(&export_name);
                async move {
                    let body = match inbox.read(&name, MAX_ACK_FILE_BYTES as u64).await {
                        Ok(Some(bytes)) => parse_body(kind, &bytes),
                        Ok(None) => Err(Malformed("larger than 1 MiB".into())),
                        // Gone meanwhile (another poller moved it) or unreadable: next time.
                        Err(err) => return Err((name, err)),
                    };
                    Ok(Judged {
                        name,
                        kind,
                        export,
                        body,
                    })
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|r| async move {
                match r {
                    Ok(v) => Some(v),
                    Err((name, err)) => {
                        tracing::warn!(file = %name, error = %err, "ack file could not be read; left for the next poll");
                        None
                    }
                }
            })
            .collect()
            .await
}

/// Files sorted by what a batch does with them: moved without a change (malformed, unmatched,
/// already settled), or applied as a verdict first; and how many wait for their delivery.
struct Sorted {
    handled: Vec<Handled>,
    to_apply: Vec<(Verdict, String, AckKind)>,
    waiting: u64,
}

/// Sorts a judged batch (pure but for the warnings it logs).
fn sort_judged(connection: &Connection, judged: Vec<Judged<'_>>) -> Sorted {
    let mut handled: Vec<Handled> = Vec::new();
    let mut to_apply: Vec<(Verdict, String, AckKind)> = Vec::new();
    let mut waiting = 0;
    for Judged {
        name,
        kind,
        export,
        body,
    } in judged
    {
        match (body, export) {
            (Err(malformed), _) => {
                tracing::warn!(connection_id = %connection.id, file = %name, reason = %malformed, "malformed ack file moved to error/");
                handled.push(Handled {
                    name: name.clone(),
                    to: AckFolder::Error,
                    kind,
                    audit: Some((
                        action::ACK_FILE_MALFORMED,
                        json!({ "file_name": name, "reason": malformed.0 }),
                    )),
                });
            }
            (Ok(_), None) => {
                tracing::warn!(connection_id = %connection.id, file = %name, "ack file names no export of this org; moved to error/");
                handled.push(Handled {
                    name: name.clone(),
                    to: AckFolder::Error,
                    kind,
                    audit: Some((action::ACK_FILE_UNMATCHED, json!({ "file_name": name }))),
                });
            }
            (Ok(_), Some(export)) if export.status == ExportStatus::Pending => {
                waiting += 1;
            }
            (Ok(outcome), Some(export)) if export.status == ExportStatus::Sent => {
                let mut via = serde_json::Map::new();
                via.insert("file_name".into(), json!(name));
                let verdict = Verdict {
                    export: export.clone(),
                    outcome,
                    via,
                };
                to_apply.push((verdict, name, kind));
            }
            // Already ACKED or FAILED: nothing changes; the file is done with.
            (Ok(_), Some(_)) => handled.push(Handled {
                name,
                to: AckFolder::Processed,
                kind,
                audit: None,
            }),
        }
    }

    Sorted {
        handled,
        to_apply,
        waiting,
    }
}

/// Applies one judged batch (one transaction with its audit rows), then moves its files;
/// answers its counts and the audit rows of the files it moved to `error/`.
async fn settle_batch(
    store: &Arc<dyn Store>,
    connection: &Connection,
    inbox: &dyn AckInbox,
    judged: Vec<Judged<'_>>,
) -> Result<(AckCounts, Vec<NewAuditEntry>), AckPollError> {
    let Sorted {
        mut handled,
        to_apply,
        waiting,
    } = sort_judged(connection, judged);
    let verdicts: Vec<Verdict> = to_apply.iter().map(|(v, _, _)| v.clone()).collect();
    let changed = crate::service::acks::apply(store, &verdicts).await?;
    if !changed.is_empty() {
        crate::failpoint::pause_if_named("ack_after_commit").await;
    }
    for (_, name, kind) in to_apply {
        handled.push(Handled {
            name,
            to: AckFolder::Processed,
            kind,
            audit: None,
        });
    }
    let settled = move_files(inbox, handled).await;
    let mut counts = AckCounts {
        waiting,
        ..AckCounts::default()
    };
    let audits = count_moved(connection, settled, &mut counts);
    Ok((counts, audits))
}

/// Moves every handled file (after the commit: a crash in between only means the file is
/// seen again, and then it changes nothing); each with whether it moved.
async fn move_files(inbox: &dyn AckInbox, handled: Vec<Handled>) -> Vec<(Handled, bool)> {
    futures::stream::iter(handled)
        .map(|h| async move {
            let moved = match inbox.settle(&h.name, h.to).await {
                Ok(_) => true,
                Err(err) => {
                    tracing::warn!(file = %h.name, error = %err, "ack file could not be moved; it is handled again next time");
                    false
                }
            };
            (h, moved)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Counts the files that moved and gives the audit rows of those moved to `error/`.
fn count_moved(
    connection: &Connection,
    settled: Vec<(Handled, bool)>,
    counts: &mut AckCounts,
) -> Vec<NewAuditEntry> {
    let mut audits = Vec::new();
    for (h, moved) in settled {
        if !moved {
            continue;
        }
        let outcome = match (h.to, h.kind, &h.audit) {
            (AckFolder::Processed, AckKind::Acked, _) => {
                counts.processed += 1;
                "processed"
            }
            (AckFolder::Processed, AckKind::Rejected, _) => {
                counts.rejected += 1;
                "rejected"
            }
            (AckFolder::Error, _, Some((a, _))) if *a == action::ACK_FILE_UNMATCHED => {
                counts.unmatched += 1;
                "unmatched"
            }
            (AckFolder::Error, _, _) => {
                counts.malformed += 1;
                "malformed"
            }
        };
        metrics::counter!(metric::ACK_FILES, "outcome" => outcome).increment(1);
        if let Some((action, details)) = h.audit {
            audits.push(NewAuditEntry {
                org_id: connection.org_id,
                actor: Actor::system(),
                action,
                entity_type: "erp_connection",
                entity_id: Some(connection.id.to_string()),
                details,
            });
        }
    }
    audits
}

/// The connection's ack folder through its connector (pooled sessions), or None when it has
/// none.
async fn open_inbox(
    store: &Arc<dyn Store>,
    connections: &ConnectionService,
    connection: &Connection,
) -> Result<Option<Box<dyn AckInbox>>, AckPollError> {
    let org = store.org_by_id(connection.org_id).await?.ok_or_else(|| {
        ConnectorError::with_detail(ErrorCode::ConfigUnreadable, "the org is gone")
    })?;
    let target = connections.open_target(connection, &org)?;
    Ok(target
        .connector
        .ack_inbox(&target.ctx, target.config())
        .await?)
}

//! The delivery worker (SPEC §7): claims due exports with a lease and delivers each one —
//! render, archive (and record the hash), deliver, then mark SENT and the draft PUSHED with an
//! audit row in one transaction. Transient failures retry with exponential backoff and jitter
//! up to `EXPORT_MAX_ATTEMPTS`; permanent ones fail at once (the draft goes ERROR).
//!
//! Exactly once: a claim reserves an export for one worker (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL); an export whose worker died is claimed again once its lease runs out, and the
//! dropzone write is idempotent (the same bytes under the same name count as delivered), so a
//! crash between writing and recording never makes a second file.
//!
//! Fairness: at most `concurrency` deliveries run at once and at most `per_connection` for
//! one connection; a connection at its limit is left out of the next claim, so one slow or
//! dead dropzone cannot take every slot.
//!
//! Throughput: the database work is done per claimed batch, not per export — connections,
//! orgs and drafts are loaded once, archive records written in one statement — and finished
//! attempts are recorded together (one transaction for whatever finished meanwhile).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use uuid::Uuid;

use crate::app::App;
use crate::connectors::{
    ConnectionKey, Connector, ConnectorConfig, ConnectorContext, ConnectorError, Delivery,
    ErrorCode, Learned, Rendered, run_export,
};
use crate::domain::ack::AckOutcome;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::draft::DraftOrder;
use crate::domain::export::{Export, ExportStatus, backoff, delivery_error, storage_key};
use crate::domain::org::Org;
use crate::service::acks::Verdict;
use crate::store::{ArchiveRecord, AttemptOutcome, ClaimRequest, FinishedAttempt, StoreError};
use crate::telemetry::metric;

/// How much delivery runs at once.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryLimits {
    /// Deliveries in flight in this process.
    pub concurrency: usize,
    /// Deliveries in flight to one connection.
    pub per_connection: usize,
    /// Longest sleep between looks at the queue when nothing wakes the worker.
    pub poll_interval: Duration,
}

impl Default for DeliveryLimits {
    fn default() -> Self {
        // A connection's exports are claimed half its limit at a time, so the limit sets the
        // batch size and with it the database work per export: 64 (batches of 32) delivered
        // 1.5-1.8x what 32 did in the pipeline bench to a filesystem and to OpenSSH, 128
        // another 5-10% over HTTP and SFTP, and 256 another 9-17% over HTTP and 11-18% to
        // OpenSSH (where a batch of 64 waited on the previous one: the connection was
        // excluded from claims while it was being prepared), with push→SENT during a burst
        // halved. One dead dropzone still holds at most half the slots. An ERP that cannot
        // take that many requests at once wants a lower DELIVERY_PER_CONNECTION.
        Self {
            concurrency: 512,
            per_connection: 256,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl DeliveryLimits {
    /// The limits the settings name (`DELIVERY_CONCURRENCY`, `DELIVERY_PER_CONNECTION`).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            concurrency: settings.delivery_concurrency,
            per_connection: settings.delivery_per_connection,
            ..Default::default()
        }
    }
}

/// How long a push wake-up waits for more pushes before claiming (a latency cost far below a
/// delivery's, and it turns a burst of pushes into one claim).
const PUSH_GATHER: Duration = Duration::from_millis(3);
/// How long the recorder waits for more finished attempts before writing a batch.
const RECORD_GATHER: Duration = Duration::from_millis(2);
/// Most attempts recorded in one transaction.
const RECORD_BATCH: usize = 256;

/// What one delivery step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing was due.
    Idle,
    /// Delivered: SENT.
    Sent(Uuid),
    /// A transient failure; due again later.
    Retrying(Uuid, ErrorCode),
    /// Failed for good.
    Failed(Uuid, ErrorCode),
    /// Another worker took the export over (our lease ran out); nothing recorded.
    LostLease(Uuid),
}

/// The worker failed to talk to its own database (the loop retries; a lease that runs out
/// hands the export to the next claim).
#[derive(Debug, thiserror::Error)]
#[error("delivery worker: {0}")]
pub struct WorkerError(#[from] StoreError);

/// The longest `Retry-After` honoured: an ERP asking for a day is retried sooner, within
/// the attempts budget, rather than holding the export hostage.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(15 * 60);

/// An attempt's failure, before it is classified as retry or final.
#[derive(Debug, Clone)]
struct Failure {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Self {
        Failure {
            code: err.code,
            message: err.message,
            retry_after: err.retry_after,
            details: err.details,
        }
    }
}

/// A delivered export: where it went, and the ERP's verdict when its answer carried one.
#[derive(Debug, Clone)]
struct SentTo {
    path: String,
    ack: Option<AckOutcome>,
}

fn failure(code: ErrorCode, detail: impl std::fmt::Display) -> Failure {
    ConnectorError::with_detail(code, detail).into()
}

/// A claimed connection, opened once per batch.
struct Target {
    connection: Connection,
    connector: Arc<dyn Connector>,
    config: ConnectorConfig,
    ctx: ConnectorContext,
}

/// An export ready to deliver: where, and the exact bytes (archived and recorded).
struct Job {
    export: Export,
    target: Arc<Target>,
    content: Rendered,
}

/// A finished attempt on its way to being recorded.
struct Done {
    export: Export,
    result: Result<SentTo, Failure>,
}

/// Delivers exports for one process.
pub struct DeliveryWorker {
    app: Arc<App>,
    id: Uuid,
    limits: DeliveryLimits,
    slots: Arc<Semaphore>,
    busy: Mutex<HashMap<Uuid, usize>>,
    lanes: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    freed: Notify,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("id", &self.id)
            .field("limits", &self.limits)
            .finish()
    }
}

impl DeliveryWorker {
    /// A worker with its own lease identity.
    pub fn new(app: Arc<App>, limits: DeliveryLimits) -> Arc<Self> {
        Arc::new(Self {
            app,
            id: Uuid::new_v4(),
            slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
            busy: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        })
    }

    /// The lease owner id this worker claims with.
    pub fn id(&self) -> Uuid {
        self.id
    }

    fn claim_request<'a>(&self, limit: u32, exclude: &'a [Uuid]) -> ClaimRequest<'a> {
        let now = crate::store::now();
        let lease = chrono::Duration::from_std(self.app.settings.export_lease)
            .unwrap_or(chrono::Duration::seconds(60));
        ClaimRequest {
            worker: self.id,
            now,
            lease_until: now + lease,
            limit,
            per_connection: u32::try_from(self.batch_per_connection()).unwrap_or(u32::MAX),
            exclude_connections: exclude,
        }
    }

    /// A connection's exports are claimed half its limit at a time, and not while half its
    /// limit is in flight: at most its limit is ever in flight or waiting, so a slow or dead
    /// dropzone holds a bounded share of the slots, and a busy one always has the next batch
    /// claimed before the current one drains.
    fn batch_per_connection(&self) -> usize {
        (self.limits.per_connection / 2).max(1)
    }

    /// One step, for tests and tools: claims one due export, delivers it and records it.
    pub async fn deliver_one(&self) -> Result<Step, WorkerError> {
        let claimed = self
            .app
            .store
            .claim_exports(&self.claim_request(1, &[]))
            .await?;
        if claimed.is_empty() {
            return Ok(Step::Idle);
        }
        let mut finished = Vec::new();
        for prepared in self.prepare(claimed).await? {
            finished.push(match prepared {
                Ok(job) => self.deliver(job).await,
                Err((export, result)) => (export, result),
            });
        }
        let done = finished
            .into_iter()
            .map(|(export, result)| Done { export, result })
            .collect();
        Ok(self.record(done).await?.pop().unwrap_or(Step::Idle))
    }

    /// Delivers until `shutdown` turns true, then lets deliveries in progress finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut notifications = self.subscribe().await;
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
        let recorder = tokio::spawn(self.clone().record_loop(done_rx));
        let mut tasks = tokio::task::JoinSet::new();
        let mut next_gauge = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            if tokio::time::Instant::now() >= next_gauge {
                self.update_queue_gauge().await;
                next_gauge = tokio::time::Instant::now() + Duration::from_secs(5);
            }
            let full = match self.claim_and_spawn(&mut tasks, &done_tx).await {
                Ok(full) => full,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming exports failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    false
                }
            };
            if full {
                // The claim filled every free slot: there may be more work right away.
                continue;
            }
            let sleep = self.sleep_for().await;
            let pushed = tokio::select! {
                () = self.app.wake_delivery.notified() => true,
                () = self.freed.notified() => false,
                Some(()) = next_notification(&mut notifications) => true,
                () = tokio::time::sleep(sleep) => {
                    if notifications.is_none() {
                        notifications = self.subscribe().await;
                    }
                    false
                }
                _ = shutdown.changed() => false,
            };
            if pushed {
                // Pushes come in bursts: gather them for a moment and claim them together,
                // instead of one claim per push.
                tokio::time::sleep(PUSH_GATHER).await;
                drain_notifications(&mut notifications);
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(done_tx);
        let _ = recorder.await;
    }

    async fn subscribe(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        match self.app.store.export_notifications().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for pushes; polling instead");
                None
            }
        }
    }

    /// How long to wait when nothing wakes us: until the next export can be claimed, at most
    /// the poll interval.
    async fn sleep_for(&self) -> Duration {
        let poll = self.limits.poll_interval;
        match self.app.store.next_due_at().await {
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(10), poll),
            _ => poll,
        }
    }

    async fn update_queue_gauge(&self) {
        if let Ok(depth) = self.app.store.queue_depth().await {
            metrics::gauge!(metric::EXPORT_QUEUE_DEPTH).set(depth as f64);
        }
    }

    /// Claims as many exports as there are free slots, prepares them as a batch and starts
    /// their deliveries; true when the claim came back full.
    async fn claim_and_spawn(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        done: &mpsc::UnboundedSender<Done>,
    ) -> Result<bool, WorkerError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(false);
        }
        let exclude: Vec<Uuid> = self
            .busy
            .lock()
            .map(|b| {
                b.iter()
                    .filter(|(_, n)| **n >= self.batch_per_connection())
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        let claimed = self
            .app
            .store
            .claim_exports(&self.claim_request(limit, &exclude))
            .await?;
        let full = claimed.len() >= free;
        tracing::debug!(
            claimed = claimed.len(),
            free,
            excluded = exclude.len(),
            "claimed exports"
        );
        if claimed.is_empty() {
            return Ok(false);
        }
        // Slots and per-connection counts are taken now, so the next claim already sees them;
        // preparing (database reads, rendering, archiving) and delivering run in a task of
        // their own, and the loop goes on claiming.
        let mut reserved = Vec::with_capacity(claimed.len());
        for export in claimed {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                // More claimed than free slots cannot happen (the claim's limit); if it did,
                // the lease simply runs out and the export is claimed again.
                break;
            };
            self.busy_add(export.erp_connection_id, 1);
            reserved.push((export, slot));
        }
        let worker = self.clone();
        let done = done.clone();
        tasks.spawn(async move { worker.run_batch(reserved, done).await });
        Ok(full)
    }

    /// Changes a connection's count of exports in flight; the new count.
    fn busy_add(&self, connection: Uuid, delta: isize) -> usize {
        let Ok(mut busy) = self.busy.lock() else {
            return 0;
        };
        let n = busy.entry(connection).or_default();
        *n = n.saturating_add_signed(delta);
        let now = *n;
        if now == 0 {
            busy.remove(&connection);
        }
        now
    }

    /// A delivery finished: wakes the claim loop when that can change what a claim takes —
    /// the connection dropped below its claiming threshold, or every slot had been taken.
    /// Waking it for every finished delivery would make a claim that finds nothing new (and
    /// walks the queue past the busy connection's exports) each time.
    fn finished(&self, connection: Uuid, slot: tokio::sync::OwnedSemaphorePermit) {
        let in_flight = self.busy_add(connection, -1);
        let was_full = self.slots.available_permits() == 0;
        drop(slot);
        if was_full || in_flight + 1 == self.batch_per_connection() {
            self.freed.notify_one();
        }
    }

    /// Prepares a claimed batch and delivers its exports concurrently (each under its
    /// connection's lane), handing every outcome to the recorder and freeing its slot.
    async fn run_batch(
        self: Arc<Self>,
        reserved: Vec<(Export, tokio::sync::OwnedSemaphorePermit)>,
        done: mpsc::UnboundedSender<Done>,
    ) {
        let (exports, mut slots): (Vec<Export>, Vec<_>) = reserved.into_iter().unzip();
        let connections: Vec<Uuid> = exports.iter().map(|e| e.erp_connection_id).collect();
        let started = std::time::Instant::now();
        let batch = match self.prepare(exports).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "preparing deliveries failed; their leases will run out and they are claimed again");
                for connection in connections {
                    self.busy_add(connection, -1);
                }
                drop(slots);
                self.freed.notify_one();
                return;
            }
        };
        tracing::debug!(
            prepare_ms = started.elapsed().as_millis() as u64,
            "prepared batch"
        );
        // Exports dropped while preparing (lease lost) give their slots back now.
        let prepared_connections: Vec<Uuid> = batch
            .iter()
            .map(|p| match p {
                Ok(job) => job.export.erp_connection_id,
                Err((export, _)) => export.erp_connection_id,
            })
            .collect();
        let mut remaining = connections;
        for c in &prepared_connections {
            if let Some(pos) = remaining.iter().position(|x| x == c) {
                remaining.swap_remove(pos);
            }
        }
        for connection in remaining {
            self.busy_add(connection, -1);
            slots.pop();
        }
        let deliveries = batch.into_iter().zip(slots).map(|(prepared, slot)| {
            let worker = self.clone();
            let done = done.clone();
            async move {
                let connection = match &prepared {
                    Ok(job) => job.export.erp_connection_id,
                    Err((export, _)) => export.erp_connection_id,
                };
                let lane = worker.lane(connection);
                let finished = match prepared {
                    Ok(job) => match lane.acquire_owned().await {
                        Ok(_lane) => Some(worker.deliver(job).await),
                        Err(_) => None,
                    },
                    Err(failed) => Some(failed),
                };
                if let Some((export, result)) = finished {
                    let _ = done.send(Done { export, result });
                }
                worker.finished(connection, slot);
            }
        });
        futures::future::join_all(deliveries).await;
    }

    /// The per-connection limit's semaphore.
    fn lane(&self, connection: Uuid) -> Arc<Semaphore> {
        let mut lanes = match self.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes
            .entry(connection)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_connection.max(1))))
            .clone()
    }

    /// Opens each claimed export's connection (once per connection), renders what was never
    /// archived, archives it and records the hashes in one statement. An export that cannot be
    /// prepared comes back with its failure; one whose lease ran out is dropped.
    #[allow(clippy::type_complexity)]
    async fn prepare(
        &self,
        claimed: Vec<Export>,
    ) -> Result<Vec<Result<Job, (Export, Result<SentTo, Failure>)>>, WorkerError> {
        let app = &self.app;
        let mut connection_ids: Vec<Uuid> = claimed.iter().map(|e| e.erp_connection_id).collect();
        connection_ids.sort_unstable();
        connection_ids.dedup();
        let mut org_ids: Vec<Uuid> = claimed.iter().map(|e| e.org_id).collect();
        org_ids.sort_unstable();
        org_ids.dedup();
        let to_render: Vec<Uuid> = claimed
            .iter()
            .filter(|e| e.export_storage_key.is_none() || e.content_sha256.is_none())
            .map(|e| e.draft_order_id)
            .collect();
        // Read at once: each read is a round trip on the way from claim to delivery.
        let (orgs, connections, drafts) = futures::try_join!(
            app.store.orgs_by_ids(&org_ids),
            app.store.connections_by_ids(&connection_ids),
            app.store.drafts_by_ids(&to_render),
        )?;
        let orgs: HashMap<Uuid, Org> = orgs.into_iter().map(|o| (o.id, o)).collect();
        let drafts: HashMap<Uuid, DraftOrder> = drafts.into_iter().map(|d| (d.id, d)).collect();
        let mut targets: HashMap<Uuid, Result<Arc<Target>, Failure>> = HashMap::new();
        for connection in connections {
            let target = self.open(connection.clone(), orgs.get(&connection.org_id));
            targets.insert(connection.id, target.map(Arc::new));
        }

        // Rendering and archiving run concurrently: archive writes are I/O, and a batch
        // archived one by one would hold up every delivery behind it.
        let max_attempts = app.settings.export_max_attempts;
        let contents = futures::future::join_all(claimed.into_iter().map(|export| {
            let target = match targets.get(&export.erp_connection_id) {
                // Every claim counts an attempt. More claims than attempts allowed means
                // earlier attempts ended without an outcome being recorded (a crash, a
                // lease that ran out): the export stops here instead of looping forever.
                _ if export.attempts > max_attempts => Err(failure(
                    ErrorCode::AttemptsExhausted,
                    format!(
                        "claimed {} times, {max_attempts} allowed, without a recorded outcome; \
                         check the ERP for the order before pushing it again",
                        export.attempts
                    ),
                )),
                Some(Ok(t)) if t.connection.org_id == export.org_id => Ok(t.clone()),
                Some(Err(f)) => Err(f.clone()),
                _ => Err(failure(
                    ErrorCode::ConfigUnreadable,
                    "the connection is gone",
                )),
            };
            let drafts = &drafts;
            async move {
                let target = match target {
                    Ok(t) => t,
                    Err(f) => return (export, Err(f)),
                };
                let content = self
                    .content(&export, &target, drafts)
                    .await
                    .map(|c| (c, target));
                (export, content)
            }
        }))
        .await;
        let mut prepared = Vec::with_capacity(contents.len());
        let mut fresh = Vec::new();
        for (export, content) in contents {
            match content {
                Ok(((content, is_new), target)) => {
                    if is_new {
                        fresh.push(export.id);
                    }
                    prepared.push(Ok(Job {
                        export,
                        target,
                        content,
                    }));
                }
                Err(f) => prepared.push(Err((export, Err(f)))),
            }
        }
        let keys: Vec<(Uuid, String, String)> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .filter(|j| fresh.contains(&j.export.id))
            .map(|j| {
                (
                    j.export.id,
                    storage_key(j.export.org_id, &j.export.file_name),
                    j.content.sha256.clone(),
                )
            })
            .collect();
        let records: Vec<ArchiveRecord<'_>> = keys
            .iter()
            .map(|(id, key, sha)| ArchiveRecord {
                id: *id,
                storage_key: key,
                content_sha256: sha,
            })
            .collect();
        let held = app.store.record_archives(self.id, &records).await?;
        Ok(prepared
            .into_iter()
            .filter(|p| match p {
                Ok(job) => !fresh.contains(&job.export.id) || held.contains(&job.export.id),
                Err(_) => true,
            })
            .collect())
    }

    /// The connection's connector and decrypted config.
    fn open(&self, connection: Connection, org: Option<&Org>) -> Result<Target, Failure> {
        if connection.status != ConnectionStatus::Active {
            return Err(ConnectorError::new(ErrorCode::ConnectionDisabled).into());
        }
        let org = org.ok_or_else(|| failure(ErrorCode::ConfigUnreadable, "the org is gone"))?;
        let connector = self
            .app
            .registry
            .by_type(&connection.connector_type)
            .cloned()
            .ok_or_else(|| {
                failure(
                    ErrorCode::ConfigUnreadable,
                    format!("unknown connector type {}", connection.connector_type),
                )
            })?;
        let config = self
            .app
            .connections
            .open(&connection)
            .map_err(|_| ConnectorError::new(ErrorCode::ConfigUnreadable))?;
        let ctx = ConnectorContext {
            org_id: org.id,
            org_slug: org.slug.clone(),
            connection: Some(ConnectionKey {
                id: connection.id,
                version: connection.config_version,
            }),
            env: self.app.connector_env.clone(),
        };
        Ok(Target {
            connection,
            connector,
            config,
            ctx,
        })
    }

    /// The bytes to deliver: the archived file when an earlier attempt archived it (so every
    /// attempt delivers the same bytes), else freshly rendered and archived (true).
    async fn content(
        &self,
        export: &Export,
        target: &Target,
        drafts: &HashMap<Uuid, DraftOrder>,
    ) -> Result<(Rendered, bool), Failure> {
        let app = &self.app;
        if let (Some(key), Some(sha)) = (&export.export_storage_key, &export.content_sha256) {
            let bytes = app
                .archive
                .get(key)
                .await
                .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?;
            let archived = Rendered::new(bytes);
            if &archived.sha256 == sha {
                return Ok((archived, false));
            }
            tracing::warn!(export_id = %export.id, "archived file does not match its recorded hash; rendering again");
        }
        let draft = drafts
            .get(&export.draft_order_id)
            .filter(|d| d.org_id == export.org_id)
            .ok_or_else(|| failure(ErrorCode::SchemaInvalid, "the draft order is gone"))?;
        let order = draft.to_approved(&target.ctx.org_slug).ok_or_else(|| {
            failure(
                ErrorCode::SchemaInvalid,
                "the draft order was never approved",
            )
        })?;
        let rendered = target.connector.render(&order)?;
        app.archive
            .put(
                &storage_key(export.org_id, &export.file_name),
                rendered.bytes.clone(),
            )
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?;
        Ok((rendered, true))
    }

    /// Delivers one prepared export (never outliving its lease: another worker may take the
    /// export over after it).
    async fn deliver(&self, job: Job) -> (Export, Result<SentTo, Failure>) {
        let delivery = Delivery {
            export_id: job.export.id,
            file_name: &job.export.file_name,
            content: &job.content,
        };
        let limit = self.app.settings.export_lease.mul_f64(0.8);
        let target = &job.target;
        let result = run_export(
            target.connector.as_ref(),
            &target.ctx,
            &target.config,
            &delivery,
            limit,
        )
        .await;
        let result = match result {
            Ok(delivered) => {
                if delivered.learned.host_key_fingerprint.is_some() {
                    self.record_learned(target, &delivered.learned).await;
                }
                Ok(SentTo {
                    path: delivered.dropzone_path,
                    ack: delivered.ack,
                })
            }
            Err(err) => Err(err.into()),
        };
        (job.export, result)
    }

    /// Records finished attempts as they come, together whatever finished meanwhile.
    async fn record_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Done>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let gather = tokio::time::sleep(RECORD_GATHER);
            tokio::pin!(gather);
            while batch.len() < RECORD_BATCH {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(done) => batch.push(done),
                        None => break,
                    },
                    () = &mut gather => break,
                }
            }
            if let Err(err) = self.record(batch).await {
                tracing::warn!(error = %err, "recording deliveries failed; their leases will run out and they are delivered again");
            }
        }
    }

    /// Classifies and records finished attempts in one transaction; their steps.
    async fn record(&self, batch: Vec<Done>) -> Result<Vec<Step>, WorkerError> {
        tracing::debug!(finished = batch.len(), "recording attempts");
        let now = crate::store::now();
        let settings = &self.app.settings;
        let mut planned = Vec::with_capacity(batch.len());
        for done in &batch {
            let export = &done.export;
            let entry = |action: &'static str, details: serde_json::Value| {
                NewAuditEntry::export(export.org_id, export.id, Actor::system(), action, details)
            };
            let plan = match &done.result {
                Ok(SentTo { path, .. }) => (
                    PlannedOutcome::Sent(path.clone()),
                    entry(
                        action::EXPORT_SENT,
                        json!({ "draft_order_id": export.draft_order_id, "file_name": export.file_name,
                                "dropzone_path": path, "attempt": export.attempts }),
                    ),
                    Step::Sent(export.id),
                ),
                Err(fail) => {
                    let mut error =
                        delivery_error(fail.code.as_str(), &fail.message, now, export.attempts);
                    if let (Some(details), Some(obj)) = (&fail.details, error.as_object_mut()) {
                        for (k, v) in details {
                            obj.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    if fail.code.is_transient() && export.attempts < settings.export_max_attempts {
                        let wait =
                            backoff(settings.export_retry_base, export.attempts, rand::random())
                                .max(fail.retry_after.unwrap_or_default().min(RETRY_AFTER_CAP));
                        let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        (
                            PlannedOutcome::Retry(next, error.clone()),
                            entry(
                                action::EXPORT_RETRY_SCHEDULED,
                                json!({ "error": error, "next_attempt_at": next }),
                            ),
                            Step::Retrying(export.id, fail.code),
                        )
                    } else {
                        (
                            PlannedOutcome::Failed(error.clone()),
                            entry(action::EXPORT_FAILED, json!({ "error": error })),
                            Step::Failed(export.id, fail.code),
                        )
                    }
                }
            };
            planned.push(plan);
        }
        let attempts: Vec<FinishedAttempt<'_>> = batch
            .iter()
            .zip(&planned)
            .map(|(done, (outcome, audit, _))| FinishedAttempt {
                export: &done.export,
                outcome: outcome.as_outcome(),
                audit,
            })
            .collect();
        let started = std::time::Instant::now();
        let recorded = match self.app.store.finish_attempts(self.id, &attempts).await {
            Ok(recorded) => recorded,
            Err(err) => self.record_one_by_one(&attempts, err).await?,
        };
        tracing::debug!(
            record_ms = started.elapsed().as_millis() as u64,
            "recorded batch"
        );
        self.apply_answers(&batch, &recorded, now).await;
        let mut steps = Vec::with_capacity(batch.len());
        for (done, (_, _, step)) in batch.into_iter().zip(planned) {
            let step = if recorded.contains(&done.export.id) {
                count(&done.export, &step, now);
                step
            } else {
                Step::LostLease(done.export.id)
            };
            steps.push(step);
        }
        Ok(steps)
    }

    /// A batch the database refused is recorded attempt by attempt, so one bad row can never
    /// keep another org's outcome from being recorded (and its export from being delivered
    /// again after the lease). An attempt refused even alone is recorded with its error cut
    /// down to code and headline; only a database that refuses that too leaves it to the lease.
    async fn record_one_by_one(
        &self,
        attempts: &[FinishedAttempt<'_>],
        err: StoreError,
    ) -> Result<Vec<Uuid>, WorkerError> {
        if err.is_unreachable() {
            return Err(err.into());
        }
        tracing::warn!(error = %err, attempts = attempts.len(), "the database refused a batch of outcomes; recording each attempt on its own");
        let mut recorded = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            if attempts.len() > 1 {
                match self
                    .app
                    .store
                    .finish_attempts(self.id, std::slice::from_ref(attempt))
                    .await
                {
                    Ok(ids) => {
                        recorded.extend(ids);
                        continue;
                    }
                    Err(e) if e.is_unreachable() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(export_id = %attempt.export.id, error = %e, "the database refused an attempt's outcome; recording it without the peer's details")
                    }
                }
            }
            let plain = plain_outcome(attempt);
            let audit = NewAuditEntry {
                details: json!({ "error": plain.error() }),
                ..attempt.audit.clone()
            };
            let retry = FinishedAttempt {
                export: attempt.export,
                outcome: plain.as_outcome(),
                audit: &audit,
            };
            match self
                .app
                .store
                .finish_attempts(self.id, std::slice::from_ref(&retry))
                .await
            {
                Ok(ids) => recorded.extend(ids),
                Err(e) => {
                    tracing::error!(export_id = %attempt.export.id, error = %e, "could not record an attempt at all; its lease runs out and the claim counts it")
                }
            }
        }
        Ok(recorded)
    }

    /// Applies the verdicts that came with the ERP's answers (HTTP `response` mode) to the
    /// exports just recorded SENT, through the same path as ack files. A crash in between
    /// leaves the export SENT: the verdict is lost, never applied twice.
    async fn apply_answers(&self, batch: &[Done], recorded: &[Uuid], now: chrono::DateTime<Utc>) {
        let verdicts: Vec<Verdict> = batch
            .iter()
            .filter(|d| recorded.contains(&d.export.id))
            .filter_map(|d| {
                let ack = d.result.as_ref().ok()?.ack.clone()?;
                let mut export = d.export.clone();
                export.status = ExportStatus::Sent;
                export.sent_at = Some(now);
                let mut via = serde_json::Map::new();
                via.insert("via".into(), json!("http_response"));
                Some(Verdict {
                    export,
                    outcome: ack,
                    via,
                })
            })
            .collect();
        if verdicts.is_empty() {
            return;
        }
        if let Err(err) = crate::service::acks::apply(&self.app.store, &verdicts).await {
            tracing::warn!(error = %err, "could not apply the ERP's answers; the exports stay SENT");
        }
    }

    async fn record_learned(&self, target: &Target, learned: &Learned) {
        if let Err(err) = self
            .app
            .connections
            .record_learned(
                &Actor::system(),
                &target.connection,
                target.config.clone(),
                learned,
                None,
            )
            .await
        {
            tracing::warn!(connection_id = %target.connection.id, error = %err, "could not record the host key learned during an export");
        }
    }
}

/// An outcome before it borrows into [`AttemptOutcome`].
enum PlannedOutcome {
    Sent(String),
    Retry(chrono::DateTime<Utc>, serde_json::Value),
    Failed(serde_json::Value),
}

/// An attempt's outcome with nothing from the peer in it: a delivered path stays (it is ours),
/// an error keeps only its code, headline, time and attempt number.
fn plain_outcome(attempt: &FinishedAttempt<'_>) -> PlannedOutcome {
    let plain = |error: &serde_json::Value| {
        let code = error["code"].as_str().unwrap_or("IO_ERROR");
        let headline = serde_json::from_value::<ErrorCode>(json!(code))
            .map(ErrorCode::message)
            .unwrap_or("Delivery failed");
        json!({ "code": code, "message": headline, "at": error["at"], "attempt": error["attempt"] })
    };
    match &attempt.outcome {
        AttemptOutcome::Sent { dropzone_path } => {
            PlannedOutcome::Sent(crate::domain::text::clean(dropzone_path, 1024))
        }
        AttemptOutcome::Retry {
            next_attempt_at,
            error,
        } => PlannedOutcome::Retry(*next_attempt_at, plain(error)),
        AttemptOutcome::Failed { error } => PlannedOutcome::Failed(plain(error)),
    }
}

impl PlannedOutcome {
    fn error(&self) -> serde_json::Value {
        match self {
            PlannedOutcome::Sent(_) => serde_json::Value::Null,
            PlannedOutcome::Retry(_, error) | PlannedOutcome::Failed(error) => error.clone(),
        }
    }

    fn as_outcome(&self) -> AttemptOutcome<'_> {
        match self {
            PlannedOutcome::Sent(path) => AttemptOutcome::Sent {
                dropzone_path: path,
            },
            PlannedOutcome::Retry(next, error) => AttemptOutcome::Retry {
                next_attempt_at: *next,
                error,
            },
            PlannedOutcome::Failed(error) => AttemptOutcome::Failed { error },
        }
    }
}

/// Metrics for a recorded attempt.
fn count(export: &Export, step: &Step, now: chrono::DateTime<Utc>) {
    match step {
        Step::Sent(_) => {
            metrics::counter!(metric::EXPORTS, "status" => "SENT").increment(1);
            let latency = (now - export.created_at).to_std().unwrap_or_default();
            metrics::histogram!(metric::EXPORT_DELIVERY).record(latency.as_secs_f64());
        }
        Step::Failed(..) => {
            metrics::counter!(metric::EXPORTS, "status" => "FAILED").increment(1);
        }
        _ => {}
    }
}

/// Consumes notifications that already arrived (one claim answers them all).
fn drain_notifications(stream: &mut Option<futures::stream::BoxStream<'static, ()>>) {
    if let Some(s) = stream {
        while let Some(Some(())) = s.next().now_or_never() {}
    }
}

async fn next_notification(
    stream: &mut Option<futures::stream::BoxStream<'static, ()>>,
) -> Option<()> {
    match stream {
        Some(s) => match s.next().await {
            Some(()) => Some(()),
            None => {
                *stream = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{Notify, Semaphore, watch};
use uuid::Uuid;

use crate::app::App;
use crate::connectors::{
    ConnectionKey, ConnectorContext, ConnectorError, Delivery, ErrorCode, Rendered, run_export,
};
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::export::{Export, backoff, delivery_error, storage_key};
use crate::store::{AttemptOutcome, ClaimRequest, StoreError};
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
        Self {
            concurrency: 64,
            per_connection: 16,
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

/// The worker failed to talk to its own database (retried by the loop).
#[derive(Debug, thiserror::Error)]
#[error("delivery worker: {0}")]
pub struct WorkerError(#[from] StoreError);

/// Delivers exports for one process.
pub struct DeliveryWorker {
    app: Arc<App>,
    id: Uuid,
    limits: DeliveryLimits,
    slots: Arc<Semaphore>,
    busy: Mutex<HashMap<Uuid, usize>>,
    per_connection: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
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

/// An attempt's failure, before it is classified as retry or final.
struct Failure {
    code: ErrorCode,
    message: String,
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Self {
        Failure {
            code: err.code,
            message: err.message,
        }
    }
}

fn failure(code: ErrorCode, detail: impl std::fmt::Display) -> Failure {
    ConnectorError::with_detail(code, detail).into()
}

/// A uniform number in `[0, 1)` for the backoff jitter.
fn jitter() -> f64 {
    rand::random::<f64>()
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
            per_connection: Mutex::new(HashMap::new()),
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
            per_connection: u32::try_from(self.limits.per_connection).unwrap_or(u32::MAX),
            exclude_connections: exclude,
        }
    }

    /// One step, for tests and tools: claims one due export and delivers it.
    pub async fn deliver_one(&self) -> Result<Step, WorkerError> {
        let claimed = self
            .app
            .store
            .claim_exports(&self.claim_request(1, &[]))
            .await?;
        match claimed.into_iter().next() {
            None => Ok(Step::Idle),
            Some(export) => self.attempt(export).await,
        }
    }

    /// Delivers until `shutdown` turns true, then lets deliveries in progress finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut notifications = self.subscribe().await;
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
            let full = match self.claim_and_spawn(&mut tasks).await {
                Ok(full) => full,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming exports failed; retrying");
                    false
                }
            };
            if full {
                // The claim filled every free slot: there may be more work right away.
                continue;
            }
            let sleep = self.sleep_for().await;
            tokio::select! {
                () = self.app.wake_delivery.notified() => {}
                () = self.freed.notified() => {}
                Some(()) = next_notification(&mut notifications) => {}
                () = tokio::time::sleep(sleep) => {
                    if notifications.is_none() {
                        notifications = self.subscribe().await;
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
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

    /// How long to wait when nothing wakes us: until the next export is due, at most the
    /// poll interval.
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

    /// Claims as many exports as there are free slots and starts them; true when the claim
    /// came back full.
    async fn claim_and_spawn(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
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
                    .filter(|(_, n)| **n >= self.limits.per_connection)
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
        for export in claimed {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let connection = export.erp_connection_id;
            if let Ok(mut busy) = self.busy.lock() {
                *busy.entry(connection).or_default() += 1;
            }
            let lane = self.lane(connection);
            let worker = self.clone();
            tasks.spawn(async move {
                let result = match lane.acquire_owned().await {
                    Ok(_lane) => worker.attempt(export).await,
                    Err(_) => Ok(Step::Idle),
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "recording a delivery failed; the lease will expire and it is retried");
                }
                if let Ok(mut busy) = worker.busy.lock()
                    && let Some(n) = busy.get_mut(&connection)
                {
                    *n -= 1;
                    if *n == 0 {
                        busy.remove(&connection);
                    }
                }
                drop(slot);
                worker.freed.notify_one();
            });
        }
        Ok(full)
    }

    /// The per-connection limit's semaphore.
    fn lane(&self, connection: Uuid) -> Arc<Semaphore> {
        let mut lanes = match self.per_connection.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes
            .entry(connection)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_connection.max(1))))
            .clone()
    }

    /// One delivery attempt of a claimed export, recorded whatever happens.
    async fn attempt(&self, export: Export) -> Result<Step, WorkerError> {
        let outcome = self.try_deliver(&export).await;
        let now = crate::store::now();
        let worker = self.id;
        let entry = |action: &'static str, details: serde_json::Value| NewAuditEntry {
            org_id: export.org_id,
            actor: Actor::system(),
            action,
            entity_type: "erp_export",
            entity_id: Some(export.id.to_string()),
            details,
        };
        match outcome {
            Ok(dropzone_path) => {
                let audit = entry(
                    action::EXPORT_SENT,
                    json!({ "draft_order_id": export.draft_order_id, "file_name": export.file_name,
                            "dropzone_path": dropzone_path, "attempt": export.attempts }),
                );
                let sent = AttemptOutcome::Sent {
                    dropzone_path: &dropzone_path,
                };
                if !self
                    .app
                    .store
                    .finish_attempt(&export, worker, &sent, &audit)
                    .await?
                {
                    return Ok(Step::LostLease(export.id));
                }
                metrics::counter!(metric::EXPORTS, "status" => "SENT").increment(1);
                let latency = (now - export.created_at).to_std().unwrap_or_default();
                metrics::histogram!(metric::EXPORT_DELIVERY).record(latency.as_secs_f64());
                Ok(Step::Sent(export.id))
            }
            Err(fail) => {
                let error = delivery_error(fail.code.as_str(), &fail.message, now, export.attempts);
                let retry = fail.code.is_transient()
                    && export.attempts < self.app.settings.export_max_attempts;
                let (outcome, audit, step) = if retry {
                    let wait = backoff(
                        self.app.settings.export_retry_base,
                        export.attempts,
                        jitter(),
                    );
                    let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    (
                        AttemptOutcome::Retry {
                            next_attempt_at: next,
                            error: &error,
                        },
                        entry(
                            action::EXPORT_RETRY_SCHEDULED,
                            json!({ "error": error, "next_attempt_at": next }),
                        ),
                        Step::Retrying(export.id, fail.code),
                    )
                } else {
                    (
                        AttemptOutcome::Failed { error: &error },
                        entry(action::EXPORT_FAILED, json!({ "error": error })),
                        Step::Failed(export.id, fail.code),
                    )
                };
                if !self
                    .app
                    .store
                    .finish_attempt(&export, worker, &outcome, &audit)
                    .await?
                {
                    return Ok(Step::LostLease(export.id));
                }
                if !retry {
                    metrics::counter!(metric::EXPORTS, "status" => "FAILED").increment(1);
                }
                Ok(step)
            }
        }
    }

    /// Render (or reread the archived file), archive, deliver. The final path on success.
    async fn try_deliver(&self, export: &Export) -> Result<String, Failure> {
        let app = &self.app;
        let connection = app
            .store
            .connection_by_id(export.org_id, export.erp_connection_id)
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?
            .ok_or_else(|| failure(ErrorCode::ConfigUnreadable, "the connection is gone"))?;
        if connection.status != ConnectionStatus::Active {
            return Err(ConnectorError::new(ErrorCode::ConnectionDisabled).into());
        }
        let connector = app
            .registry
            .by_type(&connection.connector_type)
            .cloned()
            .ok_or_else(|| {
                failure(
                    ErrorCode::ConfigUnreadable,
                    format!("unknown connector type {}", connection.connector_type),
                )
            })?;
        let config = app
            .connections
            .open(&connection)
            .map_err(|_| ConnectorError::new(ErrorCode::ConfigUnreadable))?;
        let org = app
            .store
            .org_by_id(export.org_id)
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?
            .ok_or_else(|| failure(ErrorCode::ConfigUnreadable, "the org is gone"))?;
        let content = self.content(export, &org.slug, connector.as_ref()).await?;
        let ctx = ConnectorContext {
            org_id: org.id,
            org_slug: org.slug.clone(),
            connection: Some(ConnectionKey {
                id: connection.id,
                version: connection.config_version,
            }),
            env: app.connector_env.clone(),
        };
        let delivery = Delivery {
            export_id: export.id,
            file_name: &export.file_name,
            content: &content,
        };
        // Never outlive the lease: another worker may take the export over after it.
        let limit = app.settings.export_lease.mul_f64(0.8);
        let delivered = run_export(connector.as_ref(), &ctx, &config, &delivery, limit).await?;
        if delivered.learned.host_key_fingerprint.is_some() {
            self.record_learned(&connection, config, &delivered.learned)
                .await;
        }
        Ok(delivered.dropzone_path)
    }

    /// The bytes to deliver: the archived file when an earlier attempt archived it (so every
    /// attempt delivers the same bytes), else freshly rendered, archived and recorded.
    async fn content(
        &self,
        export: &Export,
        org_slug: &crate::domain::org::Slug,
        connector: &dyn crate::connectors::Connector,
    ) -> Result<Rendered, Failure> {
        let app = &self.app;
        if let (Some(key), Some(sha)) = (&export.export_storage_key, &export.content_sha256) {
            let bytes = app
                .archive
                .get(key)
                .await
                .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?;
            let archived = Rendered::new(bytes);
            if &archived.sha256 == sha {
                return Ok(archived);
            }
            tracing::warn!(export_id = %export.id, "archived file does not match its recorded hash; rendering again");
        }
        let draft = app
            .store
            .draft(export.org_id, export.draft_order_id)
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?
            .ok_or_else(|| failure(ErrorCode::SchemaInvalid, "the draft order is gone"))?;
        let order = draft.to_approved(org_slug).ok_or_else(|| {
            failure(
                ErrorCode::SchemaInvalid,
                "the draft order was never approved",
            )
        })?;
        let rendered = connector.render(&order)?;
        let key = storage_key(export.org_id, &export.file_name);
        app.archive
            .put(&key, rendered.bytes.clone())
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?;
        let held = app
            .store
            .record_archive(export.id, self.id, &key, &rendered.sha256)
            .await
            .map_err(|e| failure(ErrorCode::StorageUnavailable, e))?;
        if !held {
            return Err(failure(
                ErrorCode::ConnectionTimeout,
                "the lease ran out before delivery started",
            ));
        }
        Ok(rendered)
    }

    async fn record_learned(
        &self,
        connection: &Connection,
        config: crate::connectors::ConnectorConfig,
        learned: &crate::connectors::Learned,
    ) {
        if let Err(err) = self
            .app
            .connections
            .record_learned(&Actor::system(), connection, config, learned, None)
            .await
        {
            tracing::warn!(connection_id = %connection.id, error = %err, "could not record the host key learned during an export");
        }
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

//! Delivering exports: claiming due ones with a lease, preparing each (its target,
//! the exact bytes, archived with their hash), delivering, and recording what happened — for
//! the export (sent, retried, failed, or waiting for its connection) and for the connection's
//! circuit breaker. The worker only schedules; this is the use case it runs.
//!
//! Exactly once: a claim reserves an export for one worker (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL); an export whose worker died is claimed again once its lease runs out, and the
//! dropzone write is idempotent (the same bytes under the same name count as delivered), so a
//! crash between writing and recording never makes a second file.
//!
//! Throughput: the database work is done per claimed batch, not per export (connections, orgs
//! and drafts read at once, archive records written in one statement), and finished attempts
//! are recorded together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::connections::ConnectionService;
use super::targets::Target;
use crate::archive::Archive;
use crate::connectors::{ConnectorError, Delivery, ErrorCode, Rendered, run_export};
use crate::domain::ack::AckOutcome;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::delivery::{
    AttemptResult, Circuit, CircuitChange, DeliveryPolicy, ExportDecision, Jitter, decide,
};
use crate::domain::draft::DraftOrder;
use crate::domain::export::{Export, ExportStatus, delivery_error, storage_key};
use crate::domain::org::Org;
use crate::formats::ExportFacts;
use crate::service::acks::Verdict;
use crate::store::{
    ArchiveRecord, AttemptOutcome, CircuitWrite, ClaimRequest, FinishedAttempt, QueueChange, Store,
    StoreError,
};
use crate::telemetry::metric;

/// Each connection's opened target, or why it cannot be used.
type Targets = HashMap<Uuid, Result<Arc<Target>, Failure>>;

/// What one recorded attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing was due.
    Idle,
    /// Delivered: SENT.
    Sent(Uuid),
    /// A transient failure; due again later.
    Retrying(Uuid, ErrorCode),
    /// Its connection's circuit is open: waiting for the connection, the attempt not counted.
    Waiting(Uuid, ErrorCode),
    /// Failed for good.
    Failed(Uuid, ErrorCode),
    /// Another worker took the export over (our lease ran out); nothing recorded.
    LostLease(Uuid),
}

/// An attempt's failure, before it is classified.
#[derive(Debug, Clone)]
pub struct Failure {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
    details: Option<serde_json::Map<String, Value>>,
    /// False when the attempt stopped before the connection was tried.
    tried: bool,
}

impl Failure {
    fn tried(err: ConnectorError) -> Self {
        Self {
            code: err.code,
            message: err.message,
            retry_after: err.retry_after,
            details: err.details,
            tried: true,
        }
    }

    fn not_tried(err: ConnectorError) -> Self {
        Self {
            tried: false,
            ..Self::tried(err)
        }
    }

    fn before(code: ErrorCode, detail: impl std::fmt::Display) -> Self {
        Self::not_tried(ConnectorError::with_detail(code, detail))
    }

    fn result(&self) -> AttemptResult {
        if !self.tried {
            return AttemptResult::NotTried {
                transient: self.code.is_transient(),
            };
        }
        AttemptResult::Failed {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            transient: self.code.is_transient(),
            retry_after: self.retry_after,
        }
    }
}

/// Where an export went, and the ERP's verdict when its answer carried one.
#[derive(Debug, Clone)]
pub struct SentTo {
    path: String,
    ack: Option<AckOutcome>,
}

/// An export ready to deliver: where to, and the exact bytes (archived and recorded).
pub struct Job {
    /// The export as claimed.
    pub export: Export,
    target: Arc<Target>,
    content: Rendered,
}

/// A finished attempt, on its way to being recorded.
pub struct Finished {
    /// The export as claimed.
    pub export: Export,
    result: Result<SentTo, Failure>,
}

/// A claimed export after preparation: ready to deliver, or already finished (it could not be
/// prepared).
pub enum Prepared {
    /// Deliver it.
    Ready(Job),
    /// Record it.
    Done(Finished),
}

impl Prepared {
    /// The claimed export.
    pub fn export(&self) -> &Export {
        match self {
            Prepared::Ready(job) => &job.export,
            Prepared::Done(done) => &done.export,
        }
    }
}

/// Deliveries.
#[derive(Clone)]
pub struct DeliveryService {
    store: Arc<dyn Store>,
    connections: ConnectionService,
    archive: Archive,
    policy: DeliveryPolicy,
    lease: Duration,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

impl DeliveryService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        connections: ConnectionService,
        archive: Archive,
        policy: DeliveryPolicy,
        lease: Duration,
    ) -> Self {
        Self {
            store,
            connections,
            archive,
            policy,
            lease,
        }
    }

    /// Reserves up to `limit` due exports for `worker`, round-robin across connections: for
    /// a connection in `allowances` at most its allowance, for any other at most
    /// `per_connection`; none of `exclude`'s, none of a connection whose circuit is not closed.
    pub async fn claim(
        &self,
        worker: Uuid,
        limit: u32,
        per_connection: u32,
        exclude: &[Uuid],
        allowances: &[(Uuid, u32)],
    ) -> Result<Vec<Export>, StoreError> {
        let now = crate::store::now();
        let claimed = self
            .store
            .claim_exports(&ClaimRequest {
                worker,
                now,
                lease_until: lease_until(now, self.lease),
                limit,
                per_connection,
                exclude_connections: exclude,
                allowances,
            })
            .await?;
        record_queue_wait(&claimed, now);
        Ok(claimed)
    }

    /// Takes the probes that are due (one per open circuit whose cool-down ended, each taken
    /// by one worker only) and claims one export for each; a circuit with nothing left to
    /// probe with closes.
    pub async fn claim_probes(&self, worker: Uuid) -> Result<Vec<Export>, StoreError> {
        let now = crate::store::now();
        let until = lease_until(now, self.lease);
        let mut probes = Vec::new();
        for connection in self.store.take_probes(now, until).await? {
            match self
                .store
                .claim_probe(connection, worker, now, until)
                .await?
            {
                Some(export) => {
                    tracing::info!(connection_id = %connection, export_id = %export.id, "circuit half-open: probing with one export");
                    probes.push(export);
                }
                None => self.close_idle_circuit(connection, now).await?,
            }
        }
        record_queue_wait(&probes, now);
        Ok(probes)
    }

    /// An open circuit with no export left to probe with closes: the next export tries the
    /// connection like any other.
    async fn close_idle_circuit(
        &self,
        connection: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let circuits = self.store.circuits(&[connection]).await?;
        let Some(circuit) = circuits.get(&connection) else {
            return Ok(());
        };
        let closed = Circuit {
            last_error: circuit.last_error.clone(),
            ..Circuit::closed(now)
        };
        let org_id = self
            .store
            .connections_by_ids(&[connection])
            .await?
            .first()
            .map(|c| c.org_id);
        if let Some(org_id) = org_id {
            let write = CircuitWrite {
                org_id,
                connection_id: connection,
                circuit: &closed,
                queue: QueueChange::Keep,
            };
            self.store.save_circuits(&[write], &[]).await?;
        }
        Ok(())
    }

    /// What a claimed batch needs read before rendering: each connection's opened target
    /// (or why it cannot be used), and the drafts whose file is not archived yet.
    async fn load_batch(
        &self,
        claimed: &[Export],
    ) -> Result<(Targets, HashMap<Uuid, DraftOrder>), StoreError> {
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
            self.store.orgs_by_ids(&org_ids),
            self.store.connections_by_ids(&connection_ids),
            self.store.drafts_by_ids(&to_render),
        )?;
        let orgs: HashMap<Uuid, Org> = orgs.into_iter().map(|o| (o.id, o)).collect();
        let drafts: HashMap<Uuid, DraftOrder> = drafts.into_iter().map(|d| (d.id, d)).collect();
        let targets: Targets = connections
            .iter()
            .map(|c| {
                let target = match orgs.get(&c.org_id) {
                    Some(org) => self
                        .connections
                        .open_target(c, org)
                        .map(Arc::new)
                        .map_err(Failure::not_tried),
                    None => Err(Failure::before(
                        ErrorCode::ConfigUnreadable,
                        "the org is gone",
                    )),
                };
                (c.id, target)
            })
            .collect();
        Ok((targets, drafts))
    }

    /// Opens each claimed export's connection (once per connection), renders what was never
    /// archived, archives it and records the hashes in one statement. An export that cannot
    /// be prepared comes back finished with its failure; one whose lease ran out is dropped.
    pub async fn prepare(
        &self,
        worker: Uuid,
        claimed: Vec<Export>,
    ) -> Result<Vec<Prepared>, StoreError> {
        let (targets, drafts) = self.load_batch(&claimed).await?;

        // Rendering and archiving run concurrently: archive writes are I/O, and a batch
        // archived one by one would hold up every delivery behind it.
        let max_attempts = self.policy.max_attempts;
        let contents = futures::future::join_all(claimed.into_iter().map(|export| {
            let target = target_of(&export, &targets, max_attempts);
            let drafts = &drafts;
            async move {
                let content = match target {
                    Ok(target) => self
                        .content(&export, &target, drafts)
                        .await
                        .map(|c| (c, target)),
                    Err(f) => Err(f),
                };
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
                        fresh.push((
                            export.id,
                            storage_key(export.org_id, &export.file_name),
                            content.sha256.clone(),
                        ));
                    }
                    prepared.push(Prepared::Ready(Job {
                        export,
                        target,
                        content,
                    }));
                }
                Err(f) => prepared.push(Prepared::Done(Finished {
                    export,
                    result: Err(f),
                })),
            }
        }
        let records: Vec<ArchiveRecord<'_>> = fresh
            .iter()
            .map(|(id, key, sha)| ArchiveRecord {
                id: *id,
                storage_key: key,
                content_sha256: sha,
            })
            .collect();
        let held = self.store.record_archives(worker, &records).await?;
        let lost = |id: &Uuid| fresh.iter().any(|(f, _, _)| f == id) && !held.contains(id);
        Ok(prepared
            .into_iter()
            .filter(|p| !matches!(p, Prepared::Ready(job) if lost(&job.export.id)))
            .collect())
    }

    /// The bytes to deliver: the archived file when an earlier attempt archived it (so every
    /// attempt delivers the same bytes), else freshly rendered and archived (true).
    async fn content(
        &self,
        export: &Export,
        target: &Target,
        drafts: &HashMap<Uuid, DraftOrder>,
    ) -> Result<(Rendered, bool), Failure> {
        if let (Some(key), Some(sha)) = (&export.export_storage_key, &export.content_sha256) {
            let bytes = self
                .archive
                .get(key)
                .await
                .map_err(|e| Failure::before(ErrorCode::StorageUnavailable, e))?;
            let archived = Rendered::new(bytes);
            if &archived.sha256 == sha {
                return Ok((archived, false));
            }
            tracing::warn!(export_id = %export.id, "archived file does not match its recorded hash; rendering again");
        }
        let draft = drafts
            .get(&export.draft_order_id)
            .filter(|d| d.org_id == export.org_id)
            .ok_or_else(|| Failure::before(ErrorCode::SchemaInvalid, "the draft order is gone"))?;
        let order = draft.to_approved(&target.ctx.org_slug).ok_or_else(|| {
            Failure::before(
                ErrorCode::SchemaInvalid,
                "the draft order was never approved",
            )
        })?;
        let bytes = target
            .delivery()
            .format
            .renderer()
            .render(&order, &ExportFacts::of(export))
            .map_err(|e| Failure::not_tried(e.into()))?;
        let rendered = Rendered::new(bytes);
        self.archive
            .put(
                &storage_key(export.org_id, &export.file_name),
                rendered.bytes.clone(),
            )
            .await
            .map_err(|e| Failure::before(ErrorCode::StorageUnavailable, e))?;
        Ok((rendered, true))
    }

    /// Delivers one prepared export (never outliving its lease: another worker may take the
    /// export over after it).
    pub async fn deliver(&self, job: Job) -> Finished {
        let delivery = Delivery {
            export_id: job.export.id,
            file_name: &job.export.file_name,
            content: &job.content,
            content_type: job.target.delivery().format.renderer().content_type(),
        };
        let limit = self.lease.mul_f64(0.8);
        let target = &job.target;
        let result = run_export(
            target.connector.as_ref(),
            &target.ctx,
            target.config(),
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
            Err(err) => Err(Failure::tried(err)),
        };
        Finished {
            export: job.export,
            result,
        }
    }

    async fn record_learned(&self, target: &Target, learned: &crate::connectors::Learned) {
        if let Err(err) = self
            .connections
            .record_learned(
                &Actor::system(),
                &target.connection,
                (*target.opened).clone(),
                learned,
                None,
            )
            .await
        {
            tracing::warn!(connection_id = %target.connection.id, error = %err, "could not record the host key learned during an export");
        }
    }

    /// Decides and records finished attempts: the exports' outcomes in one transaction, then
    /// their connections' circuits, then the verdicts that came with the ERP's answers. The
    /// steps, in the batch's order.
    pub async fn record(
        &self,
        worker: Uuid,
        batch: Vec<Finished>,
    ) -> Result<Vec<Step>, StoreError> {
        let now = crate::store::now();
        let mut connection_ids: Vec<Uuid> =
            batch.iter().map(|d| d.export.erp_connection_id).collect();
        connection_ids.sort_unstable();
        connection_ids.dedup();
        let mut circuits = self.store.circuits(&connection_ids).await?;
        let mut changes: HashMap<Uuid, (Uuid, Vec<CircuitChange>)> = HashMap::new();
        let mut planned = Vec::with_capacity(batch.len());
        for done in &batch {
            let export = &done.export;
            let before = circuits
                .get(&export.erp_connection_id)
                .cloned()
                .unwrap_or_else(|| Circuit::closed(now));
            let result = match &done.result {
                Ok(_) => AttemptResult::Delivered,
                Err(f) => f.result(),
            };
            let jitter = Jitter {
                backoff: rand::random(),
                cool_down: rand::random(),
            };
            let decision = decide(&self.policy, &before, export.attempts, &result, now, jitter);
            let after = decision.circuit.after(&before).clone();
            if decision.circuit != CircuitChange::Unchanged {
                changes
                    .entry(export.erp_connection_id)
                    .or_insert_with(|| (export.org_id, Vec::new()))
                    .1
                    .push(decision.circuit.clone());
                circuits.insert(export.erp_connection_id, after);
            }
            planned.push(plan(done, decision.export, now));
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
        let recorded = match self.store.finish_attempts(worker, &attempts).await {
            Ok(recorded) => recorded,
            Err(err) => self.record_one_by_one(worker, &attempts, err).await?,
        };
        let outcomes_ms = started.elapsed().as_millis() as u64;
        let changed = changes.len();
        self.record_circuits(&circuits, changes).await;
        tracing::debug!(
            attempts = attempts.len(),
            outcomes_ms,
            circuits = changed,
            total_ms = started.elapsed().as_millis() as u64,
            "recorded attempts"
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

    /// Writes the circuits that changed, with a log line, an audit row and a metric for each
    /// opening and closing. A failure here is logged: the next attempts count again.
    async fn record_circuits(
        &self,
        circuits: &HashMap<Uuid, Circuit>,
        changes: HashMap<Uuid, (Uuid, Vec<CircuitChange>)>,
    ) {
        let mut writes = Vec::new();
        let mut audits = Vec::new();
        for (connection_id, (org_id, steps)) in &changes {
            let Some(circuit) = circuits.get(connection_id) else {
                continue;
            };
            let queue = match steps.last() {
                Some(CircuitChange::Opened(c)) => c
                    .next_probe_at
                    .map_or(QueueChange::Keep, QueueChange::DeferTo),
                Some(CircuitChange::Closed(c)) => QueueChange::DueNow(c.since),
                _ => QueueChange::Keep,
            };
            writes.push(CircuitWrite {
                org_id: *org_id,
                connection_id: *connection_id,
                circuit,
                queue,
            });
            for step in steps {
                let (what, c) = match step {
                    CircuitChange::Opened(c) => (action::CIRCUIT_OPENED, c),
                    CircuitChange::Closed(c) => (action::CIRCUIT_CLOSED, c),
                    _ => continue,
                };
                let error = c.last_error.as_ref().map(|(code, _)| code.as_str());
                if what == action::CIRCUIT_OPENED {
                    metrics::counter!(metric::CIRCUIT_OPENINGS).increment(1);
                    tracing::warn!(org_id = %org_id, connection_id = %connection_id,
                        consecutive_failures = c.consecutive_failures, error_code = error,
                        next_probe_at = ?c.next_probe_at, "circuit opened: the connection is not tried until its next probe");
                } else {
                    tracing::info!(org_id = %org_id, connection_id = %connection_id, "circuit closed: deliveries to the connection resume");
                }
                audits.push(NewAuditEntry {
                    org_id: *org_id,
                    actor: Actor::system(),
                    action: what,
                    entity_type: "erp_connection",
                    entity_id: Some(connection_id.to_string()),
                    details: json!({ "consecutive_failures": c.consecutive_failures,
                        "error_code": error, "next_probe_at": c.next_probe_at }),
                });
            }
        }
        if let Err(err) = self.store.save_circuits(&writes, &audits).await {
            tracing::warn!(error = %err, "could not record connection circuits");
        }
    }

    /// A batch the database refused is recorded attempt by attempt, so one bad row can never
    /// keep another org's outcome from being recorded (and its export from being delivered
    /// again after the lease). An attempt refused even alone is recorded with its error cut
    /// down to code and headline; only a database that refuses that too leaves it to the lease.
    async fn record_one_by_one(
        &self,
        worker: Uuid,
        attempts: &[FinishedAttempt<'_>],
        err: StoreError,
    ) -> Result<Vec<Uuid>, StoreError> {
        if err.is_unreachable() {
            return Err(err);
        }
        tracing::warn!(error = %err, attempts = attempts.len(), "the database refused a batch of outcomes; recording each attempt on its own");
        let mut recorded = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            if attempts.len() > 1 {
                match self
                    .store
                    .finish_attempts(worker, std::slice::from_ref(attempt))
                    .await
                {
                    Ok(ids) => {
                        recorded.extend(ids);
                        continue;
                    }
                    Err(e) if e.is_unreachable() => return Err(e),
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
                .store
                .finish_attempts(worker, std::slice::from_ref(&retry))
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
    async fn apply_answers(&self, batch: &[Finished], recorded: &[Uuid], now: DateTime<Utc>) {
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
        if let Err(err) = crate::service::acks::apply(&self.store, &verdicts).await {
            tracing::warn!(error = %err, "could not apply the ERP's answers; the exports stay SENT");
        }
    }

    /// Sets the queue and health gauges (all orgs, no per-connection series).
    pub async fn update_gauges(&self) {
        if let Ok(depth) = self.store.queue_depth().await {
            metrics::gauge!(metric::EXPORT_QUEUE_DEPTH).set(depth as f64);
        }
        if let Ok(counts) = self.store.health_counts().await {
            for health in crate::domain::delivery::Health::ALL {
                let n = counts.get(&health).copied().unwrap_or(0);
                metrics::gauge!(metric::CONNECTION_HEALTH, "health" => health.as_str())
                    .set(n as f64);
            }
        }
    }

    /// When the earliest claimable export falls due, if any.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_due_at().await
    }

    /// Pushes announced by other processes (PostgreSQL `LISTEN`), when the backend has them.
    pub async fn notifications(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError> {
        self.store.export_notifications().await
    }

    /// Tells other processes' workers that exports were pushed (PostgreSQL `NOTIFY`; nothing
    /// where the backend has one process).
    pub async fn announce_pushes(&self) -> Result<(), StoreError> {
        self.store.announce_exports().await
    }
}

/// The queue wait of first attempts (push → claim), for the histogram.
fn record_queue_wait(claimed: &[Export], now: DateTime<Utc>) {
    for export in claimed.iter().filter(|e| e.attempts == 1) {
        let wait = (now - export.created_at).to_std().unwrap_or_default();
        metrics::histogram!(metric::QUEUE_WAIT).record(wait.as_secs_f64());
    }
}

/// An outcome before it borrows into [`AttemptOutcome`].
enum PlannedOutcome {
    Sent(String),
    Retry(DateTime<Utc>, Value),
    Requeue(DateTime<Utc>, Value),
    Failed(Value),
}

impl PlannedOutcome {
    fn error(&self) -> Value {
        match self {
            PlannedOutcome::Sent(_) => Value::Null,
            PlannedOutcome::Retry(_, error)
            | PlannedOutcome::Requeue(_, error)
            | PlannedOutcome::Failed(error) => error.clone(),
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
            PlannedOutcome::Requeue(next, error) => AttemptOutcome::Requeue {
                next_attempt_at: *next,
                error,
            },
            PlannedOutcome::Failed(error) => AttemptOutcome::Failed { error },
        }
    }
}

/// The outcome, audit row and step of one decided attempt.
fn plan(
    done: &Finished,
    decision: ExportDecision,
    now: DateTime<Utc>,
) -> (PlannedOutcome, NewAuditEntry, Step) {
    let export = &done.export;
    let entry = |action: &'static str, details: Value| {
        NewAuditEntry::export(export.org_id, export.id, Actor::system(), action, details)
    };
    let fail = match &done.result {
        Ok(SentTo { path, .. }) => {
            return (
                PlannedOutcome::Sent(path.clone()),
                entry(
                    action::EXPORT_SENT,
                    json!({ "draft_order_id": export.draft_order_id, "file_name": export.file_name,
                            "dropzone_path": path, "attempt": export.attempts }),
                ),
                Step::Sent(export.id),
            );
        }
        Err(fail) => fail,
    };
    let mut error = delivery_error(fail.code.as_str(), &fail.message, now, export.attempts);
    if let (Some(details), Some(obj)) = (&fail.details, error.as_object_mut()) {
        for (k, v) in details {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match decision {
        ExportDecision::Retry(next) => (
            PlannedOutcome::Retry(next, error.clone()),
            entry(
                action::EXPORT_RETRY_SCHEDULED,
                json!({ "error": error, "next_attempt_at": next }),
            ),
            Step::Retrying(export.id, fail.code),
        ),
        ExportDecision::Requeue(next) => (
            PlannedOutcome::Requeue(next, error.clone()),
            entry(
                action::EXPORT_RETRY_SCHEDULED,
                json!({ "error": error, "next_attempt_at": next, "waiting_for_connection": true }),
            ),
            Step::Waiting(export.id, fail.code),
        ),
        ExportDecision::Fail | ExportDecision::Sent => (
            PlannedOutcome::Failed(error.clone()),
            entry(action::EXPORT_FAILED, json!({ "error": error })),
            Step::Failed(export.id, fail.code),
        ),
    }
}

/// An attempt's outcome with nothing from the peer in it: a delivered path stays (it is ours),
/// an error keeps only its code, headline, time and attempt number.
fn plain_outcome(attempt: &FinishedAttempt<'_>) -> PlannedOutcome {
    let plain = |error: &Value| {
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
        AttemptOutcome::Requeue {
            next_attempt_at,
            error,
        } => PlannedOutcome::Requeue(*next_attempt_at, plain(error)),
        AttemptOutcome::Failed { error } => PlannedOutcome::Failed(plain(error)),
    }
}

/// Metrics for a recorded attempt.
fn count(export: &Export, step: &Step, now: DateTime<Utc>) {
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

/// The target an export goes to, or why it goes nowhere.
fn target_of(
    export: &Export,
    targets: &Targets,
    max_attempts: u32,
) -> Result<Arc<Target>, Failure> {
    match targets.get(&export.erp_connection_id) {
        // Every claim counts an attempt. More claims than attempts allowed means earlier
        // attempts ended without an outcome being recorded (a crash, a lease that ran out):
        // the export stops here instead of looping forever.
        _ if export.attempts > max_attempts => Err(Failure::before(
            ErrorCode::AttemptsExhausted,
            format!(
                "claimed {} times, {max_attempts} allowed, without a recorded outcome; \
                 check the ERP for the order before pushing it again",
                export.attempts
            ),
        )),
        Some(Ok(t)) if t.connection.org_id == export.org_id => Ok(t.clone()),
        Some(Err(f)) => Err(f.clone()),
        _ => Err(Failure::before(
            ErrorCode::ConfigUnreadable,
            "the connection is gone",
        )),
    }
}

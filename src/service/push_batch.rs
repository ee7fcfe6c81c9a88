//! Pushes recorded together. Each push must be durable before its 202, and on PostgreSQL a
//! push alone costs a statement, a commit and a WAL flush. Under load, the pushes that arrive
//! while a batch is being written wait and go into the next one: one statement, one commit
//! and one flush for all of them. Nothing waits on a timer, so a lone push is written at once.
//!
//! One writer, not several: the statement's fixed cost (executor start-up, triggers, the
//! commit) is most of a small batch's, and a second writer halves the batches, so each order
//! costs more.
//!
//! The batch only records what is plain (an APPROVED draft, its first export); anything else
//! — a second push of a draft in the same batch, a refusal, a race, a failed batch — is
//! answered "not created", and the caller takes the general path, which says why.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::audit::NewAuditEntry;
use crate::domain::draft::DraftStatus;
use crate::domain::export::Export;
use crate::store::{NewPush, Store};

/// Most pushes in one statement.
const MAX_BATCH: usize = 128;
/// Pushes queued before a caller waits for room.
const QUEUE: usize = 4096;

/// A plain push, owned so it can wait in the queue.
#[derive(Debug)]
pub(super) struct QueuedPush {
    pub org_id: Uuid,
    pub draft_id: Uuid,
    pub export_id: Uuid,
    pub file_name: String,
    pub idempotency_key: Option<String>,
    pub now: DateTime<Utc>,
    pub audit: NewAuditEntry,
}

impl QueuedPush {
    /// The push as the store takes it: from `from`, and (retry-push) only when the latest
    /// export FAILED.
    pub fn as_push(
        &self,
        from: &'static [DraftStatus],
        latest_must_be_failed: bool,
    ) -> NewPush<'_> {
        NewPush {
            org_id: self.org_id,
            draft_id: self.draft_id,
            export_id: self.export_id,
            file_name: &self.file_name,
            idempotency_key: self.idempotency_key.as_deref(),
            from,
            latest_must_be_failed,
            now: self.now,
            audit: &self.audit,
        }
    }
}

/// What a batch did with a push.
#[derive(Debug)]
pub(super) enum Batched {
    /// Recorded: the new export.
    Created(Export),
    /// Not recorded; the general path must answer it.
    Declined(QueuedPush),
    /// The writer is gone (the runtime is shutting down): whether it was recorded is
    /// unknown, so the caller is told to retry (with its Idempotency-Key, safely).
    Lost,
}

type Reply = oneshot::Sender<Result<Export, QueuedPush>>;

/// The queue of plain pushes and its writer.
#[derive(Debug, Clone)]
pub(super) struct PushBatcher {
    queue: mpsc::Sender<(QueuedPush, Reply)>,
}

impl PushBatcher {
    /// Starts the writer (on the current runtime); it ends when the batcher is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        Self { queue }
    }

    /// Queues a plain push and waits for its batch.
    pub async fn push(&self, push: QueuedPush) -> Batched {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((push, _))) = self.queue.send((push, reply)).await {
            return Batched::Declined(push);
        }
        match answer.await {
            Ok(Ok(export)) => Batched::Created(export),
            Ok(Err(push)) => Batched::Declined(push),
            Err(_) => Batched::Lost,
        }
    }
}

async fn write_batches(store: Arc<dyn Store>, mut queue: mpsc::Receiver<(QueuedPush, Reply)>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(store.as_ref(), std::mem::take(&mut batch)).await;
    }
}

/// Writes one batch and answers every push in it.
async fn write(store: &dyn Store, batch: Vec<(QueuedPush, Reply)>) {
    // One push per draft per statement: a second one waits for the first to commit, on the
    // general path, which then sees the draft PUSHING (409) or the same key (the same export).
    let mut drafts = HashSet::with_capacity(batch.len());
    let (batch, again): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|(push, _)| drafts.insert(push.draft_id));
    for (push, reply) in again {
        let _ = reply.send(Err(push));
    }
    let pushes: Vec<NewPush<'_>> = batch
        .iter()
        .map(|(push, _)| push.as_push(&[DraftStatus::Approved], false))
        .collect();
    let created = match store.push_drafts_together(&pushes).await {
        Ok(Some(created)) => created,
        Ok(None) => Vec::new(),
        Err(err) => {
            tracing::debug!(error = %err, pushes = pushes.len(), "a push batch failed; pushing one by one");
            Vec::new()
        }
    };
    drop(pushes);
    let mut created = created.into_iter();
    for (push, reply) in batch {
        let _ = reply.send(created.next().flatten().ok_or(push));
    }
}

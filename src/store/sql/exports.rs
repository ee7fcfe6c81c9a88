//! Exports: pushes, claims, attempts, acknowledgements and the archive: [`ExportStore`] for the
//! backend whose sqlx database is `Db`, compiled once per backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::FieldError;
use crate::domain::ack::AckOutcome;
use crate::domain::draft::DraftStatus;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::{Page, PageRequest};
use crate::store::{
    AckApply, ArchiveRecord, Backend, ClaimRequest, ExportStore, FinishedAttempt, NewPush,
    PushOutcome, Queries, SqlStore, StoreError, exports, now, push_list, rows, storable,
};

/// One row of a batch statement's `VALUES` list.
type Values<'qb> = sqlx::query_builder::Separated<'qb, Db, &'static str>;

impl SqlStore<Db> {
    /// Runs a batch `UPDATE … FROM (VALUES …)` on the exports this worker still holds and
    /// returns the (export, draft) ids it changed. `update` is the statement through its
    /// `SET` list; this adds one `VALUES` row per item (its first column the export id). No
    /// items, no statement. It runs unprepared: its best plan depends on the queue's size now.
    ///
    /// `lease_owner` is set only on a claimed PENDING export and every outcome clears it, so
    /// it alone says the worker still holds the export; a status test here would match the
    /// queue index's predicate and tempt the planner into walking the whole queue instead of
    /// looking the ids up.
    async fn update_held<'c, T>(
        mut update: sqlx::QueryBuilder<Db>,
        items: &[T],
        values: impl FnMut(Values<'_>, &T),
        worker: Uuid,
        executor: impl sqlx::Executor<'c, Database = Db>,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        update.push(" FROM (");
        update.push_values(items, values);
        update.push(") AS v WHERE erp_export.id = v.column1 AND erp_export.lease_owner = ");
        update.push_bind(worker);
        update.push(" RETURNING erp_export.id, erp_export.draft_order_id");
        Ok(update
            .build_query_as()
            .persistent(false)
            .fetch_all(executor)
            .await?)
    }

    /// Attempts that failed for good: FAILED with their error; (export, draft) ids.
    async fn record_failed(
        tx: &mut sqlx::Transaction<'static, Db>,
        worker: Uuid,
        now: chrono::DateTime<chrono::Utc>,
        failed: &[(&FinishedAttempt<'_>, &serde_json::Value)],
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "UPDATE erp_export SET status = 'FAILED', error_json = v.column2, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
        );
        q.push_bind(now);
        Self::update_held(
            q,
            failed,
            |mut row, (a, error)| {
                row.push_bind(a.export.id)
                    .push_bind(sqlx::types::Json(storable(error)));
            },
            worker,
            &mut **tx,
        )
        .await
    }

    /// Drafts whose export was just recorded SENT become PUSHED, FAILED ones ERROR.
    async fn settle_pushing_drafts(
        tx: &mut sqlx::Transaction<'static, Db>,
        now: chrono::DateTime<chrono::Utc>,
        pushed_drafts: &[Uuid],
        errored_drafts: &[Uuid],
    ) -> Result<(), StoreError> {
        for (drafts, to) in [(pushed_drafts, "PUSHED"), (errored_drafts, "ERROR")] {
            if drafts.is_empty() {
                continue;
            }
            let mut q = sqlx::QueryBuilder::<Db>::new("UPDATE draft_order SET status = ");
            q.push_bind(to).push(", updated_at = ").push_bind(now);
            q.push(" WHERE status = 'PUSHING' AND id IN ");
            push_list(&mut q, drafts.iter().copied());
            q.build().persistent(false).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Rejected acknowledgements: their SENT exports FAILED, the drafts ERROR; the ids
    /// changed.
    async fn record_rejections(
        tx: &mut sqlx::Transaction<'static, Db>,
        now: chrono::DateTime<chrono::Utc>,
        rejected: &[(&AckApply<'_>, serde_json::Value)],
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut failed = Vec::new();
        for chunk in rejected.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "UPDATE erp_export SET status = 'FAILED', error_json = v.column2, updated_at = ",
            );
            q.push_bind(now).push(" FROM (");
            q.push_values(chunk, |mut row, (a, error)| {
                row.push_bind(a.export.id)
                    .push_bind(sqlx::types::Json(storable(error)));
            });
            q.push(
                ") AS v WHERE erp_export.id = v.column1 AND erp_export.status = 'SENT' \
                    RETURNING erp_export.id, erp_export.draft_order_id",
            );
            let rows: Vec<(Uuid, Uuid)> = q.build_query_as().fetch_all(&mut **tx).await?;
            if rows.is_empty() {
                continue;
            }
            let mut d = sqlx::QueryBuilder::<Db>::new(
                "UPDATE draft_order SET status = 'ERROR', updated_at = ",
            );
            d.push_bind(now).push(" WHERE status = 'PUSHED' AND id IN ");
            push_list(&mut d, rows.iter().map(|(_, draft)| *draft));
            d.build().execute(&mut **tx).await?;
            failed.extend(rows.into_iter().map(|(id, _)| id));
        }
        Ok(failed)
    }

    /// Why a locked draft in `status` cannot be pushed now (its status, or a retry
    /// whose latest export is not FAILED), with the export still live; None when it can.
    async fn push_refusal(
        tx: &mut sqlx::Transaction<'static, Db>,
        push: &NewPush<'_>,
        status: DraftStatus,
    ) -> Result<Option<PushOutcome>, StoreError> {
        use exports as q;
        let latest_failed = if push.latest_must_be_failed {
            let latest: Option<rows::ExportRow> = sqlx::query_as(q::LATEST_EXPORT_OF_DRAFT)
                .bind(push.draft_id)
                .fetch_optional(&mut **tx)
                .await?;
            latest.is_some_and(|l| l.status == "FAILED")
        } else {
            true
        };
        if push.from.contains(&status) && latest_failed {
            return Ok(None);
        }
        let live: Option<rows::ExportRow> = sqlx::query_as(q::LIVE_EXPORT_OF_DRAFT)
            .bind(push.draft_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(Some(PushOutcome::WrongStatus {
            status,
            live_export: live.map(TryInto::try_into).transpose()?,
        }))
    }
}

#[async_trait::async_trait]
impl ExportStore for SqlStore<Db> {
    fn records_pushes_together(&self) -> bool {
        Self::PUSHES_TOGETHER
    }

    async fn push_drafts_together(
        &self,
        pushes: &[NewPush<'_>],
    ) -> Result<Option<Vec<Option<Export>>>, StoreError> {
        if pushes.is_empty() {
            return Ok(Some(Vec::new()));
        }
        self.push_many(pushes).await
    }

    async fn push_draft(&self, push: &NewPush<'_>) -> Result<PushOutcome, StoreError> {
        use DraftStatus;
        use PushOutcome;
        use exports as q;
        if let Some(export) = self.push_fast(push).await? {
            return Ok(PushOutcome::Created(export));
        }
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar(Self::LOCK_DRAFT)
            .bind(push.org_id)
            .bind(push.draft_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(status) = status else {
            tx.rollback().await?;
            return Ok(PushOutcome::DraftNotFound);
        };
        let status: DraftStatus = status
            .parse()
            .map_err(|e: FieldError| StoreError::Corrupt(e.to_string()))?;
        let replayed: Option<rows::ExportRow> = match push.idempotency_key {
            Some(key) => {
                sqlx::query_as(q::EXPORT_BY_KEY)
                    .bind(push.draft_id)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        if let Some(row) = replayed {
            tx.rollback().await?;
            return Ok(PushOutcome::Replayed {
                export: row.try_into()?,
                draft_status: status,
            });
        }
        if let Some(refused) = Self::push_refusal(&mut tx, push, status).await? {
            tx.rollback().await?;
            return Ok(refused);
        }
        let connection: Option<Uuid> = sqlx::query_scalar(q::ACTIVE_CONNECTION_ID)
            .bind(push.org_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(connection) = connection else {
            tx.rollback().await?;
            return Ok(PushOutcome::NoActiveConnection);
        };
        let row: rows::ExportRow = sqlx::query_as(q::INSERT_EXPORT)
            .bind(push.export_id)
            .bind(push.org_id)
            .bind(push.draft_id)
            .bind(connection)
            .bind(push.file_name)
            .bind(push.idempotency_key)
            .bind(push.now)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(q::SET_DRAFT_STATUS)
            .bind(push.draft_id)
            .bind(status.as_str())
            .bind(DraftStatus::Pushing.as_str())
            .bind(push.now)
            .execute(&mut *tx)
            .await?;
        Db::insert_audits(&mut *tx, &[push.audit]).await?;
        tx.commit().await?;
        Ok(PushOutcome::Created(row.try_into()?))
    }

    async fn export(&self, org_id: Uuid, id: Uuid) -> Result<Option<Export>, StoreError> {
        Db::find::<rows::ExportRow, _>(&self.pool, exports::EXPORT_BY_ID, &[org_id, id]).await
    }

    async fn list_exports(
        &self,
        org_id: Uuid,
        status: Option<ExportStatus>,
        page: PageRequest,
    ) -> Result<Page<Export>, StoreError> {
        Db::list_page(
            &self.pool,
            exports::LIST_EXPORTS,
            org_id,
            status.map(|s| s.as_str()),
            page,
            |row: rows::ExportRow| row.try_into(),
            |e: &Export| e.seq,
        )
        .await
    }

    async fn exports_of_draft(
        &self,
        org_id: Uuid,
        draft_id: Uuid,
    ) -> Result<Vec<Export>, StoreError> {
        let rows: Vec<rows::ExportRow> = sqlx::query_as(exports::EXPORTS_OF_DRAFT)
            .bind(org_id)
            .bind(draft_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn claim_exports(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError> {
        self.claim(claim).await
    }

    async fn record_archives(
        &self,
        worker: Uuid,
        archives: &[ArchiveRecord<'_>],
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "UPDATE erp_export SET export_storage_key = v.column2, \
             content_sha256 = v.column3, updated_at = ",
        );
        q.push_bind(now());
        let recorded = Self::update_held(
            q,
            archives,
            |mut row, a| {
                row.push_bind(a.id)
                    .push_bind(a.storage_key.to_owned())
                    .push_bind(a.content_sha256.to_owned());
            },
            worker,
            &self.pool,
        )
        .await?;
        Ok(recorded.into_iter().map(|(id, _)| id).collect())
    }

    async fn finish_attempts(
        &self,
        worker: Uuid,
        attempts: &[FinishedAttempt<'_>],
    ) -> Result<Vec<Uuid>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let now = now();
        let exports::Outcomes {
            sent,
            retried,
            failed,
        } = exports::Outcomes::of(attempts);
        let mut tx = self.begin_write().await?;
        let mut recorded: Vec<Uuid> = Vec::new();
        let mut pushed_drafts = Vec::new();
        let mut errored_drafts = Vec::new();
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "UPDATE erp_export SET status = 'SENT', dropzone_path = v.column2, \
             error_json = NULL, lease_owner = NULL, lease_expires_at = NULL, sent_at = ",
        );
        q.push_bind(now).push(", updated_at = ").push_bind(now);
        let sent = Self::update_held(
            q,
            &sent,
            |mut row, (a, path)| {
                row.push_bind(a.export.id).push_bind((*path).to_owned());
            },
            worker,
            &mut *tx,
        )
        .await?;
        for (id, draft) in sent {
            recorded.push(id);
            pushed_drafts.push(draft);
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "UPDATE erp_export SET next_attempt_at = v.column2, error_json = v.column3, \
             attempts = erp_export.attempts - v.column4, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
        );
        q.push_bind(now);
        let retried = Self::update_held(
            q,
            &retried,
            |mut row, (a, next, error, refund)| {
                row.push_bind(a.export.id)
                    .push_bind(*next)
                    .push_bind(sqlx::types::Json(storable(error)))
                    .push_bind(*refund);
            },
            worker,
            &mut *tx,
        )
        .await?;
        recorded.extend(retried.into_iter().map(|(id, _)| id));
        for (id, draft) in Self::record_failed(&mut tx, worker, now, &failed).await? {
            recorded.push(id);
            errored_drafts.push(draft);
        }
        Self::settle_pushing_drafts(&mut tx, now, &pushed_drafts, &errored_drafts).await?;
        let audits: Vec<_> = attempts
            .iter()
            .filter(|a| recorded.contains(&a.export.id))
            .map(|a| a.audit)
            .collect();
        Db::insert_audits(&mut *tx, &audits).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn exports_by_file_names(
        &self,
        org_id: Uuid,
        names: &[String],
    ) -> Result<Vec<Export>, StoreError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(concat!(
                "SELECT ",
                exports::export_columns!(),
                " FROM erp_export WHERE org_id = "
            ));
            q.push_bind(org_id).push(" AND file_name IN ");
            push_list(&mut q, chunk.iter().cloned());
            let rows: Vec<rows::ExportRow> = q.build_query_as().fetch_all(&self.pool).await?;
            for row in rows {
                out.push(row.try_into()?);
            }
        }
        Ok(out)
    }

    async fn apply_acks(&self, acks: &[AckApply<'_>]) -> Result<Vec<Uuid>, StoreError> {
        use AckOutcome;
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(changed) = self.apply_acks_fast(acks).await? {
            return Ok(changed);
        }
        let now = now();
        let mut tx = self.begin_write().await?;
        let mut changed: Vec<Uuid> = Vec::new();
        let acked: Vec<_> = acks
            .iter()
            .filter_map(|a| match a.outcome {
                AckOutcome::Acked { erp_order_id, .. } => Some((a, erp_order_id)),
                _ => None,
            })
            .collect();
        let rejected: Vec<_> = acks
            .iter()
            .filter_map(|a| a.outcome.error_json().map(|e| (a, e)))
            .collect();
        for chunk in acked.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "UPDATE erp_export SET status = 'ACKED', erp_order_id = v.column2, acked_at = ",
            );
            q.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" FROM (");
            q.push_values(chunk, |mut row, (a, erp)| {
                row.push_bind(a.export.id).push_bind((*erp).clone());
            });
            q.push(
                ") AS v WHERE erp_export.id = v.column1 AND erp_export.status = 'SENT' \
                    RETURNING erp_export.id, erp_export.draft_order_id, erp_export.erp_order_id",
            );
            let rows: Vec<(Uuid, Uuid, Option<String>)> =
                q.build_query_as().fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                continue;
            }
            let mut d = sqlx::QueryBuilder::<Db>::new(
                "UPDATE draft_order SET erp_order_id = v.column2, updated_at = ",
            );
            d.push_bind(now).push(" FROM (");
            d.push_values(&rows, |mut row, (_, draft, erp)| {
                row.push_bind(*draft).push_bind(erp.clone());
            });
            d.push(") AS v WHERE draft_order.id = v.column1");
            d.build().execute(&mut *tx).await?;
            changed.extend(rows.into_iter().map(|(id, _, _)| id));
        }
        changed.extend(Self::record_rejections(&mut tx, now, &rejected).await?);
        let changed_set: std::collections::HashSet<Uuid> = changed.iter().copied().collect();
        let audits: Vec<_> = acks
            .iter()
            .filter(|a| changed_set.contains(&a.export.id))
            .map(|a| a.audit)
            .collect();
        for chunk in audits.chunks(500) {
            Db::insert_audits(&mut *tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn acquire_ack_lease(
        &self,
        connection_id: Uuid,
        owner: Uuid,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let got: Option<Uuid> = sqlx::query_scalar(exports::ACQUIRE_ACK_LEASE)
            .bind(connection_id)
            .bind(owner)
            .bind(until)
            .bind(now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(got.is_some())
    }

    async fn release_ack_lease(&self, connection_id: Uuid, owner: Uuid) -> Result<(), StoreError> {
        sqlx::query(exports::RELEASE_ACK_LEASE)
            .bind(connection_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(exports::QUEUE_DEPTH)
            .persistent(false)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn next_due_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(sqlx::query_scalar(exports::NEXT_DUE)
            .bind(now())
            .persistent(false)
            .fetch_optional(&self.pool)
            .await?)
    }
}

//! Draft orders and their lines: [`OrderStore`] for the backend whose sqlx database is `Db`,
//! compiled once per backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::audit::NewAuditEntry;
use crate::domain::draft::{DraftOrder, DraftStatus, NewDraft};
use crate::domain::page::{Page, PageRequest};
use crate::store::{
    Backend, OrderStore, Queries, SqlStore, StoreError, now, orders, push_list, rows,
};

impl SqlStore<Db> {
    async fn load_draft<'e, E>(
        executor: E,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<Option<rows::DraftRow>, StoreError>
    where
        E: sqlx::Executor<'e, Database = Db>,
    {
        Ok(sqlx::query_as(orders::DRAFT_BY_ID)
            .bind(org_id)
            .bind(id)
            .fetch_optional(executor)
            .await?)
    }

    async fn draft_with_lines(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<Option<DraftOrder>, StoreError> {
        let Some(row) = Self::load_draft(&self.pool, org_id, id).await? else {
            return Ok(None);
        };
        let lines: Vec<rows::LineRow> = sqlx::query_as(orders::LINES_OF_DRAFT)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        row.into_draft(lines).map(Some)
    }
}

#[async_trait::async_trait]
impl OrderStore for SqlStore<Db> {
    async fn insert_draft(
        &self,
        id: Uuid,
        org_id: Uuid,
        draft: &NewDraft,
        audit: &NewAuditEntry,
    ) -> Result<DraftOrder, StoreError> {
        use orders as q;
        let now = now();
        let source = draft
            .source_document
            .as_ref()
            .map(|s| sqlx::types::Json(rows::source_document_json(s)));
        let mut tx = self.begin_write().await?;
        sqlx::query(q::INSERT_DRAFT)
            .bind(id)
            .bind(org_id)
            .bind(draft.header.external_order_number.as_deref())
            .bind(draft.header.order_date.map(|d| d.to_string()))
            .bind(draft.header.currency.as_deref())
            .bind(draft.header.requested_delivery_date.map(|d| d.to_string()))
            .bind(draft.header.notes.as_deref())
            .bind(draft.customer.id)
            .bind(draft.customer.erp_customer_number.as_deref())
            .bind(draft.customer.name.as_deref())
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for chunk in draft.lines.chunks(q::LINES_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<Db>::new(q::INSERT_LINE_PREFIX);
            insert.push_values(chunk, |mut row, line| {
                row.push_bind(id)
                    .push_bind(i32::try_from(line.line_no).unwrap_or(i32::MAX))
                    .push_bind(line.internal_sku.clone())
                    .push_bind(line.qty.as_str().to_owned())
                    .push_bind(line.uom.clone())
                    .push_bind(line.unit_price.as_ref().map(|p| p.as_str().to_owned()))
                    .push_bind(line.currency.clone())
                    .push_bind(line.customer_sku_raw.clone())
                    .push_bind(line.description.clone());
            });
            insert.build().execute(&mut *tx).await?;
        }
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        self.draft_with_lines(org_id, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn draft(&self, org_id: Uuid, id: Uuid) -> Result<Option<DraftOrder>, StoreError> {
        self.draft_with_lines(org_id, id).await
    }

    async fn drafts_by_ids(&self, ids: &[Uuid]) -> Result<Vec<DraftOrder>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let in_list = |sql: &'static str| {
            let mut q = sqlx::QueryBuilder::<Db>::new(sql);
            push_list(&mut q, ids.iter().copied());
            q
        };
        // Drafts and lines are read at once, on two connections: this is on the
        // delivery worker's path from claim to delivery.
        let mut drafts_q = in_list(orders::DRAFTS_BY_IDS);
        let mut lines_q = in_list(orders::LINES_OF_DRAFTS);
        let (drafts, lines): (Vec<rows::DraftRow>, Vec<rows::DraftLineRow>) = futures::try_join!(
            drafts_q.build_query_as().fetch_all(&self.pool),
            lines_q.build_query_as().fetch_all(&self.pool),
        )?;
        let mut by_draft: std::collections::HashMap<Uuid, Vec<rows::LineRow>> =
            std::collections::HashMap::new();
        for line in lines {
            by_draft
                .entry(line.draft_order_id)
                .or_default()
                .push(line.line);
        }
        drafts
            .into_iter()
            .map(|d| {
                let lines = by_draft.remove(&d.id()).unwrap_or_default();
                d.into_draft(lines)
            })
            .collect()
    }

    async fn list_drafts(
        &self,
        org_id: Uuid,
        status: Option<DraftStatus>,
        page: PageRequest,
    ) -> Result<Page<DraftOrder>, StoreError> {
        Db::list_page(
            &self.pool,
            orders::LIST_DRAFTS,
            org_id,
            status.map(|s| s.as_str()),
            page,
            |row: rows::DraftRow| row.into_draft(Vec::new()),
            |d: &DraftOrder| d.seq,
        )
        .await
    }

    async fn approve_draft(
        &self,
        org_id: Uuid,
        id: Uuid,
        approver: &str,
        at: chrono::DateTime<chrono::Utc>,
        audit: &NewAuditEntry,
    ) -> Result<Option<DraftOrder>, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(orders::APPROVE_DRAFT)
            .bind(org_id)
            .bind(id)
            .bind(at)
            .bind(approver)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        self.draft_with_lines(org_id, id).await
    }
}

//! What a push would deliver, without creating anything: a draft (or the sample order) in the
//! active connection's format or in an unsaved config's, under the name a push now would give
//! it. The bytes are the delivered bytes, except for what only exists once an export does: the
//! export id (a template's `{export_id}`, EDIFACT's references) and the push time (the default
//! name, EDIFACT's preparation time) are the preview's own.

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::ServiceError;
use super::connections::ConnectionService;
use crate::connectors::ConnectorError;
use crate::domain::audit::Actor;
use crate::domain::order::ApprovedOrder;
use crate::formats::naming::NameFacts;
use crate::formats::{DeliveryFormat, ExportFacts, sample};
use crate::store::Store;

/// A previewed export file.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The name it would be delivered under.
    pub file_name: String,
    /// Its media type.
    pub content_type: &'static str,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

/// Which delivery format to preview with.
#[derive(Debug, Clone, Copy)]
pub enum PreviewWith<'a> {
    /// The org's active connection's.
    Active,
    /// The format fields of an unsaved connector config (other fields are ignored).
    Unsaved(&'a Map<String, Value>),
}

/// Preview use cases.
#[derive(Clone)]
pub struct PreviewService {
    store: Arc<dyn Store>,
    connections: ConnectionService,
}

impl std::fmt::Debug for PreviewService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewService").finish_non_exhaustive()
    }
}

impl PreviewService {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>, connections: ConnectionService) -> Self {
        Self { store, connections }
    }

    /// `POST /draft-orders/{id}/preview`: the draft as a push now would deliver it. A draft
    /// not approved yet is shown as if the caller approved it now.
    pub async fn draft(
        &self,
        actor: &Actor,
        org_id: Uuid,
        draft_id: Uuid,
        with: PreviewWith<'_>,
    ) -> Result<Preview, ServiceError> {
        let draft = self
            .store
            .draft(org_id, draft_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Draft order not found".into()))?;
        let org = self
            .store
            .org_by_id(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("org not found".into()))?;
        let delivery = self.delivery(org_id, with).await?;
        let now = crate::store::now();
        let mut approved = draft.clone();
        if approved.approved_at.is_none() {
            approved.approved_at = Some(now);
            approved.approved_by = Some(actor.label.clone());
        }
        let order = approved
            .to_approved(&org.slug)
            .ok_or_else(|| ServiceError::Internal("an approval time was just set".into()))?;
        let export_id = Uuid::new_v4();
        let ext = delivery.format.renderer().extension();
        let name = NameFacts::for_draft(draft_id, Some(&approved), export_id, now, ext);
        render(&delivery, &order, &name)
    }

    /// The sample order (see [`sample`]) in the org's active format or an unsaved config's.
    pub async fn sample(
        &self,
        org_id: Uuid,
        with: PreviewWith<'_>,
    ) -> Result<Preview, ServiceError> {
        let org = self
            .store
            .org_by_id(org_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("org not found".into()))?;
        let delivery = self.delivery(org_id, with).await?;
        let order = sample::order(&org.slug);
        let name = NameFacts {
            draft_id: order.draft_order_id,
            export_id: Uuid::new_v4(),
            external_order_number: order.header.external_order_number.as_deref(),
            erp_customer_number: order.customer.erp_customer_number.as_deref(),
            approved_at: Some(order.approved_at),
            pushed_at: crate::store::now(),
            ext: delivery.format.renderer().extension(),
        };
        render(&delivery, &order, &name)
    }

    async fn delivery(
        &self,
        org_id: Uuid,
        with: PreviewWith<'_>,
    ) -> Result<DeliveryFormat, ServiceError> {
        match with {
            PreviewWith::Unsaved(config) => Ok(DeliveryFormat::parse(config)?),
            PreviewWith::Active => match self.connections.active_config(org_id).await? {
                Some((_, opened)) => Ok(opened.delivery.clone()),
                None => Err(ServiceError::Conflict(
                    super::orders::NO_ACTIVE_CONNECTOR.into(),
                )),
            },
        }
    }
}

/// Renders like a delivery does; an order the format cannot carry is 422 saying why.
fn render(
    delivery: &DeliveryFormat,
    order: &ApprovedOrder,
    name: &NameFacts<'_>,
) -> Result<Preview, ServiceError> {
    let renderer = delivery.format.renderer();
    let facts = ExportFacts {
        export_id: name.export_id,
        pushed_at: name.pushed_at,
    };
    let bytes = renderer.render(order, &facts).map_err(|e| {
        let err = ConnectorError::from(e);
        ServiceError::Invalid(crate::domain::FieldError::new(
            "format",
            format!("{}: {}", err.code, err.message),
        ))
    })?;
    Ok(Preview {
        file_name: delivery.file_name(name),
        content_type: renderer.content_type(),
        bytes,
    })
}

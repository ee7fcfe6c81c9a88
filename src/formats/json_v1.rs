//! The export JSON v1 document (the default format): `schemas/orderflow_export_json_v1.schema.json`,
//! rendered from an approved order and validated against that schema before anything is sent.

use std::sync::OnceLock;

use chrono::SecondsFormat;
use serde::Serialize;
use uuid::Uuid;

use super::{ExportFacts, RenderError, Renderer};
use crate::domain::order::{ApprovedOrder, DecimalText};

/// The schema, byte-identical to the shared contract (a test compares them).
pub const SCHEMA_JSON: &str = include_str!("../../schemas/orderflow_export_json_v1.schema.json");

#[derive(Serialize)]
struct ExportDocument<'a> {
    export_version: &'static str,
    org_slug: &'a str,
    draft_order_id: Uuid,
    approved_at: String,
    customer: Customer<'a>,
    header: Header<'a>,
    lines: Vec<Line<'a>>,
    meta: Meta<'a>,
}

#[derive(Serialize)]
struct Customer<'a> {
    id: Option<Uuid>,
    erp_customer_number: Option<&'a str>,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Header<'a> {
    external_order_number: Option<&'a str>,
    order_date: Option<String>,
    currency: Option<&'a str>,
    requested_delivery_date: Option<String>,
    notes: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    line_no: u32,
    internal_sku: &'a str,
    // Written with exactly the digits the order holds, never through a float.
    qty: &'a DecimalText,
    uom: &'a str,
    unit_price: Option<&'a DecimalText>,
    currency: Option<&'a str>,
    customer_sku_raw: Option<&'a str>,
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct Meta<'a> {
    created_by: Option<&'a str>,
    source_document: Option<SourceDocument<'a>>,
}

#[derive(Serialize)]
struct SourceDocument<'a> {
    document_id: Option<Uuid>,
    file_name: Option<&'a str>,
    sha256: Option<&'a str>,
}

/// The JSON v1 renderer (no options).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonV1;

impl Renderer for JsonV1 {
    fn extension(&self) -> &'static str {
        "json"
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn render(&self, order: &ApprovedOrder, _facts: &ExportFacts) -> Result<Vec<u8>, RenderError> {
        render(order)
    }
}

fn validator() -> Result<&'static jsonschema::Validator, RenderError> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: serde_json::Value =
                serde_json::from_str(SCHEMA_JSON).map_err(|e| e.to_string())?;
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| RenderError::SchemaInvalid(format!("schema unusable: {e}")))
}

/// Renders the order as export JSON (lines by `line_no`; a line without its own currency takes
/// the header's) and validates it. A mismatch is `SCHEMA_INVALID` naming the first problem.
pub fn render(order: &ApprovedOrder) -> Result<Vec<u8>, RenderError> {
    let mut lines: Vec<_> = order.lines.iter().collect();
    lines.sort_by_key(|l| l.line_no);
    let header_currency = order.header.currency.as_deref();
    let document = ExportDocument {
        export_version: "orderflow_export_json_v1",
        org_slug: order.org_slug.as_str(),
        draft_order_id: order.draft_order_id,
        // The same text the API shows for the draft: one instant, written one way.
        approved_at: order
            .approved_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        customer: Customer {
            id: order.customer.id,
            erp_customer_number: order.customer.erp_customer_number.as_deref(),
            name: order.customer.name.as_deref(),
        },
        header: Header {
            external_order_number: order.header.external_order_number.as_deref(),
            order_date: order.header.order_date.map(|d| d.to_string()),
            currency: header_currency,
            requested_delivery_date: order.header.requested_delivery_date.map(|d| d.to_string()),
            notes: order.header.notes.as_deref(),
        },
        lines: lines
            .into_iter()
            .map(|l| Line {
                line_no: l.line_no,
                internal_sku: &l.internal_sku,
                qty: &l.qty,
                uom: &l.uom,
                unit_price: l.unit_price.as_ref(),
                currency: l.currency.as_deref().or(header_currency),
                customer_sku_raw: l.customer_sku_raw.as_deref(),
                description: l.description.as_deref(),
            })
            .collect(),
        meta: Meta {
            created_by: order.approved_by.as_deref(),
            source_document: order.source_document.as_ref().map(|s| SourceDocument {
                document_id: s.document_id,
                file_name: s.file_name.as_deref(),
                sha256: s.sha256.as_deref(),
            }),
        },
    };
    let invalid = |e: serde_json::Error| RenderError::SchemaInvalid(e.to_string());
    let value = serde_json::to_value(&document).map_err(invalid)?;
    if let Some(error) = validator()?.iter_errors(&value).next() {
        return Err(RenderError::SchemaInvalid(format!(
            "{} at {}",
            error,
            error.instance_path()
        )));
    }
    serde_json::to_vec_pretty(&value).map_err(invalid)
}

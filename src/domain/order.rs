//! An approved draft order, as the connectors receive it for export.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::org::Slug;

/// The customer an order is for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    /// OrderFlow's customer id.
    pub id: Option<Uuid>,
    /// The customer's number in the ERP.
    pub erp_customer_number: Option<String>,
    /// Customer name.
    pub name: Option<String>,
}

/// Order header fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderHeader {
    /// The customer's PO number.
    pub external_order_number: Option<String>,
    /// Order date.
    pub order_date: Option<NaiveDate>,
    /// ISO 4217 currency of the order.
    pub currency: Option<String>,
    /// Requested delivery date.
    pub requested_delivery_date: Option<NaiveDate>,
    /// Free-text notes.
    pub notes: Option<String>,
}

/// One order line. Quantities and prices are exact decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// Line number, unique within the order.
    pub line_no: u32,
    /// Our SKU.
    pub internal_sku: String,
    /// Quantity (> 0).
    pub qty: Decimal,
    /// Unit of measure.
    pub uom: String,
    /// Unit price.
    pub unit_price: Option<Decimal>,
    /// Line currency; None means the header's.
    pub currency: Option<String>,
    /// The SKU as the customer wrote it.
    pub customer_sku_raw: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// The document the order was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDocument {
    /// Document id.
    pub document_id: Option<Uuid>,
    /// Original file name.
    pub file_name: Option<String>,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: Option<String>,
}

/// An approved draft order ready to be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedOrder {
    /// Draft order id.
    pub draft_order_id: Uuid,
    /// Owning org's slug.
    pub org_slug: Slug,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
    /// The approver's e-mail.
    pub approved_by: Option<String>,
    /// Customer.
    pub customer: Customer,
    /// Header.
    pub header: OrderHeader,
    /// Lines, in any order (exports sort them by `line_no`).
    pub lines: Vec<OrderLine>,
    /// Source document, if any.
    pub source_document: Option<SourceDocument>,
}

/// The export file name: `sales_order_<draft_order_id>_<YYYYMMDDTHHMMSSZ>.json`, with the
/// timestamp fixed when the export is created.
pub fn export_file_name(draft_order_id: Uuid, created_at: DateTime<Utc>) -> String {
    format!(
        "sales_order_{draft_order_id}_{}.json",
        created_at.format("%Y%m%dT%H%M%SZ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn export_file_name_follows_the_spec() {
        let id = Uuid::parse_str("5b8f7c1e-3d2a-4f6b-9c0d-1e2f3a4b5c6d").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(
            export_file_name(id, at),
            "sales_order_5b8f7c1e-3d2a-4f6b-9c0d-1e2f3a4b5c6d_20260304T050607Z.json"
        );
    }
}

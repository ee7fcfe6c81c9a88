//! Draft orders: what arrives from OrderFlow's intake, its validation, and its
//! status rules. No I/O.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FieldError;
use super::order::{ApprovedOrder, Customer, DecimalText, OrderHeader, OrderLine, SourceDocument};
use super::org::Slug;

/// Where a draft is in its life: `READY → APPROVED → PUSHING → PUSHED | ERROR`, and
/// `ERROR → PUSHING` on retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DraftStatus {
    /// Stored, waiting for approval.
    Ready,
    /// Approved, may be pushed.
    Approved,
    /// An export is pending.
    Pushing,
    /// Delivered to the ERP's dropzone.
    Pushed,
    /// The delivery failed or the ERP rejected it; may be retried.
    Error,
}

impl DraftStatus {
    /// Every status, in life order.
    pub const ALL: [DraftStatus; 5] = [
        DraftStatus::Ready,
        DraftStatus::Approved,
        DraftStatus::Pushing,
        DraftStatus::Pushed,
        DraftStatus::Error,
    ];

    /// The statuses a draft may move to from this one: the draft's state machine, in one
    /// place (the store's statements implement it; a store test checks them against it).
    pub fn next(self) -> &'static [DraftStatus] {
        match self {
            DraftStatus::Ready => &[DraftStatus::Approved],
            DraftStatus::Approved => &[DraftStatus::Pushing],
            DraftStatus::Pushing => &[DraftStatus::Pushed, DraftStatus::Error],
            // The ERP rejected what was delivered.
            DraftStatus::Pushed => &[DraftStatus::Error],
            DraftStatus::Error => &[DraftStatus::Pushing],
        }
    }

    /// True when a draft in this status may move to `to`.
    pub fn may_become(self, to: DraftStatus) -> bool {
        self.next().contains(&to)
    }

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            DraftStatus::Ready => "READY",
            DraftStatus::Approved => "APPROVED",
            DraftStatus::Pushing => "PUSHING",
            DraftStatus::Pushed => "PUSHED",
            DraftStatus::Error => "ERROR",
        }
    }
}

impl fmt::Display for DraftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DraftStatus {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "status",
                    "must be READY, APPROVED, PUSHING, PUSHED or ERROR",
                )
            })
    }
}

/// A stored draft order with its lines (sorted by `line_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftOrder {
    /// Draft id.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Status.
    pub status: DraftStatus,
    /// Customer.
    pub customer: Customer,
    /// Header fields.
    pub header: OrderHeader,
    /// Source document, if any.
    pub source_document: Option<SourceDocument>,
    /// Lines by `line_no` (empty in list views).
    pub lines: Vec<OrderLine>,
    /// When it was approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// The approver's e-mail.
    pub approved_by: Option<String>,
    /// The ERP's order number, once acknowledged.
    pub erp_order_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Position in the org's list (pagination).
    pub seq: i64,
}

impl DraftOrder {
    /// The order as an export sees it; None until approved.
    pub fn to_approved(&self, org_slug: &Slug) -> Option<ApprovedOrder> {
        Some(ApprovedOrder {
            draft_order_id: self.id,
            org_slug: org_slug.clone(),
            approved_at: self.approved_at?,
            approved_by: self.approved_by.clone(),
            customer: self.customer.clone(),
            header: self.header.clone(),
            lines: self.lines.clone(),
            source_document: self.source_document.clone(),
        })
    }
}

/// A nested value that must be a JSON object: serde's derived structs also accept arrays
/// (`[null, null]` as a two-field struct), which the document does not allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(Obj)
    }
}

/// The customer of a submitted draft.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    /// OrderFlow's customer id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The customer's number in the ERP (≤ 64 characters).
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub erp_customer_number: Option<String>,
    /// Customer name (≤ 512 characters).
    #[serde(default)]
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub name: Option<String>,
}

/// The source document of a submitted draft.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceDocumentInput {
    /// Document id.
    #[serde(default)]
    pub document_id: Option<Uuid>,
    /// Original file name (≤ 512 characters).
    #[serde(default)]
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub file_name: Option<String>,
    /// SHA-256 of the file, 64 lowercase hex characters.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: Option<String>,
}

/// One submitted line.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// Line number (≥ 1), unique within the draft.
    #[schema(minimum = 1, maximum = 2147483647)]
    pub line_no: u32,
    /// Our SKU (1-128 characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub internal_sku: String,
    /// Quantity, > 0, kept exactly as written; at most 15 digits before the decimal point
    /// and 10 after it.
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 999999999999999.9999999999)]
    pub qty: DecimalText,
    /// Unit of measure (1-16 characters).
    #[schema(
        min_length = 1,
        max_length = 16,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub uom: String,
    /// Unit price, ≥ 0, kept exactly as written; at most 15 digits before the decimal point
    /// and 10 after it.
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 999999999999999.9999999999)]
    pub unit_price: Option<DecimalText>,
    /// ISO 4217 currency; null means the header's.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// The SKU as the customer wrote it (≤ 256 characters).
    #[serde(default)]
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub customer_sku_raw: Option<String>,
    /// Description (≤ 2000 characters; line breaks and tabs allowed, no other control
    /// characters).
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
}

/// A draft as OrderFlow's intake submits it (`POST /draft-orders`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftInput {
    /// The customer's PO number (≤ 128 characters).
    #[serde(default)]
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub external_order_number: Option<String>,
    /// Order date, `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub order_date: Option<String>,
    /// ISO 4217 currency, e.g. `EUR`.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Requested delivery date, `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub requested_delivery_date: Option<String>,
    /// Free-text notes (≤ 10000 characters; line breaks and tabs allowed, no other control
    /// characters).
    #[serde(default)]
    #[schema(
        max_length = 10000,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub notes: Option<String>,
    /// The customer.
    #[serde(default)]
    #[schema(value_type = Option<CustomerInput>)]
    pub customer: Option<Obj<CustomerInput>>,
    /// The document the order was read from.
    #[serde(default)]
    #[schema(value_type = Option<SourceDocumentInput>)]
    pub source_document: Option<Obj<SourceDocumentInput>>,
    /// The lines (1-10000), `line_no` unique.
    #[schema(value_type = Vec<LineInput>, min_items = 1, max_items = 10000)]
    pub lines: Vec<Obj<LineInput>>,
}

/// A validated draft, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDraft {
    /// Customer.
    pub customer: Customer,
    /// Header.
    pub header: OrderHeader,
    /// Source document.
    pub source_document: Option<SourceDocument>,
    /// Lines by `line_no`.
    pub lines: Vec<OrderLine>,
}

/// What a quantity or price must fit.
const DIGITS_RULE: &str = "must have at most 15 digits before the decimal point and 10 after it";

/// A one-line text field: no control characters at all (they make an identifier display as
/// something else, and some break the ERP's import).
fn text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    checked_text(field, value, max_chars, char::is_control)
}

/// A free-text field (notes, descriptions): line breaks and tabs allowed, other controls not.
fn multiline_text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    checked_text(field, value, max_chars, super::text::is_forbidden_control)
}

fn checked_text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
    forbidden: fn(char) -> bool,
) -> Result<Option<String>, FieldError> {
    match value {
        Some(v) if v.chars().count() > max_chars => Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        )),
        Some(v) if v.chars().any(forbidden) => Err(FieldError::new(
            field,
            "must not contain control characters",
        )),
        other => Ok(other),
    }
}

fn required_text(field: &str, value: String, max_chars: usize) -> Result<String, FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    Ok(text(field, Some(value), max_chars)?.unwrap_or_default())
}

fn currency(field: &str, value: Option<String>) -> Result<Option<String>, FieldError> {
    match value {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Some(c)),
        Some(_) => Err(FieldError::new(
            field,
            "must be an ISO 4217 code of three capital letters, e.g. EUR",
        )),
        None => Ok(None),
    }
}

fn date(field: &str, value: Option<String>) -> Result<Option<NaiveDate>, FieldError> {
    value
        .map(|d| {
            NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .ok()
                .filter(|_| d.len() == 10)
                .ok_or_else(|| FieldError::new(field, "must be a date as YYYY-MM-DD"))
        })
        .transpose()
}

/// A source document's fields checked.
fn source_document(s: SourceDocumentInput) -> Result<SourceDocument, FieldError> {
    let sha256 = match s.sha256 {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Some(h)
        }
        Some(_) => {
            return Err(FieldError::new(
                "source_document.sha256",
                "must be 64 lowercase hex characters",
            ));
        }
        None => None,
    };
    Ok(SourceDocument {
        document_id: s.document_id,
        file_name: text("source_document.file_name", s.file_name, 512)?,
        sha256,
    })
}

/// Line `i` checked (all but the uniqueness of its number, which needs the other lines).
fn line_of(i: usize, line: LineInput) -> Result<OrderLine, FieldError> {
    let field = |name: &str| format!("lines[{i}].{name}");
    if !line.qty.is_positive() {
        return Err(FieldError::new(field("qty"), "must be greater than 0"));
    }
    if !line.qty.fits() {
        return Err(FieldError::new(field("qty"), DIGITS_RULE));
    }
    if line.unit_price.as_ref().is_some_and(|p| !p.fits()) {
        return Err(FieldError::new(field("unit_price"), DIGITS_RULE));
    }
    if line
        .unit_price
        .as_ref()
        .is_some_and(DecimalText::is_negative)
    {
        return Err(FieldError::new(field("unit_price"), "must not be negative"));
    }
    Ok(OrderLine {
        line_no: line.line_no,
        internal_sku: required_text(&field("internal_sku"), line.internal_sku, 128)?,
        qty: line.qty,
        uom: required_text(&field("uom"), line.uom, 16)?,
        unit_price: line.unit_price,
        currency: currency(&field("currency"), line.currency)?,
        customer_sku_raw: text(&field("customer_sku_raw"), line.customer_sku_raw, 256)?,
        description: multiline_text(&field("description"), line.description, 2000)?,
    })
}

impl DraftInput {
    /// Validates every field (the draft rules and the export schema's limits), naming the first
    /// bad one.
    pub fn validate(self) -> Result<NewDraft, FieldError> {
        if self.lines.is_empty() {
            return Err(FieldError::new("lines", "must contain at least one line"));
        }
        if self.lines.len() > 10_000 {
            return Err(FieldError::new("lines", "must contain at most 10000 lines"));
        }
        let header = OrderHeader {
            external_order_number: text("external_order_number", self.external_order_number, 128)?,
            order_date: date("order_date", self.order_date)?,
            currency: currency("currency", self.currency)?,
            requested_delivery_date: date("requested_delivery_date", self.requested_delivery_date)?,
            notes: multiline_text("notes", self.notes, 10_000)?,
        };
        let customer_in = self.customer.map(|c| c.0).unwrap_or_default();
        let customer = Customer {
            id: customer_in.id,
            erp_customer_number: text(
                "customer.erp_customer_number",
                customer_in.erp_customer_number,
                64,
            )?,
            name: text("customer.name", customer_in.name, 512)?,
        };
        let source_document = self
            .source_document
            .map(|Obj(s)| source_document(s))
            .transpose()?;
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, Obj(line)) in self.lines.into_iter().enumerate() {
            let field = |name: &str| format!("lines[{i}].{name}");
            if line.line_no == 0 || line.line_no > i32::MAX as u32 {
                return Err(FieldError::new(field("line_no"), "must be at least 1"));
            }
            if !seen.insert(line.line_no) {
                return Err(FieldError::new(
                    field("line_no"),
                    format!("{} appears more than once", line.line_no),
                ));
            }
            lines.push(line_of(i, line)?);
        }
        lines.sort_by_key(|l| l.line_no);
        Ok(NewDraft {
            customer,
            header,
            source_document,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn input(value: serde_json::Value) -> Result<NewDraft, FieldError> {
        serde_json::from_value::<DraftInput>(value)
            .map_err(|e| FieldError::new("body", e.to_string()))?
            .validate()
    }

    fn line(no: u32, qty: serde_json::Value) -> serde_json::Value {
        json!({"line_no": no, "internal_sku": "SKU", "qty": qty, "uom": "PCE"})
    }

    #[test]
    fn decimals_keep_exactly_what_arrived() {
        let body = r#"{"lines": [
                {"line_no": 1, "internal_sku": "A", "qty": 0.1, "uom": "KG", "unit_price": 1.23},
                {"line_no": 2, "internal_sku": "B", "qty": 10.000, "uom": "KG", "unit_price": 0},
                {"line_no": 3, "internal_sku": "C", "qty": 2.5, "uom": "KG", "unit_price": 12345678901234.5678}
            ]}"#;
        let draft: DraftInput = serde_json::from_str(body).unwrap();
        let draft = draft.validate().unwrap();
        let shown: Vec<String> = draft
            .lines
            .iter()
            .flat_map(|l| {
                [
                    l.qty.to_string(),
                    l.unit_price.as_ref().unwrap().to_string(),
                ]
            })
            .collect();
        assert_eq!(
            shown,
            ["0.1", "1.23", "10.000", "0", "2.5", "12345678901234.5678"]
        );
    }

    #[test]
    fn invalid_drafts_name_the_field() {
        for (body, field) in [
            (json!({"lines": []}), "lines"),
            (
                json!({"lines": [line(1, json!(1)), line(1, json!(2))]}),
                "lines[1].line_no",
            ),
            (json!({"lines": [line(1, json!(0))]}), "lines[0].qty"),
            (json!({"lines": [line(1, json!(-1.5))]}), "lines[0].qty"),
            (json!({"lines": [line(0, json!(1))]}), "lines[0].line_no"),
            (
                json!({"currency": "eur", "lines": [line(1, json!(1))]}),
                "currency",
            ),
            (
                json!({"order_date": "2026-13-01", "lines": [line(1, json!(1))]}),
                "order_date",
            ),
            (
                json!({"order_date": "1.1.2026", "lines": [line(1, json!(1))]}),
                "order_date",
            ),
            (
                json!({"notes": "x".repeat(10_001), "lines": [line(1, json!(1))]}),
                "notes",
            ),
            (
                json!({"customer": {"name": "n".repeat(513)}, "lines": [line(1, json!(1))]}),
                "customer.name",
            ),
            (
                json!({"source_document": {"sha256": "ABC"}, "lines": [line(1, json!(1))]}),
                "source_document.sha256",
            ),
            (
                json!({"lines": [{"line_no": 1, "internal_sku": "", "qty": 1, "uom": "PCE"}]}),
                "lines[0].internal_sku",
            ),
            (
                json!({"external_order_number": "PO\u{1b}[2J", "lines": [line(1, json!(1))]}),
                "external_order_number",
            ),
            (
                json!({"notes": "a\u{0}b", "lines": [line(1, json!(1))]}),
                "notes",
            ),
            (
                json!({"customer": {"name": "A\nB"}, "lines": [line(1, json!(1))]}),
                "customer.name",
            ),
            (
                json!({"lines": [{"line_no": 1, "internal_sku": "S\u{85}", "qty": 1, "uom": "PCE"}]}),
                "lines[0].internal_sku",
            ),
        ] {
            assert_eq!(input(body.clone()).unwrap_err().field, field, "{body}");
        }
        // Line breaks stay allowed where text is free.
        let ok = json!({"notes": "line 1\nline 2\ttab", "lines": [{"line_no": 1,
            "internal_sku": "S", "qty": 1, "uom": "PCE", "description": "a\r\nb"}]});
        assert!(input(ok).is_ok());
    }

    #[test]
    fn quantities_and_prices_fit_fifteen_digits_and_ten_decimals() {
        for (text, fits) in [
            ("1", true),
            ("10.000", true),
            ("0.0000000001", true),
            ("999999999999999.9999999999", true),
            ("1e3", true),
            ("1.5E-5", true),
            ("12345678901234.5678", true),
            ("0", true),
            ("1e-400", false),
            ("0.00000000001", false),
            ("1e15", false),
            ("1000000000000000", false),
            ("1e99999999999999999999", false),
            ("1.00000000000", false),
        ] {
            let number = DecimalText::parse(text).unwrap();
            assert_eq!(number.fits(), fits, "{text}");
        }
        let huge = "9".repeat(900_001);
        assert!(!DecimalText::parse(&huge).unwrap().fits());
        let body: Value = serde_json::from_str(
            r#"{"lines": [{"line_no": 1, "internal_sku": "S", "qty": 1e-400, "uom": "PCE"}]}"#,
        )
        .unwrap();
        assert_eq!(input(body).unwrap_err().field, "lines[0].qty");
        let body: Value = serde_json::from_str(
            r#"{"lines": [{"line_no": 1, "internal_sku": "S", "qty": 1, "uom": "PCE", "unit_price": 1e20}]}"#,
        )
        .unwrap();
        assert_eq!(input(body).unwrap_err().field, "lines[0].unit_price");
    }

    #[test]
    fn nested_values_must_be_objects() {
        for body in [
            json!({"source_document": [null, null], "lines": [line(1, json!(1))]}),
            json!({"customer": ["id", "n"], "lines": [line(1, json!(1))]}),
            json!({"lines": [[1, "A", 1, "PCE"]]}),
        ] {
            assert!(
                serde_json::from_value::<DraftInput>(body.clone()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn lines_are_sorted_and_statuses_parse() {
        let draft = input(json!({"lines": [line(3, json!(1)), line(1, json!(2))]})).unwrap();
        assert_eq!(draft.lines[0].line_no, 1);
        assert!(
            input(json!({"lines": [line(1, json!("2.50"))]})).is_err(),
            "a string is no number"
        );
        assert_eq!(
            "PUSHED".parse::<DraftStatus>().unwrap(),
            DraftStatus::Pushed
        );
        assert!("pushed".parse::<DraftStatus>().is_err());
    }
}

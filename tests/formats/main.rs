//! Export formats checked by tools no one here wrote: UBL against the OASIS UBL 2.1 XSD with
//! `xmllint`, EDIFACT parsed by `pydifact`, CSV read back by Python's `csv` module in every
//! dialect and encoding; and golden files of the awkward sample order in each format.
//!
//! The external tools are Debian's `libxml2-utils` and PyPI's `pydifact`; `.ci/run` installs
//! them. Elsewhere a missing tool skips its check with a note, unless
//! `ORDERFLOW_REQUIRE_FORMAT_TOOLS=1` (CI) makes it a failure.

mod golden;
mod readers;

use orderflow::domain::order::ApprovedOrder;
use orderflow::domain::org::Slug;
use orderflow::formats::{ExportFacts, FormatConfig, sample};
use serde_json::{Value, json};

/// The sample order of org `acme`.
pub fn order() -> ApprovedOrder {
    sample::order(&Slug::parse("acme").unwrap())
}

/// The export facts every golden file is rendered with.
pub fn facts() -> ExportFacts {
    ExportFacts {
        export_id: uuid::Uuid::parse_str("0b7e2f4a-9c1d-4e8f-a2b3-c4d5e6f7a8b9").unwrap(),
        pushed_at: chrono::DateTime::parse_from_rfc3339("2027-01-15T08:01:40Z")
            .unwrap()
            .to_utc(),
    }
}

/// A format from its JSON config value.
pub fn format(value: Value) -> FormatConfig {
    FormatConfig::parse(Some(&value)).unwrap()
}

/// The formats with golden files: name, config.
pub fn goldens() -> Vec<(&'static str, Value)> {
    vec![
        ("json_v1.json", json!({"type": "json_v1"})),
        ("csv_default.csv", json!({"type": "csv"})),
        (
            "csv_german_windows_1252.csv",
            json!({"type": "csv", "delimiter": ";", "decimal_separator": ",",
                   "encoding": "windows-1252",
                   "columns": ["order_number", "customer_number", "customer_name", "order_date",
                               "requested_delivery_date", "line_no", "sku", "customer_sku",
                               "description", "quantity", "unit", "unit_price", "line_currency",
                               "notes"]}),
        ),
        (
            "csv_tab_lf_no_header.csv",
            json!({"type": "csv", "delimiter": "\t", "header_row": false, "line_ending": "lf",
                   "columns": ["line_no", "sku", "description", "quantity", "unit_price"]}),
        ),
        (
            "ubl_order_2_1.xml",
            json!({"type": "ubl_order_2_1", "buyer_endpoint_id": "4000003000009",
                   "buyer_endpoint_scheme": "0088", "seller_endpoint_id": "4000001000005",
                   "seller_endpoint_scheme": "0088", "seller_name": "Großhandel Nord GmbH",
                   "unit_codes": {"EA": "H87"}}),
        ),
        (
            "edifact_orders_d96a.edi",
            json!({"type": "edifact_orders_d96a", "sender_id": "4000001000005",
                   "recipient_id": "4000002000002"}),
        ),
        (
            "edifact_orders_d96a_unow.edi",
            json!({"type": "edifact_orders_d96a", "sender_id": "SENDER", "sender_qualifier": "ZZZ",
                   "recipient_id": "RECIPIENT", "recipient_qualifier": "ZZZ",
                   "syntax_identifier": "UNOW"}),
        ),
    ]
}

/// The sample order rendered in a format.
pub fn render(value: Value) -> Vec<u8> {
    format(value).renderer().render(&order(), &facts()).unwrap()
}

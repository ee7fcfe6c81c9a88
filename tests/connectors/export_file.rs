//! The export file: exact decimals, the shared schema, line order and defaults.

use orderflow::connectors::ConnectorError;
use orderflow::domain::order::DecimalText;
use orderflow::formats::RenderError;
use orderflow::formats::json_v1::{SCHEMA_JSON, render};
use serde_json::Value;

use crate::common::sample;

#[test]
fn render_is_valid_against_the_shared_schema_with_exact_decimals() {
    let mut order = sample::order("acme");
    order.lines[0].qty = DecimalText::parse("0.1").unwrap();
    order.lines[1].unit_price = Some(DecimalText::parse("1234567.8901234567").unwrap());
    let bytes = render(&order).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\"qty\": 0.1,"), "{text}");
    assert!(text.contains("1234567.8901234567"), "{text}");
    assert!(
        !text.contains("0.1000000000000000055"),
        "float noise: {text}"
    );

    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let schema: Value = serde_json::from_str(SCHEMA_JSON).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    assert!(validator.is_valid(&doc), "{doc}");
    assert_eq!(doc["export_version"], "orderflow_export_json_v1");
    assert!(doc["approved_at"].as_str().unwrap().ends_with('Z'));
    // Lines by line_no; a line without currency takes the header's.
    let numbers: Vec<u64> = doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line_no"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(doc["lines"][0]["currency"], "EUR");
    assert_eq!(doc["lines"][1]["currency"], "USD");
    assert_eq!(doc["meta"]["created_by"], "approver@acme.test");
    // Every key is present; optionals are null, never omitted.
    assert!(doc["lines"][0]["customer_sku_raw"].is_null());
    assert!(doc["meta"]["source_document"].is_null());
}

#[test]
fn an_order_the_schema_refuses_is_schema_invalid() {
    let mut order = sample::order("acme");
    order.lines[0].qty = DecimalText::parse("0").unwrap();
    let err = render(&order).unwrap_err();
    assert!(matches!(err, RenderError::SchemaInvalid(_)), "{err:?}");
    assert_eq!(ConnectorError::from(err).code.as_str(), "SCHEMA_INVALID");
    let mut order = sample::order("acme");
    order.header.currency = Some("euro".into());
    assert!(matches!(render(&order), Err(RenderError::SchemaInvalid(_))));
    let mut order = sample::order("acme");
    order.lines.clear();
    assert!(matches!(render(&order), Err(RenderError::SchemaInvalid(_))));
}

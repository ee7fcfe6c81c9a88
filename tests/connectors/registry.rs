//! The registry and the MOCK connector.

use std::sync::Arc;

use orderflow::connectors::mock::MockConnector;
use orderflow::connectors::{ConnectorConfig, ExportRequest, Registry, run_test};

use crate::common::sample;

#[tokio::test]
async fn mock_registers_resolves_and_exports_a_draft() {
    let registry = Registry::default().with(Arc::new(MockConnector));
    let by_slug = registry.by_slug("mock").expect("mock by slug");
    let by_type = registry.by_type("MOCK").expect("mock by type");
    assert_eq!(by_slug.connector_type(), by_type.connector_type());
    assert!(registry.by_slug("nope").is_none());
    assert!(
        Registry::default().by_type("MOCK").is_none(),
        "MOCK must not be built in"
    );

    let (ctx, _root) = sample::context("acme");
    let order = sample::order("acme");
    let request = ExportRequest {
        file_name: "sales_order_x.json".into(),
        order: order.clone(),
    };
    let result = by_slug
        .export(&ctx, &request, &ConnectorConfig::default())
        .await
        .unwrap();
    assert!(result.success);
    assert_eq!(result.file_name, "sales_order_x.json");
    let body: serde_json::Value = serde_json::from_slice(&result.content).unwrap();
    assert_eq!(body["draft_order_id"], order.draft_order_id.to_string());

    let failing: ConnectorConfig = sample::config(serde_json::json!({"fail_with": "AUTH_FAILED"}));
    let outcome = run_test(by_slug.as_ref(), &ctx, &failing).await;
    assert!(!outcome.success);
    assert_eq!(outcome.error_code.map(|c| c.as_str()), Some("AUTH_FAILED"));
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("Authentication failed")
    );
}

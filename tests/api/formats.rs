//! Export formats and file-name templates through the API: saved with a connection, previewed
//! (draft and sample), pushed through the real pipeline to a folder and to an HTTPS ERP, and
//! what the preview showed is what was delivered and archived; bad options are 422 naming the
//! field; who may preview what; an order the format cannot carry fails alone.

use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::http_erp::{HttpErp, Tls};
use crate::common::{TestApp, TestDb, assert_error, spawn_app, spawn_app_on};

const DROPZONE: &str = "/api/v1/connectors/dropzone-json-v1";
const HTTP: &str = "/api/v1/connectors/http-json-v1";

/// A draft with text the German CSV dialect must quote and a price with decimals.
fn draft_body(po: &str, description: &str) -> Value {
    json!({
        "external_order_number": po,
        "customer": {"erp_customer_number": "C-1001", "name": "Müller; \"Süd\""},
        "currency": "EUR",
        "lines": [
            {"line_no": 1, "internal_sku": "SKU-1", "qty": 12.5, "uom": "KG", "unit_price": 3.99,
             "description": description},
            {"line_no": 2, "internal_sku": "SKU-2", "qty": 3, "uom": "PCE"}
        ]
    })
}

/// Creates and approves a draft; its id.
async fn approved_draft(app: &TestApp, token: &str, body: &Value) -> String {
    let resp = app.post_json("/api/v1/draft-orders", token, body).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
        .await;
    assert_eq!(resp.status(), 200);
    id
}

/// Pushes a draft; its export id.
async fn push(app: &TestApp, token: &str, id: &str) -> String {
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/push"), token)
        .await;
    assert_eq!(resp.status(), 202);
    resp.json::<Value>().await.unwrap()["erp_export_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A preview's status, content type, file name and bytes.
async fn preview(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, String, String, Vec<u8>) {
    let mut req = app.client.post(app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, name) = (header("content-type"), header("x-file-name"));
    if status == 200 {
        assert_eq!(header("cache-control"), "no-store");
        assert!(header("content-disposition").contains(&name), "{name}");
    }
    (
        status,
        content_type,
        name,
        resp.bytes().await.unwrap().to_vec(),
    )
}

/// The archived file of an export and its content type.
async fn archived(app: &TestApp, token: &str, export_id: &str) -> (String, Vec<u8>) {
    let resp = app
        .get(&format!("/api/v1/exports/{export_id}/file"), token)
        .await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, resp.bytes().await.unwrap().to_vec())
}

async fn preview_is_what_a_templated_csv_push_delivers(db: TestDb) {
    let app = spawn_app_on(db, &[]).await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let root = app.dropzone_root.path().join("acme");
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::create_dir_all(root.join("acks")).unwrap();
    let config = json!({
        "mode": "filesystem", "export_path": "/out", "ack_path": "/acks",
        "format": {"type": "csv", "delimiter": ";", "decimal_separator": ",",
                   "encoding": "windows-1252"},
        "file_name_template": "ORD_{external_order_number}_{approved_at:%Y%m%d}_{draft_id}.{ext}"
    });
    let resp = app.post_json(DROPZONE, &token, &config).await;
    assert_eq!(resp.status(), 200);
    let shown = app.get_json(DROPZONE, &token).await;
    assert_eq!(shown["config"]["format"]["type"], "csv", "{shown}");
    assert_eq!(
        shown["config"]["file_name_template"],
        config["file_name_template"]
    );

    // The PO number holds characters no file name should: they are replaced.
    let id = approved_draft(&app, &token, &draft_body("PO/47 11", "Öl \"fein\"; 5 €")).await;
    let path = format!("/api/v1/draft-orders/{id}/preview");
    let (status, content_type, name, previewed) = preview(&app, &path, &token, None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&previewed));
    assert_eq!(content_type, "text/csv; charset=windows-1252");
    assert!(
        name.starts_with("ORD_PO_47_11_") && name.ends_with(&format!("_{id}.csv")),
        "{name}"
    );
    let (text, _, unmappable) = encoding_rs::WINDOWS_1252.decode(&previewed);
    assert!(!unmappable);
    assert!(text.contains("\"Öl \"\"fein\"\"; 5 €\""), "{text}");
    assert!(text.contains("12,5"), "decimal comma: {text}");
    // Previewing created nothing.
    let exports = app.get_json("/api/v1/exports", &token).await;
    assert_eq!(exports["items"].as_array().unwrap().len(), 0);

    let export_id = push(&app, &token, &id).await;
    app.deliver_all().await;
    let export = app
        .get_json(&format!("/api/v1/exports/{export_id}"), &token)
        .await;
    assert_eq!(export["status"], "SENT", "{export}");
    assert_eq!(export["file_name"], name.as_str());
    let delivered = std::fs::read(root.join("out").join(&name)).unwrap();
    assert_eq!(
        delivered, previewed,
        "delivered bytes differ from the preview"
    );
    let (archived_type, archived_bytes) = archived(&app, &token, &export_id).await;
    assert_eq!(archived_bytes, delivered);
    assert_eq!(archived_type, "text/csv; charset=windows-1252");

    // The ERP's acknowledgement names the file as it was actually named.
    std::fs::write(
        root.join("acks").join(format!("ack_{name}")),
        json!({"status": "ACKED", "erp_order_id": "SO-9"}).to_string(),
    )
    .unwrap();
    let resp = app
        .post_empty(&format!("{DROPZONE}/poll-acks"), &token)
        .await;
    assert_eq!(resp.status(), 200);
    let export = app
        .get_json(&format!("/api/v1/exports/{export_id}"), &token)
        .await;
    assert_eq!(export["status"], "ACKED", "{export}");
}

#[tokio::test]
async fn preview_is_what_a_templated_csv_push_delivers_sqlite() {
    preview_is_what_a_templated_csv_push_delivers(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn preview_is_what_a_templated_csv_push_delivers_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    preview_is_what_a_templated_csv_push_delivers(db).await;
}

#[tokio::test]
async fn bad_formats_and_templates_are_422_naming_the_field_and_keep_the_saved_config() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/out")).unwrap();
    let good = json!({"mode": "filesystem", "export_path": "/out", "format": {"type": "csv"}});
    assert_eq!(app.post_json(DROPZONE, &token, &good).await.status(), 200);
    for (change, field) in [
        (
            json!({"file_name_template": "orders_{external_order_number}.{ext}"}),
            "file_name_template",
        ),
        (
            json!({"file_name_template": "{draft_id}_{colour}.{ext}"}),
            "file_name_template",
        ),
        (
            json!({"file_name_template": "../{draft_id}.{ext}"}),
            "file_name_template",
        ),
        (
            json!({"file_name_template": "ack_{draft_id}.{ext}"}),
            "file_name_template",
        ),
        (
            json!({"file_name_template": "{draft_id}_{approved_at:%s}.{ext}"}),
            "file_name_template",
        ),
        (json!({"format": {"type": "xlsx"}}), "format"),
        (
            json!({"format": {"type": "csv", "delimiter": "|"}}),
            "format.delimiter",
        ),
        (
            json!({"format": {"type": "csv", "columns": ["sku", "colour"]}}),
            "format.columns[1]",
        ),
        (
            json!({"format": {"type": "edifact_orders_d96a", "recipient_id": "B"}}),
            "format",
        ),
    ] {
        let mut config = good.clone();
        for (k, v) in change.as_object().unwrap() {
            config[k] = v.clone();
        }
        for path in [DROPZONE.to_owned(), format!("{DROPZONE}/test")] {
            let body = assert_error(
                app.post_json(&path, &token, &config).await,
                422,
                "VALIDATION_ERROR",
            )
            .await;
            let got = body["error"]["details"]["field"]
                .as_str()
                .unwrap_or_default();
            assert!(
                got == field || got.starts_with(&format!("{field}.")),
                "{path} {change}: {body}"
            );
        }
        // Preview with that unsaved config: the same answer.
        let id = approved_draft(&app, &token, &draft_body("PO-1", "x")).await;
        let (status, ..) = preview(
            &app,
            &format!("/api/v1/draft-orders/{id}/preview"),
            &token,
            Some(&json!({"config": config})),
        )
        .await;
        assert_eq!(status, 422, "{change}");
    }
    // Nothing was saved: still CSV with default names.
    let shown = app.get_json(DROPZONE, &token).await;
    assert_eq!(shown["config"]["format"]["type"], "csv");
    assert!(
        shown["config"]
            .get("file_name_template")
            .is_none_or(Value::is_null),
        "{shown}"
    );
}

/// What the served config schema says about `format` is what save does: every value save
/// takes (null included, meaning JSON v1) is valid, every value it refuses is not.
#[tokio::test]
async fn the_served_schema_admits_exactly_the_formats_save_takes() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/out")).unwrap();
    let types: Value = app.get_json("/api/v1/connectors/types", &token).await;
    let schema = types[0]["config_schema"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (format, accepted) in [
        (Value::Null, true),
        (json!({"type": "json_v1"}), true),
        (json!({"type": "csv", "delimiter": ";"}), true),
        (json!({"type": "ubl_order_2_1"}), true),
        (json!({"type": "xlsx"}), false),
        (json!("csv"), false),
        (json!({"type": "json_v1", "delimiter": ";"}), false),
    ] {
        let config = json!({"mode": "filesystem", "export_path": "/out", "format": format});
        assert_eq!(validator.is_valid(&config), accepted, "schema, {format}");
        let status = app.post_json(DROPZONE, &token, &config).await.status();
        assert_eq!(status == 200, accepted, "save, {format}: {status}");
        if accepted && format.is_null() {
            let shown = app.get_json(DROPZONE, &token).await;
            assert!(
                shown["config"].get("format").is_none_or(Value::is_null),
                "{shown}"
            );
        }
    }
}

#[tokio::test]
async fn who_may_preview_what() {
    let app = spawn_app().await;
    let (org, _, admin) = app.org_with("acme", Role::Admin).await;
    let viewer = app.user(&org, "viewer@acme.test", Role::Viewer).await;
    let viewer = app.token_for(&viewer);
    let (_, _, stranger) = app.org_with("globex", Role::Admin).await;
    let id = approved_draft(&app, &admin, &draft_body("PO-1", "Mehl")).await;
    let draft_preview = format!("/api/v1/draft-orders/{id}/preview");
    let sample_preview = format!("{DROPZONE}/preview");
    let unsaved = json!({"config": {"mode": "filesystem", "export_path": "/out",
        "format": {"type": "ubl_order_2_1", "seller_name": "Nord GmbH"}}});

    // No active connection: nothing to preview with, unless a config is given.
    let (status, ..) = preview(&app, &draft_preview, &admin, None).await;
    assert_eq!(status, 409);
    let (status, content_type, name, bytes) =
        preview(&app, &draft_preview, &admin, Some(&unsaved)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/xml");
    assert!(name.ends_with(".xml"), "{name}");
    assert!(String::from_utf8(bytes).unwrap().contains("Nord GmbH"));
    // An unsaved config takes the connector roles; reading the draft does not.
    let (status, ..) = preview(&app, &draft_preview, &viewer, Some(&unsaved)).await;
    assert_eq!(status, 403);
    let (status, ..) = preview(&app, &sample_preview, &viewer, Some(&unsaved)).await;
    assert_eq!(status, 403);
    let (status, _, _, bytes) = preview(&app, &sample_preview, &admin, Some(&unsaved)).await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8(bytes).unwrap().contains("Müller"),
        "the sample order"
    );

    std::fs::create_dir_all(app.dropzone_root.path().join("acme/out")).unwrap();
    let config = json!({"mode": "filesystem", "export_path": "/out",
                        "format": {"type": "edifact_orders_d96a", "sender_id": "S", "recipient_id": "R"}});
    assert_eq!(app.post_json(DROPZONE, &admin, &config).await.status(), 200);
    let (status, content_type, name, bytes) = preview(&app, &draft_preview, &viewer, None).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/edifact");
    assert!(name.ends_with(".edi"), "{name}");
    assert!(bytes.starts_with(b"UNA:+.? 'UNB+UNOC:3+S:14+R:14+"));
    // Another org's draft does not exist for this org, with or without a config.
    let (status, ..) = preview(&app, &draft_preview, &stranger, None).await;
    assert_eq!(status, 404);
    let (status, ..) = preview(&app, &draft_preview, &stranger, Some(&unsaved)).await;
    assert_eq!(status, 404);
    let resp = app
        .client
        .post(app.url(&draft_preview))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A body that is not a config is refused as such.
    let resp = app
        .client
        .post(app.url(&draft_preview))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"config\": 7}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn an_order_the_format_cannot_carry_fails_alone_without_opening_the_circuit() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let out = app.dropzone_root.path().join("acme/out");
    std::fs::create_dir_all(&out).unwrap();
    let config = json!({"mode": "filesystem", "export_path": "/out",
                        "format": {"type": "csv", "encoding": "windows-1252"}});
    assert_eq!(app.post_json(DROPZONE, &token, &config).await.status(), 200);
    let bad = approved_draft(&app, &token, &draft_body("PO-Ω", "Ωmega")).await;
    let body = assert_error(
        app.post_empty(&format!("/api/v1/draft-orders/{bad}/preview"), &token)
            .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "format");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("U+03A9"),
        "{body}"
    );

    let bad_export = push(&app, &token, &bad).await;
    let good = approved_draft(&app, &token, &draft_body("PO-2", "Mehl")).await;
    let good_export = push(&app, &token, &good).await;
    app.deliver_all().await;
    let export = app
        .get_json(&format!("/api/v1/exports/{bad_export}"), &token)
        .await;
    assert_eq!(export["status"], "FAILED", "{export}");
    assert_eq!(export["error_json"]["code"], "RENDER_FAILED");
    assert_eq!(export["error_json"]["attempt"], 1, "permanent: not retried");
    let export = app
        .get_json(&format!("/api/v1/exports/{good_export}"), &token)
        .await;
    assert_eq!(export["status"], "SENT", "{export}");
    let health = &app.get_json(DROPZONE, &token).await["health"];
    assert_eq!(health["state"], "healthy", "{health}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[tokio::test]
async fn the_http_connector_sends_the_chosen_format_signed_as_sent() {
    let erp = HttpErp::start(Tls::Https).await;
    let app = spawn_app_on(
        TestDb::sqlite().await,
        &[("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24")],
    )
    .await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let config = json!({"url": erp.url(Tls::Https), "ca_certificate_pem": erp.ca.pem(),
        "format": {"type": "ubl_order_2_1", "buyer_endpoint_id": "4000003000009",
                   "buyer_endpoint_scheme": "0088", "unit_codes": {"PCE": "H87"}}});
    let resp = app.post_json(HTTP, &token, &config).await;
    assert_eq!(resp.status(), 200);
    let secret = resp.json::<Value>().await.unwrap()["generated_secrets"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = approved_draft(&app, &token, &draft_body("PO-7", "Mehl & Öl <fein>")).await;
    let export_id = push(&app, &token, &id).await;
    app.deliver_all().await;
    let got = erp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["content-type"], "application/xml");
    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
    webhook.verify(&got[0].body, &got[0].headers).unwrap();
    let text = String::from_utf8(got[0].body.clone()).unwrap();
    assert!(text.contains("unitCode=\"H87\""), "{text}");
    assert!(text.contains("Mehl &amp; Öl &lt;fein&gt;"), "{text}");
    let (content_type, bytes) = archived(&app, &token, &export_id).await;
    assert_eq!(content_type, "application/xml");
    assert_eq!(
        bytes, got[0].body,
        "archived bytes differ from the bytes sent"
    );
}

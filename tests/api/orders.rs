//! Draft orders, pushes and exports through the HTTP API, delivered by the worker's
//! single step.

use std::path::PathBuf;
use std::sync::Arc;

use orderflow::connectors::Registry;
use orderflow::connectors::mock::MockConnector;
use orderflow::domain::user::Role;
use orderflow::workers::delivery::Step;
use serde_json::{Value, json};

use crate::common::{TestApp, TestDb, assert_error, spawn_app, spawn_app_on, spawn_app_with};

const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";

/// A draft body with the decimals the issue lists, lines out of order. Raw JSON text: a Rust
/// float literal (as in `json!`) would already have lost `10.000`.
const DRAFT_BODY: &str = r#"{
    "external_order_number": "PO-4711",
    "order_date": "2026-11-30",
    "currency": "EUR",
    "requested_delivery_date": "2026-12-10",
    "notes": "Ring twice",
    "customer": {"id": "5b8f7c1e-3d2a-4f6b-9c0d-1e2f3a4b5c6d", "erp_customer_number": "C-1001", "name": "Müller GmbH"},
    "source_document": {"document_id": null, "file_name": "po.pdf",
        "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    "lines": [
        {"line_no": 3, "internal_sku": "SKU-3", "qty": 2.5, "uom": "KG", "unit_price": 12345678901234.5678},
        {"line_no": 1, "internal_sku": "SKU-1", "qty": 0.1, "uom": "PCE", "unit_price": 1.23, "currency": "USD"},
        {"line_no": 2, "internal_sku": "SKU-2", "qty": 10.000, "uom": "PCE", "unit_price": 0,
         "customer_sku_raw": "c-2", "description": "Widget"}
    ]
}"#;

fn draft_body() -> Value {
    serde_json::from_str(DRAFT_BODY).unwrap()
}

fn orders_dir(app: &TestApp, org: &str) -> PathBuf {
    let dir = app.dropzone_root.path().join(org).join("import/orders");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An org whose admin has a filesystem dropzone at /import/orders.
async fn org_with_dropzone(app: &TestApp, slug: &str) -> (String, PathBuf) {
    let (_, _, token) = app.org_with(slug, Role::Admin).await;
    let dir = orders_dir(app, slug);
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"mode": "filesystem", "export_path": "/import/orders"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    (token, dir)
}

async fn create_draft(app: &TestApp, token: &str) -> Value {
    let resp = app
        .post_json("/api/v1/draft-orders", token, &draft_body())
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn approved_draft(app: &TestApp, token: &str) -> String {
    let draft = create_draft(app, token).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
        .await;
    assert_eq!(resp.status(), 200);
    id
}

async fn push(app: &TestApp, token: &str, id: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/draft-orders/{id}/push")))
        .bearer_auth(token);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".objects")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_approved_draft_is_pushed_delivered_once_and_archived_sqlite() {
    an_approved_draft_is_pushed_delivered_once_and_archived(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn an_approved_draft_is_pushed_delivered_once_and_archived_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    an_approved_draft_is_pushed_delivered_once_and_archived(db).await;
}

async fn an_approved_draft_is_pushed_delivered_once_and_archived(db: TestDb) {
    let app = spawn_app_on(db, &[]).await;
    let (token, dir) = org_with_dropzone(&app, "acme").await;
    let draft = create_draft(&app, &token).await;
    assert_eq!(draft["status"], "READY");
    let lines: Vec<u64> = draft["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line_no"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 3]);
    let id = draft["id"].as_str().unwrap();

    let approved: Value = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["approved_by"], "admin@acme.test");
    assert!(approved["approved_at"].as_str().unwrap().ends_with('Z'));

    let resp = push(&app, &token, id, Some("push-1")).await;
    assert_eq!(resp.status(), 202);
    let pushed: Value = resp.json().await.unwrap();
    assert_eq!(pushed["status"], "PUSHING");
    let export_id = pushed["erp_export_id"].as_str().unwrap().to_owned();

    let steps = app.deliver_all().await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(matches!(steps[0], Step::Sent(_)));

    let export: Value = app
        .get_json(&format!("/api/v1/exports/{export_id}"), &token)
        .await;
    assert_eq!(export["status"], "SENT");
    assert_eq!(export["attempts"], 1);
    assert!(export["error_json"].is_null());
    let file_name = export["file_name"].as_str().unwrap().to_owned();
    assert!(
        file_name.starts_with(&format!("sales_order_{id}_")) && file_name.ends_with("Z.json"),
        "{file_name}"
    );
    assert_eq!(
        export["dropzone_path"],
        format!("/import/orders/{file_name}")
    );
    let key = export["export_storage_key"].as_str().unwrap();
    let org_id = app.get_json("/api/v1/me", &token).await["org_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(key, format!("exports/{org_id}/{file_name}"));

    // Exactly one file, no .tmp, and it is byte for byte the archived object.
    assert_eq!(files(&dir), std::slice::from_ref(&file_name));
    let written = std::fs::read(dir.join(&file_name)).unwrap();
    let archived = std::fs::read(app.dropzone_root.path().join(".objects").join(key)).unwrap();
    assert_eq!(written, archived);
    let served = app
        .get(&format!("/api/v1/exports/{export_id}/file"), &token)
        .await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), written.as_slice());
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&written));
    assert_eq!(export["content_sha256"], hex::encode(digest));

    // The decimals arrived exactly, and the file matches the shared schema.
    let text = String::from_utf8(written).unwrap();
    for exact in [
        "\"qty\": 0.1,",
        "\"unit_price\": 1.23,",
        "\"qty\": 10.000,",
        "\"unit_price\": 0,",
        "\"qty\": 2.5,",
        "\"unit_price\": 12345678901234.5678,",
    ] {
        assert!(text.contains(exact), "{exact} missing in {text}");
    }
    let doc: Value = serde_json::from_str(&text).unwrap();
    let schema: Value = serde_json::from_str(orderflow::formats::json_v1::SCHEMA_JSON).unwrap();
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&doc));
    assert_eq!(
        doc["lines"][1]["currency"], "EUR",
        "header currency fills in"
    );
    assert_eq!(doc["meta"]["created_by"], "admin@acme.test");

    let after: Value = app
        .get_json(&format!("/api/v1/draft-orders/{id}"), &token)
        .await;
    assert_eq!(after["status"], "PUSHED");
    assert_eq!(after["exports"][0]["id"], export_id.as_str());
    // One instant, written the same way in the file and in the API.
    assert_eq!(doc["approved_at"], after["approved_at"]);

    // The same key again: the same export, and the draft's current status.
    let again: Value = push(&app, &token, id, Some("push-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again,
        json!({"status": "PUSHED", "erp_export_id": export_id})
    );
    assert!(app.deliver_all().await.is_empty());
    assert_eq!(files(&dir).len(), 1);

    let audit: Value = app
        .get_json("/api/v1/audit-log?action=EXPORT_SENT", &token)
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    assert_eq!(audit["items"][0]["entity_id"], export_id.as_str());
}

#[tokio::test]
async fn invalid_drafts_are_422_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Ops).await;
    let line =
        |no: u64, qty: Value| json!({"line_no": no, "internal_sku": "A", "qty": qty, "uom": "PCE"});
    for (body, field) in [
        (json!({"lines": []}), "lines"),
        (
            json!({"lines": [line(1, json!(1)), line(1, json!(2))]}),
            "lines[1].line_no",
        ),
        (json!({"lines": [line(1, json!(0))]}), "lines[0].qty"),
        (json!({"lines": [line(1, json!(-2))]}), "lines[0].qty"),
        (json!({"lines": [line(1, json!("lots"))]}), "lines[0].qty"),
        (
            json!({"order_date": "2026-02-30", "lines": [line(1, json!(1))]}),
            "order_date",
        ),
        (
            json!({"currency": "Euro", "lines": [line(1, json!(1))]}),
            "currency",
        ),
        (
            json!({"notes": "n".repeat(10_001), "lines": [line(1, json!(1))]}),
            "notes",
        ),
        (
            json!({"external_order_number": "x".repeat(129), "lines": [line(1, json!(1))]}),
            "external_order_number",
        ),
        (
            json!({"lines": [line(1, json!(1))], "colour": "red"}),
            "colour",
        ),
        (
            json!({"customer": {"name": 5}, "lines": [line(1, json!(1))]}),
            "customer.name",
        ),
        (json!({}), "lines"),
    ] {
        let resp = app.post_json("/api/v1/draft-orders", &token, &body).await;
        let err = assert_error(resp, 422, "VALIDATION_ERROR").await;
        let got = err["error"]["details"]["field"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            got == field
                || got.ends_with(field)
                || err["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {err}"
        );
    }
    let list: Value = app.get_json("/api/v1/draft-orders", &token).await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn roles_decide_who_creates_approves_and_pushes_and_everyone_reads() {
    let app = spawn_app().await;
    let (org, _, admin) = app.org_with("acme", Role::Admin).await;
    orders_dir(&app, "acme");
    app.post_json(
        CONNECTOR,
        &admin,
        &json!({"mode": "filesystem", "export_path": "/import/orders"}),
    )
    .await;
    let token_of = |role: Role| {
        let app = &app;
        let org = &org;
        async move {
            let user = app
                .user(
                    org,
                    &format!("{}@acme.test", role.as_str().to_lowercase()),
                    role,
                )
                .await;
            app.token_for(&user)
        }
    };
    let viewer = token_of(Role::Viewer).await;
    let integrator = token_of(Role::Integrator).await;
    let ops = token_of(Role::Ops).await;

    let resp = app
        .post_json("/api/v1/draft-orders", &viewer, &draft_body())
        .await;
    assert_error(resp, 403, "FORBIDDEN").await;
    let draft = create_draft(&app, &integrator).await;
    let id = draft["id"].as_str().unwrap();
    for token in [&viewer, &integrator] {
        let resp = app
            .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
            .await;
        assert_error(resp, 403, "FORBIDDEN").await;
    }
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &ops)
        .await;
    assert_eq!(resp.status(), 200);
    for token in [&viewer, &integrator] {
        assert_error(push(&app, token, id, None).await, 403, "FORBIDDEN").await;
    }
    assert_eq!(push(&app, &ops, id, None).await.status(), 202);
    for token in [&viewer, &integrator, &ops, &admin] {
        assert_eq!(
            app.get(&format!("/api/v1/draft-orders/{id}"), token)
                .await
                .status(),
            200
        );
        assert_eq!(app.get("/api/v1/exports", token).await.status(), 200);
        assert_eq!(app.get("/api/v1/draft-orders", token).await.status(), 200);
    }
}

#[tokio::test]
async fn another_orgs_drafts_and_exports_are_404() {
    let app = spawn_app().await;
    let (acme, _) = org_with_dropzone(&app, "acme").await;
    let (globex, _) = org_with_dropzone(&app, "globex").await;
    let id = approved_draft(&app, &acme).await;
    let export: Value = push(&app, &acme, &id, None).await.json().await.unwrap();
    let export_id = export["erp_export_id"].as_str().unwrap();
    app.deliver_all().await;

    for path in [
        format!("/api/v1/draft-orders/{id}"),
        format!("/api/v1/exports/{export_id}"),
        format!("/api/v1/exports/{export_id}/file"),
    ] {
        assert_error(app.get(&path, &globex).await, 404, "NOT_FOUND").await;
    }
    for action in ["approve", "push", "retry-push"] {
        let resp = app
            .post_empty(&format!("/api/v1/draft-orders/{id}/{action}"), &globex)
            .await;
        assert_error(resp, 404, "NOT_FOUND").await;
    }
    let list: Value = app.get_json("/api/v1/exports", &globex).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let list: Value = app.get_json("/api/v1/draft-orders", &globex).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let resp = app.get("/api/v1/exports/not-a-uuid", &acme).await;
    let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"]["field"], "id");
}

#[tokio::test]
async fn pushes_are_refused_from_the_wrong_status_or_without_a_connector() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let draft = create_draft(&app, &token).await;
    let id = draft["id"].as_str().unwrap();
    let body = assert_error(push(&app, &token, id, None).await, 409, "CONFLICT").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("READY"),
        "{body}"
    );
    app.post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
        .await;
    let body = assert_error(push(&app, &token, id, None).await, 409, "CONFLICT").await;
    assert_eq!(body["error"]["message"], "No active ERP connector");
    let again = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
        .await;
    assert_error(again, 409, "CONFLICT").await;

    orders_dir(&app, "acme");
    app.post_json(
        CONNECTOR,
        &token,
        &json!({"mode": "filesystem", "export_path": "/import/orders"}),
    )
    .await;
    let first: Value = push(&app, &token, id, None).await.json().await.unwrap();
    let body = assert_error(push(&app, &token, id, None).await, 409, "CONFLICT").await;
    assert_eq!(
        body["error"]["details"]["erp_export_id"],
        first["erp_export_id"]
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(first["erp_export_id"].as_str().unwrap())
    );
    let body = assert_error(
        app.post_empty(&format!("/api/v1/draft-orders/{id}/retry-push"), &token)
            .await,
        409,
        "CONFLICT",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["erp_export_id"],
        first["erp_export_id"]
    );
    for bad in ["", "has space", &"k".repeat(256)] {
        let resp = push(&app, &token, id, Some(bad)).await;
        let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
        assert_eq!(body["error"]["details"]["field"], "Idempotency-Key");
    }
}

/// 20 simultaneous pushes: with one key, one export and 20 × 202 with its id; without a key,
/// one 202 and 409s naming the export. The database enforces it, on both backends.
async fn concurrent_pushes_create_one_export(db: TestDb) {
    let app = spawn_app_on(db, &[]).await;
    let (token, _) = org_with_dropzone(&app, "acme").await;

    let id = approved_draft(&app, &token).await;
    let answers =
        futures::future::join_all((0..20).map(|_| push(&app, &token, &id, Some("same-key")))).await;
    let mut ids = Vec::new();
    for resp in answers {
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["erp_export_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let id = approved_draft(&app, &token).await;
    let answers = futures::future::join_all((0..20).map(|_| push(&app, &token, &id, None))).await;
    let mut accepted = Vec::new();
    let mut conflicts = Vec::new();
    for resp in answers {
        match resp.status().as_u16() {
            202 => accepted.push(resp.json::<Value>().await.unwrap()),
            409 => conflicts.push(resp.json::<Value>().await.unwrap()),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(conflicts.len(), 19);
    for c in &conflicts {
        assert_eq!(
            c["error"]["details"]["erp_export_id"],
            accepted[0]["erp_export_id"]
        );
    }
    let exports: Value = app.get_json("/api/v1/exports", &token).await;
    assert_eq!(exports["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_pushes_create_one_export_sqlite() {
    concurrent_pushes_create_one_export(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn concurrent_pushes_create_one_export_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    concurrent_pushes_create_one_export(db).await;
}

#[tokio::test]
async fn a_permanent_failure_fails_at_once_and_retry_push_delivers_a_new_export() {
    let app = spawn_app().await;
    let (token, dir) = org_with_dropzone(&app, "acme").await;
    let id = approved_draft(&app, &token).await;
    std::fs::remove_dir(&dir).unwrap();
    let first: Value = push(&app, &token, &id, None).await.json().await.unwrap();
    let steps = app.deliver_all().await;
    assert!(
        matches!(steps.as_slice(), [Step::Failed(_, code)] if code.as_str() == "PATH_NOT_FOUND"),
        "{steps:?}"
    );

    let export: Value = app
        .get_json(
            &format!(
                "/api/v1/exports/{}",
                first["erp_export_id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(export["status"], "FAILED");
    let error = &export["error_json"];
    assert_eq!(error["code"], "PATH_NOT_FOUND");
    assert_eq!(error["attempt"], 1);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Path not found")
    );
    assert!(error["at"].as_str().unwrap().ends_with('Z'));
    let draft: Value = app
        .get_json(&format!("/api/v1/draft-orders/{id}"), &token)
        .await;
    assert_eq!(draft["status"], "ERROR");

    std::fs::create_dir_all(&dir).unwrap();
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/retry-push"), &token)
        .await;
    assert_eq!(resp.status(), 202);
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second["status"], "PUSHING");
    assert_ne!(second["erp_export_id"], first["erp_export_id"]);
    assert!(matches!(
        app.deliver_all().await.as_slice(),
        [Step::Sent(_)]
    ));
    let draft: Value = app
        .get_json(&format!("/api/v1/draft-orders/{id}"), &token)
        .await;
    assert_eq!(draft["status"], "PUSHED");
    let statuses: Vec<&str> = draft["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SENT", "FAILED"], "newest first");
    // A FAILED export never changes again.
    let old: Value = app
        .get_json(
            &format!(
                "/api/v1/exports/{}",
                first["erp_export_id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(old["status"], "FAILED");
    assert_eq!(files(&dir).len(), 1);
    // retry-push only from a FAILED latest export.
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/retry-push"), &token)
        .await;
    assert_error(resp, 409, "CONFLICT").await;
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_until_the_limit() {
    let app = spawn_app_with(
        TestDb::sqlite().await,
        &[
            ("EXPORT_MAX_ATTEMPTS", "2"),
            ("EXPORT_RETRY_BASE_SECS", "1"),
        ],
        Registry::default().with(Arc::new(MockConnector)),
    )
    .await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let resp = app
        .post_json(
            "/api/v1/connectors/mock",
            &token,
            &json!({"fail_with": "CONNECTION_REFUSED"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = approved_draft(&app, &token).await;
    let pushed: Value = push(&app, &token, &id, None).await.json().await.unwrap();
    let export_id = pushed["erp_export_id"].as_str().unwrap();

    let steps = app.deliver_all().await;
    assert!(
        matches!(steps.as_slice(), [Step::Retrying(_, _)]),
        "{steps:?}"
    );
    let export: Value = app
        .get_json(&format!("/api/v1/exports/{export_id}"), &token)
        .await;
    assert_eq!(export["status"], "PENDING");
    assert_eq!(export["attempts"], 1);
    assert_eq!(export["error_json"]["code"], "CONNECTION_REFUSED");
    let due: chrono::DateTime<chrono::Utc> =
        export["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let wait = (due - chrono::Utc::now()).num_milliseconds();
    assert!((300..=1300).contains(&wait), "backoff {wait} ms");
    // Not due yet: nothing to do.
    assert!(app.deliver_all().await.is_empty());

    tokio::time::sleep(std::time::Duration::from_millis(wait as u64 + 100)).await;
    let steps = app.deliver_all().await;
    assert!(
        matches!(steps.as_slice(), [Step::Failed(_, _)]),
        "{steps:?}"
    );
    let export: Value = app
        .get_json(&format!("/api/v1/exports/{export_id}"), &token)
        .await;
    assert_eq!(export["status"], "FAILED");
    assert_eq!(export["attempts"], 2);
    assert_eq!(export["error_json"]["attempt"], 2);
    let draft: Value = app
        .get_json(&format!("/api/v1/draft-orders/{id}"), &token)
        .await;
    assert_eq!(draft["status"], "ERROR");
}

#[tokio::test]
async fn lists_filter_by_status_and_page_newest_first() {
    let app = spawn_app().await;
    let (token, _) = org_with_dropzone(&app, "acme").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            create_draft(&app, &token).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.post_empty(&format!("/api/v1/draft-orders/{}/approve", ids[1]), &token)
        .await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let query = if cursor.is_empty() {
            String::new()
        } else {
            format!("&cursor={cursor}")
        };
        let page: Value = app
            .get_json(&format!("/api/v1/draft-orders?limit=2{query}"), &token)
            .await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let approved: Value = app
        .get_json("/api/v1/draft-orders?status=APPROVED", &token)
        .await;
    assert_eq!(approved["items"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("status=DONE", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=", "cursor"),
    ] {
        for path in ["/api/v1/draft-orders", "/api/v1/exports"] {
            let body = assert_error(
                app.get(&format!("{path}?{query}"), &token).await,
                422,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(body["error"]["details"]["field"], field, "{path}?{query}");
        }
    }
    let pending: Value = app.get_json("/api/v1/exports?status=PENDING", &token).await;
    assert!(pending["items"].as_array().unwrap().is_empty());
}

/// A push wakes another process's worker through PostgreSQL (the announcer's `NOTIFY`), long
/// before that worker's own poll: the other process is a second app on the same database whose
/// worker polls only every 60 s.
#[tokio::test]
async fn a_push_wakes_the_workers_of_other_processes_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let app = spawn_app_on(db, &[]).await;
    let (token, dir) = org_with_dropzone(&app, "acme").await;
    let other = orderflow::app::App::assemble(
        app.settings.clone(),
        app.db.store.clone(),
        Registry::default(),
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = orderflow::workers::delivery::DeliveryWorker::new(
        other,
        orderflow::workers::delivery::DeliveryLimits {
            poll_interval: std::time::Duration::from_secs(60),
            ..Default::default()
        },
    );
    let running = tokio::spawn(worker.run(stopped.clone()));
    // This app announces pushes but delivers nothing itself.
    let announcer = tokio::spawn(orderflow::workers::announce::run(app.app.clone(), stopped));
    // Let the other worker look once and settle into its long wait.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let id = approved_draft(&app, &token).await;
    let started = std::time::Instant::now();
    assert_eq!(push(&app, &token, &id, None).await.status(), 202);
    while files(&dir).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the other process's worker was not woken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = running.await;
    let _ = announcer.await;
}

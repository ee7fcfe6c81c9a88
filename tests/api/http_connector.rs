//! HTTP_JSON_V1 through the API: the signing secret generated and shown once, the
//! pipeline delivering to a real HTTPS ERP, acknowledgements from its answer and from signed
//! callbacks (valid, bad signature, stale, replay, another org's export), on both backends, and
//! no secret in any response or log.

use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::http_erp::{Answer, HttpErp, Tls};
use crate::common::{TestApp, TestDb, assert_error, captured_logs, spawn_app_on};

const CONNECTOR: &str = "/api/v1/connectors/http-json-v1";
/// Loopback is where the test ERP lives, so only a documentation network is blocked.
const SETTINGS: &[(&str, &str)] = &[("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24")];
const API_KEY: &str = "erp-api-key-73219";

/// Saves an HTTP connection for a new org; its admin token, connection id and signing secret.
async fn org_with_http(
    app: &TestApp,
    slug: &str,
    erp: &HttpErp,
    extra: Value,
) -> (String, String, String) {
    let (_, _, token) = app.org_with(slug, Role::Admin).await;
    let mut config = json!({"url": erp.url(Tls::Https), "ca_certificate_pem": erp.ca.pem(),
                            "headers": {"X-Api-Key": API_KEY}, "timeout_secs": 5});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let resp = app.post_json(CONNECTOR, &token, &config).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let saved: Value = resp.json().await.unwrap();
    let secret = saved["generated_secrets"]["signing_secret"]
        .as_str()
        .expect("a signing secret is generated on create")
        .to_owned();
    (token, saved["id"].as_str().unwrap().to_owned(), secret)
}

/// Creates, approves and pushes a draft, then runs delivery; the export as the API shows it.
async fn push_and_deliver(app: &TestApp, token: &str) -> Value {
    let po = format!("PO-{}", uuid::Uuid::new_v4().simple());
    let body = json!({"external_order_number": po,
        "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 2.5, "uom": "PCE"}]});
    app.push_and_deliver(token, &body).await
}

async fn export(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(&format!("/api/v1/exports/{id}"), token).await
}

/// POSTs a callback signed with `secret` by the reference implementation, `age` seconds old.
async fn callback(
    app: &TestApp,
    connection: &str,
    secret: &str,
    msg_id: &str,
    age: i64,
    body: &Value,
) -> reqwest::Response {
    let payload = body.to_string();
    let timestamp = chrono::Utc::now().timestamp() - age;
    let signature = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(msg_id, timestamp, payload.as_bytes())
        .unwrap();
    app.client
        .post(app.url(&format!("/api/v1/hooks/{connection}/acks")))
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(payload)
        .send()
        .await
        .unwrap()
}

async fn audit_count(app: &TestApp, token: &str, action: &str) -> usize {
    let audit: Value = app
        .get_json(&format!("/api/v1/audit-log?action={action}"), token)
        .await;
    audit["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_signing_secret_is_generated_shown_once_and_kept() {
    let erp = HttpErp::start(Tls::Https).await;
    let app = spawn_app_on(TestDb::sqlite().await, SETTINGS).await;
    let (token, _, secret) = org_with_http(&app, "acme", &erp, json!({})).await;
    assert!(secret.starts_with("whsec_"));
    let details = app.get(CONNECTOR, &token).await.text().await.unwrap();
    assert!(
        !details.contains(&secret) && !details.contains(API_KEY),
        "{details}"
    );
    let details: Value = serde_json::from_str(&details).unwrap();
    let set: Vec<&str> = details["secrets_set"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        set.contains(&"signing_secret") && set.contains(&"headers"),
        "{set:?}"
    );
    // An update that leaves the secret out keeps it, and shows nothing generated.
    let resp = app
        .post_json(CONNECTOR, &token, &json!({"url": erp.url(Tls::Https), "ca_certificate_pem": erp.ca.pem(), "timeout_secs": 7}))
        .await;
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("generated_secrets") && !text.contains(&secret),
        "{text}"
    );
    push_and_deliver(&app, &token).await;
    let got = erp.received();
    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
    webhook.verify(&got[0].body, &got[0].headers).unwrap();
    assert_eq!(
        got[0].headers["x-api-key"], API_KEY,
        "the stored header was kept too"
    );
    // A secret that is not a Standard Webhooks secret is refused, naming the field.
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"url": erp.url(Tls::Https), "signing_secret": "hunter2"}),
        )
        .await;
    let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"]["field"], "signing_secret");
    // The connection test answers with the certificate's facts.
    let resp = app.post_empty(&format!("{CONNECTOR}/test"), &token).await;
    let test: Value = resp.json().await.unwrap();
    assert_eq!(test["success"], true, "{test}");
    assert!(
        test["details"]["certificate"]["days_until_expiry"]
            .as_i64()
            .unwrap()
            > 0
    );
    // No secret reached the log.
    let logs = captured_logs();
    assert!(!logs.contains(&secret) && !logs.contains(API_KEY));
}

async fn response_mode(db: TestDb) {
    let erp = HttpErp::start(Tls::Https).await;
    let app = spawn_app_on(db, SETTINGS).await;
    let (token, _, _) = org_with_http(
        &app,
        "acme",
        &erp,
        json!({"ack_mode": "response", "erp_order_id_pointer": "/order/number"}),
    )
    .await;
    let acked = push_and_deliver(&app, &token).await;
    assert_eq!(acked["status"], "ACKED", "{acked}");
    assert_eq!(acked["erp_order_id"], "SO-1");
    assert_eq!(audit_count(&app, &token, "EXPORT_SENT").await, 1);
    assert_eq!(audit_count(&app, &token, "EXPORT_ACKED").await, 1);
    let draft: Value = app
        .get_json(
            &format!(
                "/api/v1/draft-orders/{}",
                acked["draft_order_id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(draft["erp_order_id"], "SO-1");

    // The ERP asks for time: the export waits at least what it asked (capped), and keeps the
    // status and the start of the answer in error_json.
    erp.script([Answer::Status(
        503,
        "maintenance".into(),
        vec![("retry-after".into(), "120".into())],
    )]);
    let pending = push_and_deliver(&app, &token).await;
    assert_eq!(pending["status"], "PENDING");
    let error = &pending["error_json"];
    assert_eq!(error["code"], "ERP_UNAVAILABLE");
    assert_eq!(error["http_status"], 503);
    assert_eq!(error["response_body"], "maintenance");
    let next: chrono::DateTime<chrono::Utc> = pending["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        next - chrono::Utc::now() > chrono::Duration::seconds(100),
        "{next}"
    );
    // The wait is the whole connection's, and the attempt is given back: the ERP was busy,
    // the export did nothing wrong.
    assert_eq!(pending["attempts"], 0);
    let health = &app.get_json(CONNECTOR, &token).await["health"];
    assert_eq!(health["state"], "open", "{health}");
    assert_eq!(health["last_error_code"], "ERP_UNAVAILABLE");
    assert_eq!(health["queued_exports"], 1);
    // An operator who knows better tries again now.
    let resp = app
        .post_empty(&format!("{CONNECTOR}/retry-now"), &token)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["state"], "healthy");
    app.deliver_all().await;
    assert_eq!(
        export(&app, &token, pending["id"].as_str().unwrap()).await["status"],
        "ACKED"
    );
    assert_eq!(audit_count(&app, &token, "CIRCUIT_OPENED").await, 1);
    assert_eq!(audit_count(&app, &token, "CIRCUIT_RESET").await, 1);

    // A 4xx other than those is final: FAILED with the ERP's answer.
    erp.script([Answer::status(422, r#"{"error": "unknown sku"}"#)]);
    let failed = push_and_deliver(&app, &token).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error_json"]["code"], "ERP_REJECTED");
    assert_eq!(failed["error_json"]["http_status"], 422);
    assert!(
        failed["error_json"]["response_body"]
            .as_str()
            .unwrap()
            .contains("unknown sku")
    );
}

#[tokio::test]
async fn response_mode_acknowledges_from_the_answer_sqlite() {
    response_mode(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn response_mode_acknowledges_from_the_answer_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    response_mode(db).await;
}

async fn callbacks(db: TestDb) {
    let erp = HttpErp::start(Tls::Https).await;
    let app = spawn_app_on(db, SETTINGS).await;
    let (token, connection, secret) =
        org_with_http(&app, "acme", &erp, json!({"ack_mode": "callback"})).await;
    let sent = push_and_deliver(&app, &token).await;
    assert_eq!(sent["status"], "SENT");
    let id = sent["id"].as_str().unwrap();
    let ack = json!({"export_id": id, "status": "ACKED", "erp_order_id": "SO-9001",
                     "processed_at": "2026-12-02T10:00:00Z"});

    // Wrong secret, stale timestamp, no headers at all: 401, nothing changes.
    let wrong = orderflow::connectors::http_json_v1::config::generate_secret();
    let resp = callback(&app, &connection, &wrong, "msg_1", 0, &ack).await;
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    let resp = callback(&app, &connection, &secret, "msg_1", 600, &ack).await;
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/hooks/{connection}/acks")))
        .body(ack.to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    assert_eq!(export(&app, &token, id).await["status"], "SENT");

    // Valid: ACKED with the ERP's number, audited once.
    let resp = callback(&app, &connection, &secret, "msg_1", 0, &ack).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["result"], "applied");
    let acked = export(&app, &token, id).await;
    assert_eq!(acked["status"], "ACKED");
    assert_eq!(acked["erp_order_id"], "SO-9001");
    assert_eq!(audit_count(&app, &token, "EXPORT_ACKED").await, 1);

    // A replay (same webhook-id, same body) answers 200 and changes nothing.
    let resp = callback(&app, &connection, &secret, "msg_1", 0, &ack).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["result"], "unchanged");
    // A late contradicting verdict changes nothing either: ACKED is final.
    let late = json!({"export_id": id, "status": "FAILED", "error_code": "E1"});
    let resp = callback(&app, &connection, &secret, "msg_2", 0, &late).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(export(&app, &token, id).await["status"], "ACKED");
    assert_eq!(audit_count(&app, &token, "EXPORT_ACKED").await, 1);
    assert_eq!(audit_count(&app, &token, "EXPORT_REJECTED").await, 0);

    // A rejection by file name: FAILED, the draft ERROR, the ERP's words kept.
    let second = push_and_deliver(&app, &token).await;
    let reject = json!({"file_name": second["file_name"], "status": "FAILED",
                        "error_code": "CREDIT_LIMIT", "message": "Customer over credit limit"});
    let resp = callback(&app, &connection, &secret, "msg_3", 0, &reject).await;
    assert_eq!(resp.status(), 200);
    let failed = export(&app, &token, second["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error_json"]["code"], "ERP_REJECTED");
    assert_eq!(failed["error_json"]["error_code"], "CREDIT_LIMIT");

    // Another org's export through this org's endpoint: 404, and it stays as it was.
    let erp2 = HttpErp::start(Tls::Https).await;
    let (token2, connection2, secret2) =
        org_with_http(&app, "globex", &erp2, json!({"ack_mode": "callback"})).await;
    let theirs = push_and_deliver(&app, &token2).await;
    let steal = json!({"export_id": theirs["id"], "status": "ACKED", "erp_order_id": "X"});
    let resp = callback(&app, &connection, &secret, "msg_4", 0, &steal).await;
    assert_error(resp, 404, "NOT_FOUND").await;
    // Nor does one org's secret open another org's endpoint.
    let resp = callback(&app, &connection2, &secret, "msg_5", 0, &steal).await;
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    assert_eq!(
        export(&app, &token2, theirs["id"].as_str().unwrap()).await["status"],
        "SENT"
    );
    let resp = callback(&app, &connection2, &secret2, "msg_6", 0, &steal).await;
    assert_eq!(resp.status(), 200);

    // A signed body that is no acknowledgement: 422. An unknown endpoint: 404.
    let resp = callback(
        &app,
        &connection,
        &secret,
        "msg_7",
        0,
        &json!({"status": "MAYBE"}),
    )
    .await;
    assert_error(resp, 422, "VALIDATION_ERROR").await;
    // A NUL byte (which PostgreSQL refuses) in an identifier is no acknowledgement either: 422,
    // not 500, and nothing changes; in free text it is replaced and the verdict applies.
    let third = push_and_deliver(&app, &token).await;
    let third_id = third["id"].as_str().unwrap();
    for (n, hostile) in [
        json!({"export_id": third_id, "status": "ACKED", "erp_order_id": "SO\u{0}1"}),
        json!({"file_name": format!("{}\u{0}", third["file_name"].as_str().unwrap()), "status": "ACKED"}),
        json!({"export_id": third_id, "status": "FAILED", "error_code": "E\u{0}"}),
    ]
    .iter()
    .enumerate()
    {
        let resp = callback(&app, &connection, &secret, &format!("nul_{n}"), 0, hostile).await;
        assert_error(resp, 422, "VALIDATION_ERROR").await;
    }
    assert_eq!(export(&app, &token, third_id).await["status"], "SENT");
    let text = json!({"export_id": third_id, "status": "FAILED", "error_code": "E9",
                      "message": "bad\u{0}byte"});
    let resp = callback(&app, &connection, &secret, "nul_text", 0, &text).await;
    assert_eq!(resp.status(), 200);
    let failed = export(&app, &token, third_id).await;
    assert_eq!(failed["error_json"]["message"], "bad\u{FFFD}byte");

    // Unauthenticated work is bounded: a body over 64 KiB is refused before any hashing,
    // and a header with piles of candidate signatures is refused before the body is hashed.
    let big = json!({"export_id": third_id, "status": "ACKED", "pad": "x".repeat(70 * 1024)});
    let resp = callback(&app, &connection, &secret, "big", 0, &big).await;
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE").await;
    let junk = vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; 300].join(" ");
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/hooks/{connection}/acks")))
        .header("webhook-id", "junk")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", junk)
        .body(ack.to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    // A timestamp at the end of the integer range is just stale, never a crash.
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/hooks/{connection}/acks")))
        .header("webhook-id", "edge")
        .header("webhook-timestamp", i64::MIN.to_string())
        .header("webhook-signature", "v1,AAAA")
        .body(ack.to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "AUTH_REQUIRED").await;
    let nobody = uuid::Uuid::new_v4();
    let resp = callback(&app, &nobody.to_string(), &secret, "msg_8", 0, &ack).await;
    assert_error(resp, 404, "NOT_FOUND").await;

    let logs = captured_logs();
    assert!(!logs.contains(&secret) && !logs.contains(&secret2));
}

#[tokio::test]
async fn callback_acknowledgements_are_authenticated_idempotent_and_tenant_bound_sqlite() {
    callbacks(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn callback_acknowledgements_are_authenticated_idempotent_and_tenant_bound_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    callbacks(db).await;
}

#[tokio::test]
async fn a_dropzone_connection_takes_no_callbacks() {
    let app = spawn_app_on(TestDb::sqlite().await, &[]).await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/out")).unwrap();
    let saved: Value = app
        .post_json(
            "/api/v1/connectors/dropzone-json-v1",
            &token,
            &json!({"mode": "filesystem", "export_path": "/out"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = saved["id"].as_str().unwrap();
    let secret = orderflow::connectors::http_json_v1::config::generate_secret();
    let resp = callback(&app, id, &secret, "m", 0, &json!({"status": "ACKED"})).await;
    assert_error(resp, 404, "NOT_FOUND").await;
}

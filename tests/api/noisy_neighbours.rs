//! What one tenant, or its ERP, can do to everyone else: answers with bytes the database
//! refuses, named pipes in its folders, floods of connection tests. Each test shows the
//! hostile org contained and another org unaffected.

use std::time::{Duration, Instant};

use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::http_erp::{Answer, HttpErp, Tls};
use crate::common::{TestApp, TestDb, eventually, spawn_app_on};

/// Loopback is where the test peers live, so only a documentation network is blocked.
const SETTINGS: &[(&str, &str)] = &[("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24")];

/// A new org whose HTTP connection acknowledges from the ERP's answer; its admin token.
async fn org_on(app: &TestApp, slug: &str, erp: &HttpErp) -> String {
    let (_, _, token) = app.org_with(slug, Role::Admin).await;
    let config = json!({"url": erp.url(Tls::Https), "ca_certificate_pem": erp.ca.pem(),
        "timeout_secs": 5, "ack_mode": "response", "erp_order_id_pointer": "/order/number"});
    let resp = app
        .post_json("/api/v1/connectors/http-json-v1", &token, &config)
        .await;
    assert_eq!(resp.status(), 200);
    token
}

/// Creates, approves and pushes one draft; its export id.
async fn push(app: &TestApp, token: &str) -> String {
    let body = json!({"external_order_number": "PO-1",
        "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
    let draft: Value = app
        .post_json("/api/v1/draft-orders", token, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = draft["id"].as_str().unwrap();
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
        .await;
    assert_eq!(resp.status(), 200);
    let pushed: Value = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/push"), token)
        .await
        .json()
        .await
        .unwrap();
    pushed["erp_export_id"].as_str().unwrap().to_owned()
}

async fn export(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(&format!("/api/v1/exports/{id}"), token).await
}

/// Waits until none of these exports has one of the `unsettled` statuses.
async fn settled(app: &TestApp, exports: &[(String, String)], unsettled: &[&str]) {
    eventually(Duration::from_secs(60), "the exports to settle", || async {
        for (token, id) in exports {
            let status = export(app, token, id).await["status"].clone();
            if unsettled.iter().any(|s| status == *s) {
                return None;
            }
        }
        Some(())
    })
    .await
}

async fn nul_from_an_erp(db: TestDb) {
    let healthy = HttpErp::start(Tls::Https).await;
    let rejecting = HttpErp::start(Tls::Https).await;
    let numbering = HttpErp::start(Tls::Https).await;
    // A rejection whose body holds a NUL byte, and a 2xx naming an order number with one.
    rejecting.script([Answer::status(422, "no\u{0}pe")]);
    numbering.script([Answer::status(
        200,
        r#"{"order": {"number": "SO\u0000-1"}}"#,
    )]);
    let app = spawn_app_on(db, SETTINGS).await;
    let mut exports = Vec::new();
    for n in 0..20 {
        let token = org_on(&app, &format!("healthy-{n}"), &healthy).await;
        let id = push(&app, &token).await;
        exports.push((token, id));
    }
    let rejected_token = org_on(&app, "hostile-a", &rejecting).await;
    let rejected = push(&app, &rejected_token).await;
    let numbered_token = org_on(&app, "hostile-b", &numbering).await;
    let numbered = push(&app, &numbered_token).await;
    exports.push((rejected_token.clone(), rejected.clone()));
    exports.push((numbered_token.clone(), numbered.clone()));

    // The real worker: finished attempts are recorded in batches across orgs.
    let _workers = app.start_workers();
    // An answer's verdict is applied just after its attempt is recorded SENT, in a second
    // transaction, so a healthy export is settled once it is past SENT.
    settled(&app, &exports[..20], &["PENDING", "SENT"]).await;
    settled(&app, &exports[20..], &["PENDING"]).await;

    // Every healthy export was POSTed once and acknowledged from its answer.
    assert_eq!(
        healthy.received().len(),
        20,
        "a healthy export was sent twice"
    );
    for (token, id) in &exports[..20] {
        let e = export(&app, token, id).await;
        assert_eq!(e["status"], "ACKED", "{e}");
        assert_eq!(e["attempts"], 1);
    }
    // The hostile ones end as their answers say, with the NUL replaced where it was text and
    // an unusable order number ignored (the export stays SENT, waiting for an acknowledgement).
    let e = export(&app, &rejected_token, &rejected).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error_json"]["response_body"], "no\u{FFFD}pe");
    let e = export(&app, &numbered_token, &numbered).await;
    assert_eq!(e["status"], "SENT", "{e}");
    assert_eq!(e["erp_order_id"], Value::Null);
    assert_eq!(rejecting.received().len(), 1);
    assert_eq!(numbering.received().len(), 1);
}

#[tokio::test]
async fn an_erp_answering_with_nul_bytes_never_touches_other_orgs_exports_sqlite() {
    nul_from_an_erp(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn an_erp_answering_with_nul_bytes_never_touches_other_orgs_exports_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    nul_from_an_erp(db).await;
}

/// A server that accepts TCP connections and never says a word.
async fn silent_server() -> u16 {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    port
}

#[tokio::test]
async fn a_flood_of_connection_tests_is_bounded_per_org_and_others_test_at_once() {
    let app = spawn_app_on(TestDb::sqlite().await, SETTINGS).await;
    let (_, _, flooder) = app.org_with("flood", Role::Integrator).await;
    let (_, _, calm) = app.org_with("calm", Role::Integrator).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("calm/in")).unwrap();
    let port = silent_server().await;
    let hanging = json!({"mode": "sftp", "host": "127.0.0.1", "port": port, "username": "u",
                         "password": "p", "export_path": "/in", "timeout_secs": 3});

    let started = Instant::now();
    let flood = (0..10).map(|_| {
        let (app, flooder, hanging) = (&app, &flooder, &hanging);
        async move {
            app.post_json("/api/v1/connectors/dropzone-json-v1/test", flooder, hanging)
                .await
        }
    });
    let calm_test = async {
        // Once the flood is in progress, the other org tests its own (local) dropzone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        let resp = app
            .post_json(
                "/api/v1/connectors/dropzone-json-v1/test",
                &calm,
                &json!({"mode": "filesystem", "export_path": "/in"}),
            )
            .await;
        (resp.status().as_u16(), t.elapsed())
    };
    let (answers, (calm_status, calm_took)) =
        futures::join!(futures::future::join_all(flood), calm_test);

    let mut refused = 0;
    let mut timed_out = 0;
    for resp in answers {
        match resp.status().as_u16() {
            429 => {
                refused += 1;
                assert!(resp.headers().get("retry-after").is_some());
            }
            400 => {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error_code"], "CONNECTION_TIMEOUT", "{body}");
                timed_out += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(timed_out, 4, "at most 4 tests of one org run at once");
    assert_eq!(refused, 6);
    assert_eq!(calm_status, 200);
    assert!(
        calm_took < Duration::from_secs(2),
        "another org's test waited {calm_took:?} behind the flood"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // When the flood has drained, the org may test again.
    let resp = app
        .post_json(
            "/api/v1/connectors/dropzone-json-v1/test",
            &flooder,
            &hanging,
        )
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn named_pipes_in_one_orgs_dropzone_stop_only_that_orgs_deliveries() {
    let app = spawn_app_on(TestDb::sqlite().await, SETTINGS).await;
    let mut orgs = Vec::new();
    for slug in ["piped", "clean"] {
        let (_, _, token) = app.org_with(slug, Role::Admin).await;
        let root = app.dropzone_root.path().join(slug);
        std::fs::create_dir_all(root.join("out")).unwrap();
        let resp = app
            .post_json(
                "/api/v1/connectors/dropzone-json-v1",
                &token,
                &json!({"mode": "filesystem", "export_path": "/out", "timeout_secs": 2}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        orgs.push((token, root));
    }
    // The hostile org's folder holds a FIFO at every name its exports will be written as.
    let (piped, piped_root) = &orgs[0];
    let mut exports = Vec::new();
    for _ in 0..30 {
        let id = push(&app, piped).await;
        let name = export(&app, piped, &id).await["file_name"]
            .as_str()
            .unwrap()
            .to_owned();
        for fifo in [name.clone(), format!("{name}.tmp")] {
            let status = std::process::Command::new("mkfifo")
                .arg(piped_root.join("out").join(fifo))
                .status()
                .unwrap();
            assert!(status.success());
        }
        exports.push((piped.clone(), id));
    }
    let (clean, clean_root) = &orgs[1];
    let mut clean_exports = Vec::new();
    for _ in 0..10 {
        clean_exports.push((clean.clone(), push(&app, clean).await));
    }

    let _workers = app.start_workers();
    settled(&app, &clean_exports, &["PENDING"]).await;
    settled(&app, &exports, &["PENDING"]).await;
    for (token, id) in &clean_exports {
        assert_eq!(export(&app, token, id).await["status"], "SENT");
    }
    assert_eq!(
        std::fs::read_dir(clean_root.join("out")).unwrap().count(),
        10
    );
    for (token, id) in &exports {
        let e = export(&app, token, id).await;
        assert_eq!(e["status"], "FAILED", "{e}");
        assert_eq!(e["error_json"]["code"], "IO_ERROR", "{e}");
    }
}

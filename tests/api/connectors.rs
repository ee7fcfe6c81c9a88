//! Connector API (create, read, update, test, disable) with DROPZONE_JSON_V1 in filesystem mode.

use std::path::Path;

use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::{
    Backend, TestApp, TestDb, assert_error, spawn_app, spawn_app_on, spawn_app_with_mock,
};

const SLUG: &str = "/api/v1/connectors/dropzone-json-v1";

fn folder(app: &TestApp, org: &str, path: &str) -> std::path::PathBuf {
    let dir = app
        .dropzone_root
        .path()
        .join(org)
        .join(path.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sftp_config(password: &str) -> Value {
    json!({"mode": "sftp", "host": "sftp.example.com", "username": "orderflow", "password": password, "export_path": "/import/orders"})
}

#[tokio::test]
async fn quickstart_flow_saves_tests_and_leaves_the_folder_clean() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("demo", Role::Admin).await;
    let orders = folder(&app, "demo", "/import/orders");

    let resp = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/import/orders", "test_on_save": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let saved: Value = resp.json().await.unwrap();
    assert_eq!(saved["connector_type"], "DROPZONE_JSON_V1");
    assert_eq!(saved["status"], "ACTIVE");
    assert!(saved["last_test_at"].is_string(), "{saved}");
    assert_eq!(saved["test_result"]["success"], true);
    assert_eq!(
        saved["test_result"]["message"],
        "Test file written and cleaned up successfully"
    );

    let resp = app.post_empty(&format!("{SLUG}/test"), &token).await;
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["success"], true);
    assert_eq!(
        result["message"],
        "Test file written and cleaned up successfully"
    );
    assert!(result["latency_ms"].is_u64());
    assert_eq!(result.as_object().unwrap().len(), 3, "{result}");
    assert!(
        entries(&orders).is_empty(),
        "test left files behind: {:?}",
        entries(&orders)
    );

    let details: Value = app.get_json(SLUG, &token).await;
    assert_eq!(details["id"], saved["id"]);
    assert_eq!(
        details["config"],
        json!({"mode": "filesystem", "export_path": "/import/orders", "atomic_write": true, "timeout_secs": 10})
    );
    assert_eq!(details["secrets_set"], json!([]));
}

#[tokio::test]
async fn types_list_the_registry_and_mock_is_not_reachable_in_a_normal_serve() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Integrator).await;
    let types: Value = app.get_json("/api/v1/connectors/types", &token).await;
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), 2);
    assert_eq!(types[0]["connector_type"], "DROPZONE_JSON_V1");
    assert_eq!(types[0]["slug"], "dropzone-json-v1");
    let props = &types[0]["config_schema"]["properties"];
    for secret in ["password", "private_key", "private_key_passphrase"] {
        assert_eq!(props[secret]["writeOnly"], true, "{secret}");
    }
    assert!(props["host"].get("writeOnly").is_none());
    assert_eq!(types[1]["connector_type"], "HTTP_JSON_V1");
    assert_eq!(types[1]["slug"], "http-json-v1");
    let props = &types[1]["config_schema"]["properties"];
    for secret in ["signing_secret", "headers", "client_key_pem"] {
        assert_eq!(props[secret]["writeOnly"], true, "{secret}");
    }
    assert!(props["url"].get("writeOnly").is_none());
    // What a form needs beside the rules: a title and a place for every field.
    for t in types {
        for (name, prop) in t["config_schema"]["properties"].as_object().unwrap() {
            assert!(prop["title"].is_string(), "{name} has no title");
            assert!(prop["propertyOrder"].is_u64(), "{name} has no order");
        }
    }
    let resp = app
        .post_json("/api/v1/connectors/mock", &token, &json!({}))
        .await;
    let body = assert_error(resp, 404, "NOT_FOUND").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("mock"));
}

#[tokio::test]
async fn only_admins_and_integrators_reach_connector_endpoints() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    for role in [Role::Viewer, Role::Ops] {
        let user = app
            .user(
                &org,
                &format!("{}@acme.test", role.as_str().to_lowercase()),
                role,
            )
            .await;
        let token = app.token_for(&user);
        assert_error(
            app.get("/api/v1/connectors", &token).await,
            403,
            "FORBIDDEN",
        )
        .await;
        assert_error(
            app.get("/api/v1/connectors/types", &token).await,
            403,
            "FORBIDDEN",
        )
        .await;
        let resp = app
            .post_json(
                SLUG,
                &token,
                &json!({"mode": "filesystem", "export_path": "/x"}),
            )
            .await;
        assert_error(resp, 403, "FORBIDDEN").await;
    }
    let resp = app
        .client
        .get(app.url("/api/v1/connectors"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "AUTH_REQUIRED").await;
}

#[tokio::test]
async fn secrets_are_never_shown_and_kept_only_while_the_identity_is_unchanged() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let resp = app
        .post_json(SLUG, &token, &sftp_config("Sup3r-Secret-pw"))
        .await;
    assert_eq!(resp.status(), 200);

    let text = app.get(SLUG, &token).await.text().await.unwrap();
    assert!(!text.contains("Sup3r-Secret-pw"), "{text}");
    let details: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(details["secrets_set"], json!(["password"]));
    assert_eq!(details["config"]["port"], 22);
    assert!(details["config"].get("password").is_none());

    // Same host, port and user: the omitted password is kept.
    let mut update = sftp_config("x");
    update.as_object_mut().unwrap().remove("password");
    update["export_path"] = json!("/import/new");
    assert_eq!(app.post_json(SLUG, &token, &update).await.status(), 200);
    let details: Value = app.get_json(SLUG, &token).await;
    assert_eq!(details["secrets_set"], json!(["password"]));
    assert_eq!(details["config"]["export_path"], "/import/new");

    // Another host: the secret must be given again.
    update["host"] = json!("other.example.com");
    let body = assert_error(
        app.post_json(SLUG, &token, &update).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "password");
    update["password"] = json!("new-password-2");
    assert_eq!(app.post_json(SLUG, &token, &update).await.status(), 200);

    // An explicit null clears it (and then sftp lacks credentials).
    update["password"] = Value::Null;
    let body = assert_error(
        app.post_json(SLUG, &token, &update).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "password");
}

#[tokio::test]
async fn switching_sftp_to_filesystem_drops_the_stored_secrets() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    folder(&app, "acme", "/import/orders");
    assert_eq!(
        app.post_json(SLUG, &token, &sftp_config("Sup3r-Secret-pw"))
            .await
            .status(),
        200
    );
    let resp = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/import/orders"}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let details: Value = app.get_json(SLUG, &token).await;
    assert_eq!(details["secrets_set"], json!([]));
    assert!(details["config"].get("host").is_none());
}

#[tokio::test]
async fn invalid_configs_are_422_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    for (config, field) in [
        (json!({"export_path": "/x"}), "mode"),
        (json!({"mode": "filesystem"}), "export_path"),
        (
            json!({"mode": "filesystem", "export_path": "/a/../../b"}),
            "export_path",
        ),
        (
            json!({"mode": "filesystem", "export_path": "/a\u{0}b"}),
            "export_path",
        ),
        (
            json!({"mode": "filesystem", "export_path": "/in\u{7}"}),
            "export_path",
        ),
        (
            json!({"mode": "filesystem", "export_path": "/in", "timeout_secs": 500}),
            "timeout_secs",
        ),
        (
            json!({"mode": "filesystem", "export_path": "/in", "test_on_save": "yes"}),
            "test_on_save",
        ),
        (
            json!({"mode": "sftp", "export_path": "/in", "host": "10.0.0.1", "username": "u"}),
            "password",
        ),
        (
            json!({"mode": "sftp", "export_path": "/in", "host": "127.0.0.1", "username": "u", "password": "p"}),
            "host",
        ),
    ] {
        let body = assert_error(
            app.post_json(SLUG, &token, &config).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], field, "{config}");
    }
    for (raw, field) in [("[1,2]", "body"), ("{bad json", "body"), ("", "body")] {
        let resp = app
            .client
            .post(app.url(SLUG))
            .bearer_auth(&token)
            .body(raw)
            .send()
            .await
            .unwrap();
        let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
        assert_eq!(body["error"]["details"]["field"], field);
    }
    let list: Value = app.get_json("/api/v1/connectors", &token).await;
    assert_eq!(list, json!([]));
    assert_error(
        app.post_json("/api/v1/connectors/ftp-v9", &token, &json!({}))
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let resp = app
        .post_empty("/api/v1/connections/not-a-uuid/enable", &token)
        .await;
    let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"]["field"], "id");
}

#[tokio::test]
async fn failed_test_on_save_answers_400_with_the_result_and_stores_nothing() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let resp = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/missing", "test_on_save": true}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["success"], false);
    assert_eq!(result["error_code"], "PATH_NOT_FOUND");
    assert!(
        result["error_message"]
            .as_str()
            .unwrap()
            .starts_with("Path not found")
    );
    assert!(result["latency_ms"].is_u64());
    assert_eq!(
        app.get("/api/v1/connectors", &token)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    assert_error(app.get(SLUG, &token).await, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn unsaved_config_in_the_body_is_tested_instead_of_the_stored_one() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    folder(&app, "acme", "/good");
    assert_eq!(
        app.post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/good"})
        )
        .await
        .status(),
        200
    );
    let url = format!("{SLUG}/test");
    let resp = app
        .post_json(
            &url,
            &token,
            &json!({"mode": "filesystem", "export_path": "/elsewhere"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_code"],
        "PATH_NOT_FOUND"
    );
    let resp = app.post_empty(&url, &token).await;
    assert_eq!(resp.status(), 200);
    let body = assert_error(
        app.post_json(&url, &token, &json!({"mode": "filesystem"}))
            .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "export_path");
}

/// Makes `dir` unwritable even for root (CI runs as root, which ignores mode bits).
struct ReadOnly(std::path::PathBuf);

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl ReadOnly {
    fn new(dir: &Path) -> Self {
        if running_as_root() {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chattr +i failed");
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        Self(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if running_as_root() {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[tokio::test]
async fn read_only_folder_is_permission_denied() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let dir = folder(&app, "acme", "/readonly");
    let _guard = ReadOnly::new(&dir);
    let resp = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/readonly", "test_on_save": true}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["error_code"], "PERMISSION_DENIED", "{result}");
    assert!(
        result["error_message"]
            .as_str()
            .unwrap()
            .starts_with("Permission denied")
    );
}

#[tokio::test]
async fn no_path_leaves_the_org_folder_even_through_symlinks() {
    let app = spawn_app().await;
    let (_, _, acme) = app.org_with("acme", Role::Admin).await;
    let (_, _, globex) = app.org_with("globex", Role::Admin).await;
    let acme_orders = folder(&app, "acme", "/import/orders");
    let globex_root = folder(&app, "globex", "/");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), globex_root.join("out")).unwrap();
    std::os::unix::fs::symlink(&acme_orders, globex_root.join("to-acme")).unwrap();

    for path in ["/../acme/import/orders", "/out", "/out/deeper", "/to-acme"] {
        let body = assert_error(
            app.post_json(
                SLUG,
                &globex,
                &json!({"mode": "filesystem", "export_path": path}),
            )
            .await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "export_path", "{path}");
        let resp = app
            .post_json(
                SLUG,
                &globex,
                &json!({"mode": "filesystem", "export_path": "/fine", "ack_path": path}),
            )
            .await;
        assert_eq!(resp.status(), 422, "{path} as ack_path");
    }

    // Saved while harmless, then swapped for a symlink leading out: refused again at write time.
    let inner = folder(&app, "globex", "/drop");
    assert_eq!(
        app.post_json(
            SLUG,
            &globex,
            &json!({"mode": "filesystem", "export_path": "/drop"})
        )
        .await
        .status(),
        200
    );
    std::fs::remove_dir(&inner).unwrap();
    std::os::unix::fs::symlink(&acme_orders, &inner).unwrap();
    let resp = app.post_empty(&format!("{SLUG}/test"), &globex).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_code"],
        "PERMISSION_DENIED"
    );
    assert!(
        entries(&acme_orders).is_empty(),
        "globex wrote into acme's folder"
    );
    assert!(entries(outside.path()).is_empty());

    // acme's own connection is invisible to globex.
    assert_eq!(
        app.post_json(
            SLUG,
            &acme,
            &json!({"mode": "filesystem", "export_path": "/import/orders"})
        )
        .await
        .status(),
        200
    );
    let acme_list: Value = app.get_json("/api/v1/connectors", &acme).await;
    let acme_id = acme_list[0]["id"].as_str().unwrap().to_owned();
    let resp = app
        .post_empty(&format!("/api/v1/connections/{acme_id}/enable"), &globex)
        .await;
    assert_error(resp, 404, "NOT_FOUND").await;
    let globex_list: Value = app.get_json("/api/v1/connectors", &globex).await;
    assert!(!globex_list.to_string().contains(&acme_id));
}

#[tokio::test]
async fn save_refuses_absolute_symlinks_and_invisible_characters_in_paths() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let orders = folder(&app, "acme", "/import/orders");
    let root = folder(&app, "acme", "/");
    // Points back inside the org folder, but absolute: the write-time jail would refuse it.
    std::os::unix::fs::symlink(&orders, root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("import/orders", root.join("rel-link")).unwrap();
    let body = assert_error(
        app.post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/abs-link"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "export_path");
    let resp = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/rel-link", "test_on_save": true}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    for (field, path) in [
        ("export_path", "/import/\u{202E}nosj.txt"),
        ("export_path", "/import\u{2066}/orders"),
        ("export_path", "/import\u{2028}orders"),
        ("ack_path", "/acks\u{2029}"),
        ("ack_path", "/acks\u{200B}"),
    ] {
        let mut config = json!({"mode": "filesystem", "export_path": "/import/orders"});
        config[field] = json!(path);
        let body = assert_error(
            app.post_json(SLUG, &token, &config).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], field, "{path:?}");
    }
}

#[tokio::test]
async fn disable_enable_and_the_one_active_rule() {
    let app = spawn_app_with_mock().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    folder(&app, "acme", "/in");
    let created: Value = app
        .post_json(
            SLUG,
            &token,
            &json!({"mode": "filesystem", "export_path": "/in"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let first_id = created["id"].as_str().unwrap().to_owned();

    let resp = app
        .post_json("/api/v1/connectors/mock", &token, &json!({}))
        .await;
    let body = assert_error(resp, 409, "CONFLICT").await;
    assert_eq!(
        body["error"]["message"],
        "Only one active connector per org"
    );

    let resp = app.post_empty(&format!("{SLUG}/disable"), &token).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "DISABLED");
    assert_error(app.get(SLUG, &token).await, 404, "NOT_FOUND").await;
    let resp = app.post_empty(&format!("{SLUG}/disable"), &token).await;
    assert_error(resp, 404, "NOT_FOUND").await;

    assert_eq!(
        app.post_json("/api/v1/connectors/mock", &token, &json!({}))
            .await
            .status(),
        200
    );
    let enable = format!("/api/v1/connections/{first_id}/enable");
    let resp = app.post_empty(&enable, &token).await;
    let body = assert_error(resp, 409, "CONFLICT").await;
    assert_eq!(
        body["error"]["message"],
        "Only one active connector per org"
    );

    app.post_empty("/api/v1/connectors/mock/disable", &token)
        .await;
    let resp = app.post_empty(&enable, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ACTIVE");
    let list: Value = app.get_json("/api/v1/connectors", &token).await;
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ACTIVE", "DISABLED"]);
    assert!(list[0].get("config").is_none() && list[0].get("config_encrypted").is_none());
    let random = uuid::Uuid::new_v4();
    let resp = app
        .post_empty(&format!("/api/v1/connections/{random}/enable"), &token)
        .await;
    assert_error(resp, 404, "NOT_FOUND").await;

    let audit: Value = app.get_json("/api/v1/audit-log?limit=200", &token).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "connection.created",
        "connection.disabled",
        "connection.enabled",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} not audited: {actions:?}"
        );
    }
}

async fn concurrent_creates_leave_exactly_one_active_row(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_app_on(db, &[]).await;
    let (org, _, token) = app.org_with("acme", Role::Admin).await;
    let requests = (0..10).map(|i| {
        let app = &app;
        let token = &token;
        async move {
            app.post_json(
                SLUG,
                token,
                &json!({"mode": "filesystem", "export_path": format!("/in/{i}")}),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    let all = app.store().list_connections(org.id).await.unwrap();
    let active = all
        .iter()
        .filter(|c| c.status == orderflow::domain::connection::ConnectionStatus::Active)
        .count();
    assert_eq!(active, 1, "{statuses:?}");
}

#[tokio::test]
async fn ten_concurrent_creates_sqlite() {
    concurrent_creates_leave_exactly_one_active_row(Backend::Sqlite).await;
}

#[tokio::test]
async fn ten_concurrent_creates_postgres() {
    concurrent_creates_leave_exactly_one_active_row(Backend::Postgres).await;
}

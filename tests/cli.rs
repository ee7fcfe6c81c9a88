//! The `orderflow` binary: startup validation, bootstrap commands, quickstart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orderflow");
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const JWT: &str = "cli-test-jwt-secret-0123456789abcdef-xyz";

/// A command with a clean environment (no inherited settings) in `dir`.
fn orderflow(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn with_secrets(mut cmd: Command) -> Command {
    cmd.env("ENCRYPTION_MASTER_KEY", KEY).env("JWT_SECRET", JWT);
    cmd
}

#[test]
fn serve_refuses_to_start_with_bad_secrets_in_one_line_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let short_jwt = "short-secret-value";
    let not_hex = "g".repeat(64);
    // (environment, expected message, value that must not be echoed)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("JWT_SECRET", JWT)],
            "ENCRYPTION_MASTER_KEY is not set",
            None,
        ),
        (
            vec![("ENCRYPTION_MASTER_KEY", "abc123"), ("JWT_SECRET", JWT)],
            "ENCRYPTION_MASTER_KEY must be 64 hex",
            Some("abc123"),
        ),
        (
            vec![("ENCRYPTION_MASTER_KEY", &not_hex), ("JWT_SECRET", JWT)],
            "only hex digits",
            Some(&not_hex),
        ),
        (
            vec![("ENCRYPTION_MASTER_KEY", KEY)],
            "JWT_SECRET must be at least 32 bytes",
            None,
        ),
        (
            vec![("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", short_jwt)],
            "JWT_SECRET must be at least 32 bytes",
            Some(short_jwt),
        ),
    ];
    for (env, expected, secret) in cases {
        let mut cmd = orderflow(dir.path());
        cmd.arg("serve").env("BIND_ADDR", "127.0.0.1:0");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{expected}: started anyway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
        if let Some(secret) = secret {
            assert!(!stderr.contains(secret), "echoed the secret: {stderr}");
        }
    }
    assert!(
        !dir.path().join("data").exists(),
        "touched the disk before validating"
    );
}

#[test]
fn bootstrap_commands_print_only_ids_and_tokens_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], password: Option<&str>| {
        let mut cmd = with_secrets(orderflow(dir.path()));
        cmd.args(args);
        if let Some(pw) = password {
            cmd.env("ORDERFLOW_PASSWORD", pw);
        }
        cmd.output().unwrap()
    };
    let out = run(
        &["org", "create", "--slug", "acme", "--name", "Acme GmbH"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org_id = String::from_utf8(out.stdout).unwrap();
    assert!(uuid::Uuid::parse_str(org_id.trim()).is_ok(), "{org_id:?}");

    let out = run(
        &["org", "create", "--slug", "Bad Slug", "--name", "x"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("slug"));

    let out = run(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "ann@acme.test",
            "--role",
            "admin",
        ],
        Some("a-long-enough-password"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "bob@acme.test",
            "--role",
            "root",
        ],
        Some("a-long-enough-password"),
    );
    assert!(!out.status.success());

    // Password from stdin when ORDERFLOW_PASSWORD is absent.
    let mut child = with_secrets(orderflow(dir.path()))
        .args([
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "cy@acme.test",
            "--role",
            "VIEWER",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"stdin-password-123\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let out = run(
        &[
            "token",
            "issue",
            "--org",
            "acme",
            "--email",
            "ann@acme.test",
            "--ttl",
            "120",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "{token:?}");
    let claims =
        orderflow::auth::TokenIssuer::new(&orderflow::crypto::SecretString::new(JWT.into()))
            .verify(token.trim())
            .unwrap();
    assert_eq!(claims.exp - claims.iat, 120);

    let out = run(
        &[
            "user",
            "disable",
            "--org",
            "acme",
            "--email",
            "ann@acme.test",
        ],
        None,
    );
    assert!(out.status.success());
    let out = run(
        &[
            "token",
            "issue",
            "--org",
            "acme",
            "--email",
            "ann@acme.test",
        ],
        None,
    );
    assert!(!out.status.success(), "token issued for a disabled user");
}

#[test]
fn keys_generate_and_init_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = orderflow(dir.path())
        .args(["keys", "generate"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(orderflow::crypto::Keyring::from_hex(key.trim(), "").is_ok());

    assert!(
        orderflow(dir.path())
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    let first = std::fs::read_to_string(dir.path().join(".env")).unwrap();
    assert!(first.contains("ENCRYPTION_MASTER_KEY=") && first.contains("JWT_SECRET="));
    assert!(
        orderflow(dir.path())
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env")).unwrap(),
        first
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn quickstart_on_an_empty_directory_serves_with_a_valid_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Killed(
        orderflow(dir.path())
            .arg("quickstart")
            .env("BIND_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut base, mut token) = (None, None);
    while base.is_none() || token.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("quickstart printed no token/address in time");
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = Some(rest.trim().to_owned());
        }
        if let Some(t) = line.strip_prefix("export T=") {
            token = Some(t.trim().to_owned());
        }
    }
    let (base, token) = (base.unwrap(), token.unwrap());
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "ADMIN", "{me}");
    assert_eq!(me["org_slug"], "demo");

    // The two example requests quickstart prints work as printed.
    let client = reqwest::Client::new();
    let saved: serde_json::Value = client
        .post(format!("{base}/api/v1/connectors/dropzone-json-v1"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"mode": "filesystem", "export_path": "/import/orders", "test_on_save": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["test_result"]["success"], true, "{saved}");
    let tested = client
        .post(format!("{base}/api/v1/connectors/dropzone-json-v1/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), 200);
    let tested: serde_json::Value = tested.json().await.unwrap();
    assert_eq!(
        tested["message"],
        "Test file written and cleaned up successfully"
    );
    assert!(dir.path().join(".env").exists());
    assert!(dir.path().join("data/orderflow.db").exists());
    assert!(
        dir.path()
            .join("data/dropzones/demo/import/orders")
            .is_dir()
    );
}

#[tokio::test]
async fn keys_rotate_rewrites_old_blobs_once_and_decrypt_prints_the_config() {
    use std::sync::Arc;

    use orderflow::connectors::{ConnectorEnv, Registry};
    use orderflow::crypto::Keyring;
    use orderflow::domain::audit::Actor;
    use orderflow::service::connections::ConnectionService;

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/of.db", dir.path().display());
    let old_key = orderflow::crypto::generate_key_hex();
    let store = orderflow::store::connect(&db_url).await.unwrap();
    store.migrate().await.unwrap();
    let service = ConnectionService::new(
        store.clone(),
        Arc::new(Keyring::from_hex(&old_key, "").unwrap()),
        Arc::new(Registry::default()),
        Arc::new(ConnectorEnv::new(dir.path().join("dz"), vec![])),
    );
    let mut ids = Vec::new();
    for slug in ["acme", "globex"] {
        let org = orderflow::service::accounts::create_org(store.as_ref(), slug, slug)
            .await
            .unwrap();
        let body = serde_json::json!({"mode": "sftp", "host": "sftp.example.com", "username": slug, "password": format!("pw-{slug}-secret"), "export_path": "/in"});
        let outcome = service
            .save(
                &Actor::cli(),
                org.id,
                "dropzone-json-v1",
                body.as_object().unwrap().clone(),
            )
            .await
            .unwrap();
        let orderflow::service::connections::SaveOutcome::Saved { connection, .. } = outcome else {
            panic!("not saved")
        };
        ids.push(connection.id);
    }
    store.close().await;

    let run = |args: &[&str], previous: &str| {
        let mut cmd = orderflow(dir.path());
        cmd.args(args)
            .env("ENCRYPTION_MASTER_KEY", KEY)
            .env("ENCRYPTION_PREVIOUS_KEYS", previous)
            .env("JWT_SECRET", JWT)
            .env("DATABASE_URL", &db_url);
        cmd.output().unwrap()
    };
    let out = run(&["keys", "rotate"], &old_key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "rewrote 2 of 2 configs\n"
    );
    let out = run(&["keys", "rotate"], &old_key);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "rewrote 0 of 2 configs\n"
    );

    // Without the old key, the rotated configs still open.
    let out = run(&["connector", "decrypt", &ids[1].to_string()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["password"], "pw-globex-secret");
    assert_eq!(config["username"], "globex");

    let out = run(
        &["connector", "decrypt", &uuid::Uuid::new_v4().to_string()],
        "",
    );
    assert!(!out.status.success());

    let store = orderflow::store::connect(&db_url).await.unwrap();
    let globex = store.org_by_slug("globex").await.unwrap().unwrap();
    let page = orderflow::domain::page::PageRequest::parse(None, None).unwrap();
    let actions: Vec<String> = store
        .list_audit(globex.id, None, page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"connection.config_decrypted".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"connection.config_reencrypted".to_owned()),
        "{actions:?}"
    );

    // A config no configured key opens is reported, and the command fails.
    let out = run(&["keys", "rotate"], "");
    assert!(
        out.status.success(),
        "all rows are under the current key now"
    );
    let other_key = orderflow::crypto::generate_key_hex();
    let mut cmd = orderflow(dir.path());
    let out = cmd
        .args(["keys", "rotate"])
        .env("ENCRYPTION_MASTER_KEY", &other_key)
        .env("JWT_SECRET", JWT)
        .env("DATABASE_URL", &db_url)
        .output()
        .unwrap();
    // A key that never sealed anything here is refused before any work, with one line that
    // names the variable (the key check value).
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ENCRYPTION_MASTER_KEY does not match"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(&other_key) && !stderr.contains(KEY));
    // The rotation moved the check to the new key: the old key alone is now refused too.
    let out = run(&["connector", "decrypt", &ids[0].to_string()], "");
    assert!(out.status.success());
    let mut cmd = orderflow(dir.path());
    let out = cmd
        .args(["connector", "decrypt", &ids[0].to_string()])
        .env("ENCRYPTION_MASTER_KEY", &old_key)
        .env("JWT_SECRET", JWT)
        .env("DATABASE_URL", &db_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENCRYPTION_MASTER_KEY does not match"));
}

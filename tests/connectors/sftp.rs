//! DROPZONE_JSON_V1 over SFTP against the in-process server: auth, host keys, network policy,
//! timeouts, rename flavours, cut connections and the session pool.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use orderflow::connectors::dropzone_json_v1::DropzoneJsonV1;
use orderflow::connectors::{
    ConnectionKey, Connector, ConnectorConfig, ConnectorContext, ExportRequest, TestResult,
    run_test,
};
use russh::keys::ssh_key::LineEnding;
use serde_json::{Value, json};

use crate::common::sample;
use crate::sftp_server::{PASSWORD, TestSftpServer, USER, ed25519_key, fingerprint};

/// The transport's target for the in-process server on `port`, with the test password.
fn password_target(
    port: u16,
    timeout: Duration,
) -> orderflow::connectors::transport::sftp::SftpTarget {
    orderflow::connectors::transport::sftp::SftpTarget {
        host: "127.0.0.1".into(),
        port,
        username: USER.into(),
        password: Some(orderflow::crypto::SecretString::new(PASSWORD.into())),
        private_key: None,
        private_key_passphrase: None,
        host_key_fingerprint: None,
        timeout,
    }
}

fn config_for(server: &TestSftpServer, extra: Value) -> Value {
    let mut config = json!({
        "mode": "sftp", "host": "127.0.0.1", "port": server.port, "username": USER,
        "password": PASSWORD, "export_path": "/import/orders", "timeout_secs": 5
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn validated(ctx: &ConnectorContext, config: Value) -> ConnectorConfig {
    DropzoneJsonV1
        .validate(&sample::config(config), &ctx.env.validation())
        .unwrap()
}

async fn test_with(ctx: &ConnectorContext, config: Value) -> TestResult {
    run_test(&DropzoneJsonV1, ctx, &validated(ctx, config)).await
}

fn code(result: &TestResult) -> &'static str {
    result.error_code.map_or("none", |c| c.as_str())
}

#[tokio::test]
async fn a_passing_test_leaves_the_folder_as_it_was_and_learns_the_host_key() {
    let server = TestSftpServer::start().await;
    let orders = server.dir("/import/orders");
    std::fs::write(orders.join("existing.json"), b"{}").unwrap();
    let (ctx, _root) = sample::context("acme");
    let result = test_with(
        &ctx,
        config_for(&server, json!({"ack_path": "/import/orders"})),
    )
    .await;
    assert!(result.success, "{result:?}");
    assert_eq!(
        result.message.as_deref(),
        Some("Test file written and cleaned up successfully")
    );
    assert_eq!(
        result.learned.host_key_fingerprint,
        Some(server.fingerprint())
    );
    let names: Vec<_> = std::fs::read_dir(&orders)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["existing.json"]);
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let server = TestSftpServer::start().await;
    server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let result = test_with(&ctx, config_for(&server, json!({"password": "not-it"}))).await;
    assert_eq!(code(&result), "AUTH_FAILED");
    assert_eq!(
        result.error_message.as_deref(),
        Some("Authentication failed")
    );
}

#[tokio::test]
async fn key_auth_works_and_an_unknown_key_is_refused() {
    let client_key = ed25519_key(42);
    let server =
        TestSftpServer::start_with(ed25519_key(7), Some(client_key.public_key().clone())).await;
    server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let pem = client_key.to_openssh(LineEnding::LF).unwrap().to_string();
    let result = test_with(
        &ctx,
        config_for(&server, json!({"password": null, "private_key": pem})),
    )
    .await;
    assert!(result.success, "{result:?}");

    let stranger = ed25519_key(43)
        .to_openssh(LineEnding::LF)
        .unwrap()
        .to_string();
    let result = test_with(
        &ctx,
        config_for(&server, json!({"password": null, "private_key": stranger})),
    )
    .await;
    assert_eq!(code(&result), "AUTH_FAILED");
    // A key that fails falls back to the password when both are configured.
    let result = test_with(
        &ctx,
        config_for(
            &server,
            json!({"private_key": ed25519_key(44).to_openssh(LineEnding::LF).unwrap().to_string()}),
        ),
    )
    .await;
    assert!(result.success, "{result:?}");
}

#[tokio::test]
async fn refused_port_and_silent_listener() {
    let (ctx, _root) = sample::context("acme");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let base = json!({"mode": "sftp", "host": "127.0.0.1", "port": port, "username": "u", "password": "p", "export_path": "/x", "timeout_secs": 1});
    assert_eq!(
        code(&test_with(&ctx, base.clone()).await),
        "CONNECTION_REFUSED"
    );

    // Accepts TCP but never says a word of SSH.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = base;
    config["port"] = json!(silent_port);
    let start = Instant::now();
    let result = test_with(&ctx, config).await;
    assert_eq!(code(&result), "CONNECTION_TIMEOUT");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?} with timeout_secs 1",
        start.elapsed()
    );
}

#[tokio::test]
async fn read_only_and_missing_folders() {
    let server = TestSftpServer::start().await;
    server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let result = test_with(
        &ctx,
        config_for(&server, json!({"export_path": "/nowhere"})),
    )
    .await;
    assert_eq!(code(&result), "PATH_NOT_FOUND");
    assert!(result.error_message.unwrap().contains("/nowhere"));
    let result = test_with(&ctx, config_for(&server, json!({"ack_path": "/no-acks"}))).await;
    assert_eq!(code(&result), "PATH_NOT_FOUND");

    server.switches.deny_writes.store(true, Ordering::SeqCst);
    let result = test_with(&ctx, config_for(&server, json!({}))).await;
    assert_eq!(code(&result), "PERMISSION_DENIED");
    assert_eq!(
        result
            .error_message
            .as_deref()
            .map(|m| m.starts_with("Permission denied")),
        Some(true)
    );
}

#[tokio::test]
async fn pinned_host_keys_are_enforced_before_any_credential_is_sent() {
    let server = TestSftpServer::start().await;
    server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let result = test_with(
        &ctx,
        config_for(
            &server,
            json!({"host_key_fingerprint": server.fingerprint()}),
        ),
    )
    .await;
    assert!(result.success, "{result:?}");
    assert_eq!(
        result.learned.host_key_fingerprint, None,
        "nothing to learn when pinned"
    );
    let before = server.stats.auth_attempts.load(Ordering::SeqCst);

    let wrong = fingerprint(&ed25519_key(99));
    let result = test_with(
        &ctx,
        config_for(&server, json!({"host_key_fingerprint": wrong})),
    )
    .await;
    assert_eq!(code(&result), "HOST_KEY_MISMATCH");
    assert!(
        result
            .error_message
            .unwrap()
            .starts_with("Host key verification failed")
    );
    assert_eq!(
        server.stats.auth_attempts.load(Ordering::SeqCst),
        before,
        "credentials were offered to an unverified server"
    );
}

#[tokio::test]
async fn blocked_networks_are_refused_before_connecting() {
    let server = TestSftpServer::start().await;
    let blocked =
        orderflow::config::parse_networks(orderflow::config::DEFAULT_BLOCKED_NETWORKS).unwrap();
    let (ctx, _root) = sample::context_with("acme", blocked);
    // A literal is refused at validation (422 in the API)...
    let err = DropzoneJsonV1
        .validate(
            &sample::config(config_for(&server, json!({}))),
            &ctx.env.validation(),
        )
        .unwrap_err();
    assert_eq!(err.field, "host");
    // ...and, had it been stored before the policy changed, again when connecting.
    let (open_ctx, _r) = sample::context("acme");
    let stored = validated(&open_ctx, config_for(&server, json!({})));
    let result = run_test(&DropzoneJsonV1, &ctx, &stored).await;
    assert_eq!(code(&result), "HOST_BLOCKED");
    // A name that resolves into a blocked network.
    let by_name = validated(&ctx, config_for(&server, json!({"host": "localhost"})));
    let result = run_test(&DropzoneJsonV1, &ctx, &by_name).await;
    assert_eq!(code(&result), "HOST_BLOCKED");
    assert_eq!(
        server.stats.connections.load(Ordering::SeqCst),
        0,
        "connected to a blocked host"
    );
}

#[tokio::test]
async fn plain_rename_is_used_when_posix_rename_is_not_offered() {
    let server = TestSftpServer::start().await;
    server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    assert!(
        test_with(&ctx, config_for(&server, json!({})))
            .await
            .success
    );
    assert_eq!(server.stats.posix_renames.load(Ordering::SeqCst), 1);

    server
        .switches
        .no_posix_rename
        .store(true, Ordering::SeqCst);
    let result = test_with(&ctx, config_for(&server, json!({}))).await;
    assert!(result.success, "{result:?}");
    assert_eq!(server.stats.plain_renames.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats.posix_renames.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_operations_time_out() {
    let server = TestSftpServer::start().await;
    server.dir("/import/orders");
    server.switches.delay_ms.store(2500, Ordering::SeqCst);
    let (ctx, _root) = sample::context("acme");
    let result = test_with(&ctx, config_for(&server, json!({"timeout_secs": 1}))).await;
    assert_eq!(code(&result), "CONNECTION_TIMEOUT");
}

fn pooled(ctx: &ConnectorContext, version: i64) -> ConnectorContext {
    let mut ctx = ctx.clone();
    ctx.connection = Some(ConnectionKey {
        id: uuid::Uuid::from_u128(1),
        version,
    });
    ctx
}

#[tokio::test]
async fn a_connection_cut_mid_write_leaves_no_final_file_and_says_so() {
    let server = TestSftpServer::start().await;
    let orders = server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let ctx = pooled(&ctx, 1);
    let config = validated(&ctx, config_for(&server, json!({})));
    let request = ExportRequest {
        order: sample::order("acme"),
        file_name: "sales_order_cut.json".into(),
    };
    server.switches.cut_after_bytes.store(100, Ordering::SeqCst);

    let err = DropzoneJsonV1
        .export(&ctx, &request, &config)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "CONNECTION_LOST", "{err}");
    assert!(err.is_transient());
    let names: Vec<_> = std::fs::read_dir(&orders)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.contains(&"sales_order_cut.json".to_owned()),
        "a partial final file: {names:?}"
    );
    assert!(
        names.is_empty(),
        "the .tmp should have been cleaned up after reconnecting: {names:?}"
    );

    // The retry (the switch is one-shot) delivers exactly one complete file.
    let done = DropzoneJsonV1
        .export(&ctx, &request, &config)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(orders.join("sales_order_cut.json")).unwrap(),
        done.content
    );
}

/// A final name that is already there: the same bytes count as delivered, other bytes are
/// `FILE_EXISTS_DIFFERENT`; either way the file there is left as it was and no `.tmp` stays.
#[tokio::test]
async fn an_existing_final_file_is_never_replaced() {
    use orderflow::connectors::dropzone_json_v1::dropzone::publish;
    use orderflow::connectors::transport::sftp::SftpTransport;
    use orderflow::connectors::transport::sftp::pool::{PoolLimits, SessionPool};

    let server = TestSftpServer::start().await;
    let orders = server.dir("/import/orders");
    let target = password_target(server.port, Duration::from_secs(10));
    let pool = std::sync::Arc::new(SessionPool::new(PoolLimits::default()));
    let transport = SftpTransport::new(target, pool, None, vec![]);
    let dir = "/import/orders";
    let first = publish(&transport, dir, "same.json", b"order 1", true)
        .await
        .unwrap();
    let again = publish(&transport, dir, "same.json", b"order 1", true)
        .await
        .unwrap();
    assert!(!first.already_present);
    assert!(again.already_present);

    std::fs::write(orders.join("other.json"), b"someone else's file").unwrap();
    let err = publish(&transport, dir, "other.json", b"order 2", true)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "FILE_EXISTS_DIFFERENT", "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        std::fs::read(orders.join("other.json")).unwrap(),
        b"someone else's file"
    );
    assert_eq!(std::fs::read(orders.join("same.json")).unwrap(), b"order 1");
    let mut names: Vec<_> = std::fs::read_dir(&orders)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["other.json", "same.json"]);
}

#[tokio::test]
async fn the_pool_reuses_sessions_and_reconnects_after_a_server_restart() {
    let mut server = TestSftpServer::start().await;
    let orders = server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let ctx = pooled(&ctx, 1);
    let config = validated(
        &ctx,
        config_for(
            &server,
            json!({"host_key_fingerprint": server.fingerprint()}),
        ),
    );
    let export = |n: u32| ExportRequest {
        order: sample::order("acme"),
        file_name: format!("sales_order_{n}.json"),
    };

    for n in 0..5 {
        DropzoneJsonV1
            .export(&ctx, &export(n), &config)
            .await
            .unwrap();
    }
    assert_eq!(
        ctx.env.sftp_pool.connects(),
        1,
        "each export opened its own connection"
    );
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);

    server.restart(None).await;
    DropzoneJsonV1
        .export(&ctx, &export(5), &config)
        .await
        .unwrap();
    assert_eq!(ctx.env.sftp_pool.connects(), 2);
    assert_eq!(std::fs::read_dir(&orders).unwrap().count(), 6);

    // A new config version never reuses the old version's session.
    let v2 = pooled(&ctx, 2);
    DropzoneJsonV1
        .export(&v2, &export(6), &config)
        .await
        .unwrap();
    assert_eq!(ctx.env.sftp_pool.connects(), 3);
    assert_eq!(ctx.env.sftp_pool.open_sessions(), 1);

    // A changed host key: refused, and the pooled sessions of that connection are dropped.
    server.restart(Some(ed25519_key(8))).await;
    let err = DropzoneJsonV1
        .export(&v2, &export(7), &config)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "HOST_KEY_MISMATCH");
    assert_eq!(ctx.env.sftp_pool.open_sessions(), 0);
}

#[tokio::test]
async fn concurrent_exports_share_a_bounded_set_of_sessions() {
    let server = TestSftpServer::start().await;
    let orders = server.dir("/import/orders");
    let (ctx, _root) = sample::context("acme");
    let ctx = pooled(&ctx, 1);
    let config = validated(&ctx, config_for(&server, json!({})));
    let exports = (0..40).map(|n| {
        let (ctx, config) = (&ctx, &config);
        async move {
            let request = ExportRequest {
                order: sample::order("acme"),
                file_name: format!("sales_order_{n}.json"),
            };
            DropzoneJsonV1.export(ctx, &request, config).await
        }
    });
    for result in futures::future::join_all(exports).await {
        result.unwrap();
    }
    assert_eq!(std::fs::read_dir(&orders).unwrap().count(), 40);
    let connects = ctx.env.sftp_pool.connects();
    assert!(
        (1..=4).contains(&connects),
        "{connects} connections for 40 exports"
    );
}

mod through_the_api {
    use orderflow::domain::user::Role;
    use serde_json::{Value, json};

    use super::config_for;
    use crate::common::{TestDb, spawn_app_on};
    use crate::sftp_server::{TestSftpServer, ed25519_key};

    const SLUG: &str = "/api/v1/connectors/dropzone-json-v1";

    #[tokio::test]
    async fn trust_on_first_use_records_the_key_and_a_changed_key_is_refused() {
        let mut server = TestSftpServer::start().await;
        server.dir("/import/orders");
        let app = spawn_app_on(
            TestDb::sqlite().await,
            &[("CONNECTOR_BLOCKED_NETWORKS", "")],
        )
        .await;
        let (_, _, token) = app.org_with("acme", Role::Admin).await;

        // Saved without a test: nothing learned yet.
        assert_eq!(
            app.post_json(SLUG, &token, &config_for(&server, json!({})))
                .await
                .status(),
            200
        );
        let details: Value = app.get_json(SLUG, &token).await;
        assert!(details["config"].get("host_key_fingerprint").is_none());

        // The first successful test records the key the server presented.
        let resp = app.post_empty(&format!("{SLUG}/test"), &token).await;
        assert_eq!(resp.status(), 200);
        let details: Value = app.get_json(SLUG, &token).await;
        assert_eq!(
            details["config"]["host_key_fingerprint"],
            server.fingerprint()
        );
        assert!(details["last_test_at"].is_string());

        // An update that does not repeat the fingerprint keeps it (no silent re-trust).
        let mut update = config_for(&server, json!({"export_path": "/import/orders/"}));
        update.as_object_mut().unwrap().remove("password");
        assert_eq!(app.post_json(SLUG, &token, &update).await.status(), 200);
        let details: Value = app.get_json(SLUG, &token).await;
        assert_eq!(
            details["config"]["host_key_fingerprint"],
            server.fingerprint()
        );

        // The server's key changes: refused, before any credential is sent.
        server.restart(Some(ed25519_key(9))).await;
        let attempts = server
            .stats
            .auth_attempts
            .load(std::sync::atomic::Ordering::SeqCst);
        let resp = app.post_empty(&format!("{SLUG}/test"), &token).await;
        assert_eq!(resp.status(), 400);
        let result: Value = resp.json().await.unwrap();
        assert_eq!(result["error_code"], "HOST_KEY_MISMATCH");
        assert!(
            result["error_message"]
                .as_str()
                .unwrap()
                .starts_with("Host key verification failed")
        );
        assert_eq!(
            server
                .stats
                .auth_attempts
                .load(std::sync::atomic::Ordering::SeqCst),
            attempts
        );

        // test_on_save records the key of a new server straight away.
        let resp = app
            .post_json(
                SLUG,
                &token,
                &config_for(
                    &server,
                    json!({"host_key_fingerprint": null, "test_on_save": true}),
                ),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let details: Value = app.get_json(SLUG, &token).await;
        assert_eq!(
            details["config"]["host_key_fingerprint"],
            server.fingerprint()
        );
        let audit: Value = app.get_json("/api/v1/audit-log?limit=200", &token).await;
        assert!(audit.to_string().contains("connection.host_key_recorded"));
    }
}

#[tokio::test]
async fn a_cancelled_connect_does_not_leak_its_pool_slot() {
    use orderflow::connectors::transport::Transport;
    use orderflow::connectors::transport::sftp::SftpTransport;
    use orderflow::connectors::transport::sftp::pool::{PoolLimits, SessionPool};

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let server = TestSftpServer::start().await;
    server.dir("/in");
    let pool = std::sync::Arc::new(SessionPool::new(PoolLimits {
        max_per_connection: 1,
        ..PoolLimits::default()
    }));
    let key = Some(ConnectionKey {
        id: uuid::Uuid::new_v4(),
        version: 1,
    });
    let target = |port| password_target(port, Duration::from_secs(3));
    let hanging = SftpTransport::new(target(silent_port), pool.clone(), key, vec![]);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), hanging.list("/in"))
            .await
            .is_err()
    );
    drop(hanging);

    // The only slot was held by the cancelled connect; it must be free again.
    let working = SftpTransport::new(target(server.port), pool.clone(), key, vec![]);
    let start = Instant::now();
    assert_eq!(working.list("/in").await.unwrap(), Vec::<String>::new());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for a leaked slot"
    );
}

/// Operations beyond a session's cap wait for one to finish instead of being sent (OpenSSH
/// fails opens past 32 at once on one session).
#[tokio::test]
async fn a_session_never_carries_more_operations_than_its_cap() {
    use orderflow::connectors::transport::sftp::pool::{PoolLimits, SessionPool};

    let server = TestSftpServer::start().await;
    let pool = SessionPool::new(PoolLimits {
        max_per_connection: 1,
        max_in_flight: 1,
        max_operations: 3,
        ..PoolLimits::default()
    });
    let key = Some(ConnectionKey {
        id: uuid::Uuid::new_v4(),
        version: 1,
    });
    let target = password_target(server.port, Duration::from_secs(10));
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(pool.acquire(key, &target, &[]).await.unwrap());
    }
    let fourth = pool.acquire(key, &target, &[]);
    tokio::pin!(fourth);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut fourth)
            .await
            .is_err(),
        "a fourth operation was given the full session"
    );
    leases.pop();
    let lease = tokio::time::timeout(Duration::from_secs(2), fourth)
        .await
        .expect("a finished operation must let a waiting one in")
        .unwrap();
    assert!(lease.reused);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);
}

/// Connection tests (one-off sessions) have a budget of their own: tests hanging on a server
/// that never answers cannot take the sessions deliveries need.
#[tokio::test]
async fn hanging_connection_tests_leave_pooled_sessions_to_deliveries() {
    use orderflow::connectors::transport::sftp::pool::{PoolLimits, SessionPool};

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let server = TestSftpServer::start().await;
    let pool = std::sync::Arc::new(SessionPool::new(PoolLimits {
        max_total: 2,
        max_test_sessions: 2,
        ..PoolLimits::default()
    }));
    // Tests (no connection key) to the silent server fill their budget and a third waits.
    let hanging = password_target(silent_port, Duration::from_secs(5));
    let mut tests = Vec::new();
    for _ in 0..3 {
        let (pool, target) = (pool.clone(), hanging.clone());
        tests.push(tokio::spawn(async move {
            pool.acquire(None, &target, &[]).await.map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A delivery's pooled session to a working server is opened at once.
    let key = Some(ConnectionKey {
        id: uuid::Uuid::new_v4(),
        version: 1,
    });
    let working = password_target(server.port, Duration::from_secs(5));
    let start = Instant::now();
    let lease = pool.acquire(key, &working, &[]).await.unwrap();
    assert!(!lease.reused);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a delivery waited {:?} behind connection tests",
        start.elapsed()
    );
    for test in tests {
        test.abort();
    }
}

//! What a hostile client or tenant tried, each with a test that failed before the fix: SSRF
//! spellings, metrics label cardinality, brute force, oversized headers, the Bearer scheme, access logs and token
//! lifetimes.

use std::time::{Duration, Instant};

use orderflow::auth::Claims;
use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::{TEST_PASSWORD, assert_error, captured_logs, spawn_app};

const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";

#[tokio::test]
async fn a_blocked_host_is_refused_at_save_time_in_every_spelling() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Integrator).await;
    for host in [
        "::",
        "[::]",
        "::0",
        "0:0:0:0:0:0:0:0",
        "::1",
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0.0.0.0",
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
    ] {
        let body = json!({"mode": "sftp", "host": host, "username": "u", "password": "p",
                          "export_path": "/in", "ack_path": "/etc"});
        let resp = app.post_json(CONNECTOR, &token, &body).await;
        let err = assert_error(resp, 422, "VALIDATION_ERROR").await;
        assert_eq!(err["error"]["details"]["field"], "host", "{host}");
        let resp = app
            .post_json(&format!("{CONNECTOR}/test"), &token, &body)
            .await;
        assert_eq!(resp.status(), 422, "{host} tested");
    }
    assert!(
        app.get_json("/api/v1/connectors", &token)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let before = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for i in 0..50 {
        let method = format!("M{}{i}", "X".repeat(4000));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = app
            .client
            .request(
                method,
                app.url(&format!("/made-up/{i}/{}", "p".repeat(2000))),
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }
    let after = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!after.contains("XXXX"), "a made-up method became a label");
    assert!(!after.contains("made-up"), "a path became a label");
    assert!(after.contains(r#"method="other""#), "{after}");
    assert!(
        after.len() < before.len() + 8 * 1024,
        "metrics grew by {} bytes",
        after.len() - before.len()
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_without_revealing_it() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    app.user(&org, "ann@acme.test", Role::Admin).await;
    let login = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"org_slug": "acme", "email": email, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            login("ann@acme.test", "wrong-password")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    let blocked = login("ann@acme.test", TEST_PASSWORD).await;
    assert_eq!(blocked.status(), 429, "the right password while blocked");
    let retry_after: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = assert_error(blocked, 429, "RATE_LIMITED").await;
    assert!(!body.to_string().contains("ann@"));
    // An account that does not exist is throttled the same way: no enumeration.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            login("ghost@acme.test", "wrong-password")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

async fn median_ms(samples: &mut [u128]) -> u128 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn failed_logins_take_the_same_time_whatever_was_wrong() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    for i in 0..4 {
        app.user(&org, &format!("u{i}@acme.test"), Role::Admin)
            .await;
    }
    let time = |org: &'static str, email: String| {
        let app = &app;
        async move {
            let start = Instant::now();
            let resp = app
                .client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"org_slug": org, "email": email, "password": "not-the-password"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401);
            start.elapsed().as_millis()
        }
    };
    let (mut wrong, mut unknown_user, mut unknown_org) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..4 {
        wrong.push(time("acme", format!("u{i}@acme.test")).await);
        unknown_user.push(time("acme", format!("nobody{i}@acme.test")).await);
        unknown_org.push(time("no-such-org", format!("u{i}@acme.test")).await);
    }
    let (w, u, o) = (
        median_ms(&mut wrong).await,
        median_ms(&mut unknown_user).await,
        median_ms(&mut unknown_org).await,
    );
    for (name, t) in [("unknown user", u), ("unknown org", o)] {
        assert!(
            t * 3 >= w && t <= w * 3 + 5,
            "{name}: {t} ms vs wrong password {w} ms"
        );
    }
}

#[tokio::test]
async fn oversized_headers_get_the_standard_431() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-huge", "h".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_error(resp, 431, "HEADERS_TOO_LARGE").await;
    let mut req = app.client.get(app.url("/healthz"));
    for i in 0..150 {
        req = req.header(format!("x-h-{i}"), "v");
    }
    assert_error(req.send().await.unwrap(), 431, "HEADERS_TOO_LARGE").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_long_lived_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, user, token) = app.org_with("acme", Role::Viewer).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = app
            .client
            .get(app.url("/api/v1/me"))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    let now = jsonwebtoken::get_current_timestamp();
    let forever = app
        .tokens
        .sign(&Claims {
            sub: user.id,
            org_id: user.org_id,
            role: user.role,
            iat: now,
            exp: now + 40 * 24 * 3600,
            jti: None,
        })
        .unwrap();
    assert_error(app.get("/api/v1/me", &forever).await, 401, "AUTH_REQUIRED").await;
}

#[tokio::test]
async fn every_request_writes_one_access_log_line_with_its_id() {
    let app = spawn_app().await;
    let id = format!("access-{}", uuid::Uuid::new_v4().simple());
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lines: Vec<Value> = captured_logs()
        .lines()
        .filter(|l| l.contains(&id))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/healthz");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].is_u64());
    assert_eq!(line["span"]["request_id"], id.as_str());
}

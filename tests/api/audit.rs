//! Audit log: roles, pagination, isolation.

use orderflow::domain::user::Role;
use serde_json::Value;

use crate::common::{assert_error, spawn_app};

#[tokio::test]
async fn viewer_and_ops_are_forbidden_integrator_and_admin_allowed() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    for (role, status) in [
        (Role::Viewer, 403),
        (Role::Ops, 403),
        (Role::Integrator, 200),
        (Role::Admin, 200),
    ] {
        let user = app
            .user(
                &org,
                &format!("{}@acme.test", role.as_str().to_lowercase()),
                role,
            )
            .await;
        let resp = app.get("/api/v1/audit-log", &app.token_for(&user)).await;
        if status == 403 {
            assert_error(resp, 403, "FORBIDDEN").await;
        } else {
            assert_eq!(resp.status(), 200, "{role}");
        }
    }
}

#[tokio::test]
async fn pages_walk_newest_first_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let admin = app.user(&org, "admin@acme.test", Role::Admin).await;
    for i in 0..6 {
        app.user(&org, &format!("u{i}@acme.test"), Role::Viewer)
            .await;
    }
    let token = app.token_for(&admin);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit-log?limit=3&cursor={c}"),
            None => "/api/v1/audit-log?limit=3".to_owned(),
        };
        let page: Value = app.get_json(&path, &token).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|e| e["details"]["email"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..6)
        .rev()
        .map(|i| format!("u{i}@acme.test"))
        .chain(["admin@acme.test".to_owned()])
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn bad_pagination_values_are_422_naming_the_field() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let body = assert_error(
            app.get(&format!("/api/v1/audit-log?{query}"), &token).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn an_org_sees_only_its_own_audit_entries() {
    let app = spawn_app().await;
    let (_, _, acme_token) = app.org_with("acme", Role::Admin).await;
    let (globex, _, globex_token) = app.org_with("globex", Role::Admin).await;
    app.user(&globex, "secret-hire@globex.test", Role::Viewer)
        .await;

    let acme_page: Value = app.get_json("/api/v1/audit-log", &acme_token).await;
    let text = acme_page.to_string();
    assert!(!text.contains("globex"), "{text}");
    assert_eq!(acme_page["items"].as_array().unwrap().len(), 1);
    let globex_page: Value = app.get_json("/api/v1/audit-log", &globex_token).await;
    assert_eq!(globex_page["items"].as_array().unwrap().len(), 2);
}

/// Cursors are sealed for their listing: they reveal no position, and a cursor from another
/// org, another list or filter, or a made-up one is refused.
#[tokio::test]
async fn cursors_reveal_nothing_and_open_only_in_their_own_listing() {
    let app = spawn_app().await;
    let (acme, admin, token) = app.org_with("acme", Role::Admin).await;
    for i in 0..4 {
        app.user(&acme, &format!("u{i}@acme.test"), Role::Viewer)
            .await;
    }
    let (_, _, other) = app.org_with("globex", Role::Admin).await;
    let page: Value = app.get_json("/api/v1/audit-log?limit=2", &token).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert!(
        !cursor.bytes().all(|b| b.is_ascii_digit()),
        "a cursor must not be a plain position: {cursor}"
    );
    assert_eq!(cursor.len(), 48);
    // It works where it was issued.
    let next = app
        .get(
            &format!("/api/v1/audit-log?limit=2&cursor={cursor}"),
            &token,
        )
        .await;
    assert_eq!(next.status(), 200);
    // And nowhere else.
    for (path, who) in [
        (format!("/api/v1/audit-log?cursor={cursor}"), &other),
        (
            format!("/api/v1/audit-log?action=user.created&cursor={cursor}"),
            &token,
        ),
        (format!("/api/v1/exports?cursor={cursor}"), &token),
        (format!("/api/v1/draft-orders?cursor={cursor}"), &token),
        ("/api/v1/audit-log?cursor=12345".to_owned(), &token),
        (
            format!("/api/v1/audit-log?cursor={}", "A".repeat(48)),
            &token,
        ),
    ] {
        let err = assert_error(app.get(&path, who).await, 422, "VALIDATION_ERROR").await;
        assert_eq!(err["error"]["details"]["field"], "cursor", "{path}");
    }
    let _ = admin;
}

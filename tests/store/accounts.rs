//! Orgs, users, audit log and migrations.

use orderflow::domain::audit::{Actor, NewAuditEntry};
use orderflow::domain::page::PageRequest;
use orderflow::domain::user::{Email, Role};
use orderflow::store::StoreError;
use serde_json::json;

use crate::common::TestDb;
use crate::on_both_backends;

on_both_backends!(
    migrations_apply_twice,
    org_slugs_are_unique,
    users_are_unique_per_org_and_scoped_by_org,
    audit_rows_are_isolated_by_org_and_paginate_newest_first,
    disabling_a_user_of_another_org_is_not_found,
);

async fn migrations_apply_twice(db: &TestDb) {
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    assert!(db.store.is_ready().await.unwrap());
}

async fn org_slugs_are_unique(db: &TestDb) {
    let org = db.store.create_org("acme", "Acme").await.unwrap();
    assert!(matches!(
        db.store.create_org("acme", "Other").await,
        Err(StoreError::Conflict(_))
    ));
    let found = db.store.org_by_slug("acme").await.unwrap().unwrap();
    assert_eq!(found, org);
    assert_eq!(db.store.org_by_id(org.id).await.unwrap().unwrap(), org);
    assert!(db.store.org_by_slug("nope").await.unwrap().is_none());
}

async fn users_are_unique_per_org_and_scoped_by_org(db: &TestDb) {
    let acme = db.store.create_org("acme", "Acme").await.unwrap();
    let globex = db.store.create_org("globex", "Globex").await.unwrap();
    let email = Email::parse("ann@example.com").unwrap();
    let ann = db
        .store
        .create_user(acme.id, &email, "hash", Role::Ops)
        .await
        .unwrap();
    assert!(matches!(
        db.store
            .create_user(acme.id, &email, "hash2", Role::Admin)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The same e-mail is a different person in another org.
    let other = db
        .store
        .create_user(globex.id, &email, "hash3", Role::Viewer)
        .await
        .unwrap();
    assert_ne!(ann.id, other.id);

    let found = db
        .store
        .user_by_email(acme.id, &email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, ann);
    assert_eq!(found.password_hash, "hash");
    assert_eq!(
        db.store.user_by_id(acme.id, ann.id).await.unwrap().unwrap(),
        ann
    );
    assert!(
        db.store
            .user_by_id(globex.id, ann.id)
            .await
            .unwrap()
            .is_none(),
        "org B reads org A's user"
    );
}

async fn audit_rows_are_isolated_by_org_and_paginate_newest_first(db: &TestDb) {
    let acme = db.store.create_org("acme", "Acme").await.unwrap();
    let globex = db.store.create_org("globex", "Globex").await.unwrap();
    for i in 0..5 {
        db.store
            .append_audit(&NewAuditEntry {
                org_id: acme.id,
                actor: Actor::cli(),
                action: "test.action",
                entity_type: "thing",
                entity_id: Some(format!("a{i}")),
                details: json!({ "i": i }),
            })
            .await
            .unwrap();
    }
    let all = PageRequest::parse(None, None).unwrap();
    assert!(
        db.store
            .list_audit(globex.id, all)
            .await
            .unwrap()
            .items
            .is_empty(),
        "org B reads org A's audit rows"
    );

    let first = db
        .store
        .list_audit(acme.id, PageRequest::parse(Some("2"), None).unwrap())
        .await
        .unwrap();
    let ids: Vec<_> = first
        .items
        .iter()
        .map(|e| e.entity_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["a4", "a3"]);
    assert_eq!(first.items[0].details, json!({ "i": 4 }));
    assert_eq!(first.items[0].actor, "cli");
    let cursor = first.next_cursor.expect("more pages");
    let second = db
        .store
        .list_audit(
            acme.id,
            PageRequest::parse(Some("3"), Some(&cursor)).unwrap(),
        )
        .await
        .unwrap();
    let ids: Vec<_> = second
        .items
        .iter()
        .map(|e| e.entity_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["a2", "a1", "a0"]);
    assert!(second.next_cursor.is_none());
    // A cursor from org A used by org B still shows nothing of A's.
    let leaked = db
        .store
        .list_audit(globex.id, PageRequest::parse(None, Some(&cursor)).unwrap())
        .await
        .unwrap();
    assert!(leaked.items.is_empty());
}

async fn disabling_a_user_of_another_org_is_not_found(db: &TestDb) {
    let acme = db.store.create_org("acme", "Acme").await.unwrap();
    let globex = db.store.create_org("globex", "Globex").await.unwrap();
    let email = Email::parse("ann@example.com").unwrap();
    db.store
        .create_user(acme.id, &email, "hash", Role::Ops)
        .await
        .unwrap();
    assert!(matches!(
        db.store.set_user_disabled(globex.id, &email, true).await,
        Err(StoreError::NotFound)
    ));
    let user = db
        .store
        .set_user_disabled(acme.id, &email, true)
        .await
        .unwrap();
    assert!(user.disabled);
}

//! Orgs, users, audit log and migrations.

use orderflow::domain::audit::{Actor, NewAuditEntry};
use orderflow::domain::page::PageRequest;
use orderflow::domain::user::{Email, Role};
use orderflow::store::StoreError;
use serde_json::json;

use crate::common::TestDb;
use crate::fx;
use crate::on_both_backends;

on_both_backends!(
    migrations_apply_twice,
    org_slugs_are_unique,
    users_are_unique_per_org_and_scoped_by_org,
    audit_rows_are_isolated_by_org_and_paginate_newest_first,
    disabling_a_user_of_another_org_is_not_found,
    a_change_without_its_audit_row_does_not_land,
);

async fn migrations_apply_twice(db: &TestDb) {
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    assert!(db.store.is_ready().await.unwrap());
}

async fn org_slugs_are_unique(db: &TestDb) {
    let org = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    assert!(matches!(
        fx::org(db.store.as_ref(), "acme", "Other").await,
        Err(StoreError::Conflict(_))
    ));
    let found = db.store.org_by_slug("acme").await.unwrap().unwrap();
    assert_eq!(found, org);
    assert_eq!(db.store.org_by_id(org.id).await.unwrap().unwrap(), org);
    assert!(db.store.org_by_slug("nope").await.unwrap().is_none());
}

async fn users_are_unique_per_org_and_scoped_by_org(db: &TestDb) {
    let acme = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let globex = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let email = Email::parse("ann@example.com").unwrap();
    let ann = fx::user(db.store.as_ref(), acme.id, &email, "hash", Role::Ops)
        .await
        .unwrap();
    assert!(matches!(
        fx::user(db.store.as_ref(), acme.id, &email, "hash2", Role::Admin).await,
        Err(StoreError::Conflict(_))
    ));
    // The same e-mail is a different person in another org.
    let other = fx::user(db.store.as_ref(), globex.id, &email, "hash3", Role::Viewer)
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
    let acme = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let globex = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
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
            .list_audit(globex.id, None, all)
            .await
            .unwrap()
            .items
            .is_empty(),
        "org B reads org A's audit rows"
    );

    let first = db
        .store
        .list_audit(acme.id, None, PageRequest::parse(Some("2"), None).unwrap())
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
    let cursor = first.next_seq.expect("more pages");
    let second = db
        .store
        .list_audit(
            acme.id,
            None,
            PageRequest::parse(Some("3"), Some(cursor)).unwrap(),
        )
        .await
        .unwrap();
    let ids: Vec<_> = second
        .items
        .iter()
        .map(|e| e.entity_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["a2", "a1", "a0"]);
    assert!(second.next_seq.is_none());
    // A cursor from org A used by org B still shows nothing of A's.
    let leaked = db
        .store
        .list_audit(
            globex.id,
            None,
            PageRequest::parse(None, Some(cursor)).unwrap(),
        )
        .await
        .unwrap();
    assert!(leaked.items.is_empty());
}

async fn disabling_a_user_of_another_org_is_not_found(db: &TestDb) {
    let acme = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let globex = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let email = Email::parse("ann@example.com").unwrap();
    let ann = fx::user(db.store.as_ref(), acme.id, &email, "hash", Role::Ops)
        .await
        .unwrap();
    assert!(matches!(
        db.store
            .set_user_disabled(
                globex.id,
                ann.id,
                true,
                &fx::audit(globex.id, "user.disabled")
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let user = db
        .store
        .set_user_disabled(acme.id, ann.id, true, &fx::audit(acme.id, "user.disabled"))
        .await
        .unwrap();
    assert!(user.disabled);
}

/// A change and its audit row are one transaction: when the audit row cannot be written
/// (here: it names an org that does not exist), the change does not land either.
async fn a_change_without_its_audit_row_does_not_land(db: &TestDb) {
    let acme = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let email = Email::parse("ann@example.com").unwrap();
    let ann = fx::user(db.store.as_ref(), acme.id, &email, "hash", Role::Ops)
        .await
        .unwrap();
    let orphan = fx::audit(uuid::Uuid::new_v4(), "user.disabled");
    assert!(
        db.store
            .set_user_disabled(acme.id, ann.id, true, &orphan)
            .await
            .is_err()
    );
    let still = db.store.user_by_id(acme.id, ann.id).await.unwrap().unwrap();
    assert!(!still.disabled, "the change landed without its audit row");
    let page = PageRequest::parse(None, None).unwrap();
    let actions: Vec<String> = db
        .store
        .list_audit(acme.id, None, page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["user.created"]);
    let only_users = db
        .store
        .list_audit(acme.id, Some("user.created"), page)
        .await
        .unwrap();
    assert_eq!(only_users.items.len(), 1);
}

//! ERP connections: the one-active rule lives in the database.

use orderflow::domain::connection::ConnectionStatus;
use orderflow::store::{NewConnection, StoreError};
use uuid::Uuid;

use crate::common::TestDb;
use crate::fx;
use crate::on_both_backends;

on_both_backends!(
    the_database_refuses_a_second_active_connection,
    config_updates_are_compare_and_swap_on_the_version,
    connections_are_scoped_by_org,
    blob_replacement_only_swaps_the_expected_blob,
);

fn new_connection(org_id: Uuid, blob: &[u8]) -> NewConnection {
    NewConnection {
        id: Uuid::new_v4(),
        org_id,
        connector_type: "DROPZONE_JSON_V1".into(),
        config_encrypted: blob.to_vec(),
        last_test_at: None,
    }
}

async fn the_database_refuses_a_second_active_connection(db: &TestDb) {
    let org = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let first = fx::connection(db.store.as_ref(), &new_connection(org.id, b"one"))
        .await
        .unwrap();
    assert_eq!(
        (first.status, first.config_version),
        (ConnectionStatus::Active, 1)
    );
    assert!(matches!(
        fx::connection(db.store.as_ref(), &new_connection(org.id, b"two")).await,
        Err(StoreError::Conflict(_))
    ));

    fx::set_status(
        db.store.as_ref(),
        org.id,
        first.id,
        ConnectionStatus::Disabled,
    )
    .await
    .unwrap();
    let second = fx::connection(db.store.as_ref(), &new_connection(org.id, b"two"))
        .await
        .unwrap();
    assert!(matches!(
        fx::set_status(
            db.store.as_ref(),
            org.id,
            first.id,
            ConnectionStatus::Active
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        db.store
            .active_connection(org.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        second.id
    );
    assert_eq!(db.store.list_connections(org.id).await.unwrap().len(), 2);
}

async fn config_updates_are_compare_and_swap_on_the_version(db: &TestDb) {
    let org = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let c = fx::connection(db.store.as_ref(), &new_connection(org.id, b"v1"))
        .await
        .unwrap();
    let at = orderflow::store::now();
    let updated = fx::update_config(db.store.as_ref(), org.id, c.id, 1, b"v2", Some(at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.config_version, updated.config_encrypted.as_slice()),
        (2, &b"v2"[..])
    );
    assert_eq!(updated.last_test_at, Some(at));
    assert!(
        fx::update_config(db.store.as_ref(), org.id, c.id, 1, b"stale", None)
            .await
            .unwrap()
            .is_none()
    );
    let kept = fx::update_config(db.store.as_ref(), org.id, c.id, 2, b"v3", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.last_test_at,
        Some(at),
        "a missing last_test_at must not clear it"
    );
}

async fn connections_are_scoped_by_org(db: &TestDb) {
    let acme = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let globex = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let c = fx::connection(db.store.as_ref(), &new_connection(acme.id, b"x"))
        .await
        .unwrap();
    assert!(
        db.store
            .connection_by_id(globex.id, c.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.store
            .active_connection(globex.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.store
            .list_connections(globex.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        fx::update_config(db.store.as_ref(), globex.id, c.id, 1, b"evil", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        fx::set_status(
            db.store.as_ref(),
            globex.id,
            c.id,
            ConnectionStatus::Disabled
        )
        .await,
        Err(StoreError::NotFound)
    ));
    // Each org may have its own active connection.
    fx::connection(db.store.as_ref(), &new_connection(globex.id, b"y"))
        .await
        .unwrap();
}

async fn blob_replacement_only_swaps_the_expected_blob(db: &TestDb) {
    let org = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let c = fx::connection(db.store.as_ref(), &new_connection(org.id, b"old"))
        .await
        .unwrap();
    assert!(
        !db.store
            .replace_connection_blob(c.id, b"other", b"new", &fx::audit(org.id, "x"))
            .await
            .unwrap()
    );
    assert!(
        db.store
            .replace_connection_blob(c.id, b"old", b"new", &fx::audit(org.id, "x"))
            .await
            .unwrap()
    );
    let row = db
        .store
        .connection_by_id_any_org(c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.config_encrypted, b"new");
    assert_eq!(db.store.all_connection_ids().await.unwrap(), vec![c.id]);
    // Sealing a config recorded the key check; a rotation replaces it.
    assert_eq!(
        db.store.key_check().await.unwrap().as_deref(),
        Some(fx::KEY_CHECK)
    );
    db.store.set_key_check("rotated").await.unwrap();
    assert_eq!(
        db.store.key_check().await.unwrap().as_deref(),
        Some("rotated")
    );
}

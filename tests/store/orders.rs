//! Drafts, pushes, claims and delivery outcomes: the rules the database enforces.

use chrono::Duration;
use orderflow::domain::draft::{DraftInput, DraftStatus};
use orderflow::domain::export::ExportStatus;
use orderflow::domain::page::PageRequest;
use orderflow::store::{AttemptOutcome, ClaimRequest, NewConnection, NewPush, PushOutcome, Store};
use serde_json::json;
use uuid::Uuid;

use crate::common::TestDb;
use crate::fx;
use crate::on_both_backends;

on_both_backends!(
    drafts_keep_exact_decimals_and_are_scoped_by_org,
    approval_is_conditional_on_ready,
    pushes_are_idempotent_per_key_and_refuse_a_second_live_export,
    pushes_together_create_only_what_a_push_alone_would,
    claims_lease_exports_to_one_worker_until_the_lease_runs_out,
    claims_skip_excluded_connections_and_cap_each_connection,
    outcomes_are_recorded_only_by_the_lease_holder,
    every_status_change_is_one_the_domain_allows,
);

async fn setup(db: &TestDb) -> (Uuid, Uuid) {
    let org = fx::org(db.store.as_ref(), "acme", "Acme").await.unwrap();
    let conn = fx::connection(
        db.store.as_ref(),
        &NewConnection {
            id: Uuid::new_v4(),
            org_id: org.id,
            connector_type: "DROPZONE_JSON_V1".into(),
            config_encrypted: b"blob".to_vec(),
            last_test_at: None,
        },
    )
    .await
    .unwrap();
    (org.id, conn.id)
}

async fn draft(store: &dyn Store, org_id: Uuid, lines: &str) -> Uuid {
    let input: DraftInput =
        serde_json::from_str(&format!(r#"{{"currency": "EUR", "lines": {lines}}}"#)).unwrap();
    let new = input.validate().unwrap();
    let id = Uuid::new_v4();
    store
        .insert_draft(id, org_id, &new, &fx::audit(org_id, "DRAFT_CREATED"))
        .await
        .unwrap();
    id
}

async fn approved(store: &dyn Store, org_id: Uuid) -> Uuid {
    let id = draft(
        store,
        org_id,
        r#"[{"line_no": 1, "internal_sku": "A", "qty": 1, "uom": "PCE"}]"#,
    )
    .await;
    store
        .approve_draft(
            org_id,
            id,
            "ops@acme.test",
            orderflow::store::now(),
            &fx::audit(org_id, "DRAFT_APPROVED"),
        )
        .await
        .unwrap()
        .unwrap();
    id
}

fn push<'a>(
    org_id: Uuid,
    draft_id: Uuid,
    _connection_id: Uuid,
    key: Option<&'a str>,
    audit: &'a orderflow::domain::audit::NewAuditEntry,
) -> NewPush<'a> {
    NewPush {
        org_id,
        draft_id,
        export_id: Uuid::new_v4(),
        file_name: "sales_order_x.json",
        idempotency_key: key,
        from: &[DraftStatus::Approved],
        latest_must_be_failed: false,
        now: orderflow::store::now(),
        audit,
    }
}

async fn drafts_keep_exact_decimals_and_are_scoped_by_org(db: &TestDb) {
    let (org_id, _) = setup(db).await;
    let other = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let id = draft(
        db.store.as_ref(),
        org_id,
        r#"[{"line_no": 2, "internal_sku": "B", "qty": 10.000, "uom": "KG", "unit_price": 12345678901234.5678},
            {"line_no": 1, "internal_sku": "A", "qty": 0.1, "uom": "PCE", "unit_price": 0}]"#,
    )
    .await;
    let stored = db.store.draft(org_id, id).await.unwrap().unwrap();
    assert_eq!(stored.status, DraftStatus::Ready);
    let shown: Vec<String> = stored
        .lines
        .iter()
        .flat_map(|l| {
            [
                l.line_no.to_string(),
                l.qty.to_string(),
                l.unit_price.as_ref().unwrap().to_string(),
            ]
        })
        .collect();
    assert_eq!(
        shown,
        ["1", "0.1", "0", "2", "10.000", "12345678901234.5678"]
    );
    assert!(db.store.draft(other.id, id).await.unwrap().is_none());
    let page = PageRequest::parse(None, None).unwrap();
    assert!(
        db.store
            .list_drafts(other.id, None, page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let listed = db
        .store
        .list_drafts(org_id, Some(DraftStatus::Ready), page)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].lines.is_empty(), "lists carry no lines");
}

async fn approval_is_conditional_on_ready(db: &TestDb) {
    let (org_id, _) = setup(db).await;
    let id = approved(db.store.as_ref(), org_id).await;
    let again = db
        .store
        .approve_draft(
            org_id,
            id,
            "x@acme.test",
            orderflow::store::now(),
            &fx::audit(org_id, "DRAFT_APPROVED"),
        )
        .await
        .unwrap();
    assert!(again.is_none());
    let stored = db.store.draft(org_id, id).await.unwrap().unwrap();
    assert_eq!(stored.approved_by.as_deref(), Some("ops@acme.test"));
    let stranger = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let other = approved(db.store.as_ref(), org_id).await;
    assert!(
        db.store
            .approve_draft(
                stranger.id,
                other,
                "x",
                orderflow::store::now(),
                &fx::audit(stranger.id, "x")
            )
            .await
            .unwrap()
            .is_none()
    );
}

async fn pushes_are_idempotent_per_key_and_refuse_a_second_live_export(db: &TestDb) {
    let (org_id, conn) = setup(db).await;
    let id = approved(db.store.as_ref(), org_id).await;
    let audit = fx::audit(org_id, "EXPORT_CREATED");
    let PushOutcome::Created(first) = db
        .store
        .push_draft(&push(org_id, id, conn, Some("k1"), &audit))
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(first.status, ExportStatus::Pending);
    assert_eq!(
        db.store.draft(org_id, id).await.unwrap().unwrap().status,
        DraftStatus::Pushing
    );
    match db
        .store
        .push_draft(&push(org_id, id, conn, Some("k1"), &audit))
        .await
        .unwrap()
    {
        PushOutcome::Replayed {
            export,
            draft_status,
        } => {
            assert_eq!(export.id, first.id);
            assert_eq!(draft_status, DraftStatus::Pushing);
        }
        other => panic!("{other:?}"),
    }
    match db
        .store
        .push_draft(&push(org_id, id, conn, Some("k2"), &audit))
        .await
        .unwrap()
    {
        PushOutcome::WrongStatus {
            status,
            live_export,
        } => {
            assert_eq!(status, DraftStatus::Pushing);
            assert_eq!(live_export.unwrap().id, first.id);
        }
        other => panic!("{other:?}"),
    }
    let stranger = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    assert!(matches!(
        db.store
            .push_draft(&push(stranger.id, id, conn, Some("k1"), &audit))
            .await
            .unwrap(),
        PushOutcome::DraftNotFound
    ));
}

/// A batch of pushes creates exactly what each plain push alone would, and leaves the rest
/// (a used key, a draft not approved, another org's draft) untouched for the general path.
async fn pushes_together_create_only_what_a_push_alone_would(db: &TestDb) {
    let (org_id, conn) = setup(db).await;
    let store = db.store.as_ref();
    let (a, b, c) = (
        approved(store, org_id).await,
        approved(store, org_id).await,
        approved(store, org_id).await,
    );
    let ready = draft(
        store,
        org_id,
        r#"[{"line_no": 1, "internal_sku": "A", "qty": 1, "uom": "PCE"}]"#,
    )
    .await;
    let stranger = fx::org(store, "globex", "Globex").await.unwrap();
    let audit = fx::audit(org_id, "EXPORT_CREATED");
    let PushOutcome::Created(earlier) = store
        .push_draft(&push(org_id, b, conn, Some("kb"), &audit))
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let stranger_audit = fx::audit(stranger.id, "EXPORT_CREATED");
    let batch = [
        push(org_id, a, conn, None, &audit),
        push(org_id, b, conn, Some("kb"), &audit),
        push(org_id, ready, conn, None, &audit),
        push(stranger.id, c, conn, None, &stranger_audit),
        push(org_id, c, conn, Some("kc"), &audit),
    ];
    let created = store.push_drafts_together(&batch).await.unwrap();
    assert_eq!(created.is_some(), store.records_pushes_together());
    let audits = |org| async move {
        store
            .list_audit(
                org,
                Some("EXPORT_CREATED"),
                PageRequest::parse(Some("50"), None).unwrap(),
            )
            .await
            .unwrap()
            .items
    };
    let Some(created) = created else {
        // SQLite records pushes one at a time: the batch must have changed nothing.
        assert!(matches!(db.backend, crate::common::Backend::Sqlite));
        assert!(store.exports_of_draft(org_id, a).await.unwrap().is_empty());
        assert_eq!(audits(org_id).await.len(), 1);
        return;
    };
    let ids: Vec<Option<Uuid>> = created.iter().map(|e| e.as_ref().map(|e| e.id)).collect();
    assert_eq!(
        ids,
        vec![
            Some(batch[0].export_id),
            None,
            None,
            None,
            Some(batch[4].export_id)
        ]
    );
    let c_export = created[4].as_ref().unwrap();
    assert_eq!(c_export.org_id, org_id);
    assert_eq!(c_export.erp_connection_id, conn);
    assert_eq!(c_export.idempotency_key.as_deref(), Some("kc"));
    assert_eq!(c_export.status, ExportStatus::Pending);
    for (id, status, exports) in [
        (a, DraftStatus::Pushing, 1),
        (b, DraftStatus::Pushing, 1),
        (ready, DraftStatus::Ready, 0),
        (c, DraftStatus::Pushing, 1),
    ] {
        assert_eq!(
            store.draft(org_id, id).await.unwrap().unwrap().status,
            status
        );
        assert_eq!(
            store.exports_of_draft(org_id, id).await.unwrap().len(),
            exports
        );
    }
    assert_eq!(
        store.exports_of_draft(org_id, b).await.unwrap()[0].id,
        earlier.id
    );
    // One audit row per export created, in the pushing org only.
    let rows = audits(org_id).await;
    assert_eq!(rows.len(), 3);
    assert!(audits(stranger.id).await.is_empty());
}

fn claim<'a>(
    worker: Uuid,
    limit: u32,
    per_connection: u32,
    exclude: &'a [Uuid],
) -> ClaimRequest<'a> {
    let now = orderflow::store::now();
    ClaimRequest {
        worker,
        now,
        lease_until: now + Duration::seconds(60),
        limit,
        per_connection,
        exclude_connections: exclude,
        allowances: &[],
    }
}

async fn pushed(db: &TestDb, org_id: Uuid, conn: Uuid, n: usize) -> Vec<Uuid> {
    let audit = fx::audit(org_id, "EXPORT_CREATED");
    let mut ids = Vec::new();
    for _ in 0..n {
        let draft = approved(db.store.as_ref(), org_id).await;
        let PushOutcome::Created(e) = db
            .store
            .push_draft(&push(org_id, draft, conn, None, &audit))
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        ids.push(e.id);
    }
    ids
}

async fn claims_lease_exports_to_one_worker_until_the_lease_runs_out(db: &TestDb) {
    let (org_id, conn) = setup(db).await;
    pushed(db, org_id, conn, 3).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first = db.store.claim_exports(&claim(a, 2, 10, &[])).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e.attempts == 1));
    let second = db
        .store
        .claim_exports(&claim(b, 10, 10, &[]))
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "only the unclaimed one");
    assert!(
        db.store
            .claim_exports(&claim(b, 10, 10, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    // After the lease runs out, another worker takes the export over (a crashed worker's).
    let later = orderflow::store::now() + Duration::seconds(61);
    let taken = db
        .store
        .claim_exports(&ClaimRequest {
            now: later,
            lease_until: later + Duration::seconds(60),
            ..claim(b, 10, 10, &[])
        })
        .await
        .unwrap();
    assert_eq!(taken.len(), 3);
    assert!(taken.iter().all(|e| e.attempts == 2));
}

async fn claims_skip_excluded_connections_and_cap_each_connection(db: &TestDb) {
    let (org_id, conn) = setup(db).await;
    let globex = fx::org(db.store.as_ref(), "globex", "Globex")
        .await
        .unwrap();
    let other = fx::connection(
        db.store.as_ref(),
        &NewConnection {
            id: Uuid::new_v4(),
            org_id: globex.id,
            connector_type: "DROPZONE_JSON_V1".into(),
            config_encrypted: b"blob".to_vec(),
            last_test_at: None,
        },
    )
    .await
    .unwrap();
    pushed(db, org_id, conn, 5).await;
    pushed(db, globex.id, other.id, 2).await;
    let worker = Uuid::new_v4();
    let got = db
        .store
        .claim_exports(&claim(worker, 10, 2, &[]))
        .await
        .unwrap();
    let of = |c: Uuid| got.iter().filter(|e| e.erp_connection_id == c).count();
    assert_eq!((of(conn), of(other.id)), (2, 2), "per-connection cap");
    let got = db
        .store
        .claim_exports(&claim(worker, 10, 10, &[conn]))
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "the excluded connection's exports were claimed"
    );
    let got = db
        .store
        .claim_exports(&claim(worker, 10, 10, &[]))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

async fn outcomes_are_recorded_only_by_the_lease_holder(db: &TestDb) {
    let (org_id, conn) = setup(db).await;
    let ids = pushed(db, org_id, conn, 3).await;
    let holder = Uuid::new_v4();
    let claimed = db
        .store
        .claim_exports(&claim(holder, 3, 10, &[]))
        .await
        .unwrap();
    let sent = claimed.iter().find(|e| e.id == ids[0]).unwrap();
    let audit = fx::audit(org_id, "EXPORT_SENT");
    let outcome = AttemptOutcome::Sent {
        dropzone_path: "/in/x.json",
    };
    assert!(
        !db.store
            .finish_attempt(sent, Uuid::new_v4(), &outcome, &audit)
            .await
            .unwrap()
    );
    assert!(
        db.store
            .record_archive(sent.id, holder, "exports/k", "abc")
            .await
            .unwrap()
    );
    assert!(
        db.store
            .finish_attempt(sent, holder, &outcome, &audit)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .finish_attempt(sent, holder, &outcome, &audit)
            .await
            .unwrap(),
        "twice"
    );
    let stored = db.store.export(org_id, sent.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExportStatus::Sent);
    assert_eq!(stored.dropzone_path.as_deref(), Some("/in/x.json"));
    assert_eq!(stored.content_sha256.as_deref(), Some("abc"));
    let draft = db
        .store
        .draft(org_id, sent.draft_order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(draft.status, DraftStatus::Pushed);

    let retried = claimed.iter().find(|e| e.id == ids[1]).unwrap();
    let error = json!({"code": "CONNECTION_REFUSED", "message": "x", "at": "t", "attempt": 1});
    let next = orderflow::store::now() + Duration::seconds(30);
    let retry = AttemptOutcome::Retry {
        next_attempt_at: next,
        error: &error,
    };
    assert!(
        db.store
            .finish_attempt(retried, holder, &retry, &audit)
            .await
            .unwrap()
    );
    let stored = db.store.export(org_id, retried.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExportStatus::Pending);
    assert_eq!(stored.error_json.as_ref(), Some(&error));
    assert!(
        db.store
            .claim_exports(&claim(holder, 3, 10, &[]))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    // The third export is due but leased for a minute: the retry in 30 s comes first.
    assert_eq!(db.store.next_due_at().await.unwrap(), Some(next));

    let failed = claimed.iter().find(|e| e.id == ids[2]).unwrap();
    let fail = AttemptOutcome::Failed { error: &error };
    assert!(
        db.store
            .finish_attempt(failed, holder, &fail, &audit)
            .await
            .unwrap()
    );
    let draft = db
        .store
        .draft(org_id, failed.draft_order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(draft.status, DraftStatus::Error);
    assert_eq!(db.store.queue_depth().await.unwrap(), 1);
    assert_eq!(db.store.next_due_at().await.unwrap(), Some(next));
}

/// Every draft's and export's status, to compare before and after a store operation.
async fn statuses(
    store: &dyn Store,
    org_id: Uuid,
    drafts: &[Uuid],
    exports: &[Uuid],
) -> (Vec<DraftStatus>, Vec<ExportStatus>) {
    let mut d = Vec::new();
    for id in drafts {
        d.push(store.draft(org_id, *id).await.unwrap().unwrap().status);
    }
    let mut e = Vec::new();
    for id in exports {
        e.push(store.export(org_id, *id).await.unwrap().unwrap().status);
    }
    (d, e)
}

/// Runs one store operation and checks each status it changed against the domain's state
/// machine; answers how many changed.
macro_rules! step {
    ($store:expr, $org:expr, $drafts:expr, $exports:expr, $op:expr) => {{
        let (d0, e0) = statuses($store, $org, $drafts, $exports).await;
        $op;
        let (d1, e1) = statuses($store, $org, $drafts, $exports).await;
        let mut changed = 0;
        for (from, to) in d0.iter().zip(&d1).filter(|(a, b)| a != b) {
            assert!(from.may_become(*to), "draft {from} became {to}");
            changed += 1;
        }
        for (from, to) in e0.iter().zip(&e1).filter(|(a, b)| a != b) {
            assert!(from.may_become(*to), "export {from} became {to}");
            changed += 1;
        }
        changed
    }};
}

/// Each store operation that changes a status (approve, push, retry push, a delivery's
/// outcomes, acknowledgements and rejections) makes only changes the domain's state machine
/// allows, on both backends' statements (PostgreSQL's fast paths included).
async fn every_status_change_is_one_the_domain_allows(db: &TestDb) {
    let store = db.store.as_ref();
    let (org_id, conn) = setup(db).await;
    let line = r#"[{"line_no": 1, "internal_sku": "A", "qty": 1, "uom": "PCE"}]"#;
    let drafts = [
        draft(store, org_id, line).await,
        draft(store, org_id, line).await,
        draft(store, org_id, line).await,
    ];
    let mut exports: Vec<Uuid> = Vec::new();
    let mut changes = 0;
    let audit = fx::audit(org_id, "ANY");
    for id in drafts {
        changes += step!(store, org_id, &drafts, &exports, {
            store
                .approve_draft(org_id, id, "ops", orderflow::store::now(), &audit)
                .await
                .unwrap()
                .unwrap();
        });
        // Approving twice changes nothing.
        let again = step!(store, org_id, &drafts, &exports, {
            let _ = store
                .approve_draft(org_id, id, "ops", orderflow::store::now(), &audit)
                .await
                .unwrap();
        });
        assert_eq!(again, 0);
    }
    for id in drafts {
        let created: Uuid;
        changes += step!(store, org_id, &drafts, &exports, {
            let PushOutcome::Created(e) = store
                .push_draft(&push(org_id, id, conn, None, &audit))
                .await
                .unwrap()
            else {
                panic!("not created")
            };
            created = e.id;
        });
        exports.push(created);
    }
    let worker = Uuid::new_v4();
    let claimed = store
        .claim_exports(&claim(worker, 10, 10, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let by_draft = |d: Uuid| claimed.iter().find(|e| e.draft_order_id == d).unwrap();
    let error = json!({"code": "CONNECTION_REFUSED", "message": "x", "at": "t", "attempt": 1});
    let sent = AttemptOutcome::Sent {
        dropzone_path: "/in/x.json",
    };
    let failed = AttemptOutcome::Failed { error: &error };
    for (d, outcome) in [(drafts[0], &sent), (drafts[1], &failed), (drafts[2], &sent)] {
        changes += step!(store, org_id, &drafts, &exports, {
            assert!(
                store
                    .finish_attempt(by_draft(d), worker, outcome, &audit)
                    .await
                    .unwrap()
            );
        });
    }
    let acked = orderflow::domain::ack::AckOutcome::Acked {
        erp_order_id: Some("SO-1".into()),
        processed_at: None,
    };
    let rejected = orderflow::domain::ack::AckOutcome::Rejected {
        error_code: Some("E1".into()),
        message: Some("no".into()),
        processed_at: None,
    };
    let first = store.export(org_id, exports[0]).await.unwrap().unwrap();
    let third = store.export(org_id, exports[2]).await.unwrap().unwrap();
    changes += step!(store, org_id, &drafts, &exports, {
        let applied = store
            .apply_acks(&[
                orderflow::store::AckApply {
                    export: &first,
                    outcome: &acked,
                    audit: &audit,
                },
                orderflow::store::AckApply {
                    export: &third,
                    outcome: &rejected,
                    audit: &audit,
                },
            ])
            .await
            .unwrap();
        assert_eq!(applied.len(), 2);
    });
    // A second verdict on a settled export changes nothing.
    let settled = step!(store, org_id, &drafts, &exports, {
        let _ = store
            .apply_acks(&[orderflow::store::AckApply {
                export: &first,
                outcome: &rejected,
                audit: &audit,
            }])
            .await
            .unwrap();
    });
    assert_eq!(settled, 0);
    // A failed delivery's draft may be pushed again.
    let retried: Uuid;
    changes += step!(store, org_id, &drafts, &exports, {
        let retry = NewPush {
            from: &[DraftStatus::Error],
            latest_must_be_failed: true,
            ..push(org_id, drafts[1], conn, None, &audit)
        };
        let PushOutcome::Created(e) = store.push_draft(&retry).await.unwrap() else {
            panic!("retry not created")
        };
        retried = e.id;
    });
    exports.push(retried);
    let (d, e) = statuses(store, org_id, &drafts, &exports).await;
    assert_eq!(
        d,
        [
            DraftStatus::Pushed,
            DraftStatus::Pushing,
            DraftStatus::Error
        ]
    );
    assert_eq!(
        e,
        [
            ExportStatus::Acked,
            ExportStatus::Failed,
            ExportStatus::Failed,
            ExportStatus::Pending
        ]
    );
    // Approvals 3, pushes 3 (a new export is not a change), outcomes 2 each (export and
    // draft), the ack 1 and the rejection 2, the retry 1.
    assert_eq!(changes, 3 + 3 + 6 + 3 + 1);
}

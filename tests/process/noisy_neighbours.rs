//! Fifty orgs on real `orderflow worker` processes, five of whose ERPs hang (they accept the
//! TCP connection and never answer: three over HTTP, two over SFTP). The other orgs'
//! exports are delivered as if nothing happened; the hanging connections' circuits open and
//! their exports wait as PENDING; when the servers come back, every waiting export is
//! delivered exactly once. SQLite with one worker process, PostgreSQL with two.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use orderflow::app::App;
use orderflow::connectors::Registry;
use orderflow::domain::audit::Actor;
use orderflow::domain::delivery::CircuitState;
use orderflow::domain::draft::DraftInput;
use orderflow::domain::export::ExportStatus;
use orderflow::domain::page::PageRequest;
use orderflow::service::orders::PushKind;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::common::eventually;
use crate::common::http_erp::{HttpErp, Tls};
use crate::common::{Backend, TestDb, test_settings};
use crate::crash::seed_org;
use crate::harness::{Proc, base_env};
use crate::sftp_server::{PASSWORD, TestSftpServer, USER};

const HEALTHY_HTTP: usize = 40;
const HEALTHY_SFTP: usize = 5;
const HANGING_HTTP: usize = 3;
const HANGING_SFTP: usize = 2;
const EXPORTS_EACH: usize = 4;

/// A TCP gate in front of a real server: while closed it accepts connections and says
/// nothing (a hanging ERP); once open it passes new connections through.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let is_open = open.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                // Connections held while hanging are dropped: their clients gave up long ago.
                held.clear();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, open }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn http_config(port: u16) -> Value {
    json!({"url": format!("http://127.0.0.1:{port}/orders"), "timeout_secs": 2})
}

fn sftp_config(port: u16, path: &str) -> Value {
    json!({"mode": "sftp", "host": "127.0.0.1", "port": port, "username": USER,
           "password": PASSWORD, "export_path": path, "timeout_secs": 2})
}

/// Creates an org with this connection and `EXPORTS_EACH` pushed drafts; the org id and the
/// connection id.
async fn org_with_exports(
    app: &App,
    db: &TestDb,
    slug: &str,
    slug_type: &str,
    config: Value,
) -> (uuid::Uuid, uuid::Uuid) {
    let (org_id, _) = seed_org(db, slug).await;
    let actor = Actor::cli();
    app.connections
        .save(
            &actor,
            org_id,
            slug_type,
            config.as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    for i in 0..EXPORTS_EACH {
        let input: DraftInput = serde_json::from_value(json!({
            "external_order_number": format!("{slug}-{i}"),
            "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]
        }))
        .unwrap();
        let draft = app.orders.create(&actor, org_id, input).await.unwrap();
        app.orders
            .approve(&actor, "ops@test", org_id, draft.id)
            .await
            .unwrap();
        app.orders
            .push(&actor, org_id, draft.id, None, PushKind::Push)
            .await
            .unwrap();
    }
    let connection = app.connections.list(org_id).await.unwrap()[0].id;
    (org_id, connection)
}

async fn exports_of(db: &TestDb, org_id: uuid::Uuid) -> Vec<orderflow::domain::export::Export> {
    db.store
        .list_exports(org_id, None, PageRequest::parse(Some("200"), None).unwrap())
        .await
        .unwrap()
        .items
}

async fn hanging_erps_never_slow_the_others(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let erp = HttpErp::start(Tls::Plain).await;
    let sftp = TestSftpServer::start().await;
    let http_gate = Gate::start(erp.addr.port()).await;
    let sftp_gate = Gate::start(sftp.port).await;
    let dir = tempfile::tempdir().unwrap();
    let env_pairs = [
        ("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24"),
        ("CONNECTOR_ALLOW_PLAIN_HTTP", "true"),
        ("CIRCUIT_COOL_DOWN_SECS", "1"),
        ("CIRCUIT_COOL_DOWN_MAX_SECS", "2"),
        ("EXPORT_RETRY_BASE_SECS", "1"),
    ];
    let settings = test_settings(&dir.path().join("dropzones"), &env_pairs);
    let app = App::assemble(settings, db.store.clone(), Registry::default())
        .await
        .unwrap();

    let mut healthy = Vec::new();
    let mut hanging = Vec::new();
    for n in 0..HEALTHY_HTTP {
        let config = http_config(erp.addr.port());
        healthy.push(
            org_with_exports(&app, &db, &format!("ok-http-{n}"), "http-json-v1", config).await,
        );
    }
    for n in 0..HEALTHY_SFTP {
        let path = format!("/ok{n}");
        sftp.dir(&path);
        let config = sftp_config(sftp.port, &path);
        healthy.push(
            org_with_exports(
                &app,
                &db,
                &format!("ok-sftp-{n}"),
                "dropzone-json-v1",
                config,
            )
            .await,
        );
    }
    for n in 0..HANGING_HTTP {
        let config = http_config(http_gate.port);
        hanging.push(
            org_with_exports(&app, &db, &format!("hang-http-{n}"), "http-json-v1", config).await,
        );
    }
    for n in 0..HANGING_SFTP {
        let path = format!("/hang{n}");
        sftp.dir(&path);
        let config = sftp_config(sftp_gate.port, &path);
        hanging.push(
            org_with_exports(
                &app,
                &db,
                &format!("hang-sftp-{n}"),
                "dropzone-json-v1",
                config,
            )
            .await,
        );
    }

    let mut env: HashMap<String, String> = base_env(&db.url, dir.path());
    for (k, v) in env_pairs {
        env.insert(k.into(), v.into());
    }
    let processes = if backend == Backend::Postgres { 2 } else { 1 };
    let started = Instant::now();
    let workers: Vec<Proc> = (0..processes)
        .map(|_| Proc::start(&["worker"], &env))
        .collect();

    // Every healthy export is delivered while the hanging servers hang, each on its first
    // attempt and well within one hanging timeout of the workers' start.
    eventually(
        Duration::from_secs(60),
        "every healthy export SENT",
        || async {
            for (org, _) in &healthy {
                if exports_of(&db, *org)
                    .await
                    .iter()
                    .any(|e| e.status == ExportStatus::Pending)
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let healthy_took = started.elapsed();
    for (org, _) in &healthy {
        for e in exports_of(&db, *org).await {
            assert_eq!(e.status, ExportStatus::Sent, "{e:?}");
            assert_eq!(e.attempts, 1, "a healthy export needed a second attempt");
        }
    }

    // The hanging connections' circuits open; their exports wait, attempts not used up.
    let ids: Vec<uuid::Uuid> = hanging.iter().map(|(_, c)| *c).collect();
    eventually(
        Duration::from_secs(60),
        "the hanging circuits open",
        || async {
            let circuits = db.store.circuits(&ids).await.unwrap();
            (circuits.len() == ids.len()
                && circuits.values().all(|c| c.state != CircuitState::Closed))
            .then_some(())
        },
    )
    .await;
    for (org, _) in &hanging {
        for e in exports_of(&db, *org).await {
            assert_eq!(e.status, ExportStatus::Pending, "{e:?}");
            assert!(e.attempts < 6, "{e:?}");
        }
    }
    assert!(
        healthy_took < Duration::from_secs(20),
        "healthy exports took {healthy_took:?} while others hung"
    );

    // The servers come back: every waiting export is delivered, once.
    http_gate.open();
    sftp_gate.open();
    let back = Instant::now();
    eventually(Duration::from_secs(60), "the backlog delivered", || async {
        for (org, _) in &hanging {
            if exports_of(&db, *org)
                .await
                .iter()
                .any(|e| e.status == ExportStatus::Pending)
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    let drained = back.elapsed();
    drop(workers);
    for (org, _) in &hanging {
        for e in exports_of(&db, *org).await {
            assert_eq!(e.status, ExportStatus::Sent, "{e:?}");
        }
    }
    // Exactly once at the ERP: no export id arrived twice over HTTP, and every SFTP export is
    // one file.
    let received: Vec<String> = erp
        .received()
        .iter()
        .filter_map(|r| r.headers.get("idempotency-key"))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let distinct: HashSet<&String> = received.iter().collect();
    assert_eq!(received.len(), distinct.len(), "an export was POSTed twice");
    assert_eq!(received.len(), (HEALTHY_HTTP + HANGING_HTTP) * EXPORTS_EACH);
    for n in 0..HANGING_SFTP {
        let files = std::fs::read_dir(sftp.dir(&format!("/hang{n}")))
            .unwrap()
            .count();
        assert_eq!(files, EXPORTS_EACH);
    }
    assert!(drained < Duration::from_secs(60), "{drained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_erps_never_slow_the_others_sqlite() {
    hanging_erps_never_slow_the_others(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_erps_never_slow_the_others_on_two_workers_postgres() {
    hanging_erps_never_slow_the_others(Backend::Postgres).await;
}

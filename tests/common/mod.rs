//! Shared test harness: fresh databases (SQLite file or PostgreSQL schema), a real server on
//! port 0, and captured logs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use orderflow::api::{AppState, Application};
use orderflow::app::App;
use orderflow::auth::TokenIssuer;
use orderflow::config::{LogFormat, Settings};
use orderflow::connectors::Registry;
use orderflow::connectors::mock::MockConnector;
use orderflow::crypto::SecretString;
use orderflow::domain::audit::Actor;
use orderflow::domain::org::Org;
use orderflow::domain::user::{Role, User};
use orderflow::service::accounts;
use orderflow::store::{PostgresStore, SqliteStore, Store};
use orderflow::workers::Workers;
use orderflow::workers::delivery::{DeliveryLimits, DeliveryWorker, Step};
use sqlx::postgres::PgConnectOptions;
use tempfile::TempDir;
use uuid::Uuid;

/// The master key every test app uses (from the shared test vectors).
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// The JWT secret every test app uses.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef-0123456789";
/// Password given to every test user; the leak test looks for it.
pub const TEST_PASSWORD: &str = "Pw-for-tests-7f3a9c!";

/// Which database backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, private database: a SQLite file in a temp dir, or a PostgreSQL schema that is
/// dropped when this value is dropped.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
    /// A `DATABASE_URL` for child processes that reaches this same database (for PostgreSQL,
    /// with the schema on the search path).
    pub url: String,
    /// Raw pools for tests that look at rows directly.
    pub sqlite: Option<SqliteStore>,
    pub postgres: Option<PostgresStore>,
    pg_schema: Option<(String, String)>,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A migrated SQLite database in a temp dir.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/test.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate_now().await;
        TestDb {
            store: Arc::new(store.clone()),
            backend: Backend::Sqlite,
            url,
            sqlite: Some(store),
            postgres: None,
            pg_schema: None,
            _dir: Some(dir),
        }
    }

    /// A migrated schema in `TEST_DATABASE_URL`, or None (and a note) when it is not set.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipped: TEST_DATABASE_URL is not set, PostgreSQL half not run");
            return None;
        };
        let schema = format!("t_{}", Uuid::new_v4().simple());
        let admin = PostgresStore::connect(&url)
            .await
            .expect("TEST_DATABASE_URL unreachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(admin.pool())
            .await
            .unwrap();
        admin.pool().close().await;
        // Named after the schema, so a test can find (and cut) this database's connections.
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())])
            .application_name(&schema);
        let store = PostgresStore::connect_with(options).await.unwrap();
        store.migrate_now().await;
        let sep = if url.contains('?') { '&' } else { '?' };
        let child_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        Some(TestDb {
            store: Arc::new(store.clone()),
            backend: Backend::Postgres,
            url: child_url,
            sqlite: None,
            postgres: Some(store),
            pg_schema: Some((url, schema)),
            _dir: None,
        })
    }

    /// The PostgreSQL schema (also the connections' `application_name`); None on SQLite.
    pub fn pg_schema(&self) -> Option<&str> {
        self.pg_schema.as_ref().map(|(_, schema)| schema.as_str())
    }

    /// The requested backend, or None when PostgreSQL is not configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite().await),
            Backend::Postgres => TestDb::postgres().await,
        }
    }
}

trait MigrateNow {
    async fn migrate_now(&self);
}

impl<S: Store> MigrateNow for S {
    async fn migrate_now(&self) {
        self.migrate().await.unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((url, schema)) = self.pg_schema.take() else {
            return;
        };
        // Drop runs outside async context: use a private runtime on a helper thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let store = PostgresStore::connect(&url).await.ok()?;
                let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(store.pool())
                    .await;
                store.pool().close().await;
                Some(())
            })
        })
        .join();
    }
}

/// Captures every log line the in-process servers write, for the secret-leak scans.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log capture (installed by the first `spawn_app`).
pub fn logs() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture::default();
        let writer = capture.clone();
        // Debug level so the leak scans see as much as the service can log.
        orderflow::telemetry::init_logging_to(
            LogFormat::Json,
            Some("debug,russh=info,russh_sftp=info,hyper=info,h2=info"),
            move || writer.clone(),
        );
        capture
    })
}

/// Everything logged so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

/// Settings for a test app; `extra` overrides defaults. Exports are archived beside the
/// dropzone root (`<root>/../objects-<name>`), so each app has its own archive.
pub fn test_settings(dropzone_root: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let objects = dropzone_root.join(".objects");
    let mut map: HashMap<String, String> = HashMap::from([
        ("ENCRYPTION_MASTER_KEY".into(), TEST_KEY.into()),
        ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        (
            "DROPZONE_FS_ROOT".into(),
            dropzone_root.display().to_string(),
        ),
        (
            "OBJECT_STORAGE_URL".into(),
            format!("file://{}", objects.display()),
        ),
        ("EXPORT_RETRY_BASE_SECS".into(), "1".into()),
    ]);
    for (k, v) in extra {
        map.insert((*k).into(), (*v).into());
    }
    Settings::from_lookup(&|k| map.get(k).cloned()).unwrap()
}

/// A running server on port 0 with its own database and dropzone root. Background workers do
/// not run unless asked ([`TestApp::start_workers`]); tests drive delivery with
/// [`TestApp::deliver_all`].
pub struct TestApp {
    pub app: Arc<App>,
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub settings: Settings,
    pub tokens: TokenIssuer,
    pub dropzone_root: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Starts a server on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(TestDb::sqlite().await, &[]).await
}

/// Starts a server on the given database with extra settings.
pub async fn spawn_app_on(db: TestDb, extra: &[(&str, &str)]) -> TestApp {
    spawn_app_with(db, extra, Registry::default()).await
}

/// Starts a server with the `MOCK` connector type registered too.
pub async fn spawn_app_with_mock() -> TestApp {
    spawn_app_with(
        TestDb::sqlite().await,
        &[],
        Registry::default().with(Arc::new(MockConnector)),
    )
    .await
}

/// Starts a server on the given database, settings and connector registry.
pub async fn spawn_app_with(db: TestDb, extra: &[(&str, &str)], registry: Registry) -> TestApp {
    logs();
    let dropzone_root = tempfile::tempdir().unwrap();
    let settings = test_settings(dropzone_root.path(), extra);
    let app = App::assemble(settings.clone(), db.store.clone(), registry)
        .await
        .unwrap();
    let server = Application::bind(
        settings.http.bind_addr,
        AppState::from(app.clone()),
        settings.http.request_timeout,
        settings.http.limits,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        app,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        tokens: TokenIssuer::new(&settings.jwt_secret),
        db,
        settings,
        dropzone_root,
        _shutdown: tx,
    }
}

impl TestApp {
    pub fn store(&self) -> &dyn Store {
        self.db.store.as_ref()
    }

    /// Runs delivery steps until nothing is due; returns them.
    pub async fn deliver_all(&self) -> Vec<Step> {
        let worker = DeliveryWorker::new(self.app.clone(), DeliveryLimits::default());
        let mut steps = Vec::new();
        loop {
            match worker.deliver_one().await.unwrap() {
                Step::Idle => return steps,
                step => steps.push(step),
            }
        }
    }

    /// Starts the background workers, as `serve` does; they stop when the returned value drops.
    pub fn start_workers(&self) -> WorkersGuard {
        WorkersGuard(Some(Workers::spawn(self.app.clone())))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn org(&self, slug: &str) -> Org {
        accounts::create_org(self.store(), slug, &format!("{slug} Ltd"))
            .await
            .unwrap()
    }

    pub async fn user(&self, org: &Org, email: &str, role: Role) -> User {
        accounts::create_user(
            self.store(),
            org,
            email,
            role,
            SecretString::new(TEST_PASSWORD.into()),
            Actor::cli(),
        )
        .await
        .unwrap()
    }

    pub fn token_for(&self, user: &User) -> String {
        self.tokens.issue(user, 600).unwrap()
    }

    /// A new org with one user of `role`, and that user's token.
    pub async fn org_with(&self, slug: &str, role: Role) -> (Org, User, String) {
        let org = self.org(slug).await;
        let user = self
            .user(
                &org,
                &format!("{}@{slug}.test", role.as_str().to_lowercase()),
                role,
            )
            .await;
        let token = self.token_for(&user);
        (org, user, token)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POST without a body.
    pub async fn post_empty(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// GET and parse the JSON answer.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        self.get(path, token).await.json().await.unwrap()
    }

    /// Creates, approves and pushes a draft, then runs delivery; the export as the API shows
    /// it.
    pub async fn push_and_deliver(
        &self,
        token: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let resp = self.post_json("/api/v1/draft-orders", token, body).await;
        assert_eq!(resp.status(), 201);
        let draft: serde_json::Value = resp.json().await.unwrap();
        let id = draft["id"].as_str().unwrap();
        let resp = self
            .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
            .await;
        assert_eq!(resp.status(), 200);
        let push: serde_json::Value = self
            .post_empty(&format!("/api/v1/draft-orders/{id}/push"), token)
            .await
            .json()
            .await
            .unwrap();
        self.deliver_all().await;
        let export_id = push["erp_export_id"].as_str().unwrap();
        self.get_json(&format!("/api/v1/exports/{export_id}"), token)
            .await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Stops the workers it holds when dropped.
pub struct WorkersGuard(Option<Workers>);

impl Drop for WorkersGuard {
    fn drop(&mut self) {
        if let Some(workers) = self.0.take() {
            tokio::spawn(workers.shutdown(std::time::Duration::from_secs(5)));
        }
    }
}

/// Asserts the standard error shape and returns the body.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let header_id = resp
        .headers()
        .get("x-request-id")
        .expect("X-Request-Id header missing")
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = resp.json().await.expect("error body is not JSON");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error.get("details").is_some(), "{body}");
    assert_eq!(error["request_id"], header_id.as_str(), "{body}");
    body
}

/// Sample domain data and connector contexts.
pub mod http_erp;

pub mod sample {
    use std::sync::Arc;

    use chrono::{NaiveDate, TimeZone, Utc};
    use orderflow::connectors::{ConnectorConfig, ConnectorContext, ConnectorEnv};
    use orderflow::domain::order::{ApprovedOrder, Customer, DecimalText, OrderHeader, OrderLine};
    use orderflow::domain::org::Slug;
    use serde_json::Value;
    use tempfile::TempDir;
    use uuid::Uuid;

    /// An approved two-line order (lines deliberately out of order).
    pub fn order(slug: &str) -> ApprovedOrder {
        ApprovedOrder {
            draft_order_id: Uuid::new_v4(),
            org_slug: Slug::parse(slug).unwrap(),
            approved_at: Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap(),
            approved_by: Some("approver@acme.test".into()),
            customer: Customer {
                id: Some(Uuid::new_v4()),
                erp_customer_number: Some("C-1001".into()),
                name: Some("Müller GmbH".into()),
            },
            header: OrderHeader {
                external_order_number: Some("PO-77".into()),
                order_date: NaiveDate::from_ymd_opt(2026, 11, 1),
                currency: Some("EUR".into()),
                requested_delivery_date: None,
                notes: None,
            },
            lines: vec![
                OrderLine {
                    line_no: 2,
                    internal_sku: "SKU-2".into(),
                    qty: DecimalText::parse("3").unwrap(),
                    uom: "PCE".into(),
                    unit_price: Some(DecimalText::parse("19.99").unwrap()),
                    currency: Some("USD".into()),
                    customer_sku_raw: Some("c-2".into()),
                    description: Some("Widget".into()),
                },
                OrderLine {
                    line_no: 1,
                    internal_sku: "SKU-1".into(),
                    qty: DecimalText::parse("12.5").unwrap(),
                    uom: "KG".into(),
                    unit_price: None,
                    currency: None,
                    customer_sku_raw: None,
                    description: None,
                },
            ],
            source_document: None,
        }
    }

    /// A connector context for `slug` with its own dropzone root (kept alive by the TempDir).
    pub fn context(slug: &str) -> (ConnectorContext, TempDir) {
        context_with(slug, Vec::new())
    }

    /// Like [`context`], with these blocked networks.
    pub fn context_with(slug: &str, blocked: Vec<ipnet::IpNet>) -> (ConnectorContext, TempDir) {
        let root = tempfile::tempdir().unwrap();
        let env = ConnectorEnv::new(root.path().to_owned(), blocked);
        let ctx = ConnectorContext {
            org_id: Uuid::new_v4(),
            org_slug: Slug::parse(slug).unwrap(),
            connection: None,
            env: Arc::new(env),
        };
        (ctx, root)
    }

    /// A config from a JSON object.
    pub fn config(value: Value) -> ConnectorConfig {
        match value {
            Value::Object(map) => ConnectorConfig::new(map),
            other => panic!("not an object: {other}"),
        }
    }
}

/// Polls `check` every 20 ms until it returns Some, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

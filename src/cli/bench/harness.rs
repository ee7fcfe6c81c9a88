//! What the end-to-end benchmarks share: the real app, HTTP server and workers on the usual
//! environment, a throwaway org with an admin, drafts made through the API, and the
//! filesystem yardstick (a bare loop of durable writes).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::api::{AppState, Application};
use crate::app::App;
use crate::cli::admin::load_settings;
use crate::crypto::SecretString;
use crate::domain::audit::Actor;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::org::Org;
use crate::domain::page::PageRequest;
use crate::domain::user::Role;
use crate::service::accounts;
use crate::workers::Workers;

/// A running app with a throwaway org, its admin's API client, and the background workers.
pub(super) struct Bench {
    /// The application.
    pub app: Arc<App>,
    /// The throwaway org.
    pub org: Org,
    /// `postgres` or `sqlite`.
    pub database: &'static str,
    /// The org admin's HTTP client.
    pub api: Arc<Api>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    workers: Option<Workers>,
}

impl Bench {
    /// Builds the app from the environment (blocked networks cleared: the bench's peers are
    /// the operator's own, often on loopback), serves it on a free loopback port, starts the
    /// workers and makes an org with an admin.
    pub async fn start() -> anyhow::Result<Bench> {
        let mut settings = load_settings()?;
        crate::telemetry::init_logging(settings.log_format);
        settings.connectors.blocked_networks.clear();
        // The bench's HTTP receiver is plain HTTP on loopback.
        settings.connectors.allow_plain_http = true;
        settings.http.bind_addr = "127.0.0.1:0".parse()?;
        let database = if settings.database.url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        };
        let app = App::build(settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let slug = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let org = accounts::create_org(app.store.as_ref(), &slug, "Benchmark").await?;
        let email = format!("bench@{slug}.local");
        accounts::create_user(
            app.store.as_ref(),
            &org,
            &email,
            Role::Admin,
            SecretString::new(Uuid::new_v4().to_string()),
            Actor::cli(),
        )
        .await?;
        let token =
            accounts::issue_token(app.store.as_ref(), &app.tokens, &org, &email, 24 * 3600).await?;

        let server = Application::bind(
            app.settings.http.bind_addr,
            AppState::from(app.clone()),
            app.settings.http.request_timeout,
            app.settings.http.limits,
        )
        .await?;
        let base = format!("http://{}", server.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        let workers = Some(Workers::spawn(app.clone()));
        let api = Arc::new(Api {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            base,
            token,
        });
        Ok(Bench {
            app,
            org,
            database,
            api,
            stop,
            serving,
            workers,
        })
    }

    /// The org's folder under `DROPZONE_FS_ROOT`.
    pub fn org_folder(&self) -> std::path::PathBuf {
        self.app
            .settings
            .connectors
            .dropzone_fs_root
            .join(self.org.slug.to_string())
    }

    /// Saves the org's dropzone connection.
    pub async fn connect(&self, slug: &str, config: &Value) -> anyhow::Result<()> {
        self.api
            .post(&format!("/api/v1/connectors/{slug}"), Some(config), None)
            .await
            .map(|_| ())
    }

    /// Creates and approves `n` drafts through the API (`concurrency` requests in flight),
    /// then refreshes the planner's statistics: the timed part measures the steady state, as
    /// on any database autovacuum has looked at, not plans made for tables that were empty a
    /// moment ago (which scan a whole org where a key lookup would do).
    pub async fn approved_drafts(
        &self,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<String>> {
        let ids = futures::stream::iter(0..n)
            .map(|i| {
                let api = self.api.clone();
                async move {
                    let draft = api
                        .post("/api/v1/draft-orders", Some(&draft_body(i)), None)
                        .await?;
                    let id = draft["id"].as_str().unwrap_or_default().to_owned();
                    api.post(&format!("/api/v1/draft-orders/{id}/approve"), None, None)
                        .await?;
                    anyhow::Ok(id)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.app.store.refresh_statistics().await?;
        Ok(ids)
    }

    /// Pushes every draft (`concurrency` requests in flight).
    pub async fn push_all(&self, ids: Vec<String>, concurrency: usize) -> anyhow::Result<()> {
        futures::stream::iter(ids)
            .map(|id| {
                let api = self.api.clone();
                async move {
                    api.post(&format!("/api/v1/draft-orders/{id}/push"), None, Some(&id))
                        .await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|_| ())
    }

    /// Every export of the org.
    pub async fn exports(&self) -> anyhow::Result<Vec<Export>> {
        let mut out = Vec::new();
        let mut page = PageRequest::parse(Some("200"), None)?;
        loop {
            let got = self.app.store.list_exports(self.org.id, None, page).await?;
            out.extend(got.items);
            match got.next_seq {
                Some(seq) => page = PageRequest::parse(Some("200"), Some(seq))?,
                None => return Ok(out),
            }
        }
    }

    /// Waits (up to 10 minutes) until `n` exports are no longer PENDING; all of them.
    ///
    /// It watches the queue depth (one cheap count) and reads the exports once at the end:
    /// reading every export each round would load the database it is measuring.
    pub async fn wait_delivered(&self, n: usize) -> anyhow::Result<Vec<Export>> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let pending = self.app.store.queue_depth().await?;
            if pending == 0 {
                let exports = self.exports().await?;
                let done = exports
                    .iter()
                    .filter(|e| e.status != ExportStatus::Pending)
                    .count();
                if done >= n {
                    return Ok(exports);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{pending} exports still pending after 10 minutes"
            );
            // The figures come from the exports' own timestamps: a slower look costs
            // nothing in accuracy, and a faster one would load the database being measured.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the background workers (the server keeps answering).
    pub async fn stop_workers(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown(Duration::from_secs(10)).await;
        }
    }

    /// Stops everything and closes the database.
    pub async fn shutdown(mut self) {
        self.stop_workers().await;
        let _ = self.stop.send(());
        let _ = self.serving.await;
        self.app.store.close().await;
    }
}

/// A draft like the ones OrderFlow sends: three lines with decimals.
fn draft_body(i: usize) -> Value {
    json!({
        "external_order_number": format!("BENCH-{i}"),
        "order_date": "2026-11-30",
        "currency": "EUR",
        "customer": {"erp_customer_number": "C-1001", "name": "Bench Customer GmbH"},
        "lines": [
            {"line_no": 1, "internal_sku": "SKU-1", "qty": 12.5, "uom": "KG", "unit_price": 3.99},
            {"line_no": 2, "internal_sku": "SKU-2", "qty": 3, "uom": "PCE", "unit_price": 19.90},
            {"line_no": 3, "internal_sku": "SKU-3", "qty": 1, "uom": "PCE", "unit_price": 250}
        ]
    })
}

/// A bare loop of `n` durable writes of `size` bytes in `dir`, one thread (tmp + fsync +
/// rename + folder fsync): the filesystem yardstick, in files per second. The files are left
/// in `dir`.
pub(super) fn durable_writes(dir: &std::path::Path, n: usize, size: usize) -> anyhow::Result<f64> {
    let body = vec![b'x'; size];
    let folder = std::fs::File::open(dir)?;
    let start = Instant::now();
    for i in 0..n {
        let tmp = dir.join(format!("baseline_{i:06}.json.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("baseline_{i:06}.json")))?;
        folder.sync_all()?;
    }
    // The files stay (`baseline_*.json` beside the exports): deleting thousands of files
    // at once slows every file creation on a journal-less ext4 for minutes afterwards.
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The org admin's HTTP client.
pub(super) struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// POSTs (with an optional JSON body and Idempotency-Key); the JSON answer, or an error
    /// naming the status.
    pub async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }
}

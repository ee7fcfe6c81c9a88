//! The admin console in a real browser: Chromium driven through chromedriver (WebDriver),
//! against the real server on port 0. Screenshots of each main page are written to
//! `target/ui-screenshots/` for a reviewer.
//!
//! Runs whenever Debian's `chromium` and `chromium-driver` are installed; `.ci/run` installs
//! them and sets `ORDERFLOW_REQUIRE_BROWSER=1`, which turns their absence into a failure.

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use orderflow::domain::user::Role;
use serde_json::{Value, json};

use common::{TEST_PASSWORD, TestApp, spawn_app};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";
const WAIT: Duration = Duration::from_secs(15);

/// A chromedriver process for one test, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group: a failed test leaves no Chromium behind.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// None (with a note) when no browser is installed; a failure instead when CI requires one.
fn driver() -> Option<Driver> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("ORDERFLOW_REQUIRE_BROWSER").is_err(),
            "ORDERFLOW_REQUIRE_BROWSER is set but chromium/chromedriver are not installed"
        );
        eprintln!("note: chromium or chromedriver not installed; browser test skipped");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // Root in a container: no sandbox; a fixed size makes screenshots comparable.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000",
                     format!("--user-data-dir={}", driver._profile.path().display())]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver session")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core (vendored, MPL-2.0), run on every page a test shows.
const AXE: &str = include_str!("vendor/axe-core/axe.min.js");

/// Runs axe-core on the current page and fails on any serious or critical violation.
async fn accessible(c: &Client, name: &str) {
    let loaded = c
        .execute(&format!("{AXE}; return typeof axe;"), vec![])
        .await
        .unwrap();
    assert_eq!(loaded, json!("object"), "axe-core did not load on {name}");
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
                .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,
                    nodes: v.nodes.map(n => n.html).slice(0, 3)}))))
                .catch(e => done([{id: 'axe-error', impact: 'critical', nodes: [String(e)]}]));",
            vec![],
        )
        .await
        .unwrap();
    let serious: Vec<&Value> = result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "axe-core found serious or critical problems on {name}: {serious:#?}"
    );
}

/// Saves a screenshot of the current page and checks it with axe-core.
async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
    accessible(c, name).await;
}

async fn sign_in(c: &Client, app: &TestApp, org: &str, email: &str) {
    c.goto(&app.url("/")).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form.login"))
        .await
        .unwrap();
    c.find(Locator::Id("org_slug"))
        .await
        .unwrap()
        .send_keys(org)
        .await
        .unwrap();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(TEST_PASSWORD)
        .await
        .unwrap();
    shot(c, "login").await;
    button(c, "Sign in").await.click().await.unwrap();
    wait_text(c, "h1", "Orders").await;
}

async fn button(c: &Client, label: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&format!(
            "//button[normalize-space(.)='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no button {label:?}: {e}"))
}

async fn buttons(c: &Client, label: &str) -> usize {
    c.find_all(Locator::XPath(&format!(
        "//button[normalize-space(.)='{label}']"
    )))
    .await
    .unwrap()
    .len()
}

/// Waits until an element matching `css` contains `text` (without navigating).
async fn wait_text(c: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen = String::new();
        for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
            seen.push_str(&e.text().await.unwrap_or_default());
            seen.push('\n');
        }
        if seen.contains(text) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {text:?}; saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api_draft(app: &TestApp, token: &str, number: &str) -> String {
    let body = json!({"external_order_number": number, "customer": {"name": "Buyer GmbH"},
        "lines": [{"line_no": 1, "internal_sku": "SKU-1", "qty": 10.000, "uom": "PCE",
                   "unit_price": 2.50, "currency": "EUR", "description": "Widget"}]});
    let resp = app.post_json("/api/v1/draft-orders", token, &body).await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_configures_the_connector_pushes_orders_and_retries_a_failure() {
    let Some(driver) = driver() else { return };
    let app = spawn_app().await;
    let (_, admin, token) = app.org_with("acme", Role::Admin).await;
    let orders = app.dropzone_root.path().join("acme/import/orders");
    std::fs::create_dir_all(&orders).unwrap();
    let c = browser(&driver).await;
    sign_in(&c, &app, "acme", admin.email.as_str()).await;

    // Configure the filesystem connector through the generated form; test it unsaved, save.
    c.goto(&app.url("/ui/connector")).await.unwrap();
    c.find(Locator::Id("f-dropzone-json-v1-mode"))
        .await
        .unwrap()
        .select_by_value("filesystem")
        .await
        .unwrap();
    // SFTP's own fields are out of the way while filesystem is chosen.
    let host = c
        .find(Locator::Id("f-dropzone-json-v1-host"))
        .await
        .unwrap();
    assert!(!host.is_displayed().await.unwrap(), "sftp fields shown");
    c.find(Locator::Id("f-dropzone-json-v1-export_path"))
        .await
        .unwrap()
        .send_keys("/import/orders")
        .await
        .unwrap();
    button(&c, "Test this form without saving")
        .await
        .click()
        .await
        .unwrap();
    let result = wait_text(&c, ".notice", "Connection works").await;
    assert!(result.contains(" ms)"), "no latency: {result}");
    shot(&c, "connector-test").await;
    button(&c, "Save").await.click().await.unwrap();
    wait_text(&c, ".notice", "Saved.").await;
    wait_text(&c, "dl.facts", "ACTIVE").await;
    assert_eq!(
        app.get_json(CONNECTOR, &token).await["config"]["export_path"],
        "/import/orders"
    );
    button(&c, "Test connection").await.click().await.unwrap();
    wait_text(&c, ".notice", "Connection works").await;
    shot(&c, "connector").await;

    // A draft from the API, approved and pushed in the console; the export page turns SENT by
    // itself once a worker delivers it.
    api_draft(&app, &token, "PO-1001").await;
    c.goto(&app.url("/ui/drafts")).await.unwrap();
    shot(&c, "orders").await;
    c.find(Locator::LinkText("PO-1001"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "h1", "Order PO-1001").await;
    button(&c, "Approve").await.click().await.unwrap();
    wait_text(&c, ".notice", "Approved.").await;
    button(&c, "Push to ERP").await.click().await.unwrap();
    wait_text(&c, ".notice", "Pushed").await;
    shot(&c, "draft").await;
    c.find(Locator::Css("a[href^='/ui/exports/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#live", "PENDING").await;
    let url = c.current_url().await.unwrap();
    let workers = app.start_workers();
    wait_text(&c, "#live", "SENT").await;
    assert_eq!(c.current_url().await.unwrap(), url, "the page was reloaded");
    shot(&c, "export").await;
    // The archived file, as delivered.
    let file_link = c.find(Locator::LinkText("View file")).await.unwrap();
    let href = file_link.attr("href").await.unwrap().unwrap();
    c.goto(&app.url(&href)).await.unwrap();
    assert!(c.source().await.unwrap().contains("PO-1001"));
    assert_eq!(std::fs::read_dir(&orders).unwrap().count(), 1);

    // A delivery that fails for good (the folder is gone), then a retry once it is back.
    drop(workers);
    let second = api_draft(&app, &token, "PO-1002").await;
    std::fs::remove_dir(&orders).ok();
    std::fs::remove_dir_all(&orders).unwrap();
    c.goto(&app.url(&format!("/ui/drafts/{second}")))
        .await
        .unwrap();
    button(&c, "Approve").await.click().await.unwrap();
    button(&c, "Push to ERP").await.click().await.unwrap();
    wait_text(&c, ".notice", "Pushed").await;
    wait_text(&c, "#live", "PUSHING").await;
    let url = c.current_url().await.unwrap();
    app.deliver_all().await;
    // The draft's page follows the delivery by itself.
    wait_text(&c, "#live", "ERROR").await;
    assert_eq!(c.current_url().await.unwrap(), url, "the page was reloaded");
    c.find(Locator::Css("a[href^='/ui/exports/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let words = wait_text(&c, "#live", "FAILED").await;
    assert!(
        words.contains("Delivery failed with"),
        "error_json not in words: {words}"
    );
    shot(&c, "export-failed").await;
    std::fs::create_dir_all(&orders).unwrap();
    c.goto(&app.url(&format!("/ui/drafts/{second}")))
        .await
        .unwrap();
    button(&c, "Retry push").await.click().await.unwrap();
    wait_text(&c, ".notice", "Pushed again").await;
    app.deliver_all().await;
    wait_text(&c, "#live", "PUSHED").await;
    assert_eq!(std::fs::read_dir(&orders).unwrap().count(), 1);

    // Lists, filters and the audit log.
    c.goto(&app.url("/ui/exports?status=FAILED")).await.unwrap();
    let listed = wait_text(&c, "tbody", "FAILED").await;
    assert!(
        !listed.contains("SENT"),
        "the filter let a SENT export through: {listed}"
    );
    c.goto(&app.url("/ui/exports")).await.unwrap();
    shot(&c, "exports").await;
    c.goto(&app.url("/ui/audit")).await.unwrap();
    wait_text(&c, "table", "EXPORT_SENT").await;
    shot(&c, "audit").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_actions_and_secrets_never_reach_the_page() {
    let Some(driver) = driver() else { return };
    let app = spawn_app().await;
    let (org, admin, token) = app.org_with("acme", Role::Admin).await;
    let secret = "Sup3r-Secret-Value-9931";
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"mode": "sftp", "host": "192.0.2.10", "username": "erp",
                    "password": secret, "export_path": "/in"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let viewer = app.user(&org, "viewer@acme.test", Role::Viewer).await;
    let id = api_draft(&app, &token, "PO-2001").await;

    let c = browser(&driver).await;
    sign_in(&c, &app, "acme", admin.email.as_str()).await;
    c.goto(&app.url("/ui/connector")).await.unwrap();
    wait_text(&c, "main", "set — leave empty to keep").await;
    assert!(
        !c.source().await.unwrap().contains(secret),
        "a secret in the page source"
    );
    // Keyboard only: the skip link is the first stop and leads to the content.
    c.goto(&app.url("/ui/drafts")).await.unwrap();
    let first = c
        .execute(
            "document.body.focus(); return document.querySelector('a.skip').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, json!("Skip to content"));
    button(&c, "Sign out").await.click().await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form.login"))
        .await
        .unwrap();

    sign_in(&c, &app, "acme", viewer.email.as_str()).await;
    c.goto(&app.url(&format!("/ui/drafts/{id}"))).await.unwrap();
    wait_text(&c, "dl.facts", "READY").await;
    assert_eq!(
        buttons(&c, "Approve").await,
        0,
        "a viewer is offered Approve"
    );
    let nav = wait_text(&c, "header", "Orders").await;
    assert!(
        !nav.contains("Connector"),
        "a viewer is offered the connector page"
    );
    shot(&c, "viewer-draft").await;
    // The error page is checked like every other.
    c.goto(&app.url(&format!("/ui/drafts/{}", uuid::Uuid::new_v4())))
        .await
        .unwrap();
    wait_text(&c, "h1", "Not found").await;
    shot(&c, "not-found").await;
    c.close().await.unwrap();
}

//! The admin console over plain HTTP: sessions, CSRF, roles, tenancy, headers and secrets.
//! (The browser tests in `tests/console/` drive the same pages through Chromium.)

use orderflow::domain::user::Role;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::common::{TEST_PASSWORD, TestApp, spawn_app};

const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the first `name="csrf"` field in a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("no csrf field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v[name.len() + 1..v.find(';').unwrap_or(v.len())].to_owned())
}

struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    session: String,
}

impl<'a> Browser<'a> {
    async fn sign_in(app: &'a TestApp, org: &str, email: &str) -> Browser<'a> {
        let client = no_redirects();
        let form = client.get(app.url("/ui/login")).send().await.unwrap();
        let nonce = cookie_value(&form, "orderflow_login_csrf").unwrap();
        let csrf = csrf_of(&form.text().await.unwrap());
        let resp = client
            .post(app.url("/ui/login"))
            .header(COOKIE, format!("orderflow_login_csrf={nonce}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("csrf", &csrf),
                ("org_slug", org),
                ("email", email),
                ("password", TEST_PASSWORD),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in refused");
        let session = cookie_value(&resp, "orderflow_session").unwrap();
        Browser {
            app,
            client,
            session,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.app.url(path))
            .header(COOKIE, format!("orderflow_session={}", self.session))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.text().await.unwrap()
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.app.url(path))
            .header(COOKIE, format!("orderflow_session={}", self.session))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(fields))
            .send()
            .await
            .unwrap()
    }

    /// Posts a form with the CSRF token of the page it is on.
    async fn submit(&self, from: &str, to: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = csrf_of(&self.page(from).await);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(to, &all).await
    }
}

async fn approved_draft(app: &TestApp, token: &str) -> String {
    let body = json!({"external_order_number": "PO-77", "customer": {"name": "Buyer GmbH"},
        "lines": [{"line_no": 1, "internal_sku": "SKU-1", "qty": 10.000, "uom": "PCE"}]});
    let draft: Value = app
        .post_json("/api/v1/draft-orders", token, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = draft["id"].as_str().unwrap().to_owned();
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), token)
        .await;
    assert_eq!(resp.status(), 200);
    id
}

async fn draft_status(app: &TestApp, token: &str, id: &str) -> String {
    app.get_json(&format!("/api/v1/draft-orders/{id}"), token)
        .await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sign_in_needs_the_form_token_and_sets_a_strict_session_cookie() {
    let app = spawn_app().await;
    let (org, user, _) = app.org_with("acme", Role::Admin).await;
    let client = no_redirects();

    let root = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.headers()[LOCATION], "/ui/");
    let page = client.get(app.url("/ui/drafts")).send().await.unwrap();
    assert_eq!(page.headers()[LOCATION], "/ui/login", "not signed in");

    let form = client.get(app.url("/ui/login")).send().await.unwrap();
    let csp = form.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    let nonce = cookie_value(&form, "orderflow_login_csrf").unwrap();
    let html = form.text().await.unwrap();
    assert!(!html.contains("<script>"), "inline script");
    assert!(html.contains(r#"<label for="password">"#));
    let csrf = csrf_of(&html);

    let login = |fields: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut req = client
            .post(app.url("/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let body: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        req.body(encode(&body)).send()
    };
    let creds = |csrf: &str, password: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("org_slug", org.slug.as_str().to_owned()),
            ("email", user.email.as_str().to_owned()),
            ("password", password.to_owned()),
        ]
    };
    // No token, or a token without its cookie: refused before any password is checked.
    let resp = login(
        creds("", TEST_PASSWORD),
        Some(format!("orderflow_login_csrf={nonce}")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(&resp, "orderflow_session").is_none());
    let resp = login(creds(&csrf, TEST_PASSWORD), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let cookie = Some(format!("orderflow_login_csrf={nonce}"));
    let resp = login(creds(&csrf, "wrong-password-123"), cookie.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let html = resp.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");

    let resp = login(creds(&csrf, TEST_PASSWORD), cookie).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("orderflow_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "PUBLIC_URL is not https here");

    let browser = Browser::sign_in(&app, "acme", user.email.as_str()).await;
    assert!(browser.page("/ui/drafts").await.contains("No draft orders"));
    // Sign-out is a state change too.
    let resp = browser.post("/ui/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = browser.submit("/ui/drafts", "/ui/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        cookie_value(&resp, "orderflow_session").as_deref(),
        Some("")
    );
    // The old cookie's token is revoked, not just forgotten by this browser: presented again
    // (a copied cookie), the console sends it to sign in and the API refuses it.
    let replay = browser
        .client
        .get(app.url("/ui/drafts"))
        .header(COOKIE, format!("orderflow_session={}", browser.session))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        replay.headers().get("location").unwrap().to_str().unwrap(),
        "/ui/login"
    );
    assert_eq!(
        app.get("/api/v1/me", &browser.session).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn secure_cookies_when_the_public_url_is_https() {
    let app = crate::common::spawn_app_on(
        crate::common::TestDb::sqlite().await,
        &[("PUBLIC_URL", "https://orders.example.com")],
    )
    .await;
    let form = no_redirects()
        .get(app.url("/ui/login"))
        .send()
        .await
        .unwrap();
    let set = form.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn roles_and_tokens_are_enforced_on_every_form() {
    let app = spawn_app().await;
    let (org, admin, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/import/orders")).unwrap();
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"mode": "filesystem", "export_path": "/import/orders"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let viewer = app.user(&org, "viewer@acme.test", Role::Viewer).await;
    let id = approved_draft(&app, &token).await;
    let draft_page = format!("/ui/drafts/{id}");
    let push = format!("/ui/drafts/{id}/push");

    let as_viewer = Browser::sign_in(&app, "acme", viewer.email.as_str()).await;
    let html = as_viewer.page(&draft_page).await;
    assert!(html.contains("APPROVED") && html.contains("PO-77"));
    assert!(
        !html.contains("Push to ERP"),
        "a viewer is offered an action"
    );
    assert!(
        !as_viewer
            .page("/ui/exports")
            .await
            .contains("Check acknowledgements")
    );
    // A viewer's own valid form token does not make the action allowed.
    let resp = as_viewer.submit(&draft_page, &push, &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        as_viewer.get("/ui/connector").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(draft_status(&app, &token, &id).await, "APPROVED");

    let as_admin = Browser::sign_in(&app, "acme", admin.email.as_str()).await;
    assert!(as_admin.page(&draft_page).await.contains("Push to ERP"));
    // A forged post (no token, or another session's token) changes nothing.
    assert_eq!(
        as_admin.post(&push, &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    let viewers_token = csrf_of(&as_viewer.page(&draft_page).await);
    let resp = as_admin.post(&push, &[("csrf", &viewers_token)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(draft_status(&app, &token, &id).await, "APPROVED");

    let resp = as_admin.submit(&draft_page, &push, &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(draft_status(&app, &token, &id).await, "PUSHING");
    // Pushing again is refused with the API's reason, shown on the page.
    let resp = as_admin.submit(&draft_page, &push, &[]).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(resp.text().await.unwrap().contains("already has export"));

    // Another org's draft and export are 404 here too.
    let (_, _, other_token) = app.org_with("rival", Role::Admin).await;
    let other = app
        .post_json(
            "/api/v1/draft-orders",
            &other_token,
            &json!({"lines": [{"line_no": 1, "internal_sku": "X", "qty": 1, "uom": "PCE"}]}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let other_id = other["id"].as_str().unwrap();
    let resp = as_admin.get(&format!("/ui/drafts/{other_id}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = as_admin
        .submit("/ui/drafts", &format!("/ui/drafts/{other_id}/approve"), &[])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = as_admin.get(&format!("/ui/exports/{other_id}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_connector_form_saves_tests_and_never_shows_a_secret() {
    let app = spawn_app().await;
    let (_, admin, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/import/orders")).unwrap();
    let browser = Browser::sign_in(&app, "acme", admin.email.as_str()).await;

    // Test the unsaved form, then save it.
    let fields = [
        ("mode", "filesystem"),
        ("export_path", "/import/orders"),
        ("present.atomic_write", "1"),
        ("atomic_write", "true"),
    ];
    let mut test = fields.to_vec();
    test.push(("intent", "test"));
    let resp = browser
        .submit("/ui/connector", "/ui/connector/dropzone-json-v1", &test)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Connection works"));
    assert_eq!(
        app.get(CONNECTOR, &token).await.status(),
        StatusCode::NOT_FOUND,
        "a test saved the config"
    );
    let mut save = fields.to_vec();
    save.push(("intent", "save"));
    let resp = browser
        .submit("/ui/connector", "/ui/connector/dropzone-json-v1", &save)
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let stored = app.get_json(CONNECTOR, &token).await;
    assert_eq!(stored["config"]["export_path"], "/import/orders");
    assert_eq!(stored["status"], "ACTIVE");

    // A bad value is refused with the field named, and nothing changes.
    let resp = browser
        .submit(
            "/ui/connector",
            "/ui/connector/dropzone-json-v1",
            &[
                ("mode", "filesystem"),
                ("export_path", "/../etc"),
                ("intent", "save"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    // Beside the field that caused it, with the typed value kept.
    let field = &html[html.find(r#"id="f-dropzone-json-v1-export_path""#).unwrap()..];
    let field = &field[..field.find("</div>").unwrap()];
    assert!(field.contains("field-error"), "{field}");
    assert!(html.contains(r#"value="/../etc""#));
    assert_eq!(
        app.get_json(CONNECTOR, &token).await["config"]["export_path"],
        "/import/orders"
    );

    // An SFTP config with secrets: the page says "set", never shows them.
    let secret = "Sup3r-Secret-Value-4411";
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"mode": "sftp", "host": "192.0.2.10", "username": "erp",
                    "password": secret, "export_path": "/in", "ack_path": "/out"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let html = browser.page("/ui/connector").await;
    assert!(!html.contains(secret), "a secret reached the page");
    assert!(html.contains("(set — leave empty to keep)"));
    assert!(html.contains(r#"type="password""#));
    // Saving the form without retyping the secret keeps it.
    let resp = browser
        .submit(
            "/ui/connector",
            "/ui/connector/dropzone-json-v1",
            &[
                ("mode", "sftp"),
                ("host", "192.0.2.10"),
                ("username", "erp"),
                ("export_path", "/in2"),
                ("intent", "save"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let stored = app.get_json(CONNECTOR, &token).await;
    assert_eq!(stored["config"]["export_path"], "/in2");
    assert_eq!(stored["secrets_set"], json!(["password"]));
    // Disable from the console.
    let resp = browser
        .submit(
            "/ui/connector",
            "/ui/connector/dropzone-json-v1/disable",
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(CONNECTOR, &token).await.status(),
        StatusCode::NOT_FOUND
    );
    let audit = browser.page("/ui/audit?action=connection.disabled").await;
    assert!(audit.contains("connection.disabled"));
    assert!(!audit.contains("connection.created"), "filter ignored");
}

/// The HTTP connector through the generated form: headers typed as JSON, PEM in a text area,
/// the generated signing secret shown on that one page only, the test showing the certificate.
#[tokio::test]
async fn the_connector_form_puts_mode_first_a_modes_fields_apart_and_secrets_last() {
    let app = spawn_app().await;
    let (_, admin, token) = app.org_with("acme", Role::Admin).await;
    std::fs::create_dir_all(app.dropzone_root.path().join("acme/in")).unwrap();
    let browser = Browser::sign_in(&app, "acme", admin.email.as_str()).await;
    let html = browser.page("/ui/connector").await;
    let at = |field: &str| {
        html.find(&format!(r#"id="f-dropzone-json-v1-{field}""#))
            .unwrap_or_else(|| panic!("no field {field}"))
    };
    let order = [
        "mode",
        "export_path",
        "ack_path",
        "format",
        "timeout_secs",
        "host",
        "port",
        "username",
        "host_key_fingerprint",
        "password",
        "private_key",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{} before {}", pair[0], pair[1]);
    }
    // The SFTP fields sit in a group of their own, after the shared ones.
    let group = html.find(r#"data-mode="sftp""#).expect("no sftp group");
    assert!(at("timeout_secs") < group && group < at("host"));
    assert!(!html[group..].contains(r#"id="f-dropzone-json-v1-export_path""#));
    // Labels are titles; the API name is beside each field.
    assert!(html.contains(r#"<label for="f-dropzone-json-v1-export_path">Export folder</label>"#));
    assert!(html.contains("<code>export_path</code>"));

    // SFTP fields typed before switching to filesystem are not sent.
    let resp = browser
        .submit(
            "/ui/connector",
            "/ui/connector/dropzone-json-v1",
            &[
                ("mode", "filesystem"),
                ("export_path", "/in"),
                ("host", "192.0.2.10"),
                ("username", "erp"),
                ("password", "typed-earlier"),
                ("intent", "save"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let stored = app.get_json(CONNECTOR, &token).await;
    assert_eq!(stored["config"]["mode"], "filesystem");
    assert!(
        stored["config"].get("host").is_none_or(Value::is_null),
        "{stored}"
    );
    assert_eq!(stored["secrets_set"], json!([]));
}

#[tokio::test]
async fn the_http_connector_form_shows_a_generated_secret_once() {
    use crate::common::http_erp::{HttpErp, Tls};
    let erp = HttpErp::start(Tls::Https).await;
    let app = crate::common::spawn_app_on(
        crate::common::TestDb::sqlite().await,
        &[("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24")],
    )
    .await;
    let (_, admin, token) = app.org_with("acme", Role::Admin).await;
    let browser = Browser::sign_in(&app, "acme", admin.email.as_str()).await;
    let page = browser.page("/ui/connector").await;
    assert!(
        page.contains(r#"<textarea id="f-http-json-v1-ca_certificate_pem""#),
        "PEM fields are text areas"
    );
    let url = erp.url(Tls::Https);
    let ca = erp.ca.pem();
    let fields = [
        ("url", url.as_str()),
        ("ca_certificate_pem", ca.as_str()),
        ("headers", r#"{"X-Api-Key": "console-key-991"}"#),
        ("ack_mode", "none"),
    ];
    let mut test = fields.to_vec();
    test.push(("intent", "test"));
    let html = browser
        .submit("/ui/connector", "/ui/connector/http-json-v1", &test)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Connection works") && html.contains("erp.test"),
        "{html}"
    );
    let mut save = fields.to_vec();
    save.push(("intent", "save"));
    let resp = browser
        .submit("/ui/connector", "/ui/connector/http-json-v1", &save)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    let start = html
        .find("whsec_")
        .expect("the generated secret is shown once");
    let secret: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "_+/=".contains(*c))
        .collect();
    assert!(!html.contains("console-key-991"));
    // Never again: not on the next page, not through the API.
    let later = browser.page("/ui/connector").await;
    assert!(!later.contains(&secret) && !later.contains("console-key-991"));
    let details = app
        .get("/api/v1/connectors/http-json-v1", &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(!details.contains(&secret));
    // The secret shown is the one deliveries are signed with, the header the one typed.
    let id = approved_draft(&app, &token).await;
    app.post_empty(&format!("/api/v1/draft-orders/{id}/push"), &token)
        .await;
    app.deliver_all().await;
    let got = erp.received();
    let last = got.last().unwrap();
    assert_eq!(last.headers["x-api-key"], "console-key-991");
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&last.body, &last.headers)
        .unwrap();
}

/// Direction controls in an order's text are shown as visible markers, never applied: they
/// could make a page show a different order number than the one stored.
#[tokio::test]
async fn bidi_controls_in_order_text_are_shown_not_applied() {
    let app = crate::common::spawn_app().await;
    let (_, user, token) = app.org_with("acme", Role::Admin).await;
    let body = serde_json::json!({"external_order_number": "PO-1\u{202E}9876",
        "customer": {"name": "Acme \u{2067}Ltd\u{2069}"},
        "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE",
                   "description": "abc\u{202D}def"}]});
    let resp = app.post_json("/api/v1/draft-orders", &token, &body).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = Browser::sign_in(&app, "acme", user.email.as_str()).await;
    for path in [format!("/ui/drafts/{id}"), "/ui/drafts".to_owned()] {
        let html = browser.page(&path).await;
        for raw in ['\u{202E}', '\u{2067}', '\u{202D}'] {
            assert!(!html.contains(raw), "{path} carries {raw:?} unmarked");
        }
        assert!(html.contains("PO-1⟦U+202E⟧9876"), "{path}");
    }
}

/// While the org's ERP cannot be reached, the orders and exports pages say so; OPS may close
/// the circuit by hand ("Retry now", audited), a viewer only sees the banner.
#[tokio::test]
async fn an_open_circuit_shows_a_banner_and_ops_can_retry_now() {
    use crate::common::http_erp::{Answer, HttpErp, Tls};
    let erp = HttpErp::start(Tls::Https).await;
    erp.script([Answer::Status(
        503,
        "maintenance".into(),
        vec![("retry-after".into(), "600".into())],
    )]);
    let app = crate::common::spawn_app_on(
        crate::common::TestDb::sqlite().await,
        &[("CONNECTOR_BLOCKED_NETWORKS", "192.0.2.0/24")],
    )
    .await;
    let (org, _, admin) = app.org_with("acme", Role::Admin).await;
    let config = json!({"url": erp.url(Tls::Https), "ca_certificate_pem": erp.ca.pem()});
    let resp = app
        .post_json("/api/v1/connectors/http-json-v1", &admin, &config)
        .await;
    assert_eq!(resp.status(), 200);
    let id = approved_draft(&app, &admin).await;
    let resp = app
        .post_empty(&format!("/api/v1/draft-orders/{id}/push"), &admin)
        .await;
    assert_eq!(resp.status(), 202);
    app.deliver_all().await;

    let ops = app.user(&org, "ops@acme.test", Role::Ops).await;
    let viewer = app.user(&org, "viewer@acme.test", Role::Viewer).await;
    let as_viewer = Browser::sign_in(&app, "acme", viewer.email.as_str()).await;
    for path in ["/ui/drafts", "/ui/exports"] {
        let html = as_viewer.page(path).await;
        assert!(
            html.contains("Connection health") && html.contains("status-open"),
            "{path}"
        );
        assert!(!html.contains("Retry now"), "a viewer is offered Retry now");
    }
    let as_ops = Browser::sign_in(&app, "acme", ops.email.as_str()).await;
    assert!(as_ops.page("/ui/exports").await.contains("Retry now"));
    let resp = as_ops
        .submit("/ui/exports", "/ui/health/retry-now", &[])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let health = &app
        .get_json("/api/v1/connectors/http-json-v1", &admin)
        .await["health"];
    assert_eq!(health["state"], "healthy", "{health}");
    assert!(
        !as_ops
            .page("/ui/drafts")
            .await
            .contains("Connection health")
    );
    // The export goes out at once now.
    app.deliver_all().await;
    let draft = app
        .get_json(&format!("/api/v1/draft-orders/{id}"), &admin)
        .await;
    assert_eq!(draft["status"], "PUSHED", "{draft}");
    let audit = app
        .get_json("/api/v1/audit-log?action=CIRCUIT_RESET", &admin)
        .await;
    assert_eq!(audit["items"][0]["actor"], "ops@acme.test");
}

//! `orderflow serve`, `orderflow worker` and `orderflow quickstart`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;

use super::admin::load_settings;
use super::dotenv::{DOTENV_PATH, write_dotenv};
use crate::api::{AppState, Application};
use crate::app::App;
use crate::auth::token::DEFAULT_TTL_SECS;
use crate::config::{LogFormat, Settings};
use crate::crypto::SecretString;
use crate::domain::audit::Actor;
use crate::domain::user::Role;
use crate::service::{ServiceError, accounts};
use crate::telemetry;
use crate::workers::Workers;

/// The demo org quickstart creates.
const DEMO_SLUG: &str = "demo";
/// Its admin.
const DEMO_ADMIN: &str = "admin@demo.local";

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown requested");
}

async fn run(app: Arc<App>, on_bound: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let settings = &app.settings;
    let server = Application::bind(
        settings.http.bind_addr,
        AppState::from(app.clone()),
        settings.http.request_timeout,
        settings.http.limits,
    )
    .await
    .with_context(|| format!("cannot listen on {}", settings.http.bind_addr))?;
    let addr = server.local_addr()?;
    let workers = Workers::spawn(app.clone());
    tracing::info!(%addr, "listening");
    on_bound(addr);
    let served = server.run_until(shutdown_signal()).await;
    workers.shutdown(settings.http.limits.shutdown_grace).await;
    app.store.close().await;
    served.context("server failed")
}

/// Builds the application (database, migrations, key check) from loaded settings.
pub(super) async fn build_app(settings: Settings) -> anyhow::Result<Arc<App>> {
    App::build(settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `orderflow serve`.
pub(super) async fn serve() -> anyhow::Result<()> {
    let settings = load_settings()?;
    telemetry::init_logging(settings.log_format);
    run(build_app(settings).await?, |_| {}).await
}

/// `orderflow worker`: the background workers without HTTP.
pub(super) async fn worker() -> anyhow::Result<()> {
    let settings = load_settings()?;
    telemetry::init_logging(settings.log_format);
    let app = build_app(settings).await?;
    let workers = Workers::spawn(app.clone());
    tracing::info!("worker started");
    shutdown_signal().await;
    workers
        .shutdown(app.settings.http.limits.shutdown_grace)
        .await;
    app.store.close().await;
    Ok(())
}

fn random_password() -> SecretString {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::new(hex::encode(bytes))
}

/// `orderflow quickstart`: everything a newcomer needs, then serve.
pub(super) async fn quickstart() -> anyhow::Result<()> {
    if write_dotenv(Path::new(DOTENV_PATH))? {
        eprintln!("wrote {DOTENV_PATH} with fresh secrets");
    }
    dotenvy::from_path(DOTENV_PATH).with_context(|| format!("cannot read {DOTENV_PATH}"))?;
    let mut settings = load_settings()?;
    if std::env::var_os("LOG_FORMAT").is_none() {
        settings.log_format = LogFormat::Pretty;
    }
    telemetry::init_logging(settings.log_format);
    let export_dir = settings
        .connectors
        .dropzone_fs_root
        .join(DEMO_SLUG)
        .join("import/orders");
    let app = build_app(settings).await?;
    let store = app.store.clone();

    let org = match accounts::create_org(store.as_ref(), DEMO_SLUG, "Demo Org").await {
        Ok(org) => org,
        Err(ServiceError::Conflict(_)) => accounts::org_by_slug(store.as_ref(), DEMO_SLUG).await?,
        Err(e) => return Err(e.into()),
    };
    let password = random_password();
    let shown = password.expose().clone();
    match accounts::create_user(
        store.as_ref(),
        &org,
        DEMO_ADMIN,
        Role::Admin,
        password,
        Actor::cli(),
    )
    .await
    {
        Ok(_) => eprintln!("created {DEMO_ADMIN} in org {DEMO_SLUG} with password {shown}"),
        Err(ServiceError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(&export_dir)
        .with_context(|| format!("cannot create {}", export_dir.display()))?;
    let token = accounts::issue_token(
        store.as_ref(),
        &app.tokens,
        &org,
        DEMO_ADMIN,
        DEFAULT_TTL_SECS,
    )
    .await?;

    run(app, move |addr| {
        println!("{}", banner(addr, &token));
    })
    .await
}

fn banner(addr: SocketAddr, token: &str) -> String {
    let base = format!("http://{addr}");
    format!(
        "\nOrderFlow Connect is listening on {base}\n\
         Admin console: {base}/ui/ (org `{DEMO_SLUG}`, {DEMO_ADMIN}, the password printed when the account was created)\n\
         Admin token for org `{DEMO_SLUG}` (valid 1 hour; `orderflow token issue --org {DEMO_SLUG} --email {DEMO_ADMIN}` makes another):\n\
         export T={token}\n\n\
         Try it:\n\
         curl -s {base}/api/v1/me -H \"Authorization: Bearer $T\"\n\
         curl -s -X POST {base}/api/v1/connectors/dropzone-json-v1 -H \"Authorization: Bearer $T\" -H \"Content-Type: application/json\" -d '{{\"mode\":\"filesystem\",\"export_path\":\"/import/orders\",\"test_on_save\":true}}'\n\
         curl -s -X POST {base}/api/v1/connectors/dropzone-json-v1/test -H \"Authorization: Bearer $T\"\n"
    )
}

//! `orderflow serve` and `orderflow quickstart`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;

use super::admin::{load_settings, open_store};
use super::dotenv::{DOTENV_PATH, write_dotenv};
use crate::api::{AppState, Application};
use crate::auth::TokenIssuer;
use crate::auth::token::DEFAULT_TTL_SECS;
use crate::config::{LogFormat, Settings};
use crate::crypto::SecretString;
use crate::domain::audit::Actor;
use crate::domain::user::Role;
use crate::service::{ServiceError, accounts};
use crate::store::Store;
use crate::telemetry;

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

async fn run(
    settings: Settings,
    store: Arc<dyn Store>,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let state = AppState::new(&settings, store.clone());
    // Idle SFTP sessions are closed even when no export comes along to notice.
    let pool = state.connections.sftp_pool().clone();
    let reaper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tick.tick().await;
            pool.prune();
        }
    });
    let app = Application::bind(settings.bind_addr, state, settings.request_timeout)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind_addr))?;
    let addr = app.local_addr()?;
    tracing::info!(%addr, "listening");
    on_bound(addr);
    app.run_until(shutdown_signal())
        .await
        .context("server failed")?;
    reaper.abort();
    store.close().await;
    Ok(())
}

/// `orderflow serve`.
pub(super) async fn serve() -> anyhow::Result<()> {
    let settings = load_settings()?;
    telemetry::init_logging(settings.log_format);
    let store = open_store(&settings.database.url).await?;
    run(settings, store, |_| {}).await
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
    let store = open_store(&settings.database.url).await?;

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
    let export_dir = settings
        .dropzone_fs_root
        .join(DEMO_SLUG)
        .join("import/orders");
    std::fs::create_dir_all(&export_dir)
        .with_context(|| format!("cannot create {}", export_dir.display()))?;
    let tokens = TokenIssuer::new(&settings.jwt_secret);
    let token =
        accounts::issue_token(store.as_ref(), &tokens, &org, DEMO_ADMIN, DEFAULT_TTL_SECS).await?;

    run(settings, store, move |addr| {
        println!("{}", banner(addr, &token));
    })
    .await
}

fn banner(addr: SocketAddr, token: &str) -> String {
    let base = format!("http://{addr}");
    format!(
        "\nOrderFlow Connect is listening on {base}\n\
         Admin token for org `{DEMO_SLUG}` (valid 1 hour; `orderflow token issue --org {DEMO_SLUG} --email {DEMO_ADMIN}` makes another):\n\
         export T={token}\n\n\
         Try it:\n\
         curl -s {base}/api/v1/me -H \"Authorization: Bearer $T\"\n\
         curl -s -X POST {base}/api/v1/connectors/dropzone-json-v1 -H \"Authorization: Bearer $T\" -H \"Content-Type: application/json\" -d '{{\"mode\":\"filesystem\",\"export_path\":\"/import/orders\",\"test_on_save\":true}}'\n\
         curl -s -X POST {base}/api/v1/connectors/dropzone-json-v1/test -H \"Authorization: Bearer $T\"\n"
    )
}

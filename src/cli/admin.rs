//! Bootstrap commands that talk to the database directly: migrate, org, user, token.

use std::io::BufRead;
use std::sync::Arc;

use anyhow::Context;

use crate::auth::TokenIssuer;
use crate::config::{self, Settings};
use crate::crypto::SecretString;
use crate::domain::audit::Actor;
use crate::domain::user::Role;
use crate::service::accounts;
use crate::store::{self, Store};

/// Loads and validates every setting (both secrets required).
pub(crate) fn load_settings() -> anyhow::Result<Settings> {
    Settings::from_env().map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

/// Opens the database and applies migrations.
pub(super) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::connect(url)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// `orderflow migrate`: needs only DATABASE_URL, so it can run before secrets are provisioned.
pub(super) async fn migrate() -> anyhow::Result<()> {
    let db = config::database_settings(&|k| std::env::var(k).ok());
    let store = open_store(&db.url).await?;
    store.close().await;
    eprintln!("migrations applied");
    Ok(())
}

pub(super) async fn org_create(slug: &str, name: &str) -> anyhow::Result<()> {
    let settings = load_settings()?;
    let store = open_store(&settings.database.url).await?;
    let org = accounts::create_org(store.as_ref(), slug, name).await?;
    println!("{}", org.id);
    store.close().await;
    Ok(())
}

fn read_password() -> anyhow::Result<SecretString> {
    if let Ok(pw) = std::env::var("ORDERFLOW_PASSWORD") {
        return Ok(SecretString::new(pw));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = SecretString::new(line.trim_end_matches(['\r', '\n']).to_owned());
    zeroize::Zeroize::zeroize(&mut line);
    Ok(password)
}

pub(super) async fn user_create(org: &str, email: &str, role: &str) -> anyhow::Result<()> {
    let settings = load_settings()?;
    let role: Role = role.parse()?;
    let password = read_password()?;
    let store = open_store(&settings.database.url).await?;
    let org = accounts::org_by_slug(store.as_ref(), org).await?;
    let user =
        accounts::create_user(store.as_ref(), &org, email, role, password, Actor::cli()).await?;
    println!("{}", user.id);
    store.close().await;
    Ok(())
}

pub(super) async fn user_disable(org: &str, email: &str) -> anyhow::Result<()> {
    let settings = load_settings()?;
    let store = open_store(&settings.database.url).await?;
    let org = accounts::org_by_slug(store.as_ref(), org).await?;
    let user = accounts::disable_user(store.as_ref(), &org, email).await?;
    eprintln!("disabled {}", user.email);
    store.close().await;
    Ok(())
}

pub(super) async fn token_issue(org: &str, email: &str, ttl: u64) -> anyhow::Result<()> {
    let settings = load_settings()?;
    let store = open_store(&settings.database.url).await?;
    let org = accounts::org_by_slug(store.as_ref(), org).await?;
    let tokens = TokenIssuer::new(&settings.jwt_secret);
    let token = accounts::issue_token(store.as_ref(), &tokens, &org, email, ttl).await?;
    println!("{token}");
    store.close().await;
    Ok(())
}

//! `keys rotate` and `connector decrypt`: operator commands over encrypted configs.

use std::sync::Arc;

use uuid::Uuid;

use super::admin::{load_settings, open_store};
use crate::connectors::{ConnectorEnv, Registry};
use crate::service::connections::ConnectionService;

async fn service() -> anyhow::Result<(ConnectionService, Arc<dyn crate::store::Store>)> {
    let settings = load_settings()?;
    let store = open_store(&settings.database.url).await?;
    let service = ConnectionService::new(
        store.clone(),
        Arc::new(settings.keyring.clone()),
        Arc::new(Registry::default()),
        Arc::new(ConnectorEnv::from_settings(&settings)),
    );
    Ok((service, store))
}

/// Prints `rewrote N of M configs`; fails if some config no key can open.
pub(super) async fn rotate() -> anyhow::Result<()> {
    let (service, store) = service().await?;
    let report = service.rotate_keys().await?;
    println!("rewrote {} of {} configs", report.rewrote, report.total);
    store.close().await;
    if report.unreadable.is_empty() {
        Ok(())
    } else {
        let ids: Vec<String> = report.unreadable.iter().map(Uuid::to_string).collect();
        anyhow::bail!(
            "{} config(s) could not be decrypted with any configured key: {}",
            ids.len(),
            ids.join(", ")
        )
    }
}

/// Prints the decrypted config JSON.
pub(super) async fn decrypt(id: Uuid) -> anyhow::Result<()> {
    let (service, store) = service().await?;
    let config = service.decrypt_for_operator(id).await?;
    println!("{}", serde_json::to_string_pretty(config.fields())?);
    store.close().await;
    Ok(())
}

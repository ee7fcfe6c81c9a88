//! `keys rotate` and `connector decrypt`: operator commands over encrypted configs.

use uuid::Uuid;

use super::admin::load_settings;
use super::serve::build_app;

/// Prints `rewrote N of M configs`; fails if some config no key can open.
pub(super) async fn rotate() -> anyhow::Result<()> {
    let app = build_app(load_settings()?).await?;
    let report = app.connections.rotate_keys().await?;
    println!("rewrote {} of {} configs", report.rewrote, report.total);
    app.store.close().await;
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
    let app = build_app(load_settings()?).await?;
    let config = app.connections.decrypt_for_operator(id).await?;
    println!("{}", serde_json::to_string_pretty(config.fields())?);
    app.store.close().await;
    Ok(())
}

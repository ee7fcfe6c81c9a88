//! Dropzone logic, written once for every transport: publishing a file exactly once, and the
//! connection test that rehearses it.

use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::config::DropzoneConfig;
use crate::connectors::transport::{Transport, join};
use crate::connectors::{ConnectorError, ErrorCode};

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The final path.
    pub path: String,
    /// True when an identical file was already there.
    pub already_present: bool,
}

/// Writes `bytes` as `dir/name` so the ERP never sees a partial file and a repeated delivery
/// never produces a second or different file:
/// - the final name exists with the same SHA-256: already delivered, nothing is written;
/// - it exists with other content: `FILE_EXISTS_DIFFERENT`;
/// - else, with `atomic`, write `name.tmp` and rename it; without, write the final name.
///
/// A `.tmp` left by a failure is removed when the connection still allows it.
pub async fn publish(
    transport: &dyn Transport,
    dir: &str,
    name: &str,
    bytes: &[u8],
    atomic: bool,
) -> Result<Published, ConnectorError> {
    let path = join(dir, name);
    // Hashed only when there is something to compare with: for a 100 MiB file the hash costs
    // as much as a fifth of the upload.
    let digest = || -> [u8; 32] { Sha256::digest(bytes).into() };
    if let Some(existing) = transport.sha256_if_exists(&path).await? {
        return same_or_conflict(path, existing == digest());
    }
    if !atomic {
        transport.write_file(&path, bytes).await?;
        return Ok(Published {
            path,
            already_present: false,
        });
    }
    let tmp = format!("{path}.tmp");
    let written = match transport.write_file(&tmp, bytes).await {
        Ok(()) => transport.rename(&tmp, &path).await,
        Err(err) => Err(err),
    };
    match written {
        Ok(()) => Ok(Published {
            path,
            already_present: false,
        }),
        Err(err) => {
            let _ = transport.delete(&tmp).await;
            // A concurrent delivery of the same export may have won the rename.
            if err.code != ErrorCode::ConnectionLost
                && let Ok(Some(existing)) = transport.sha256_if_exists(&path).await
            {
                return same_or_conflict(path, existing == digest());
            }
            Err(err)
        }
    }
}

fn same_or_conflict(path: String, same: bool) -> Result<Published, ConnectorError> {
    if same {
        Ok(Published {
            path,
            already_present: true,
        })
    } else {
        Err(ConnectorError::with_detail(
            ErrorCode::FileExistsDifferent,
            path,
        ))
    }
}

/// The connection test: write `test_connection_<ts>_<rand>.json` exactly as an export would be
/// written, delete it, and list `ack_path` if set.
pub async fn rehearse(
    transport: &dyn Transport,
    config: &DropzoneConfig,
) -> Result<(), ConnectorError> {
    let now = Utc::now();
    let mut rand = [0u8; 4];
    rand::rng().fill_bytes(&mut rand);
    let name = format!(
        "test_connection_{}_{}.json",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(rand)
    );
    let body = serde_json::json!({
        "orderflow_connection_test": true,
        "created_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "note": "Written by OrderFlow Connect to test the connection; deleted right away. Not an order."
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let published = publish(
        transport,
        &config.export_path,
        &name,
        &bytes,
        config.atomic_write(),
    )
    .await?;
    transport.delete(&published.path).await?;
    if let Some(ack) = &config.ack_path {
        transport.list(ack).await?;
    }
    Ok(())
}

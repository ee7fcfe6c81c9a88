//! The dropzone's acknowledgement folder: the ERP writes `ack_`/`error_` files into
//! `ack_path`; handled ones move to `processed/` or `error/` beside them. Written once for every
//! transport, like publishing.

use std::collections::HashSet;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::DropzoneTransport;
use crate::connectors::transport::join;
use crate::connectors::{AckFolder, AckInbox, ConnectorError, ErrorCode};
use crate::domain::ack::suffixed;

/// How many suffixes are tried before giving up on a name (an ERP writing the same ack file
/// a hundred times is a loop worth reporting).
const MAX_SUFFIX: u32 = 100;

/// `ack_path` on the connection's transport.
pub struct DropzoneInbox {
    transport: DropzoneTransport,
    ack_path: String,
    created: Mutex<HashSet<AckFolder>>,
}

impl DropzoneInbox {
    /// The inbox at `ack_path`.
    pub(crate) fn new(transport: DropzoneTransport, ack_path: String) -> Self {
        Self {
            transport,
            ack_path,
            created: Mutex::new(HashSet::new()),
        }
    }

    async fn folder(&self, to: AckFolder) -> Result<String, ConnectorError> {
        let dir = join(&self.ack_path, to.name());
        let mut created = self.created.lock().await;
        if !created.contains(&to) {
            self.transport.as_dyn().create_dir(&dir).await?;
            created.insert(to);
        }
        Ok(dir)
    }
}

#[async_trait]
impl AckInbox for DropzoneInbox {
    async fn list(&self) -> Result<Vec<String>, ConnectorError> {
        self.transport.as_dyn().list(&self.ack_path).await
    }

    async fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        self.transport
            .as_dyn()
            .read_limited(&join(&self.ack_path, name), limit)
            .await
    }

    async fn settle(&self, name: &str, to: AckFolder) -> Result<String, ConnectorError> {
        let dir = self.folder(to).await?;
        let from = join(&self.ack_path, name);
        let transport = self.transport.as_dyn();
        // Move first and look only when that fails: one round trip per file in the usual case.
        for attempt in 0..MAX_SUFFIX {
            let target = join(&dir, &suffixed(name, attempt));
            match transport.move_no_replace(&from, &target).await {
                Ok(()) => return Ok(target),
                Err(err) => {
                    if !transport.exists(&from).await? {
                        // Someone else (another poller, the ERP) took it away.
                        return Err(err);
                    }
                    if !transport.exists(&target).await? {
                        return Err(err);
                    }
                    // That name is taken in the target folder: try the next suffix.
                }
            }
        }
        Err(ConnectorError::with_detail(
            ErrorCode::IoError,
            format!("{name}: {MAX_SUFFIX} files of that name already in {dir}"),
        ))
    }
}

//! The export archive: every export file as delivered, in object storage (`object_store`):
//! a local folder (`file://DIR`, an object with key K is the file `DIR/K`) or an S3-compatible
//! bucket (`s3://BUCKET`, settings from the usual `AWS_*` variables, custom endpoint allowed).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::ObjectStorage;

/// Archive access failed.
#[derive(Debug, thiserror::Error)]
#[error("object storage: {0}")]
pub struct ArchiveError(String);

impl From<object_store::Error> for ArchiveError {
    fn from(err: object_store::Error) -> Self {
        ArchiveError(err.to_string())
    }
}

/// Where export files are archived.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs (`file:///var/…` or `s3://bucket`).
    location: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("location", &self.location)
            .finish()
    }
}

impl Archive {
    /// Opens the configured storage; a local folder is created if missing.
    pub fn open(storage: &ObjectStorage) -> Result<Self, ArchiveError> {
        match storage {
            ObjectStorage::Filesystem(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ArchiveError(format!("cannot create {}: {e}", dir.display())))?;
                let store = LocalFileSystem::new_with_prefix(dir)?;
                Ok(Self {
                    store: Arc::new(store),
                    location: format!("file://{}", dir.display()),
                })
            }
            ObjectStorage::S3 { bucket } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                // A custom endpoint on plain http (MinIO, moto, a local gateway) is a deliberate
                // operator choice; allow it without a second variable.
                if std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .is_ok_and(|e| e.starts_with("http://"))
                {
                    builder = builder.with_allow_http(true);
                }
                Ok(Self {
                    store: Arc::new(builder.build()?),
                    location: format!("s3://{bucket}"),
                })
            }
        }
    }

    /// Stores `bytes` under `key`, replacing what was there (an export's bytes never change,
    /// so a retry writes the same object again).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The bytes under `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, ArchiveError> {
        let result = self.store.get(&Path::from(key)).await?;
        Ok(result.bytes().await?.to_vec())
    }

    /// Where the archive is, for logs.
    pub fn location(&self) -> &str {
        &self.location
    }
}

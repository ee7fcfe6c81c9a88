//! Where dropzone files go. A [`Transport`] offers the handful of file operations the dropzone
//! logic needs; `filesystem` and `sftp` implement it, so publishing, hashing and listing are
//! written once (in `dropzone_json_v1::dropzone`).
//!
//! Paths are the connector's view: absolute, `/`-separated (for `filesystem`, `/` is the
//! org's own folder).

pub mod filesystem;
pub mod sftp;

use async_trait::async_trait;

use super::ConnectorError;

/// SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// File operations on a dropzone.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Creates or truncates `path` and writes `bytes`; durable when it returns.
    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ConnectorError>;
    /// Renames `from` to `to` atomically (publishing a finished `.tmp`).
    async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError>;
    /// Moves `from` to `to`, failing rather than replacing an existing `to`.
    async fn move_no_replace(&self, from: &str, to: &str) -> Result<(), ConnectorError>;
    /// The SHA-256 of `path`'s content, or None if it does not exist.
    async fn sha256_if_exists(&self, path: &str) -> Result<Option<Sha256Digest>, ConnectorError>;
    /// Names of the regular files in `dir`.
    async fn list(&self, dir: &str) -> Result<Vec<String>, ConnectorError>;
    /// The content of `path`.
    async fn read(&self, path: &str) -> Result<Vec<u8>, ConnectorError>;
    /// The content of `path`, or None when it is larger than `limit` bytes (then it is not
    /// read at all).
    async fn read_limited(&self, path: &str, limit: u64)
    -> Result<Option<Vec<u8>>, ConnectorError>;
    /// Whether `path` exists.
    async fn exists(&self, path: &str) -> Result<bool, ConnectorError>;
    /// Deletes `path`.
    async fn delete(&self, path: &str) -> Result<(), ConnectorError>;
    /// Creates `dir` if it does not exist (its parent must exist).
    async fn create_dir(&self, dir: &str) -> Result<(), ConnectorError>;
}

/// Joins a directory and a file name in connector path syntax.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn join_handles_root_and_nested_dirs() {
        assert_eq!(super::join("/", "a.json"), "/a.json");
        assert_eq!(super::join("/in/orders", "a.json"), "/in/orders/a.json");
    }
}

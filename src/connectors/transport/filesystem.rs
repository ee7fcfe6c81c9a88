//! The `filesystem` transport: an org's folder under `DROPZONE_FS_ROOT`, opened as a
//! capability (`cap-std`), so no path — `..`, absolute, or a symlink pointing out — can reach
//! anything outside it, even if the tree changes between our checks and our writes.
//!
//! Writes are durable: the file is fsynced before it is renamed, and its directory after, so a
//! power loss never leaves a final name with partial content.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};

use super::{Sha256Digest, Transport};
use crate::connectors::{ConnectorError, ErrorCode};
use crate::domain::FieldError;

/// One org's dropzone folder.
#[derive(Clone)]
pub struct FilesystemTransport {
    dir: Arc<Dir>,
}

impl std::fmt::Debug for FilesystemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilesystemTransport")
    }
}

/// The org's folder: `<root>/<slug>`.
pub fn org_root(root: &Path, org_slug: &str) -> PathBuf {
    root.join(org_slug)
}

fn map_io(err: io::Error, path: &str) -> ConnectorError {
    match err.kind() {
        io::ErrorKind::NotFound => ConnectorError::with_detail(ErrorCode::PathNotFound, path),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            // cap-std reports an escape (a symlink leading out) as PermissionDenied too.
            if err.to_string().contains("outside") {
                ConnectorError::with_detail(
                    ErrorCode::PermissionDenied,
                    format!("{path} leads outside the org's dropzone folder"),
                )
            } else {
                ConnectorError::with_detail(ErrorCode::PermissionDenied, path)
            }
        }
        io::ErrorKind::AlreadyExists => {
            ConnectorError::with_detail(ErrorCode::IoError, format!("{path} already exists"))
        }
        _ => ConnectorError::with_detail(ErrorCode::IoError, format!("{path}: {err}")),
    }
}

/// The relative form of a connector path (`/a/b` → `a/b`; `/` → `.`).
fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() { "." } else { rel }
}

fn parent(path: &str) -> &str {
    match relative(path).rsplit_once('/') {
        Some((dir, _)) => dir,
        None => ".",
    }
}

impl FilesystemTransport {
    /// Opens (creating if needed) the org's folder under `root`.
    pub async fn open(root: &Path, org_slug: &str) -> Result<Self, ConnectorError> {
        let path = org_root(root, org_slug);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&path).map_err(|e| map_io(e, "/"))?;
            Dir::open_ambient_dir(&path, ambient_authority()).map_err(|e| map_io(e, "/"))
        })
        .await
        .map_err(|e| ConnectorError::with_detail(ErrorCode::IoError, e))?
        .map(|dir| Self { dir: Arc::new(dir) })
    }

    /// Runs blocking filesystem work off the async threads.
    async fn blocking<T, F>(&self, path: &str, work: F) -> Result<T, ConnectorError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> io::Result<T> + Send + 'static,
    {
        let dir = self.dir.clone();
        let shown = path.to_owned();
        tokio::task::spawn_blocking(move || work(&dir))
            .await
            .map_err(|e| ConnectorError::with_detail(ErrorCode::IoError, e))?
            .map_err(|e| map_io(e, &shown))
    }
}

/// fsyncs a directory so a rename in it survives a power loss. (`open_dir` would give an
/// `O_PATH` handle, which cannot be fsynced; a read-only open of the directory can.)
fn sync_dir(dir: &Dir, rel_dir: &str) -> io::Result<()> {
    dir.open(rel_dir)?.sync_all()
}

#[async_trait]
impl Transport for FilesystemTransport {
    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        let rel = relative(path).to_owned();
        let bytes = bytes.to_vec();
        self.blocking(path, move |dir| {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            let mut file = dir.open_with(&rel, &options)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        let (from_rel, to_rel) = (relative(from).to_owned(), relative(to).to_owned());
        let to_dir = parent(to).to_owned();
        self.blocking(to, move |dir| {
            dir.rename(&from_rel, dir, &to_rel)?;
            sync_dir(dir, &to_dir)
        })
        .await
    }

    async fn move_no_replace(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        let (from_rel, to_rel) = (relative(from).to_owned(), relative(to).to_owned());
        let to_dir = parent(to).to_owned();
        // link(2) refuses an existing target, which rename(2) would silently replace.
        self.blocking(to, move |dir| {
            dir.hard_link(&from_rel, dir, &to_rel)?;
            dir.remove_file(&from_rel)?;
            sync_dir(dir, &to_dir)
        })
        .await
    }

    async fn sha256_if_exists(&self, path: &str) -> Result<Option<Sha256Digest>, ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| {
            let mut file = match dir.open(&rel) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(Some(hasher.finalize().into()))
        })
        .await
    }

    async fn list(&self, dir_path: &str) -> Result<Vec<String>, ConnectorError> {
        let rel = relative(dir_path).to_owned();
        self.blocking(dir_path, move |dir| {
            let mut names = Vec::new();
            for entry in dir.read_dir(&rel)? {
                let entry = entry?;
                if entry.file_type()?.is_file()
                    && let Some(name) = entry.file_name().to_str()
                {
                    names.push(name.to_owned());
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>, ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| dir.read(&rel)).await
    }

    async fn read_limited(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| {
            let mut file = dir.open(&rel)?;
            if file.metadata()?.len() > limit {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            // Bounded even if the file grows while it is read.
            (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
            Ok((bytes.len() as u64 <= limit).then_some(bytes))
        })
        .await
    }

    async fn exists(&self, path: &str) -> Result<bool, ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| match dir.symlink_metadata(&rel) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| dir.remove_file(&rel)).await
    }

    async fn create_dir(&self, dir_path: &str) -> Result<(), ConnectorError> {
        let rel = relative(dir_path).to_owned();
        self.blocking(dir_path, move |dir| match dir.create_dir(&rel) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        })
        .await
    }
}

/// Save-time check that `path` (a validated connector path) stays inside the org's folder:
/// every existing component is inspected and a symlink whose target leaves the folder is
/// refused. Writes are confined by the capability anyway; this gives the user a 422 up front.
pub fn check_confined(
    root: &Path,
    org_slug: &str,
    field: &str,
    path: &str,
) -> Result<(), FieldError> {
    let escape = || FieldError::new(field, "leads outside the org's dropzone folder");
    let base = org_root(root, org_slug);
    let Ok(base_real) = base.canonicalize() else {
        // The org folder does not exist yet: nothing inside it can be a symlink.
        return Ok(());
    };
    let mut current = base.clone();
    for component in Path::new(relative(path)).components() {
        match component {
            Component::Normal(part) => current.push(part),
            Component::CurDir => continue,
            _ => return Err(escape()),
        }
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                // Writes go through a capability handle that refuses every absolute symlink,
                // even one pointing back inside; refusing it here says so at save time.
                let link = std::fs::read_link(&current).map_err(|_| escape())?;
                if link.is_absolute() {
                    return Err(FieldError::new(
                        field,
                        "passes through a symlink with an absolute target; use a relative one",
                    ));
                }
                let target = current.canonicalize().map_err(|_| escape())?;
                if !target.starts_with(&base_real) {
                    return Err(escape());
                }
            }
            Ok(_) => {}
            // Missing from here on: the test will report PATH_NOT_FOUND, not a 422.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

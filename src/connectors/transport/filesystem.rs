//! The `filesystem` transport: an org's folder under `DROPZONE_FS_ROOT`, opened as a
//! capability (`cap-std`), so no path — `..`, absolute, or a symlink pointing out — can reach
//! anything outside it, even if the tree changes between our checks and our writes.
//!
//! Writes are durable: the file is fsynced before it is renamed, and its directory after, so a
//! power loss never leaves a final name with partial content.
//!
//! The folder is shared with the tenant and its ERP, who can put anything there. Files are
//! opened non-blocking and checked on the handle to be regular files (directories where a
//! directory is meant), so a named pipe or a device never blocks a thread — even one swapped
//! in between a listing and the open. Every operation runs on a blocking thread under the
//! org's own lane (a few threads at most) and within the config's timeout: an operation that
//! hangs anyway (a dead network mount) costs its own org a thread of its lane, never the
//! process's shared blocking pool, and a retry waits for the lane instead of leaving another
//! thread behind.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{Sha256Digest, Transport};
use crate::connectors::{ConnectorError, ErrorCode};
use crate::domain::FieldError;

/// Blocking file operations one org may have running at once (timed-out ones included, until
/// their threads return).
pub const LANE_THREADS: usize = 4;

/// Per-org lanes for blocking file work, shared by every transport of the process.
#[derive(Debug, Default)]
pub struct Lanes(Mutex<HashMap<String, Arc<Semaphore>>>);

impl Lanes {
    /// The lane of one org's folder.
    pub fn of(&self, org_slug: &str) -> Arc<Semaphore> {
        let mut lanes = match self.0.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes
            .entry(org_slug.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(LANE_THREADS)))
            .clone()
    }
}

/// One org's dropzone folder.
#[derive(Clone)]
pub struct FilesystemTransport {
    dir: Arc<Dir>,
    lane: Arc<Semaphore>,
    timeout: Duration,
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

/// `O_NONBLOCK`: opening a FIFO never waits for its other end (a write-only open with no
/// reader fails at once; a read-only open returns at once and the type check refuses it).
/// For regular files it changes nothing.
fn nonblocking(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
}

fn not_regular(what: &str) -> io::Error {
    io::Error::other(format!("is not a regular {what}"))
}

/// Opens an existing regular file for reading; anything else is refused without blocking.
fn open_regular(dir: &Dir, rel: &str) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    let file = dir.open_with(rel, nonblocking(&mut options))?;
    if !file.metadata()?.is_file() {
        return Err(not_regular("file"));
    }
    Ok(file)
}

impl FilesystemTransport {
    /// Opens (creating if needed) the org's folder under `root`; every operation runs in
    /// `lane` and gives up after `timeout`.
    pub async fn open(
        root: &Path,
        org_slug: &str,
        lane: Arc<Semaphore>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let path = org_root(root, org_slug);
        let dir = run_in_lane(&lane, timeout, "/", move || {
            std::fs::create_dir_all(&path)?;
            let dir = Dir::open_ambient_dir(&path, ambient_authority())?;
            if !dir.dir_metadata()?.is_dir() {
                return Err(not_regular("folder"));
            }
            Ok(dir)
        })
        .await?;
        Ok(Self {
            dir: Arc::new(dir),
            lane,
            timeout,
        })
    }

    /// Runs blocking filesystem work off the async threads, in the org's lane, within the
    /// timeout.
    async fn blocking<T, F>(&self, path: &str, work: F) -> Result<T, ConnectorError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> io::Result<T> + Send + 'static,
    {
        let dir = self.dir.clone();
        run_in_lane(&self.lane, self.timeout, path, move || work(&dir)).await
    }
}

/// Runs `work` on a blocking thread holding a place in `lane` until the thread returns (so a
/// hung operation keeps its place, and retries wait instead of piling up threads); answers
/// `CONNECTION_TIMEOUT` (transient) when the lane or the work takes longer than `timeout`.
async fn run_in_lane<T, F>(
    lane: &Arc<Semaphore>,
    timeout: Duration,
    path: &str,
    work: F,
) -> Result<T, ConnectorError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = |what: &str| {
        ConnectorError::with_detail(
            ErrorCode::ConnectionTimeout,
            format!("{what} {path} took longer than {} s", timeout.as_secs()),
        )
    };
    let place = tokio::time::timeout_at(deadline, lane.clone().acquire_owned())
        .await
        .map_err(|_| timed_out("waiting for earlier file operations before"))?
        .map_err(|e| ConnectorError::with_detail(ErrorCode::IoError, e))?;
    let task = tokio::task::spawn_blocking(move || {
        let result = work();
        drop(place);
        result
    });
    tokio::time::timeout_at(deadline, task)
        .await
        .map_err(|_| timed_out("the file operation on"))?
        .map_err(|e| ConnectorError::with_detail(ErrorCode::IoError, e))?
        .map_err(|e| map_io(e, path))
}

/// fsyncs a directory so a rename in it survives a power loss. (`open_dir` would give an
/// `O_PATH` handle, which cannot be fsynced; a read-only open of the directory can.)
fn sync_dir(dir: &Dir, rel_dir: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true);
    let handle = dir.open_with(rel_dir, nonblocking(&mut options))?;
    if !handle.metadata()?.is_dir() {
        return Err(not_regular("folder"));
    }
    handle.sync_all()
}

#[async_trait]
impl Transport for FilesystemTransport {
    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        let rel = relative(path).to_owned();
        let bytes = bytes.to_vec();
        self.blocking(path, move |dir| {
            let mut options = OpenOptions::new();
            // Truncation happens only after the type check: on a FIFO or device it would
            // mean something else.
            options.write(true).create(true);
            let mut file = dir.open_with(&rel, nonblocking(&mut options))?;
            if !file.metadata()?.is_file() {
                return Err(not_regular("file"));
            }
            file.set_len(0)?;
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
            let mut file = match open_regular(dir, &rel) {
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
        self.blocking(path, move |dir| {
            let mut bytes = Vec::new();
            open_regular(dir, &rel)?.read_to_end(&mut bytes)?;
            Ok(bytes)
        })
        .await
    }

    async fn read_limited(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ConnectorError> {
        let rel = relative(path).to_owned();
        self.blocking(path, move |dir| {
            let mut file = open_regular(dir, &rel)?;
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

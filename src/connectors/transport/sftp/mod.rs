//! The `sftp` transport: pure-Rust SSH (`russh`) and SFTP (`russh-sftp`), with host keys pinned
//! or trusted on first use, blocked networks refused before connecting, timeouts on every
//! step, pooled sessions, and pipelined writes.

pub mod pool;
pub mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

use self::pool::{Lease, SessionPool};
use super::{Sha256Digest, Transport};
use crate::connectors::{ConnectionKey, ConnectorError, ErrorCode};
use crate::crypto::SecretString;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SftpTarget {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password auth.
    pub password: Option<SecretString>,
    /// OpenSSH private key.
    pub private_key: Option<SecretString>,
    /// Its passphrase.
    pub private_key_passphrase: Option<SecretString>,
    /// Expected host key; None means trust on first use.
    pub host_key_fingerprint: Option<String>,
    /// Budget for connecting, and for each SFTP request.
    pub timeout: Duration,
}

/// SFTP file operations for one export or test. Holds one session lease; a session that died
/// (server restart, network cut) is replaced on the next operation, and an operation that
/// fails because a *reused* session was already dead is retried once on a fresh one.
pub struct SftpTransport {
    target: SftpTarget,
    pool: Arc<SessionPool>,
    key: Option<ConnectionKey>,
    blocked: Vec<IpNet>,
    lease: tokio::sync::Mutex<Option<Lease>>,
    learned: Mutex<Option<String>>,
}

impl std::fmt::Debug for SftpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpTransport")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .finish()
    }
}

/// Runs `$body` with `$s` bound to a live session, retrying once on a fresh session when a
/// reused one turns out to be dead.
macro_rules! with_session {
    ($self:ident, |$s:ident| $body:expr) => {{
        let (lease, reused) = $self.lease().await?;
        let first = {
            let $s = lease.session();
            $body.await
        };
        match first {
            Err(err) if reused && err.code == ErrorCode::ConnectionLost => {
                $self.drop_lease(lease);
                let (lease, _) = $self.lease().await?;
                let $s = lease.session();
                $body.await
            }
            other => other,
        }
    }};
}

impl SftpTransport {
    /// A transport for `target`; `key` selects pooled sessions (None: a private session, as
    /// connection tests and unsaved configs use).
    pub fn new(
        target: SftpTarget,
        pool: Arc<SessionPool>,
        key: Option<ConnectionKey>,
        blocked: Vec<IpNet>,
    ) -> Self {
        Self {
            target,
            pool,
            key,
            blocked,
            lease: tokio::sync::Mutex::new(None),
            learned: Mutex::new(None),
        }
    }

    /// The host key seen on first use, when the config had none to check against.
    pub fn learned_fingerprint(&self) -> Option<String> {
        self.learned.lock().ok().and_then(|l| l.clone())
    }

    /// The held session (reconnecting if it died), and whether it was reused from the pool.
    async fn lease(
        &self,
    ) -> Result<(tokio::sync::MappedMutexGuard<'_, Lease>, bool), ConnectorError> {
        let mut slot = self.lease.lock().await;
        if slot.as_ref().is_some_and(|l| l.session().is_closed())
            && let Some(dead) = slot.take()
        {
            self.pool.discard(self.key, &dead);
        }
        if slot.is_none() {
            let lease = self
                .pool
                .acquire(self.key, &self.target, &self.blocked)
                .await?;
            if self.target.host_key_fingerprint.is_none()
                && let Ok(mut learned) = self.learned.lock()
            {
                learned.get_or_insert_with(|| lease.session().host_key_fingerprint.clone());
            }
            *slot = Some(lease);
        }
        let reused = slot.as_ref().is_some_and(|l| l.reused);
        let guard = tokio::sync::MutexGuard::try_map(slot, Option::as_mut)
            .map_err(|_| ConnectorError::with_detail(ErrorCode::ConnectionLost, "no session"))?;
        Ok((guard, reused))
    }

    fn drop_lease(&self, guard: tokio::sync::MappedMutexGuard<'_, Lease>) {
        self.pool.discard(self.key, &guard);
        drop(guard);
        if let Ok(mut slot) = self.lease.try_lock() {
            *slot = None;
        }
    }
}

#[async_trait]
impl Transport for SftpTransport {
    async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        with_session!(self, |s| s.write_file(path, bytes))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        with_session!(self, |s| s.rename(from, to))
    }

    async fn move_no_replace(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        with_session!(self, |s| s.rename_no_replace(from, to))
    }

    async fn sha256_if_exists(&self, path: &str) -> Result<Option<Sha256Digest>, ConnectorError> {
        with_session!(self, |s| s.sha256_if_exists(path))
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, ConnectorError> {
        with_session!(self, |s| s.list(dir))
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>, ConnectorError> {
        with_session!(self, |s| s.read(path))
    }

    async fn read_limited(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ConnectorError> {
        with_session!(self, |s| s.read_limited(path, limit))
    }

    async fn exists(&self, path: &str) -> Result<bool, ConnectorError> {
        with_session!(self, |s| s.exists(path))
    }

    async fn delete(&self, path: &str) -> Result<(), ConnectorError> {
        with_session!(self, |s| s.delete(path))
    }

    async fn create_dir(&self, dir: &str) -> Result<(), ConnectorError> {
        with_session!(self, |s| s.create_dir(dir))
    }
}

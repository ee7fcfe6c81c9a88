//! One SSH connection with an SFTP channel: connect (host key checked before any credential is
//! sent), authenticate, and the file operations the dropzone needs, pipelined where it pays.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use ipnet::IpNet;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::SftpTarget;
use crate::connectors::network;
use crate::connectors::transport::Sha256Digest;
use crate::connectors::{ConnectorError, ErrorCode};

/// Largest write request we send; servers may lower it with `limits@openssh.com`.
const MAX_WRITE_CHUNK: usize = 128 * 1024;
/// Write size every SFTP server must accept (draft-ietf-secsh-filexfer-02).
const SAFE_WRITE_CHUNK: usize = 32 * 1024;
/// Read request size.
const READ_CHUNK: u32 = 32 * 1024;
/// Bytes of write requests kept in flight for one large transfer: below OpenSSH's 2 MiB
/// channel window, because requests past the window only queue behind it and slow the
/// transfer down.
const IN_FLIGHT_BYTES: usize = 768 * 1024;
/// Silence after which russh sends a keepalive; three unanswered ones close the session.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// AES-GCM first: with AES-NI it is several times faster than ChaCha20-Poly1305 (russh's
/// first choice), which matters for large files. The rest stay as fallbacks for odd servers.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// Why the SSH layer refused a server (the handler's error type).
#[derive(Debug)]
pub enum HandshakeError {
    /// The server's key is not the expected one.
    HostKeyMismatch {
        /// What the server presented.
        presented: String,
    },
    /// Anything else from russh.
    Ssh(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(err: russh::Error) -> Self {
        HandshakeError::Ssh(err)
    }
}

/// Checks the server key during key exchange, before authentication starts.
struct HostKeyCheck {
    expected: Option<String>,
    presented: Arc<Mutex<Option<String>>>,
}

/// The `SHA256:…` fingerprint `ssh-keygen -lf` prints for a key or a certificate's key.
fn fingerprint(key: &PublicKeyOrCertificate) -> String {
    match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => {
            key.fingerprint(HashAlg::Sha256).to_string()
        }
        PublicKeyOrCertificate::Certificate(cert) => {
            russh::keys::PublicKey::from(cert.public_key().clone())
                .fingerprint(HashAlg::Sha256)
                .to_string()
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = fingerprint(key);
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(presented.clone());
        }
        match &self.expected {
            Some(expected) if *expected != presented => {
                Err(HandshakeError::HostKeyMismatch { presented })
            }
            // Pinned and equal, or trust on first use (the caller records what was presented).
            _ => Ok(true),
        }
    }
}

fn ssh_error(host: &str, err: russh::Error) -> ConnectorError {
    use russh::Error as E;
    match err {
        E::UnknownKey | E::WrongServerSig | E::KeyChanged { .. } => {
            ConnectorError::new(ErrorCode::HostKeyMismatch)
        }
        E::ConnectionTimeout | E::KeepaliveTimeout | E::InactivityTimeout | E::Elapsed(_) => {
            ConnectorError::with_detail(ErrorCode::ConnectionTimeout, host)
        }
        E::Disconnect | E::HUP | E::SendError | E::IO(_) => {
            ConnectorError::with_detail(ErrorCode::ConnectionLost, host)
        }
        E::NotAuthenticated | E::NoAuthMethod | E::UnsupportedAuthMethod => {
            ConnectorError::new(ErrorCode::AuthFailed)
        }
        other => ConnectorError::with_detail(ErrorCode::ProtocolError, format!("{host}: {other}")),
    }
}

/// Maps an SFTP failure on `path` to the closed error set.
pub fn sftp_error(path: &str, err: SftpError) -> ConnectorError {
    match err {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => ConnectorError::with_detail(ErrorCode::PathNotFound, path),
            StatusCode::PermissionDenied => {
                ConnectorError::with_detail(ErrorCode::PermissionDenied, path)
            }
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                ConnectorError::with_detail(ErrorCode::ConnectionLost, path)
            }
            StatusCode::OpUnsupported | StatusCode::BadMessage => ConnectorError::with_detail(
                ErrorCode::ProtocolError,
                format!("{path}: {}", status.error_message),
            ),
            _ => ConnectorError::with_detail(
                ErrorCode::IoError,
                format!("{path}: {}", status.error_message),
            ),
        },
        SftpError::Timeout => ConnectorError::with_detail(ErrorCode::ConnectionTimeout, path),
        SftpError::IO(_) | SftpError::UnexpectedBehavior(_) => {
            ConnectorError::with_detail(ErrorCode::ConnectionLost, path)
        }
        other => ConnectorError::with_detail(ErrorCode::ProtocolError, format!("{path}: {other}")),
    }
}

fn is_eof(err: &SftpError) -> bool {
    matches!(err, SftpError::Status(s) if s.status_code == StatusCode::Eof)
}

/// An SSH string: u32 length, then the bytes.
fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A connected, authenticated SFTP session.
pub struct SftpSession {
    handle: Handle<HostKeyCheck>,
    sftp: RawSftpSession,
    posix_rename: bool,
    write_chunk: usize,
    host: String,
    /// The fingerprint the server presented (verified, or to be recorded on first use).
    pub host_key_fingerprint: String,
}

impl std::fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpSession")
            .field("host", &self.host)
            .field("posix_rename", &self.posix_rename)
            .finish()
    }
}

async fn within<T>(
    deadline: Instant,
    host: &str,
    step: &str,
    fut: impl Future<Output = T>,
) -> Result<T, ConnectorError> {
    tokio::time::timeout_at(deadline, fut).await.map_err(|_| {
        ConnectorError::with_detail(
            ErrorCode::ConnectionTimeout,
            format!("{host}: no answer during {step}"),
        )
    })
}

impl SftpSession {
    /// The SSH handshake, the server's key checked against the pinned one; answers the
    /// handle and the fingerprint the server presented.
    async fn handshake(
        host: &str,
        stream: tokio::net::TcpStream,
        target: &SftpTarget,
        deadline: Instant,
    ) -> Result<(Handle<HostKeyCheck>, String), ConnectorError> {
        let config = client::Config {
            preferred: russh::Preferred {
                cipher: CIPHERS.into(),
                ..russh::Preferred::DEFAULT
            },
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: 3,
            nodelay: true,
            window_size: 16 * 1024 * 1024,
            ..Default::default()
        };
        let presented = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            expected: target.host_key_fingerprint.clone(),
            presented: presented.clone(),
        };
        let handle = match within(
            deadline,
            host,
            "the SSH handshake",
            client::connect_stream(Arc::new(config), stream, check),
        )
        .await?
        {
            Ok(handle) => handle,
            Err(HandshakeError::HostKeyMismatch { presented }) => {
                tracing::warn!(
                    host,
                    presented,
                    "SFTP host key does not match the pinned or recorded one"
                );
                return Err(ConnectorError::with_detail(
                    ErrorCode::HostKeyMismatch,
                    format!("{host} presented {presented}"),
                ));
            }
            Err(HandshakeError::Ssh(e)) => return Err(ssh_error(host, e)),
        };
        let host_key_fingerprint =
            presented
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .ok_or_else(|| {
                    ConnectorError::with_detail(ErrorCode::ProtocolError, "no host key presented")
                })?;
        Ok((handle, host_key_fingerprint))
    }

    /// Opens the SFTP subsystem on an authenticated connection; answers the session, whether
    /// the server renames atomically (`posix-rename`), and the write size it takes.
    async fn open_sftp(
        handle: &Handle<HostKeyCheck>,
        host: &str,
        deadline: Instant,
        timeout: std::time::Duration,
    ) -> Result<(RawSftpSession, bool, usize), ConnectorError> {
        let channel = within(
            deadline,
            host,
            "opening the SFTP channel",
            handle.channel_open_session(),
        )
        .await?
        .map_err(|e| ssh_error(host, e))?;
        within(
            deadline,
            host,
            "opening the SFTP channel",
            channel.request_subsystem(true, "sftp"),
        )
        .await?
        .map_err(|e| ssh_error(host, e))?;
        let sftp = RawSftpSession::new(channel.into_stream());
        sftp.set_timeout(timeout.as_secs().max(1));
        let version = within(deadline, host, "SFTP init", sftp.init())
            .await?
            .map_err(|e| sftp_error("/", e))?;
        let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");
        let mut write_chunk = SAFE_WRITE_CHUNK;
        if has(LIMITS)
            && let Ok(Ok(limits)) = tokio::time::timeout_at(deadline, sftp.limits()).await
        {
            let offered = usize::try_from(limits.max_write_len).unwrap_or(0);
            if offered > 0 {
                write_chunk = offered.min(MAX_WRITE_CHUNK);
            }
        }
        Ok((sftp, has(POSIX_RENAME), write_chunk))
    }

    /// Connects within `target.timeout`: resolve (refusing blocked networks), TCP, SSH
    /// handshake with the host key check, authentication, SFTP subsystem.
    pub async fn connect(target: &SftpTarget, blocked: &[IpNet]) -> Result<Self, ConnectorError> {
        let deadline = Instant::now() + target.timeout;
        let host = target.host.as_str();
        let addrs = network::resolve(host, target.port, blocked, deadline).await?;
        let stream = network::connect(host, &addrs, deadline).await?;

        let (mut handle, host_key_fingerprint) =
            Self::handshake(host, stream, target, deadline).await?;

        within(
            deadline,
            host,
            "authentication",
            Self::authenticate(&mut handle, target),
        )
        .await??;

        let (sftp, posix_rename, write_chunk) =
            Self::open_sftp(&handle, host, deadline, target.timeout).await?;
        Ok(Self {
            handle,
            sftp,
            posix_rename,
            write_chunk,
            host: host.to_owned(),
            host_key_fingerprint,
        })
    }

    /// Key first when configured, then the password. Every failure is `AUTH_FAILED`.
    async fn authenticate(
        handle: &mut Handle<HostKeyCheck>,
        target: &SftpTarget,
    ) -> Result<(), ConnectorError> {
        let host = target.host.as_str();
        let user = target.username.as_str();
        if let Some(key) = &target.private_key {
            let passphrase = target
                .private_key_passphrase
                .as_ref()
                .map(|p| p.expose().as_str());
            let key = russh::keys::decode_secret_key(key.expose(), passphrase).map_err(|_| {
                ConnectorError::with_detail(ErrorCode::AuthFailed, "the private key cannot be read")
            })?;
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| ssh_error(host, e))?
                    .flatten()
            } else {
                None
            };
            let result = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| ssh_error(host, e))?;
            if result.success() {
                return Ok(());
            }
        }
        if let Some(password) = &target.password {
            let result = handle
                .authenticate_password(user, password.expose().as_str())
                .await
                .map_err(|e| ssh_error(host, e))?;
            if result.success() {
                return Ok(());
            }
        }
        Err(ConnectorError::new(ErrorCode::AuthFailed))
    }

    /// True once the connection is gone (closed by the server, keepalive timeout, …).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Ends the session politely.
    pub async fn close(&self) {
        let _ = self.sftp.close_session();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Creates or truncates `path` and writes `bytes` with up to [`IN_FLIGHT_BYTES`] of write
    /// requests in flight.
    pub async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let handle = self
            .sftp
            .open(path, flags, FileAttributes::default())
            .await
            .map_err(|e| sftp_error(path, e))?
            .handle;
        let written = self
            .write_chunks(&handle, bytes)
            .await
            .map_err(|e| sftp_error(path, e));
        let closed = self
            .sftp
            .close(handle)
            .await
            .map_err(|e| sftp_error(path, e));
        written.and(closed.map(|_| ()))
    }

    async fn write_chunks(&self, handle: &str, bytes: &[u8]) -> Result<(), SftpError> {
        let depth = (IN_FLIGHT_BYTES / self.write_chunk).max(1);
        let mut in_flight = FuturesOrdered::new();
        for (i, chunk) in bytes.chunks(self.write_chunk).enumerate() {
            let offset = (i * self.write_chunk) as u64;
            in_flight.push_back(self.sftp.write(handle, offset, chunk.to_vec()));
            if in_flight.len() >= depth
                && let Some(done) = in_flight.next().await
            {
                done?;
            }
        }
        while let Some(done) = in_flight.next().await {
            done?;
        }
        Ok(())
    }

    /// Atomic rename: `posix-rename@openssh.com` when offered, plain rename otherwise (which
    /// refuses an existing target; our names are unique, so that is fine).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        if !self.posix_rename {
            return self.rename_no_replace(from, to).await;
        }
        let mut data = Vec::with_capacity(from.len() + to.len() + 8);
        ssh_string(&mut data, from);
        ssh_string(&mut data, to);
        match self
            .sftp
            .extended(POSIX_RENAME, data)
            .await
            .map_err(|e| sftp_error(from, e))?
        {
            russh_sftp::protocol::Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            russh_sftp::protocol::Packet::Status(s) => Err(sftp_error(from, SftpError::Status(s))),
            _ => Err(ConnectorError::with_detail(
                ErrorCode::ProtocolError,
                "unexpected reply to posix-rename",
            )),
        }
    }

    /// SSH_FXP_RENAME, which never replaces an existing target.
    pub async fn rename_no_replace(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        self.sftp
            .rename(from, to)
            .await
            .map(|_| ())
            .map_err(|e| sftp_error(from, e))
    }

    /// Opens `path` for reading: its handle, or None when it does not exist.
    async fn open_for_read(&self, path: &str) -> Result<Option<String>, ConnectorError> {
        match self
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::default())
            .await
        {
            Ok(h) => Ok(Some(h.handle)),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(sftp_error(path, e)),
        }
    }

    /// Streams `path` through `sink` chunk by chunk (with reads pipelined); false if absent.
    async fn read_into(
        &self,
        path: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<bool, ConnectorError> {
        let Some(handle) = self.open_for_read(path).await? else {
            return Ok(false);
        };
        let result = self
            .read_chunks(&handle, &mut sink)
            .await
            .map_err(|e| sftp_error(path, e));
        let _ = self.sftp.close(handle).await;
        result.map(|()| true)
    }

    async fn read_chunks(
        &self,
        handle: &str,
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), SftpError> {
        let mut offset = 0u64;
        loop {
            // A few reads ahead; a short or EOF answer ends the file.
            let batch: Vec<_> = (0..4u64)
                .map(|i| {
                    self.sftp
                        .read(handle, offset + i * u64::from(READ_CHUNK), READ_CHUNK)
                })
                .collect();
            for reply in futures::future::join_all(batch).await {
                match reply {
                    Ok(data) => {
                        sink(&data.data);
                        offset += data.data.len() as u64;
                        if data.data.len() < READ_CHUNK as usize {
                            return Ok(());
                        }
                    }
                    Err(e) if is_eof(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// SHA-256 of `path`, None if it does not exist.
    pub async fn sha256_if_exists(
        &self,
        path: &str,
    ) -> Result<Option<Sha256Digest>, ConnectorError> {
        let mut hasher = Sha256::new();
        let found = self.read_into(path, |chunk| hasher.update(chunk)).await?;
        Ok(found.then(|| hasher.finalize().into()))
    }

    /// The content of `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, ConnectorError> {
        let mut out = Vec::new();
        if self
            .read_into(path, |chunk| out.extend_from_slice(chunk))
            .await?
        {
            Ok(out)
        } else {
            Err(ConnectorError::with_detail(ErrorCode::PathNotFound, path))
        }
    }

    /// The content of `path`, or None when its size is over `limit` (not read then).
    pub async fn read_limited(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ConnectorError> {
        let Some(handle) = self.open_for_read(path).await? else {
            return Err(ConnectorError::with_detail(ErrorCode::PathNotFound, path));
        };
        // Ack files are small: their size, their first chunk and the close go out together
        // (the server answers in order), so a small file costs two round trips, not five.
        // `futures::join!` polls in order, so the requests are sent in this order.
        let (attrs, first, _closed) = futures::join!(
            self.sftp.fstat(handle.clone()),
            self.sftp.read(handle.clone(), 0, READ_CHUNK),
            self.sftp.close(handle)
        );
        let size = attrs
            .map_err(|e| sftp_error(path, e))?
            .attrs
            .size
            .unwrap_or(0);
        if size > limit {
            return Ok(None);
        }
        let data = match first {
            Ok(d) => d.data,
            Err(e) if is_eof(&e) => Vec::new(),
            Err(e) => return Err(sftp_error(path, e)),
        };
        if data.len() < READ_CHUNK as usize {
            return Ok(Some(data));
        }
        // More than one chunk (rare for an ack): read it whole through a fresh handle.
        let mut out = Vec::new();
        let mut over = false;
        let found = self
            .read_into(path, |chunk| {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    over = true;
                } else {
                    out.extend_from_slice(chunk);
                }
            })
            .await?;
        if !found {
            return Err(ConnectorError::with_detail(ErrorCode::PathNotFound, path));
        }
        Ok((!over).then_some(out))
    }

    /// Whether `path` exists.
    pub async fn exists(&self, path: &str) -> Result<bool, ConnectorError> {
        match self.sftp.lstat(path).await {
            Ok(_) => Ok(true),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(false),
            Err(e) => Err(sftp_error(path, e)),
        }
    }

    /// Names of the regular files in `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, ConnectorError> {
        let handle = self
            .sftp
            .opendir(dir)
            .await
            .map_err(|e| sftp_error(dir, e))?
            .handle;
        let mut names = Vec::new();
        let result = loop {
            match self.sftp.readdir(handle.as_str()).await {
                Ok(batch) => names.extend(
                    batch
                        .files
                        .into_iter()
                        .filter(|f| f.attrs.file_type().is_file())
                        .map(|f| f.filename),
                ),
                Err(e) if is_eof(&e) => break Ok(()),
                Err(e) => break Err(sftp_error(dir, e)),
            }
        };
        let _ = self.sftp.close(handle).await;
        result?;
        names.sort();
        Ok(names)
    }

    /// Deletes `path`.
    pub async fn delete(&self, path: &str) -> Result<(), ConnectorError> {
        self.sftp
            .remove(path)
            .await
            .map(|_| ())
            .map_err(|e| sftp_error(path, e))
    }

    /// Creates `dir` unless it exists.
    pub async fn create_dir(&self, dir: &str) -> Result<(), ConnectorError> {
        match self.sftp.mkdir(dir, FileAttributes::default()).await {
            Ok(_) => Ok(()),
            Err(e) => match self.sftp.stat(dir).await {
                Ok(attrs) if attrs.attrs.file_type().is_dir() => Ok(()),
                _ => Err(sftp_error(dir, e)),
            },
        }
    }
}

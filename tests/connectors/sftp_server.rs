//! An in-process SFTP server for tests: `russh` server + `russh-sftp` server over a temp dir.
//! It behaves like OpenSSH where our client cares (plain rename refuses to overwrite,
//! `posix-rename@openssh.com` replaces) and has switches to misbehave: deny writes, offer no
//! posix-rename, answer slowly, or cut the connection in the middle of a write.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{
    Auth, ChannelOpenHandle, Msg, RunningServerHandle, Server as _, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub const USER: &str = "erp";
pub const PASSWORD: &str = "erp-sftp-password-1";

/// Misbehaviour switches, changeable while the server runs.
#[derive(Default)]
pub struct Switches {
    pub deny_writes: AtomicBool,
    pub no_posix_rename: AtomicBool,
    pub delay_ms: AtomicU64,
    /// Cut the SSH connection once this many bytes have been written (0: never). One-shot.
    pub cut_after_bytes: AtomicU64,
}

/// What the server saw.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub auth_attempts: AtomicUsize,
    pub posix_renames: AtomicUsize,
    pub plain_renames: AtomicUsize,
}

/// A deterministic ed25519 key from a seed byte.
pub fn ed25519_key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// The fingerprint `ssh-keygen -lf` would print.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

pub struct TestSftpServer {
    pub port: u16,
    pub root: TempDir,
    pub switches: Arc<Switches>,
    pub stats: Arc<Stats>,
    pub host_key: PrivateKey,
    authorized_key: Option<PublicKey>,
    running: Option<(RunningServerHandle, tokio::task::JoinHandle<()>)>,
}

impl TestSftpServer {
    /// Starts on a free loopback port with password auth.
    pub async fn start() -> Self {
        Self::start_with(ed25519_key(7), None).await
    }

    /// Starts with this host key and, optionally, a key accepted for public key auth.
    pub async fn start_with(host_key: PrivateKey, authorized_key: Option<PublicKey>) -> Self {
        let mut server = Self {
            port: 0,
            root: tempfile::tempdir().unwrap(),
            switches: Arc::default(),
            stats: Arc::default(),
            host_key,
            authorized_key,
            running: None,
        };
        server
            .run(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .await;
        server
    }

    /// The server's host key fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.host_key)
    }

    /// A folder under the root (created).
    pub fn dir(&self, path: &str) -> PathBuf {
        let dir = self.root.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn run(&mut self, listener: TcpListener) {
        self.port = listener.local_addr().unwrap().port();
        let config = Arc::new(russh::server::Config {
            keys: vec![self.host_key.clone()],
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(300)),
            ..Default::default()
        });
        let mut factory = Factory {
            root: self.root.path().to_owned(),
            switches: self.switches.clone(),
            stats: self.stats.clone(),
            authorized_key: self.authorized_key.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let running = factory.run_on_socket(config, &listener);
            let _ = tx.send(running.handle());
            let _ = running.await;
        });
        let handle = rx.await.unwrap();
        self.running = Some((handle, task));
    }

    /// Stops accepting and disconnects every session.
    pub async fn stop(&mut self) {
        if let Some((handle, task)) = self.running.take() {
            handle.shutdown("test server stopping".into());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Stops and starts again on the same port (optionally with another host key).
    pub async fn restart(&mut self, host_key: Option<PrivateKey>) {
        self.stop().await;
        if let Some(key) = host_key {
            self.host_key = key;
        }
        // The stopped server's listener may take a moment to close; the port stays ours.
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("port {} did not come free: {e}", self.port),
            }
        };
        self.run(listener).await;
    }
}

impl Drop for TestSftpServer {
    fn drop(&mut self) {
        if let Some((handle, task)) = self.running.take() {
            handle.shutdown("test over".into());
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Factory {
    root: PathBuf,
    switches: Arc<Switches>,
    stats: Arc<Stats>,
    authorized_key: Option<PublicKey>,
}

impl russh::server::Server for Factory {
    type Handler = SshHandler;

    fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> SshHandler {
        self.stats.connections.fetch_add(1, Ordering::SeqCst);
        SshHandler {
            factory: self.clone(),
            channels: HashMap::new(),
        }
    }
}

struct SshHandler {
    factory: Factory,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.factory
            .stats
            .auth_attempts
            .fetch_add(1, Ordering::SeqCst);
        Ok(if user == USER && password == PASSWORD {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.factory
            .stats
            .auth_attempts
            .fetch_add(1, Ordering::SeqCst);
        let ok = user == USER
            && self
                .factory
                .authorized_key
                .as_ref()
                .is_some_and(|k| k.key_data() == key.public_key.key_data());
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&id) {
            Some(channel) if name == "sftp" => {
                session.channel_success(id)?;
                let sftp = SftpHandler {
                    root: self.factory.root.clone(),
                    switches: self.factory.switches.clone(),
                    stats: self.factory.stats.clone(),
                    session: session.handle(),
                    files: HashMap::new(),
                    dirs: HashMap::new(),
                    next: 0,
                    written: 0,
                };
                russh_sftp::server::run(channel.into_stream(), sftp).await;
            }
            _ => session.channel_failure(id)?,
        }
        Ok(())
    }
}

struct SftpHandler {
    root: PathBuf,
    switches: Arc<Switches>,
    stats: Arc<Stats>,
    session: russh::server::Handle,
    files: HashMap<String, fs::File>,
    dirs: HashMap<String, Option<Vec<File>>>,
    next: u64,
    written: u64,
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn io_status(err: std::io::Error) -> StatusCode {
    match err.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

fn read_ssh_string(data: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let text = String::from_utf8(data.get(4..4 + len)?.to_vec()).ok()?;
    Some((text, &data[4 + len..]))
}

impl SftpHandler {
    fn path(&self, path: &str) -> Result<PathBuf, StatusCode> {
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(StatusCode::PermissionDenied);
        }
        Ok(self.root.join(rel))
    }

    fn handle(&mut self) -> String {
        self.next += 1;
        format!("h{}", self.next)
    }

    async fn pause(&self) {
        let ms = self.switches.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn deny_writes(&self) -> Result<(), StatusCode> {
        if self.switches.deny_writes.load(Ordering::SeqCst) {
            Err(StatusCode::PermissionDenied)
        } else {
            Ok(())
        }
    }
}

impl russh_sftp::server::Handler for SftpHandler {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn init(
        &mut self,
        _version: u32,
        _ext: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut version = Version::new();
        if !self.switches.no_posix_rename.load(Ordering::SeqCst) {
            version
                .extensions
                .insert("posix-rename@openssh.com".into(), "1".into());
        }
        Ok(version)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        flags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        self.pause().await;
        let writing = flags.intersects(
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::APPEND,
        );
        if writing {
            self.deny_writes()?;
        }
        let path = self.path(&filename)?;
        let file = fs::OpenOptions::new()
            .read(flags.contains(OpenFlags::READ))
            .write(flags.contains(OpenFlags::WRITE))
            .append(flags.contains(OpenFlags::APPEND))
            .create(flags.contains(OpenFlags::CREATE))
            .truncate(flags.contains(OpenFlags::TRUNCATE))
            .open(&path)
            .map_err(io_status)?;
        let handle = self.handle();
        self.files.insert(handle.clone(), file);
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.files.remove(&handle);
        self.dirs.remove(&handle);
        Ok(ok(id))
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.files.get_mut(&handle).ok_or(StatusCode::Failure)?;
        file.seek(SeekFrom::Start(offset)).map_err(io_status)?;
        let mut data = vec![0u8; len as usize];
        let n = file.read(&mut data).map_err(io_status)?;
        if n == 0 {
            return Err(StatusCode::Eof);
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.pause().await;
        let cut = self.switches.cut_after_bytes.load(Ordering::SeqCst);
        if cut > 0 && self.written + data.len() as u64 >= cut {
            self.switches.cut_after_bytes.store(0, Ordering::SeqCst);
            // Write what arrived before the cut, then drop the whole SSH connection.
            if let Some(file) = self.files.get_mut(&handle) {
                let keep = (cut - self.written) as usize;
                let _ = file
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| file.write_all(&data[..keep.min(data.len())]));
            }
            let _ = self
                .session
                .disconnect(russh::Disconnect::ByApplication, "cut".into(), "en".into())
                .await;
            return Err(StatusCode::ConnectionLost);
        }
        self.written += data.len() as u64;
        let file = self.files.get_mut(&handle).ok_or(StatusCode::Failure)?;
        file.seek(SeekFrom::Start(offset)).map_err(io_status)?;
        file.write_all(&data).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::symlink_metadata(self.path(&path)?).map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::metadata(self.path(&path)?).map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self
            .files
            .get(&handle)
            .ok_or(StatusCode::Failure)?
            .metadata()
            .map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.path(&path)?).map_err(io_status)? {
            let entry = entry.map_err(io_status)?;
            let meta = entry.metadata().map_err(io_status)?;
            entries.push(File::new(
                entry.file_name().to_string_lossy(),
                FileAttributes::from(&meta),
            ));
        }
        let handle = self.handle();
        self.dirs.insert(handle.clone(), Some(entries));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self
            .dirs
            .get_mut(&handle)
            .ok_or(StatusCode::Failure)?
            .take()
        {
            Some(files) => Ok(Name { id, files }),
            None => Err(StatusCode::Eof),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.deny_writes()?;
        fs::remove_file(self.path(&filename)?).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.deny_writes()?;
        fs::create_dir(self.path(&path)?).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.deny_writes()?;
        let (from, to) = (self.path(&oldpath)?, self.path(&newpath)?);
        // Like OpenSSH's SSH_FXP_RENAME: never replace an existing target.
        if to.exists() {
            return Err(StatusCode::Failure);
        }
        fs::rename(from, to).map_err(io_status)?;
        self.stats.plain_renames.fetch_add(1, Ordering::SeqCst);
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if request != "posix-rename@openssh.com"
            || self.switches.no_posix_rename.load(Ordering::SeqCst)
        {
            return Err(StatusCode::OpUnsupported);
        }
        self.deny_writes()?;
        let (from, rest) = read_ssh_string(&data).ok_or(StatusCode::BadMessage)?;
        let (to, _) = read_ssh_string(rest).ok_or(StatusCode::BadMessage)?;
        fs::rename(self.path(&from)?, self.path(&to)?).map_err(io_status)?;
        self.stats.posix_renames.fetch_add(1, Ordering::SeqCst);
        Ok(Packet::Status(ok(id)))
    }
}

//! `DROPZONE_JSON_V1`: one JSON file per order in a folder the ERP's import job watches, on an
//! SFTP server or a local/mounted filesystem; acknowledgements are read back from `ack_path`.
//!
//! - `config`: the settings, their validation and their schema, derived from one struct (pure).
//! - `parts`: the validated values the settings are made of (paths, host, port, key, …).
//! - `dropzone`: publish-exactly-once and the connection test, over any transport.

pub mod acks;
pub mod config;
pub mod dropzone;
pub mod parts;

use async_trait::async_trait;

use self::config::{DropzoneConfig, Mode};
use super::transport::Transport;
use super::transport::filesystem::{FilesystemTransport, check_confined};
use super::transport::sftp::SftpTransport;
use super::{
    AckInbox, ConnectorConfig, ConnectorContext, ConnectorError, Delivered, Delivery, ErrorCode,
    Learned,
};
use crate::domain::FieldError;

/// The connector type.
#[derive(Debug, Default)]
pub struct DropzoneJsonV1;

/// Re-reads a stored (or just validated) config; failure means the stored data is unusable.
/// The network policy is not applied here but when connecting, so a host that became blocked
/// after the config was saved is `HOST_BLOCKED`, not an unreadable config.
fn parse(config: &ConnectorConfig) -> Result<DropzoneConfig, ConnectorError> {
    DropzoneConfig::read(config)
        .map_err(|e| ConnectorError::with_detail(ErrorCode::ConfigUnreadable, e))
}

/// The transport for one operation sequence (a test, an export, an ack poll).
pub(crate) enum DropzoneTransport {
    Filesystem(FilesystemTransport),
    Sftp(Box<SftpTransport>),
}

impl DropzoneTransport {
    /// Opens the org's folder, or prepares an SFTP transport. Connection tests use a private
    /// session, never a pooled one: a test should prove that a *new* connection works today
    /// (credentials, host key, network), not that an old one is still open.
    pub(crate) async fn open(
        ctx: &ConnectorContext,
        config: &DropzoneConfig,
        pooled: bool,
    ) -> Result<Self, ConnectorError> {
        let Some(target) = config.sftp_target() else {
            let root = &ctx.env.dropzone_fs_root;
            let slug = ctx.org_slug.as_str();
            let lane = ctx.env.fs_lanes.of(slug);
            return Ok(Self::Filesystem(
                FilesystemTransport::open(root, slug, lane, config.timeout()).await?,
            ));
        };
        let key = if pooled { ctx.connection } else { None };
        let pool = ctx.env.sftp_pool.clone();
        Ok(Self::Sftp(Box::new(SftpTransport::new(
            target,
            pool,
            key,
            ctx.env.blocked_networks.clone(),
        ))))
    }

    pub(crate) fn as_dyn(&self) -> &dyn Transport {
        match self {
            Self::Filesystem(fs) => fs,
            Self::Sftp(sftp) => sftp.as_ref(),
        }
    }

    fn learned(&self) -> Learned {
        match self {
            Self::Filesystem(_) => Learned::default(),
            Self::Sftp(sftp) => Learned {
                host_key_fingerprint: sftp.learned_fingerprint(),
                ..Learned::default()
            },
        }
    }
}

/// A host key failure also drops the connection's pooled sessions.
fn after_failure(ctx: &ConnectorContext, err: ConnectorError) -> ConnectorError {
    if err.code == ErrorCode::HostKeyMismatch
        && let Some(key) = ctx.connection
    {
        ctx.env.sftp_pool.forget(key.id);
    }
    err
}

#[async_trait]
impl super::Connector for DropzoneJsonV1 {
    fn info(&self) -> &'static super::ConnectorInfo {
        &config::INFO
    }

    async fn check_before_save(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<(), FieldError> {
        // Called after the config was validated: only the folders on disk are left to check.
        let parsed = DropzoneConfig::read(config)?;
        if parsed.mode != Mode::Filesystem {
            return Ok(());
        }
        let root = ctx.env.dropzone_fs_root.clone();
        let slug = ctx.org_slug.to_string();
        tokio::task::spawn_blocking(move || {
            check_confined(&root, &slug, "export_path", &parsed.export_path)?;
            match &parsed.ack_path {
                Some(ack) => check_confined(&root, &slug, "ack_path", ack),
                None => Ok(()),
            }
        })
        .await
        .map_err(|_| FieldError::new("export_path", "could not be checked"))?
    }

    async fn test_connection(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<Learned, ConnectorError> {
        let parsed = parse(config)?;
        let transport = DropzoneTransport::open(ctx, &parsed, false).await?;
        dropzone::rehearse(transport.as_dyn(), &parsed)
            .await
            .map_err(|e| after_failure(ctx, e))?;
        Ok(transport.learned())
    }

    async fn ack_inbox(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<Option<Box<dyn AckInbox>>, ConnectorError> {
        let parsed = parse(config)?;
        let Some(ack_path) = parsed.ack_path.as_ref().map(|p| p.as_str().to_owned()) else {
            return Ok(None);
        };
        let transport = DropzoneTransport::open(ctx, &parsed, true).await?;
        Ok(Some(Box::new(acks::DropzoneInbox::new(
            transport, ack_path,
        ))))
    }

    async fn deliver(
        &self,
        ctx: &ConnectorContext,
        delivery: &Delivery<'_>,
        config: &ConnectorConfig,
    ) -> Result<Delivered, ConnectorError> {
        let parsed = parse(config)?;
        let transport = DropzoneTransport::open(ctx, &parsed, true).await?;
        let published = dropzone::publish(
            transport.as_dyn(),
            &parsed.export_path,
            delivery.file_name,
            &delivery.content.bytes,
            parsed.atomic_write(),
        )
        .await
        .map_err(|e| after_failure(ctx, e))?;
        Ok(Delivered {
            dropzone_path: published.path,
            already_present: published.already_present,
            learned: transport.learned(),
            ack: None,
        })
    }
}

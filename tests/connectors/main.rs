//! Connector framework, DROPZONE_JSON_V1 and its transports, against real folders and servers.

#[path = "../common/mod.rs"]
mod common;

mod acks;
mod export_file;
mod filesystem;
mod http;
mod pipeline_sftp;
mod registry;
mod sftp;
mod sftp_openssh;
mod sftp_server;

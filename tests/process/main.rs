//! The real `orderflow` binary as a child process: crashes, several workers on one database,
//! and what hostile clients do to a running server. One binary for all.

#[path = "../common/mod.rs"]
mod common;

mod acks;
mod crash;
mod hardening;
mod harness;
mod noisy_neighbours;
mod s3;
// The in-process SFTP server of the connector tests; only part of it is used here.
#[allow(dead_code)]
#[path = "../connectors/sftp_server.rs"]
mod sftp_server;
mod workers;

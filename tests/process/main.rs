//! The real `orderflow` binary as a child process: crashes, several workers on one database,
//! and what hostile clients do to a running server. One binary for all.

#[path = "../common/mod.rs"]
mod common;

mod acks;
mod crash;
mod hardening;
mod harness;
mod s3;
mod workers;

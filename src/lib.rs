//! OrderFlow Connect: gets approved B2B sales orders into customers' ERP systems.
//!
//! The modules follow the request path from the outside in:
#![forbid(unsafe_code)]

/// HTTP API: router, auth extractor, error mapping, one routes file per resource.
pub mod api;
/// Builds the application (store, keyring, registry, services) once for every entry point.
pub mod app;
/// The export archive in object storage.
pub mod archive;
/// Password hashing and access tokens.
pub mod auth;
/// The `orderflow` command line: serve, migrate, bootstrap, keys, benchmarks.
pub mod cli;
/// Settings read from the environment and `.env`.
pub mod config;
/// Connector framework, registry, connector types and their transports.
pub mod connectors;
/// Config cipher (AES-256-GCM keyring) and secret wrapper types.
pub mod crypto;
/// Domain types and rules; no I/O.
pub mod domain;
/// Named pause points for crash tests (debug builds only).
pub mod failpoint;
/// Export file formats (JSON v1, CSV, UBL, EDIFACT) and file names; no I/O.
pub mod formats;
/// Use cases shared by the API and the CLI (connections, accounts).
pub mod service;
/// Persistence: the `Store` trait with SQLite and PostgreSQL implementations.
pub mod store;
/// Logging and metrics setup.
pub mod telemetry;
/// Background work: export delivery, acknowledgement polling, housekeeping.
pub mod workers;

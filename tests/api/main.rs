//! API tests: a real server on port 0 per test, talked to over HTTP. One binary for all.

#[path = "../common/mod.rs"]
mod common;

mod acks;
mod audit;
mod auth;
mod connectors;
mod console;
mod encryption;
mod errors;
mod formats;
mod hardening;
mod health;
mod http_connector;
mod noisy_neighbours;
mod orders;
mod vanishing_clients;

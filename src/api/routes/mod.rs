//! One routes file per resource.

pub mod audit;
pub mod auth;
pub mod connectors;
pub mod drafts;
pub mod exports;
pub mod health;
pub mod hooks;
pub mod me;

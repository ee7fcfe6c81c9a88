//! One routes file per resource.

pub mod audit;
pub mod auth;
pub mod health;
pub mod me;

//! Password hashing (Argon2id) and access tokens (HS256 JWT).

pub mod password;
pub mod throttle;
pub mod token;

pub use token::{Claims, TokenError, TokenIssuer};

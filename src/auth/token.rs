//! HS256 access tokens with `sub`, `org_id`, `role`, `iat`, `exp`.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::SecretString;
use crate::domain::user::{Role, User};

/// Default token lifetime.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// Longest lifetime `token issue --ttl` accepts (30 days).
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// Token claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Org id.
    pub org_id: Uuid,
    /// Role when issued (the server re-reads the current role on every request).
    pub role: Role,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The token's own id, so signing out can revoke this token and no other (tokens from
    /// before ids existed have none and end only at expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// A token was refused. The variants stay internal; callers answer a uniform 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, wrong algorithm, malformed, expired.
    #[error("invalid or expired token")]
    Invalid,
    /// Signing failed.
    #[error("could not sign token")]
    Sign,
}

/// Signs and verifies access tokens with the `JWT_SECRET`.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenIssuer([redacted])")
    }
}

fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl TokenIssuer {
    /// Builds an issuer from the HMAC secret.
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose().as_bytes();
        // Only HS256 is accepted: `alg: none` and algorithm confusion are refused by the library.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// Issues a token for `user`, valid for `ttl_secs`. Returns the token and its lifetime.
    pub fn issue(&self, user: &User, ttl_secs: u64) -> Result<String, TokenError> {
        let iat = unix_now();
        self.sign(&Claims {
            sub: user.id,
            org_id: user.org_id,
            role: user.role,
            iat,
            exp: iat + ttl_secs,
            jti: Some(Uuid::new_v4()),
        })
    }

    /// Signs arbitrary claims (tests use it to build expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|_| TokenError::Sign)
    }

    /// Verifies signature, algorithm and expiry, and that the lifetime is within
    /// [`MAX_TTL_SECS`]: a correctly signed token for ten years (a leaked signing key, a bug in
    /// an issuer) is still refused.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)?;
        let now = unix_now();
        let leeway = self.validation.leeway;
        let too_long = claims.exp.saturating_sub(claims.iat) > MAX_TTL_SECS
            || claims.exp > now + MAX_TTL_SECS + leeway
            || claims.iat > now + leeway;
        if too_long {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::Utc;

    use super::*;
    use crate::domain::user::Email;

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(&SecretString::new(secret.into()))
    }

    fn user() -> User {
        User {
            id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            email: Email::parse("a@b.c").unwrap(),
            role: Role::Ops,
            disabled: false,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let good = issuer("0123456789abcdef0123456789abcdef");
        let u = user();
        let token = good.issue(&u, 60).unwrap();
        let claims = good.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.org_id, claims.role),
            (u.id, u.org_id, Role::Ops)
        );
        assert_eq!(claims.exp - claims.iat, 60);

        let other = issuer("fedcba9876543210fedcba9876543210");
        assert!(other.verify(&token).is_err(), "wrong signature accepted");

        let past = unix_now() - 120;
        let expired = good
            .sign(&Claims {
                sub: u.id,
                org_id: u.org_id,
                role: u.role,
                iat: past - 60,
                exp: past,
                jti: None,
            })
            .unwrap();
        assert!(good.verify(&expired).is_err(), "expired token accepted");

        let now = unix_now();
        for (iat, exp) in [
            (now, now + MAX_TTL_SECS + 3600),
            (now - 60, now + 10 * 365 * 24 * 3600),
            (now + 3600, now + 7200),
        ] {
            let long = good
                .sign(&Claims {
                    sub: u.id,
                    org_id: u.org_id,
                    role: u.role,
                    iat,
                    exp,
                    jti: None,
                })
                .unwrap();
            assert!(good.verify(&long).is_err(), "iat {iat} exp {exp} accepted");
        }

        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            good.verify(&format!("{none_header}.{payload}.")).is_err(),
            "alg none accepted"
        );
    }
}

//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): what we sign on every
//! delivery and check on every callback. `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac};
use reqwest::header::HeaderMap;

use crate::connectors::CallbackRefused;

/// How far a callback's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Most signatures one `webhook-signature` header may carry (a sender rotating its secret
/// sends two; more is no sender's need, only a way to make us hash in vain).
pub const MAX_SIGNATURES: usize = 4;
/// Longest `webhook-signature` header read.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 512;

/// Checks a received message's headers against its raw body; its `webhook-id`. The cheap
/// checks (presence, sizes, the timestamp) come first, and the body is hashed once whatever
/// the number of candidates, so an unauthenticated caller cannot buy much work.
pub fn verify(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, CallbackRefused> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return Err(CallbackRefused::Unauthenticated(
            "webhook-id, webhook-timestamp and webhook-signature are required",
        ));
    };
    if id.is_empty() || id.len() > 255 {
        return Err(CallbackRefused::Unauthenticated("webhook-id is malformed"));
    }
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| CallbackRefused::Unauthenticated("webhook-timestamp is not a number"))?;
    // `abs_diff`: a timestamp near i64::MIN or MAX must not overflow the subtraction.
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(CallbackRefused::Unauthenticated(
            "webhook-timestamp is more than 5 minutes away from now",
        ));
    }
    if signatures.len() > MAX_SIGNATURE_HEADER_BYTES
        || signatures.split(' ').count() > MAX_SIGNATURES
    {
        return Err(CallbackRefused::Unauthenticated(
            "webhook-signature carries more signatures than any sender needs",
        ));
    }
    // The body is hashed once; each candidate only finishes a copy of that state.
    let hashed = mac(key, id, timestamp, body);
    // Several space-separated signatures are allowed (a sender rotating its secret).
    let matches = signatures.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            return false;
        };
        hashed.clone().verify_slice(&tag).is_ok()
    });
    if matches {
        Ok(id.to_owned())
    } else {
        Err(CallbackRefused::Unauthenticated("signature does not match"))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn a_signature_verifies_and_nothing_else_does() {
        let key = b"0123456789abcdef0123456789abcdef";
        let body = br#"{"status":"ACKED"}"#;
        let sig = sign(key, "msg_1", 1_700_000_000, body);
        assert!(sig.starts_with("v1,"));
        let ok = verify(
            key,
            &headers("msg_1", 1_700_000_000, &sig),
            body,
            1_700_000_100,
        );
        assert_eq!(ok, Ok("msg_1".to_owned()));
        let rotated = format!("v1,AAAA {sig}");
        assert!(
            verify(
                key,
                &headers("msg_1", 1_700_000_000, &rotated),
                body,
                1_700_000_000
            )
            .is_ok()
        );
        for (h, b, now) in [
            (
                headers("msg_2", 1_700_000_000, &sig),
                &body[..],
                1_700_000_000,
            ),
            (
                headers("msg_1", 1_700_000_001, &sig),
                &body[..],
                1_700_000_000,
            ),
            (
                headers("msg_1", 1_700_000_000, &sig),
                &b"{}"[..],
                1_700_000_000,
            ),
            (
                headers("msg_1", 1_700_000_000, &sig),
                &body[..],
                1_700_000_301,
            ),
            (
                headers("msg_1", 1_700_000_000, "v2,abc"),
                &body[..],
                1_700_000_000,
            ),
            (HeaderMap::new(), &body[..], 1_700_000_000),
            // A timestamp at the end of the range must not overflow the freshness check.
            (headers("msg_1", i64::MIN, &sig), &body[..], 1_700_000_000),
            (headers("msg_1", i64::MAX, &sig), &body[..], 1_700_000_000),
            (headers("msg_1", 1_700_000_000, &sig), &body[..], i64::MIN),
            // More candidates than any sender needs are refused before hashing.
            (
                headers(
                    "msg_1",
                    1_700_000_000,
                    &format!("{} {sig}", ["v1,AAAA"; MAX_SIGNATURES].join(" ")),
                ),
                &body[..],
                1_700_000_000,
            ),
        ] {
            assert!(matches!(
                verify(key, &h, b, now),
                Err(CallbackRefused::Unauthenticated(_))
            ));
        }
    }
}

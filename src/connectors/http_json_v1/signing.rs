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

/// Checks a received message's headers against its raw body; its `webhook-id`.
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
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(CallbackRefused::Unauthenticated(
            "webhook-timestamp is more than 5 minutes away from now",
        ));
    }
    // Several space-separated signatures are allowed (a sender rotating its secret).
    let matches = signatures.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(key, id, timestamp, body).verify_slice(&tag).is_ok()
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
        ] {
            assert!(matches!(
                verify(key, &h, b, now),
                Err(CallbackRefused::Unauthenticated(_))
            ));
        }
    }
}

//! The HTTPS client: one pooled `reqwest` client per connection version (keep-alive, HTTP/2 when
//! the ERP offers it), a resolver that checks every address against
//! `CONNECTOR_BLOCKED_NETWORKS` before anything is dialled, no proxies, no redirects; and the
//! translation of HTTP outcomes into connector error codes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::{Map, json};

use super::config::HttpConfig;
use crate::connectors::network::{self, is_blocked};
use crate::connectors::{ConnectionKey, ConnectorError, ErrorCode};

/// How much of a response body is read (the order number lives near the top).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of a rejecting answer goes into `error_json`.
const ERROR_BODY_BYTES: usize = 1024;
/// Most clients kept (one per connection version in use).
const MAX_CLIENTS: usize = 256;

/// Resolves names once and refuses the whole name when any address is blocked.
#[derive(Debug)]
struct CheckedResolver {
    blocked: Vec<IpNet>,
    timeout: Duration,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let blocked = self.blocked.clone();
        let host = name.as_str().to_owned();
        let deadline = tokio::time::Instant::now() + self.timeout;
        Box::pin(async move {
            let addrs = network::resolve(&host, 0, &blocked, deadline)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A connection version ready to send: its parsed config and its client.
pub type Prepared = (Arc<HttpConfig>, reqwest::Client);

/// Parsed configs and clients by connection version (a version's config never changes, so
/// neither is built again while it is in use).
#[derive(Debug, Default)]
pub struct ClientPool {
    clients: Mutex<HashMap<ConnectionKey, Prepared>>,
}

impl ClientPool {
    /// The pooled config and client of a stored connection, or fresh ones (tests, unsaved
    /// configs); `parse` reads the config when it is not pooled yet.
    pub fn prepared(
        &self,
        key: Option<ConnectionKey>,
        parse: impl FnOnce() -> Result<HttpConfig, ConnectorError>,
        blocked: &[IpNet],
    ) -> Result<Prepared, ConnectorError> {
        let lock = || match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(found) = key.and_then(|k| lock().get(&k).cloned()) {
            return Ok(found);
        }
        let config = Arc::new(parse()?);
        let client = build(&config, blocked)?;
        if let Some(key) = key {
            let mut clients = lock();
            // An older version of this connection is never used again.
            clients.retain(|k, _| k.id != key.id);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
            clients.insert(key, (config.clone(), client.clone()));
        }
        Ok((config, client))
    }
}

fn build(config: &HttpConfig, blocked: &[IpNet]) -> Result<reqwest::Client, ConnectorError> {
    let unreadable = |what: &str| ConnectorError::with_detail(ErrorCode::ConfigUnreadable, what);
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(CheckedResolver {
            blocked: blocked.to_vec(),
            timeout: config.timeout(),
        }))
        .connect_timeout(config.timeout())
        .timeout(config.timeout())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .tls_info(true)
        .user_agent(concat!("OrderFlow-Connect/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca_certificate_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_str().as_bytes())
            .map_err(|_| unreadable("ca_certificate_pem"))?;
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&config.client_certificate_pem, &config.client_key_pem) {
        let mut pem = zeroize::Zeroizing::new(cert.as_str().as_bytes().to_vec());
        pem.push(b'\n');
        pem.extend_from_slice(key.secret().expose().as_bytes());
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|_| unreadable("client_key_pem"))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| ConnectorError::with_detail(ErrorCode::ConfigUnreadable, e))
}

/// Refuses what the resolver never sees: an address literal in the URL, and plain http when
/// it is not allowed (any more).
pub fn check_target(url: &Url, blocked: &[IpNet], allow_plain: bool) -> Result<(), ConnectorError> {
    if url.scheme() != "https" && !allow_plain {
        return Err(ConnectorError::with_detail(
            ErrorCode::ConfigUnreadable,
            "http:// URLs need CONNECTOR_ALLOW_PLAIN_HTTP=true",
        ));
    }
    let ip: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    if let Some(ip) = ip
        && is_blocked(ip, blocked)
    {
        return Err(ConnectorError::with_detail(
            ErrorCode::HostBlocked,
            format!("{ip} is in CONNECTOR_BLOCKED_NETWORKS"),
        ));
    }
    Ok(())
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The start of the body (at most 64 KiB).
    pub body: Vec<u8>,
    /// The server's certificate (DER), on https.
    pub peer_certificate: Option<Vec<u8>>,
}

/// POSTs a signed JSON body and reads the answer: Ok for 2xx, the classified failure otherwise.
pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<Answer, ConnectorError> {
    let host = url.host_str().unwrap_or("").to_owned();
    let response = client
        .post(url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| classify(&host, &e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| l.chars().take(512).collect::<String>());
    let peer_certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate().map(<[u8]>::to_vec));
    let limit = if status.is_success() {
        MAX_RESPONSE_BYTES
    } else {
        ERROR_BODY_BYTES
    };
    let body = read_limited(response, limit)
        .await
        .map_err(|e| classify(&host, &e))?;
    if status.is_success() {
        return Ok(Answer {
            status,
            body,
            peer_certificate,
        });
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]).into_owned();
    let mut details = Map::new();
    details.insert("http_status".into(), json!(status.as_u16()));
    details.insert("response_body".into(), json!(text));
    let code = status.as_u16();
    let err = if status.is_redirection() {
        details.insert("location".into(), json!(location));
        ConnectorError::with_detail(
            ErrorCode::RedirectRefused,
            format!(
                "HTTP {code} to {}",
                location.as_deref().unwrap_or("(no Location)")
            ),
        )
    } else if matches!(code, 408 | 425 | 429) || status.is_server_error() {
        ConnectorError::with_detail(ErrorCode::ErpUnavailable, format!("HTTP {code}"))
            .retry_after(retry_after)
    } else {
        ConnectorError::with_detail(ErrorCode::ErpRejected, format!("HTTP {code}"))
    };
    Err(err.details(details))
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// Maps a transport failure to a code: our resolver's verdict, timeouts, refusals, TLS
/// failures, and a connection lost mid-exchange.
fn classify(host: &str, err: &reqwest::Error) -> ConnectorError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut io_kind = None;
    let mut tls = None;
    while let Some(e) = source {
        if let Some(ours) = e.downcast_ref::<ConnectorError>() {
            return ours.clone();
        }
        if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
            tls.get_or_insert(rustls.to_string());
        }
        // `io::Error::source` skips the error it wraps; step into it instead.
        source = match e.downcast_ref::<std::io::Error>() {
            Some(io) => {
                io_kind.get_or_insert(io.kind());
                match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                    None => e.source(),
                }
            }
            None => e.source(),
        };
    }
    if let Some(reason) = tls {
        return ConnectorError::with_detail(ErrorCode::TlsError, format!("{host}: {reason}"));
    }
    if err.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        return ConnectorError::with_detail(
            ErrorCode::ConnectionTimeout,
            format!("{host} did not answer in time"),
        );
    }
    if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        return ConnectorError::with_detail(ErrorCode::ConnectionRefused, host);
    }
    // The innermost cause says what happened; the outer ones repeat the URL, whose query
    // could hold something the operator would rather not see in error_json.
    let cause = innermost(err);
    if err.is_connect() {
        return ConnectorError::with_detail(
            ErrorCode::ConnectionRefused,
            format!("{host}: {cause}"),
        );
    }
    ConnectorError::with_detail(ErrorCode::ConnectionLost, format!("{host}: {cause}"))
}

/// The deepest error in a chain, as text.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The headers of one signed delivery.
pub fn signed_headers(
    config: &HttpConfig,
    key: &[u8],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
    content_type: &str,
) -> Result<HeaderMap, ConnectorError> {
    let bad = |what: &str| ConnectorError::with_detail(ErrorCode::ConfigUnreadable, what);
    let mut headers = HeaderMap::new();
    for (name, value) in config.headers() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("headers"))?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| bad("headers"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let signature = super::signing::sign(key, message_id, timestamp, body);
    let id = HeaderValue::from_str(message_id).map_err(|_| bad("message id"))?;
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(|_| bad("content type"))?,
    );
    headers.insert("idempotency-key", id.clone());
    headers.insert("webhook-id", id);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signature).map_err(|_| bad("signature"))?,
    );
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon"), None);
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90));
    }

    #[test]
    fn address_literals_in_blocked_networks_are_refused() {
        let blocked =
            crate::config::parse_networks(crate::config::DEFAULT_BLOCKED_NETWORKS).unwrap();
        for url in [
            "https://127.0.0.1/x",
            "https://0x7f.1/x",
            "https://[::ffff:7f00:1]/x",
            "https://169.254.169.254/",
        ] {
            let err = check_target(&Url::parse(url).unwrap(), &blocked, false).unwrap_err();
            assert_eq!(err.code, ErrorCode::HostBlocked, "{url}");
        }
        let err =
            check_target(&Url::parse("http://erp.example/").unwrap(), &blocked, false).unwrap_err();
        assert_eq!(err.code, ErrorCode::ConfigUnreadable);
        assert!(
            check_target(
                &Url::parse("https://erp.example/").unwrap(),
                &blocked,
                false
            )
            .is_ok()
        );
    }
}

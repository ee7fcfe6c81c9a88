//! Where a connector may connect: host literals in every spelling, the blocked-network policy,
//! and resolve-once-then-dial-only-checked-addresses (no second lookup an attacker's DNS could
//! answer differently). Shared by every connector that opens network connections.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::connectors::{ConnectorError, ErrorCode};

/// The IPv4 address an IPv6 address carries, in the forms that reach an IPv4 host: mapped
/// (`::ffff:0:0/96`), compatible (`::/96`), NAT64 (`64:ff9b::/96`, local-use `64:ff9b:1::/48`)
/// and 6to4 (`2002::/16`).
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new(
        (s[6] >> 8) as u8,
        (s[6] & 0xff) as u8,
        (s[7] >> 8) as u8,
        (s[7] & 0xff) as u8,
    );
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            (hi & 0xff) as u8,
            (lo >> 8) as u8,
            (lo & 0xff) as u8,
        )),
        _ => None,
    }
}

/// True when `ip` may not be dialled: it, or the IPv4 address it embeds, is in `blocked`, or it
/// is an unspecified address (`0.0.0.0`, `::`), which Linux connects to the local host and which
/// is never a legitimate peer, whatever the operator configured.
pub fn is_blocked(ip: IpAddr, blocked: &[IpNet]) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => embedded_ipv4(v6),
    };
    if ip.is_unspecified() || v4.is_some_and(|v4| v4.is_unspecified()) {
        return true;
    }
    blocked
        .iter()
        .any(|net| net.contains(&ip) || v4.is_some_and(|v4| net.contains(&IpAddr::V4(v4))))
}

/// One part of a classic (`inet_aton`) IPv4 spelling: decimal, `0x` hex or `0`-prefixed octal.
fn inet_aton_part(part: &str) -> Option<u32> {
    if part.is_empty() {
        return None;
    }
    let lower = part.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return if hex.is_empty() {
            Some(0)
        } else {
            u32::from_str_radix(hex, 16).ok()
        };
    }
    if lower.len() > 1 && lower.starts_with('0') {
        return u32::from_str_radix(&lower[1..], 8).ok();
    }
    lower.parse().ok()
}

/// Parses the IPv4 spellings the C resolver accepts besides dotted decimal (`127.1`,
/// `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`), so a blocked address cannot hide behind one.
fn parse_inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = text.split('.').map(inet_aton_part).collect::<Option<_>>()?;
    let value = match parts.as_slice() {
        [a] => *a,
        [a, b] if *a <= 0xff && *b <= 0xff_ffff => (a << 24) | b,
        [a, b, c] if *a <= 0xff && *b <= 0xff && *c <= 0xffff => (a << 24) | (b << 16) | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|p| **p <= 0xff) => {
            (a << 24) | (b << 16) | (c << 8) | d
        }
        _ => return None,
    };
    Some(Ipv4Addr::from(value))
}

/// How a `host` value reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLiteral {
    /// An IP address, in whatever spelling it was given.
    Ip(IpAddr),
    /// A DNS name (lowercase, without a trailing dot).
    Name(String),
    /// Looks numeric but is no valid address (e.g. `999.1.1.1`, `1e2.3`).
    BadNumeric,
}

/// Reads a host value: IPv6 with or without brackets, IPv4 in every spelling the C resolver
/// accepts, otherwise a name. A name whose labels all start with a digit is treated as an
/// attempted address: no real host name looks like that, and resolvers read such strings as
/// addresses.
pub fn parse_host(raw: &str) -> HostLiteral {
    let host = raw.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return HostLiteral::Ip(ip);
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    if !bare.is_empty()
        && bare
            .split('.')
            .all(|label| label.starts_with(|c: char| c.is_ascii_digit()))
    {
        return match parse_inet_aton(bare) {
            Some(v4) => HostLiteral::Ip(IpAddr::V4(v4)),
            None => HostLiteral::BadNumeric,
        };
    }
    HostLiteral::Name(bare.to_ascii_lowercase())
}

/// Resolves `host:port`. Any blocked address refuses the whole host: a name that resolves both
/// inside and outside is exactly what a rebinding attack looks like.
pub async fn resolve(
    host: &str,
    port: u16,
    blocked: &[IpNet],
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ConnectorError> {
    let addrs: Vec<SocketAddr> = match parse_host(host) {
        HostLiteral::Ip(ip) => vec![SocketAddr::new(ip, port)],
        HostLiteral::BadNumeric => {
            return Err(ConnectorError::with_detail(ErrorCode::DnsFailure, host));
        }
        HostLiteral::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            match tokio::time::timeout_at(deadline, lookup).await {
                Err(_) => {
                    return Err(ConnectorError::with_detail(
                        ErrorCode::ConnectionTimeout,
                        format!("resolving {host} took too long"),
                    ));
                }
                Ok(Err(_)) => return Err(ConnectorError::with_detail(ErrorCode::DnsFailure, host)),
                Ok(Ok(found)) => found.collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err(ConnectorError::with_detail(ErrorCode::DnsFailure, host));
    }
    if let Some(bad) = addrs.iter().find(|a| is_blocked(a.ip(), blocked)) {
        return Err(ConnectorError::with_detail(
            ErrorCode::HostBlocked,
            format!(
                "{host} resolves to {}, which CONNECTOR_BLOCKED_NETWORKS refuses",
                bad.ip()
            ),
        ));
    }
    Ok(addrs)
}

/// Connects to the first checked address that answers before the deadline.
pub async fn connect(
    host: &str,
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, ConnectorError> {
    let mut last = ConnectorError::with_detail(ErrorCode::ConnectionRefused, host);
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ConnectorError::with_detail(
                    ErrorCode::ConnectionTimeout,
                    format!("{host}:{} did not answer", addr.port()),
                ));
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = ConnectorError::with_detail(ErrorCode::ConnectionTimeout, format!("{addr}"));
            }
            Ok(Err(e)) => {
                last = ConnectorError::with_detail(
                    ErrorCode::ConnectionRefused,
                    format!("{addr}: {e}"),
                );
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<IpNet> {
        crate::config::parse_networks(crate::config::DEFAULT_BLOCKED_NETWORKS).unwrap()
    }

    fn ip_of(text: &str) -> IpAddr {
        match parse_host(text) {
            HostLiteral::Ip(ip) => ip,
            other => panic!("{text} read as {other:?}"),
        }
    }

    #[test]
    fn every_spelling_of_a_blocked_address_is_blocked() {
        let blocked = defaults();
        for text in [
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "127.0.0.1.",
            "::1",
            "[::1]",
            "::",
            "[::]",
            "::0",
            "0:0:0:0:0:0:0:0",
            "0.0.0.0",
            "0",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:100.100.100.200",
            "fe80::1",
        ] {
            assert!(is_blocked(ip_of(text), &blocked), "{text} is not blocked");
        }
        for text in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "::ffff:93.184.216.34",
        ] {
            assert!(!is_blocked(ip_of(text), &blocked), "{text} is blocked");
        }
    }

    #[test]
    fn unspecified_addresses_are_blocked_even_without_a_policy() {
        for text in ["::", "0.0.0.0", "::ffff:0.0.0.0", "64:ff9b::"] {
            assert!(is_blocked(ip_of(text), &[]), "{text}");
        }
        assert!(!is_blocked(ip_of("127.0.0.1"), &[]));
    }

    #[test]
    fn names_and_bad_numbers_are_told_apart() {
        assert_eq!(
            parse_host("SFTP.Example.com."),
            HostLiteral::Name("sftp.example.com".into())
        );
        assert_eq!(
            parse_host("1e100.net"),
            HostLiteral::Name("1e100.net".into())
        );
        assert_eq!(parse_host("999.1.1.1"), HostLiteral::BadNumeric);
        assert_eq!(parse_host("1e2.3"), HostLiteral::BadNumeric);
        assert_eq!(ip_of("0x5d.0xb8.0xd8.0x22").to_string(), "93.184.216.34");
    }

    #[tokio::test]
    async fn names_resolving_into_blocked_networks_are_refused() {
        let blocked = crate::config::parse_networks("127.0.0.0/8,::1/128").unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let err = resolve("localhost", 22, &blocked, deadline)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::HostBlocked);
        let err = resolve("no-such-host.invalid", 22, &blocked, deadline)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::DnsFailure);
        assert_eq!(
            resolve("127.0.0.1", 22, &[], deadline).await.unwrap().len(),
            1
        );
        let err = resolve("::", 22, &[], deadline).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::HostBlocked);
    }
}

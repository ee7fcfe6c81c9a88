//! Where an SFTP host may be reached: resolve once, refuse blocked networks, connect only to an
//! address that was checked (no second lookup an attacker's DNS could answer differently).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::connectors::{ConnectorError, ErrorCode};

/// True when `ip` (or the IPv4 address an IPv4-mapped IPv6 address carries) is blocked.
pub fn is_blocked(ip: IpAddr, blocked: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    blocked.iter().any(|net| net.contains(&ip))
}

/// Resolves `host:port`. Any blocked address refuses the whole host: a name that resolves both
/// inside and outside is exactly what a rebinding attack looks like.
pub async fn resolve(
    host: &str,
    port: u16,
    blocked: &[IpNet],
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ConnectorError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
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

    #[test]
    fn mapped_ipv6_addresses_are_checked_as_ipv4() {
        let blocked =
            crate::config::parse_networks(crate::config::DEFAULT_BLOCKED_NETWORKS).unwrap();
        assert!(is_blocked("127.0.0.1".parse().unwrap(), &blocked));
        assert!(is_blocked("::ffff:127.0.0.1".parse().unwrap(), &blocked));
        assert!(is_blocked("::1".parse().unwrap(), &blocked));
        assert!(is_blocked("169.254.169.254".parse().unwrap(), &blocked));
        assert!(!is_blocked("93.184.216.34".parse().unwrap(), &blocked));
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
    }
}

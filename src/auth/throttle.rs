//! Failed-login throttling, per client address and per account (org slug + e-mail, whether or
//! not it exists, so a 429 never tells an attacker which accounts are real).
//!
//! Only failures count: each one takes a cell from both GCRA limiters (`governor`). When a
//! limiter runs dry the key is blocked until it refills, and every attempt for it, right or
//! wrong, is answered 429 with `Retry-After` before any password is checked.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failures one account may have in a burst, then one more per `ACCOUNT_REFILL`.
const ACCOUNT_BURST: u32 = 5;
const ACCOUNT_REFILL: Duration = Duration::from_secs(12);
/// Failures one client address may have in a burst, then one more per `CLIENT_REFILL`.
const CLIENT_BURST: u32 = 30;
const CLIENT_REFILL: Duration = Duration::from_secs(3);

/// A throttled key: wait this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; retry in {0:?}")]
pub struct Throttled(pub Duration);

struct Limiter<K: Hash + Eq + Clone> {
    cells: DefaultKeyedRateLimiter<K>,
    blocked_until: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(burst: u32, refill: Duration) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(refill)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            cells: RateLimiter::keyed(quota),
            blocked_until: Mutex::new(HashMap::new()),
        }
    }

    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let map = self.blocked_until.lock().ok()?;
        map.get(key)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn fail(&self, key: &K, now: Instant) -> Option<Duration> {
        let Err(not_until) = self.cells.check_key(key) else {
            return None;
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        if let Ok(mut map) = self.blocked_until.lock() {
            map.insert(key.clone(), now + wait);
        }
        Some(wait)
    }

    fn prune(&self, now: Instant) {
        self.cells.retain_recent();
        if let Ok(mut map) = self.blocked_until.lock() {
            map.retain(|_, until| *until > now);
        }
    }
}

/// The login throttle shared by the API and the console.
pub struct LoginThrottle {
    clients: Limiter<IpAddr>,
    accounts: Limiter<String>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginThrottle")
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            clients: Limiter::new(CLIENT_BURST, CLIENT_REFILL),
            accounts: Limiter::new(ACCOUNT_BURST, ACCOUNT_REFILL),
        }
    }
}

/// The account key: what was typed, normalised, bounded.
fn account_key(org_slug: &str, email: &str) -> String {
    let org: String = org_slug.trim().to_lowercase().chars().take(64).collect();
    let email: String = email.trim().to_lowercase().chars().take(320).collect();
    format!("{org}\u{0}{email}")
}

/// Rounds a wait up to whole seconds for `Retry-After`.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl LoginThrottle {
    /// Refuses an attempt whose client or account is blocked.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        org_slug: &str,
        email: &str,
    ) -> Result<(), Throttled> {
        let now = Instant::now();
        let by_account = self.accounts.blocked(&account_key(org_slug, email), now);
        let by_client = client.and_then(|ip| self.clients.blocked(&ip, now));
        match by_account.max(by_client) {
            Some(wait) => Err(Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt; Err when it used up the last allowance (the key is blocked now).
    pub fn failed(
        &self,
        client: Option<IpAddr>,
        org_slug: &str,
        email: &str,
    ) -> Result<(), Throttled> {
        let now = Instant::now();
        let by_account = self.accounts.fail(&account_key(org_slug, email), now);
        let by_client = client.and_then(|ip| self.clients.fail(&ip, now));
        match by_account.max(by_client) {
            Some(wait) => Err(Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Forgets expired state (called periodically so spraying many accounts cannot grow memory
    /// without bound).
    pub fn prune(&self) {
        let now = Instant::now();
        self.clients.prune(now);
        self.accounts.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_an_account_whatever_the_password_and_other_accounts_pass() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..ACCOUNT_BURST {
            throttle.check(Some(ip), "acme", "ann@acme.test").unwrap();
            throttle.failed(Some(ip), "acme", "ann@acme.test").unwrap();
        }
        let Throttled(wait) = throttle
            .failed(Some(ip), "acme", "ann@acme.test")
            .unwrap_err();
        assert!(wait > Duration::ZERO && wait <= ACCOUNT_REFILL);
        assert!(throttle.check(Some(ip), "ACME", " Ann@acme.test ").is_err());
        assert!(throttle.check(Some(ip), "acme", "bob@acme.test").is_ok());
        assert!(retry_after_secs(wait) >= 1);
    }

    #[test]
    fn one_client_spraying_accounts_is_blocked() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let outcomes: Vec<_> = (0..CLIENT_BURST + 1)
            .map(|i| throttle.failed(Some(ip), "acme", &format!("u{i}@acme.test")))
            .collect();
        assert!(outcomes.last().unwrap().is_err());
        assert!(throttle.check(Some(ip), "acme", "new@acme.test").is_err());
        let other: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(throttle.check(Some(other), "acme", "new@acme.test").is_ok());
    }
}

//! Reused SFTP sessions. A new SSH connection costs a TCP handshake, a key exchange and an
//! authentication (≈100 ms on a LAN); a pooled one costs nothing. Sessions are keyed by
//! connection id and config version, so a changed config never reuses a session opened with the
//! old one; a host key failure drops every session of that connection.
//!
//! Bounds: at most `max_per_connection` sessions per connection, each shared by up to
//! `max_in_flight` concurrent operations (SFTP multiplexes requests) before another is opened
//! and never by more than `max_operations`, and `max_total` pooled sessions in the process (a
//! semaphore every pooled session holds a permit of); connection tests' one-off sessions have
//! a budget of their own (`max_test_sessions`). Idle sessions
//! close after `idle_timeout`; dead ones (server gone, keepalive unanswered) are skipped and
//! dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::SftpTarget;
use super::session::SftpSession;
use crate::connectors::{ConnectionKey, ConnectorError, ErrorCode};

/// Pool sizing.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Sessions kept per connection.
    pub max_per_connection: usize,
    /// Concurrent operations per session before another session is opened.
    pub max_in_flight: usize,
    /// Concurrent operations per session at most; more wait for one to finish. OpenSSH's
    /// sftp-server (9.2) answered a 33rd concurrent open with a bare `Failure`, which would
    /// fail an export for good (IO_ERROR).
    pub max_operations: usize,
    /// Pooled sessions (deliveries, ack polls) open in the whole process.
    pub max_total: usize,
    /// One-off sessions of connection tests open in the whole process: a budget of their own,
    /// so tests (which anyone managing connectors can start, against any server) never take
    /// sessions that deliveries need.
    pub max_test_sessions: usize,
    /// Unused sessions are closed after this long.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_per_connection: 4,
            max_in_flight: 8,
            max_operations: 32,
            max_total: 64,
            max_test_sessions: 16,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A session and its bookkeeping.
pub struct PooledSession {
    /// The session.
    pub session: SftpSession,
    in_use: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Its connection's wake-up for operations waiting on a session.
    freed: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl PooledSession {
    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

/// The right to use a session for one operation sequence; returns it to the pool on drop.
pub struct Lease {
    session: Arc<PooledSession>,
    /// True when the session was opened earlier and reused.
    pub reused: bool,
}

impl Lease {
    /// The session.
    pub fn session(&self) -> &SftpSession {
        &self.session.session
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut t) = self.session.last_used.lock() {
            *t = Instant::now();
        }
        self.session.in_use.fetch_sub(1, Ordering::AcqRel);
        // One waiter of this connection re-plans per finished operation (all would be a herd).
        self.session.freed.notify_one();
    }
}

#[derive(Default)]
struct Entry {
    version: i64,
    sessions: Vec<Arc<PooledSession>>,
    connecting: usize,
    /// The last connect failed: only one connect at a time until one succeeds, so a server
    /// that hangs or refuses costs one attempt in flight, not one per waiting export.
    failing: bool,
    /// Woken when a connect finishes (every waiter) or an operation ends (one waiter).
    changed: Arc<Notify>,
}

/// The process-wide SFTP session pool.
pub struct SessionPool {
    limits: PoolLimits,
    permits: Arc<Semaphore>,
    test_permits: Arc<Semaphore>,
    entries: Mutex<HashMap<Uuid, Entry>>,
    connects: AtomicUsize,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("limits", &self.limits)
            .field("open", &self.open_sessions())
            .finish()
    }
}

impl Default for SessionPool {
    fn default() -> Self {
        Self::new(PoolLimits::default())
    }
}

/// Closes sessions that left the pool. One still leased by an operation in flight is only
/// forgotten: it closes when that operation drops it, instead of failing under its feet.
fn close_later(mut sessions: Vec<Arc<PooledSession>>) {
    sessions.retain(|s| s.in_use.load(Ordering::Acquire) == 0);
    if sessions.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for s in sessions {
                s.session.close().await;
            }
        });
    }
}

/// A reserved place for a session being opened; released on drop, so a cancelled connect
/// (its future dropped by a timeout) cannot leak the place and starve later callers.
struct ConnectingSlot<'a> {
    pool: &'a SessionPool,
    id: Uuid,
    changed: Arc<Notify>,
}

impl Drop for ConnectingSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.pool.entries.lock()
            && let Some(entry) = entries.get_mut(&self.id)
        {
            entry.connecting = entry.connecting.saturating_sub(1);
        }
        self.changed.notify_waiters();
    }
}

/// The longest a waiting operation goes without looking at the sessions again.
const RELOOK: Duration = Duration::from_millis(100);

enum Plan {
    Reuse(Arc<PooledSession>),
    Connect,
    /// Every place is taken (sessions being opened, or every session at its operations
    /// cap): wait for one to free up.
    Wait,
}

impl SessionPool {
    /// A pool with these limits.
    pub fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_total)),
            test_permits: Arc::new(Semaphore::new(limits.max_test_sessions)),
            entries: Mutex::new(HashMap::new()),
            connects: AtomicUsize::new(0),
        }
    }

    /// Sessions currently pooled (all connections).
    pub fn open_sessions(&self) -> usize {
        self.entries
            .lock()
            .map(|e| e.values().map(|x| x.sessions.len()).sum())
            .unwrap_or(0)
    }

    /// How many SSH connections this pool has opened (tests and benchmarks read it).
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::Relaxed)
    }

    /// Closes idle and dead sessions; `serve` calls it periodically, `acquire` on every call.
    pub fn prune(&self) {
        let mut dropped = Vec::new();
        if let Ok(mut entries) = self.entries.lock() {
            for entry in entries.values_mut() {
                entry.sessions.retain(|s| {
                    let keep = !s.session.is_closed()
                        && (s.in_use.load(Ordering::Acquire) > 0
                            || s.idle_for() < self.limits.idle_timeout);
                    if !keep {
                        dropped.push(s.clone());
                    }
                    keep
                });
            }
            entries.retain(|_, e| !e.sessions.is_empty() || e.connecting > 0);
        }
        close_later(dropped);
    }

    /// Drops every pooled session of a connection (after a host key failure).
    pub fn forget(&self, connection_id: Uuid) {
        let removed = self
            .entries
            .lock()
            .ok()
            .and_then(|mut e| e.remove(&connection_id));
        close_later(removed.map(|e| e.sessions).unwrap_or_default());
    }

    /// The wake-up of a connection's waiters.
    fn signal(&self, id: Uuid) -> Arc<Notify> {
        match self.entries.lock() {
            Ok(mut entries) => entries.entry(id).or_default().changed.clone(),
            Err(_) => Arc::default(),
        }
    }

    fn plan(&self, key: ConnectionKey) -> Plan {
        let Ok(mut entries) = self.entries.lock() else {
            return Plan::Wait;
        };
        let entry = entries.entry(key.id).or_default();
        if entry.version != key.version {
            // The config changed: sessions opened with the old one must not be used again.
            close_later(std::mem::take(&mut entry.sessions));
            entry.version = key.version;
        }
        entry.sessions.retain(|s| !s.session.is_closed());
        let least_busy = entry
            .sessions
            .iter()
            .min_by_key(|s| s.in_use.load(Ordering::Acquire))
            .cloned();
        if let Some(s) = &least_busy
            && s.in_use.load(Ordering::Acquire) < self.limits.max_in_flight
        {
            s.in_use.fetch_add(1, Ordering::AcqRel);
            return Plan::Reuse(s.clone());
        }
        let connect_cap = if entry.failing {
            1
        } else {
            self.limits.max_per_connection
        };
        if entry.sessions.len() + entry.connecting < self.limits.max_per_connection
            && entry.connecting < connect_cap
        {
            entry.connecting += 1;
            return Plan::Connect;
        }
        match least_busy {
            Some(s) if s.in_use.load(Ordering::Acquire) < self.limits.max_operations => {
                s.in_use.fetch_add(1, Ordering::AcqRel);
                Plan::Reuse(s)
            }
            _ => Plan::Wait,
        }
    }

    /// Frees a process-wide slot by closing the longest-idle unused session, if any.
    fn evict_one_idle(&self) -> bool {
        let victim = self.entries.lock().ok().and_then(|mut entries| {
            let (id, idx) = entries
                .iter()
                .flat_map(|(id, e)| e.sessions.iter().enumerate().map(move |(i, s)| (*id, i, s)))
                .filter(|(_, _, s)| s.in_use.load(Ordering::Acquire) == 0)
                .max_by_key(|(_, _, s)| s.idle_for())
                .map(|(id, i, _)| (id, i))?;
            entries.get_mut(&id).map(|e| e.sessions.swap_remove(idx))
        });
        let found = victim.is_some();
        close_later(victim.into_iter().collect());
        found
    }

    async fn permit(
        &self,
        target: &SftpTarget,
        pooled: bool,
    ) -> Result<OwnedSemaphorePermit, ConnectorError> {
        let (permits, what) = if pooled {
            (&self.permits, "too many SFTP sessions open in this process")
        } else {
            (
                &self.test_permits,
                "too many SFTP connection tests running in this process",
            )
        };
        if let Ok(p) = permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        if pooled {
            self.evict_one_idle();
        }
        tokio::time::timeout(target.timeout, permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| ConnectorError::with_detail(ErrorCode::ConnectionTimeout, what))
    }

    /// Opens a session. A test's session takes its permit before connecting (its budget
    /// bounds tests in progress); a pooled one only once connected, so connects hanging on
    /// servers that never answer hold no permit that deliveries elsewhere need.
    async fn open(
        &self,
        target: &SftpTarget,
        blocked: &[IpNet],
        freed: Arc<Notify>,
        pooled: bool,
    ) -> Result<Arc<PooledSession>, ConnectorError> {
        let early = if pooled {
            None
        } else {
            Some(self.permit(target, false).await?)
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        let session = SftpSession::connect(target, blocked).await?;
        let permit = match early {
            Some(permit) => permit,
            None => match self.permit(target, true).await {
                Ok(permit) => permit,
                Err(err) => {
                    session.close().await;
                    return Err(err);
                }
            },
        };
        Ok(Arc::new(PooledSession {
            session,
            in_use: AtomicUsize::new(1),
            last_used: Mutex::new(Instant::now()),
            freed,
            _permit: permit,
        }))
    }

    /// A session for `key` (pooled) or, with no key, a fresh session used once.
    pub async fn acquire(
        &self,
        key: Option<ConnectionKey>,
        target: &SftpTarget,
        blocked: &[IpNet],
    ) -> Result<Lease, ConnectorError> {
        self.prune();
        let Some(key) = key else {
            return Ok(Lease {
                session: self.open(target, blocked, Arc::default(), false).await?,
                reused: false,
            });
        };
        let deadline = tokio::time::Instant::now() + target.timeout;
        let changed = loop {
            // Looked up each time round: the entry may have been pruned and made anew.
            let changed = self.signal(key.id);
            let notified = changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a connect or an operation finishing in between
            // still wakes us.
            notified.as_mut().enable();
            match self.plan(key) {
                Plan::Reuse(session) => {
                    return Ok(Lease {
                        session,
                        reused: true,
                    });
                }
                Plan::Connect => break changed.clone(),
                Plan::Wait => {
                    // Looks again now and then even unwoken: a wake-up can go to a waiter
                    // that no longer needs it, or to an entry pruned meanwhile.
                    let look_again = tokio::time::Instant::now() + RELOOK;
                    if tokio::time::timeout_at(look_again.min(deadline), notified)
                        .await
                        .is_err()
                        && tokio::time::Instant::now() >= deadline
                    {
                        return Err(ConnectorError::with_detail(
                            ErrorCode::ConnectionTimeout,
                            "no SFTP session became free in time",
                        ));
                    }
                }
            }
        };
        let slot = ConnectingSlot {
            pool: self,
            id: key.id,
            changed: changed.clone(),
        };
        let opened = self.open(target, blocked, changed.clone(), true).await;
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&key.id)
            && entry.version == key.version
        {
            entry.failing = opened.is_err();
            if let Ok(session) = &opened {
                entry.sessions.push(session.clone());
            }
        }
        drop(slot);
        match opened {
            Ok(session) => Ok(Lease {
                session,
                reused: false,
            }),
            Err(err) => {
                if err.code == ErrorCode::HostKeyMismatch {
                    self.forget(key.id);
                }
                Err(err)
            }
        }
    }

    /// Removes a session that failed mid-use so no one else picks it up.
    pub fn discard(&self, key: Option<ConnectionKey>, lease: &Lease) {
        let Some(key) = key else { return };
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&key.id)
        {
            entry.sessions.retain(|s| !Arc::ptr_eq(s, &lease.session));
        }
    }
}

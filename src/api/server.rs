//! The HTTP/1.1 server loop: what `axum::serve` does, plus what a hostile client needs —
//! a header-read timeout, an idle timeout, a cap on open connections, and a shutdown deadline.
//!
//! - Headers must arrive within `header_read_timeout` (hyper enforces it).
//! - A connection with no request in progress for `idle_timeout` is closed (keep-alive idlers
//!   and half-sent requests alike; hyper itself has no idle timeout).
//! - At most `max_connections` are open. At the cap, the connection idle the longest is closed
//!   to make room (as nginx does with keep-alive connections), so a crowd of idle sockets cannot
//!   lock real clients out; only when every connection is busy does a new one wait.
//! - On shutdown: stop accepting, close idle connections, let requests in progress finish,
//!   and return after `shutdown_grace` whatever is still open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Hyper's own limit on a request head. Above it hyper answers a bare 431; below it our
/// middleware answers the standard JSON 431 at [`MAX_HEADER_BYTES`].
const HYPER_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Hyper's own limit on the number of headers (our middleware's is [`MAX_HEADER_COUNT`]).
const HYPER_MAX_HEADERS: usize = 1000;
/// Largest request head (all header names and values) the API accepts.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers a request may carry.
pub const MAX_HEADER_COUNT: usize = 100;

/// Connection handling limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time allowed to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request in progress.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Default open connections: half the process's descriptor limit (the rest is for the
/// database, dropzones and SFTP sessions), at most 1024 and at least 16.
fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4096);
    usize::try_from(soft / 2).unwrap_or(1024).clamp(16, 1024)
}

struct Conn {
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
    kill: Notify,
}

impl Conn {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.last_active.lock().ok().map(|t| t.elapsed())
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }
}

/// Marks a request in progress on its connection for as long as it lives.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Tracker {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Woken whenever a connection closes.
    closed: Notify,
}

impl Tracker {
    fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            kill: Notify::new(),
        });
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(id, conn.clone());
        }
        (id, conn)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.remove(&id);
        }
        self.closed.notify_waiters();
    }

    /// Closes the connection idle the longest; false if every connection is busy.
    fn evict_idlest(&self) -> bool {
        let victim = self.conns.lock().ok().and_then(|conns| {
            conns
                .values()
                .filter_map(|c| c.idle_for().map(|idle| (idle, c.clone())))
                .max_by_key(|(idle, _)| *idle)
                .map(|(_, c)| c)
        });
        match victim {
            Some(conn) => {
                conn.kill.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes every connection idle longer than `limit` (`Duration::ZERO`: every idle one).
    fn close_idle(&self, limit: Duration) {
        if let Ok(conns) = self.conns.lock() {
            for conn in conns.values() {
                if conn.idle_for().is_some_and(|idle| idle >= limit) {
                    conn.kill.notify_one();
                }
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; see the module docs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = Arc::new(Tracker::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let reaper = {
        let tracker = tracker.clone();
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500).min(idle));
            loop {
                tick.tick().await;
                tracker.close_idle(idle);
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        while tracker.len() >= limits.max_connections && !tracker.evict_idlest() {
            let closed = tracker.closed.notified();
            tokio::select! {
                () = closed => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut shutdown => return drain(tracker, stop_tx, reaper, limits).await,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors or a connection reset while queued: keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (id, conn) = tracker.add();
        let tracker = tracker.clone();
        let router = router.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, conn, router, limits, stop).await;
            tracker.remove(id);
        });
    }
    drain(tracker, stop_tx, reaper, limits).await
}

/// Serves one accepted connection until it closes, is killed (idle at the cap) or, after
/// shutdown began, finishes its request in progress.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
    router: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let per_request = conn.clone();
    let service = tower::service_fn(
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = InFlight::new(per_request.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                drop(guard);
                response
            }
        },
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_header_size(HYPER_MAX_HEADER_BYTES)
        .max_buf_size(HYPER_MAX_HEADER_BYTES + 64 * 1024)
        .max_headers(HYPER_MAX_HEADERS);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = conn.kill.notified() => break,
            changed = stop.changed(), if !graceful => {
                if changed.is_err() || *stop.borrow() {
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Shutdown: idle connections close now, busy ones finish their request, and after
/// `shutdown_grace` we return regardless.
async fn drain(
    tracker: Arc<Tracker>,
    stop: watch::Sender<bool>,
    reaper: tokio::task::JoinHandle<()>,
    limits: ServerLimits,
) -> std::io::Result<()> {
    reaper.abort();
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
    loop {
        tracker.close_idle(Duration::ZERO);
        let open = tracker.len();
        if open == 0 {
            break;
        }
        let closed = tracker.closed.notified();
        tokio::select! {
            () = closed => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(open, "shutdown deadline reached with requests still in progress");
                break;
            }
        }
    }
    Ok(())
}

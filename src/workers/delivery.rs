//! The delivery worker: schedules deliveries (the use case is `service::delivery`). It claims
//! due exports into a bounded number of slots, delivers each batch concurrently and records
//! what finished together.
//!
//! Fairness: slots are shared between the connections with work. Each connection may have at
//! most its share in flight — the slots divided among the connections that hold some, less for
//! a connection whose deliveries take long (its recent attempt time, or the age of its oldest
//! attempt still running, against half a second), and a connection this worker has not seen
//! deliver starts small and doubles with every delivery (slow start). So a connection alone in
//! the queue soon uses every slot, while ERPs that hang hold one slot each instead of all of
//! them. An attempt still waiting after half a second gives its slot back and waits among
//! the slow ones (a bounded number), so even many ERPs hanging at once cannot fill the slots.
//! Claims take exports round-robin across connections, each within its allowance, and skip
//! connections whose circuit is open; open circuits are probed with one export when their
//! cool-down ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use uuid::Uuid;

use crate::app::App;
pub use crate::service::delivery::Step;
use crate::service::delivery::{Finished, Prepared};
use crate::store::StoreError;

/// How much delivery runs at once.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryLimits {
    /// Deliveries in flight in this process.
    pub concurrency: usize,
    /// Deliveries in flight to one connection at most (its share may be less).
    pub per_connection: usize,
    /// Longest sleep between looks at the queue when nothing wakes the worker.
    pub poll_interval: Duration,
}

impl Default for DeliveryLimits {
    fn default() -> Self {
        Self {
            concurrency: 512,
            per_connection: 256,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// How long a push wake-up waits for more pushes before claiming (a latency cost far below a
/// delivery's, and it turns a burst of pushes into one claim).
const PUSH_GATHER: Duration = Duration::from_millis(3);
/// How long the recorder waits for more finished attempts before writing a batch.
const RECORD_GATHER: Duration = Duration::from_millis(2);
/// Most attempts recorded in one transaction.
const RECORD_BATCH: usize = 256;
/// How often open circuits are asked whether a probe is due.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// A delivery that takes longer than this makes its connection count as slow: its share
/// shrinks in proportion.
const SLOW_AFTER_MS: f64 = 500.0;
/// An attempt still waiting after this long gives its slot back and waits among the slow
/// ones (up to [`WAITING_PER_SLOT`] per slot), so ERPs that hang cannot hold the slots.
const SLOW_ATTEMPT: Duration = Duration::from_millis(500);
/// Slow attempts allowed to wait without a slot, per slot.
const WAITING_PER_SLOT: usize = 4;
/// In-flight deliveries a connection starts with before it has delivered anything here.
const SLOW_START: usize = 4;
/// A connection's figures are forgotten after this long without deliveries.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// The worker failed to talk to its own database (the loop retries; a lease that runs out
/// hands the export to the next claim).
#[derive(Debug, thiserror::Error)]
#[error("delivery worker: {0}")]
pub struct WorkerError(#[from] StoreError);

/// What this worker knows of one connection's deliveries.
#[derive(Debug, Clone)]
struct Load {
    /// Claimed and not yet finished.
    in_flight: usize,
    /// The last time one finished, or the first claim while none was in flight.
    progress_at: Instant,
    /// Recent attempt time (moving average), once one finished.
    recent_ms: Option<f64>,
    /// Deliveries finished here since the figures were (re)started.
    finished: usize,
}

impl Load {
    fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            progress_at: now,
            recent_ms: None,
            finished: 0,
        }
    }

    /// How many may be in flight at once, given the share of one connection now.
    fn cap(&self, now: Instant, share: usize, max: usize) -> usize {
        let waiting_ms = if self.in_flight > 0 {
            now.duration_since(self.progress_at).as_secs_f64() * 1000.0
        } else {
            0.0
        };
        let latency = self.recent_ms.unwrap_or(0.0).max(waiting_ms);
        let weighted = if latency > SLOW_AFTER_MS {
            (share as f64 * SLOW_AFTER_MS / latency) as usize
        } else {
            share
        };
        let started = SLOW_START.max(self.finished.saturating_mul(2));
        weighted.min(started).min(max).max(1)
    }
}

/// Delivers exports for one process.
pub struct DeliveryWorker {
    app: Arc<App>,
    id: Uuid,
    limits: DeliveryLimits,
    slots: Arc<Semaphore>,
    /// Slow attempts waiting without a slot.
    waiting: Arc<Semaphore>,
    loads: Mutex<HashMap<Uuid, Load>>,
    lanes: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    freed: Notify,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("id", &self.id)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Who may be claimed for, and how many each.
struct Allowances {
    /// Per known connection: how many more may be claimed (0: excluded).
    known: Vec<(Uuid, u32)>,
    /// For a connection not in `known`.
    newcomer: u32,
}

impl DeliveryWorker {
    /// A worker with its own lease identity.
    pub fn new(app: Arc<App>, limits: DeliveryLimits) -> Arc<Self> {
        Arc::new(Self {
            app,
            id: Uuid::new_v4(),
            slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            waiting: Arc::new(Semaphore::new(
                limits.concurrency.max(1).saturating_mul(WAITING_PER_SLOT),
            )),
            limits,
            loads: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        })
    }

    /// The lease owner id this worker claims with.
    pub fn id(&self) -> Uuid {
        self.id
    }

    fn loads(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Load>> {
        match self.loads.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A connection's exports are claimed at most half its limit at a time, so a busy one
    /// has its next batch claimed before the current one drains.
    fn batch(&self) -> usize {
        (self.limits.per_connection / 2).max(1)
    }

    /// What each connection may have claimed now (see the module docs).
    fn allowances(&self) -> Allowances {
        let now = Instant::now();
        let mut loads = self.loads();
        loads.retain(|_, l| l.in_flight > 0 || now.duration_since(l.progress_at) < FORGET_AFTER);
        let busy = loads.values().filter(|l| l.in_flight > 0).count();
        // Room for one more connection than those busy now.
        let share = (self.limits.concurrency / (busy + 1)).max(1);
        let max = self.limits.per_connection;
        let known = loads
            .iter()
            .map(|(id, l)| {
                let room = l.cap(now, share, max).saturating_sub(l.in_flight);
                (
                    *id,
                    u32::try_from(room.min(self.batch())).unwrap_or(u32::MAX),
                )
            })
            .collect();
        Allowances {
            known,
            newcomer: u32::try_from(SLOW_START.min(share).min(self.batch())).unwrap_or(1),
        }
    }

    /// One step, for tests and tools: takes a due probe or one due export, delivers it and
    /// records it.
    pub async fn deliver_one(&self) -> Result<Step, WorkerError> {
        let service = &self.app.delivery;
        let mut claimed = service.claim_probes(self.id).await?;
        if claimed.is_empty() {
            claimed = service.claim(self.id, 1, u32::MAX, &[], &[]).await?;
        }
        if claimed.is_empty() {
            return Ok(Step::Idle);
        }
        let mut finished = Vec::new();
        for prepared in service.prepare(self.id, claimed).await? {
            finished.push(match prepared {
                Prepared::Ready(job) => service.deliver(job).await,
                Prepared::Done(done) => done,
            });
        }
        Ok(service
            .record(self.id, finished)
            .await?
            .pop()
            .unwrap_or(Step::Idle))
    }

    /// Delivers until `shutdown` turns true, then lets deliveries in progress finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut notifications = self.subscribe().await;
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Finished>();
        let recorder = tokio::spawn(self.clone().record_loop(done_rx));
        let mut tasks = tokio::task::JoinSet::new();
        let mut next_gauge = tokio::time::Instant::now();
        let mut next_probe = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let now = tokio::time::Instant::now();
            if now >= next_gauge {
                self.app.delivery.update_gauges().await;
                next_gauge = now + Duration::from_secs(5);
            }
            if now >= next_probe {
                if let Err(err) = self.probe_and_spawn(&mut tasks, &done_tx).await {
                    tracing::warn!(error = %err, "taking circuit probes failed; retrying");
                }
                next_probe = now + PROBE_EVERY;
            }
            let full = match self.claim_and_spawn(&mut tasks, &done_tx).await {
                Ok(full) => full,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming exports failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    false
                }
            };
            if full {
                // The claim filled every free slot: there may be more work right away.
                continue;
            }
            let sleep = self.sleep_for().await.min(PROBE_EVERY);
            let pushed = tokio::select! {
                () = self.app.wake_delivery.notified() => true,
                () = self.freed.notified() => false,
                Some(()) = next_notification(&mut notifications) => true,
                () = tokio::time::sleep(sleep) => {
                    if notifications.is_none() {
                        notifications = self.subscribe().await;
                    }
                    false
                }
                _ = shutdown.changed() => false,
            };
            if pushed {
                // Pushes come in bursts: gather them for a moment and claim them together,
                // instead of one claim per push.
                tokio::time::sleep(PUSH_GATHER).await;
                drain_notifications(&mut notifications);
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(done_tx);
        let _ = recorder.await;
    }

    async fn subscribe(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        match self.app.delivery.notifications().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for pushes; polling instead");
                None
            }
        }
    }

    /// How long to wait when nothing wakes us: until the next export can be claimed, at most
    /// the poll interval.
    async fn sleep_for(&self) -> Duration {
        let poll = self.limits.poll_interval;
        match self.app.delivery.next_due_at().await {
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(10), poll),
            _ => poll,
        }
    }

    /// Claims as many exports as there are free slots, each connection within its allowance,
    /// and starts them as a batch; true when the claim came back full.
    async fn claim_and_spawn(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
    ) -> Result<bool, WorkerError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(false);
        }
        let allowances = self.allowances();
        let exclude: Vec<Uuid> = allowances
            .known
            .iter()
            .filter(|(_, room)| *room == 0)
            .map(|(id, _)| *id)
            .collect();
        let allowed: Vec<(Uuid, u32)> = allowances
            .known
            .iter()
            .filter(|(_, room)| *room > 0)
            .copied()
            .collect();
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        let claimed = self
            .app
            .delivery
            .claim(self.id, limit, allowances.newcomer, &exclude, &allowed)
            .await?;
        let full = claimed.len() >= free;
        tracing::debug!(
            claimed = claimed.len(),
            free,
            excluded = exclude.len(),
            "claimed exports"
        );
        self.spawn_batch(claimed, tasks, done);
        Ok(full)
    }

    /// Takes the probes that are due and starts them.
    async fn probe_and_spawn(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
    ) -> Result<(), WorkerError> {
        let probes = self.app.delivery.claim_probes(self.id).await?;
        self.spawn_batch(probes, tasks, done);
        Ok(())
    }

    /// Takes slots for claimed exports now (so the next claim already sees them) and prepares
    /// and delivers them in a task of their own while the loop goes on claiming.
    fn spawn_batch(
        self: &Arc<Self>,
        claimed: Vec<crate::domain::export::Export>,
        tasks: &mut tokio::task::JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
    ) {
        if claimed.is_empty() {
            return;
        }
        let mut reserved = Vec::with_capacity(claimed.len());
        for export in claimed {
            // A probe may find every slot taken: it waits in the batch for one instead.
            let slot = self.slots.clone().try_acquire_owned().ok();
            self.started(export.erp_connection_id);
            reserved.push((export, slot));
        }
        let worker = self.clone();
        let done = done.clone();
        tasks.spawn(async move { worker.run_batch(reserved, done).await });
    }

    fn started(&self, connection: Uuid) {
        let now = Instant::now();
        let mut loads = self.loads();
        let load = loads.entry(connection).or_insert_with(|| Load::new(now));
        if load.in_flight == 0 {
            load.progress_at = now;
        }
        load.in_flight += 1;
    }

    /// A delivery finished (or was dropped): its connection's figures move, its slot is freed,
    /// and the claim loop is woken when that can change what a claim takes.
    fn finished(
        &self,
        connection: Uuid,
        took: Option<Duration>,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let now = Instant::now();
        {
            let mut loads = self.loads();
            let load = loads.entry(connection).or_insert_with(|| Load::new(now));
            load.in_flight = load.in_flight.saturating_sub(1);
            load.progress_at = now;
            if let Some(took) = took {
                let ms = took.as_secs_f64() * 1000.0;
                load.recent_ms = Some(match load.recent_ms {
                    Some(avg) => avg * 0.8 + ms * 0.2,
                    None => ms,
                });
                load.finished = load.finished.saturating_add(1);
            }
        }
        let was_full = self.slots.available_permits() == 0;
        drop(slot);
        if was_full || took.is_some() {
            self.freed.notify_one();
        }
    }

    /// Prepares a claimed batch and delivers its exports concurrently (each under its
    /// connection's lane), handing every outcome to the recorder and freeing its slot.
    async fn run_batch(
        self: Arc<Self>,
        reserved: Vec<(crate::domain::export::Export, Option<OwnedSemaphorePermit>)>,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let service = &self.app.delivery;
        let mut slots: HashMap<Uuid, Option<OwnedSemaphorePermit>> = HashMap::new();
        let mut exports = Vec::with_capacity(reserved.len());
        for (export, slot) in reserved {
            slots.insert(export.id, slot);
            exports.push(export);
        }
        let connections: Vec<(Uuid, Uuid)> = exports
            .iter()
            .map(|e| (e.id, e.erp_connection_id))
            .collect();
        let batch = match service.prepare(self.id, exports).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "preparing deliveries failed; their leases will run out and they are claimed again");
                for (id, connection) in connections {
                    self.finished(connection, None, slots.remove(&id).flatten());
                }
                return;
            }
        };
        // Exports dropped while preparing (lease lost) give their slots back now.
        for (id, connection) in &connections {
            if !batch.iter().any(|p| p.export().id == *id) {
                self.finished(*connection, None, slots.remove(id).flatten());
            }
        }
        let deliveries = batch.into_iter().map(|prepared| {
            let slot = slots.remove(&prepared.export().id).flatten();
            self.clone().deliver_prepared(prepared, slot, done.clone())
        });
        futures::future::join_all(deliveries).await;
    }

    /// Delivers one prepared export under its connection's lane (or passes on its finished
    /// preparation), hands the outcome to the recorder and frees its slot. An attempt slower
    /// than `SLOW_ATTEMPT` gives its slot to others while it waits.
    async fn deliver_prepared(
        self: Arc<Self>,
        prepared: Prepared,
        slot: Option<OwnedSemaphorePermit>,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let connection = prepared.export().erp_connection_id;
        // A probe that found no free slot waits for one here.
        let slot = match slot {
            Some(slot) => Some(slot),
            None => self.slots.clone().acquire_owned().await.ok(),
        };
        let started = Instant::now();
        let mut slot = slot;
        let mut waiting = None;
        let (finished, tried) = match prepared {
            Prepared::Ready(job) => {
                let lane = self.lane(connection);
                match lane.acquire_owned().await {
                    Ok(_lane) => {
                        let delivery = self.app.delivery.deliver(job);
                        tokio::pin!(delivery);
                        let finished = tokio::select! {
                            finished = &mut delivery => finished,
                            () = tokio::time::sleep(SLOW_ATTEMPT) => {
                                // Waiting on a slow ERP costs a socket, not work: the
                                // slot goes to others while this attempt waits.
                                if let Ok(permit) = self.waiting.clone().try_acquire_owned() {
                                    waiting = Some(permit);
                                    drop(slot.take());
                                    self.freed.notify_one();
                                }
                                delivery.await
                            }
                        };
                        (Some(finished), true)
                    }
                    Err(_) => (None, false),
                }
            }
            Prepared::Done(finished) => (Some(finished), false),
        };
        let took = tried.then(|| started.elapsed());
        if let Some(finished) = finished {
            let _ = done.send(finished);
        }
        drop(waiting);
        self.finished(connection, took, slot);
    }

    /// The per-connection limit's semaphore.
    fn lane(&self, connection: Uuid) -> Arc<Semaphore> {
        let mut lanes = match self.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes
            .entry(connection)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_connection.max(1))))
            .clone()
    }

    /// Records finished attempts as they come, together whatever finished meanwhile.
    async fn record_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let gather = tokio::time::sleep(RECORD_GATHER);
            tokio::pin!(gather);
            while batch.len() < RECORD_BATCH {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(done) => batch.push(done),
                        None => break,
                    },
                    () = &mut gather => break,
                }
            }
            if let Err(err) = self.app.delivery.record(self.id, batch).await {
                tracing::warn!(error = %err, "recording deliveries failed; their leases will run out and they are delivered again");
            }
        }
    }
}

/// Consumes notifications that already arrived (one claim answers them all).
fn drain_notifications(stream: &mut Option<futures::stream::BoxStream<'static, ()>>) {
    if let Some(s) = stream {
        while let Some(Some(())) = s.next().now_or_never() {}
    }
}

async fn next_notification(
    stream: &mut Option<futures::stream::BoxStream<'static, ()>>,
) -> Option<()> {
    match stream {
        Some(s) => match s.next().await {
            Some(()) => Some(()),
            None => {
                *stream = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_shrink_for_slow_connections_and_grow_with_deliveries() {
        let now = Instant::now();
        let fresh = Load::new(now);
        // Unknown connections start small.
        assert_eq!(fresh.cap(now, 512, 256), SLOW_START);
        // A fast connection that delivered a lot may use its whole share, up to the limit.
        let fast = Load {
            recent_ms: Some(5.0),
            finished: 1000,
            ..Load::new(now)
        };
        assert_eq!(fast.cap(now, 512, 256), 256);
        assert_eq!(fast.cap(now, 10, 256), 10);
        // One whose attempts take 10 s gets a twentieth of its share, at least one.
        let slow = Load {
            recent_ms: Some(10_000.0),
            finished: 1000,
            ..Load::new(now)
        };
        assert_eq!(slow.cap(now, 512, 256), 25);
        assert_eq!(slow.cap(now, 10, 256), 1);
        // One with an attempt running for 5 s and nothing finished counts as that slow.
        let hanging = Load {
            in_flight: 4,
            progress_at: now - Duration::from_secs(5),
            ..Load::new(now)
        };
        assert_eq!(hanging.cap(now, 100, 256), SLOW_START);
        assert_eq!(hanging.cap(now, 10, 256), 1);
    }
}

//! What a finished delivery attempt means: for the export (sent, retried, failed, or put back
//! in the queue untouched) and for its connection's circuit breaker. Pure decisions, no I/O;
//! the delivery service applies them.
//!
//! The circuit protects everyone from one connection that cannot be reached: after a run of
//! consecutive transient failures it opens, its exports wait as PENDING without burning
//! attempts and are not claimed, and after a cool-down (growing with each opening, capped,
//! jittered) one probe export is tried. A success closes it and the backlog drains; a failure
//! opens it again for longer. An ERP that asks for time (`Retry-After`) gets it for the whole
//! connection. Permanent failures say the connection answered: they never open the circuit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Settings of the retry schedule and the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryPolicy {
    /// Attempts before an export fails for good.
    pub max_attempts: u32,
    /// First wait after a transient failure (doubles per attempt, jittered).
    pub retry_base: Duration,
    /// Consecutive transient failures of one connection that open its circuit.
    pub failures_to_open: u32,
    /// First cool-down of an opened circuit (doubles per reopening, jittered).
    pub cool_down_base: Duration,
    /// Longest cool-down.
    pub cool_down_max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            retry_base: Duration::from_secs(5),
            failures_to_open: 5,
            cool_down_base: Duration::from_secs(5),
            // A recovered ERP is probed within the cap (plus jitter): short enough that its
            // backlog moves within a minute of its return.
            cool_down_max: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(15 * 60),
        }
    }
}

/// A circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// The connection is not tried until its next probe.
    Open,
    /// One probe export is on its way.
    HalfOpen,
}

impl CircuitState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// The stored name read back.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "closed" => Some(CircuitState::Closed),
            "open" => Some(CircuitState::Open),
            "half_open" => Some(CircuitState::HalfOpen),
            _ => None,
        }
    }
}

/// A connection's circuit, as stored (a connection without a row is closed and clean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// The state.
    pub state: CircuitState,
    /// Transient failures since the last success.
    pub consecutive_failures: u32,
    /// Openings since the circuit was last closed (sets the cool-down).
    pub openings: u32,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    /// When an open circuit sends its next probe.
    pub next_probe_at: Option<DateTime<Utc>>,
    /// The last failure's code and message.
    pub last_error: Option<(String, String)>,
}

impl Circuit {
    /// A closed circuit with no failures.
    pub fn closed(now: DateTime<Utc>) -> Self {
        Self {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            openings: 0,
            since: now,
            next_probe_at: None,
            last_error: None,
        }
    }

    /// How it looks to a user: `healthy`, `degraded` (failing, not yet open), `open`,
    /// `half_open`.
    pub fn health(&self) -> Health {
        match self.state {
            CircuitState::Open => Health::Open,
            CircuitState::HalfOpen => Health::HalfOpen,
            CircuitState::Closed if self.consecutive_failures > 0 => Health::Degraded,
            CircuitState::Closed => Health::Healthy,
        }
    }
}

/// A connection's health as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Deliveries succeed.
    Healthy,
    /// Recent deliveries failed, the circuit is still closed.
    Degraded,
    /// The connection is not tried until its next probe.
    Open,
    /// A probe is on its way.
    HalfOpen,
}

impl Health {
    /// Every state, in the order a gauge lists them.
    pub const ALL: [Health; 4] = [
        Health::Healthy,
        Health::Degraded,
        Health::Open,
        Health::HalfOpen,
    ];

    /// The name shown and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Open => "open",
            Health::HalfOpen => "half_open",
        }
    }
}

/// How an attempt ended, as far as the decision is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered.
    Delivered,
    /// Stopped before the connection was tried (its config unreadable, our archive down, the
    /// file not renderable): says nothing about the connection, so its circuit is untouched.
    NotTried {
        /// Whether a later attempt may succeed unchanged.
        transient: bool,
    },
    /// Failed.
    Failed {
        /// Its code (for the circuit's last error).
        code: String,
        /// Its message.
        message: String,
        /// Whether a later attempt may succeed unchanged.
        transient: bool,
        /// How long the ERP asked us to wait.
        retry_after: Option<Duration>,
    },
}

/// What happens to the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDecision {
    /// SENT.
    Sent,
    /// Due again at this time; the attempt counts.
    Retry(DateTime<Utc>),
    /// Back in the queue as if the attempt never happened (its connection is the problem):
    /// due at this time, the attempt not counted.
    Requeue(DateTime<Utc>),
    /// FAILED for good.
    Fail,
}

/// What happens to the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircuitChange {
    /// Nothing to record.
    Unchanged,
    /// Record this state (failures counted, an error noted).
    Update(Circuit),
    /// It opened (log and audit it).
    Opened(Circuit),
    /// It closed after being open or half-open (log and audit it).
    Closed(Circuit),
}

impl CircuitChange {
    /// The circuit after the change (`before` if unchanged).
    pub fn after<'a>(&'a self, before: &'a Circuit) -> &'a Circuit {
        match self {
            CircuitChange::Unchanged => before,
            CircuitChange::Update(c) | CircuitChange::Opened(c) | CircuitChange::Closed(c) => c,
        }
    }
}

/// The decision about one finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// For the export.
    pub export: ExportDecision,
    /// For its connection's circuit.
    pub circuit: CircuitChange,
}

/// Random draws the decision may use (jitter), in `[0, 1)`; passed in so decisions are
/// repeatable in tests.
#[derive(Debug, Clone, Copy)]
pub struct Jitter {
    /// For the export's backoff.
    pub backoff: f64,
    /// For the circuit's cool-down.
    pub cool_down: f64,
}

/// The wait before attempt `attempt + 1` after `attempt` failed transiently: `base` doubling
/// per attempt, capped at an hour, times a jitter factor in `[0.75, 1.25)` (`unit` in `[0, 1)`)
/// so exports that failed together do not retry together.
pub fn backoff(base: Duration, attempt: u32, unit: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    let raw = base
        .saturating_mul(1u32 << doublings)
        .min(Duration::from_secs(3600));
    raw.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

/// The cool-down after the circuit's `openings`-th opening: the base doubling per opening,
/// capped, times a jitter factor in `[0.75, 1.25)`, so circuits opened together do not probe
/// together.
pub fn cool_down(policy: &DeliveryPolicy, openings: u32, unit: f64) -> Duration {
    let doublings = openings.saturating_sub(1).min(20);
    let raw = policy
        .cool_down_base
        .saturating_mul(1u32 << doublings)
        .min(policy.cool_down_max);
    raw.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

fn at(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// Decides what one finished attempt (the export's `attempt`-th, counting this one) means,
/// given its connection's circuit as it stands.
pub fn decide(
    policy: &DeliveryPolicy,
    circuit: &Circuit,
    attempt: u32,
    result: &AttemptResult,
    now: DateTime<Utc>,
    jitter: Jitter,
) -> Decision {
    match result {
        AttemptResult::Delivered => Decision {
            export: ExportDecision::Sent,
            circuit: answered(circuit, now, None),
        },
        AttemptResult::NotTried { transient } => Decision {
            export: if *transient {
                retry_or_fail(policy, attempt, now, jitter)
            } else {
                ExportDecision::Fail
            },
            circuit: CircuitChange::Unchanged,
        },
        AttemptResult::Failed {
            transient: false,
            code,
            message,
            ..
        } => Decision {
            export: ExportDecision::Fail,
            circuit: answered(circuit, now, Some((code.clone(), message.clone()))),
        },
        AttemptResult::Failed {
            transient: true,
            code,
            message,
            retry_after,
        } => {
            let error = Some((code.clone(), message.clone()));
            transient_failure(policy, circuit, attempt, error, *retry_after, now, jitter)
        }
    }
}

/// Retried after a backoff, or failed for good when this was the last attempt allowed.
fn retry_or_fail(
    policy: &DeliveryPolicy,
    attempt: u32,
    now: DateTime<Utc>,
    jitter: Jitter,
) -> ExportDecision {
    if attempt >= policy.max_attempts {
        ExportDecision::Fail
    } else {
        ExportDecision::Retry(at(now, backoff(policy.retry_base, attempt, jitter.backoff)))
    }
}

/// A transient failure of the connection: counted against its circuit, which it may open
/// (then the export waits for the connection without using up its attempts).
fn transient_failure(
    policy: &DeliveryPolicy,
    circuit: &Circuit,
    attempt: u32,
    error: Option<(String, String)>,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
    jitter: Jitter,
) -> Decision {
    let asked = retry_after.map(|w| w.min(policy.retry_after_cap));
    let failures = circuit.consecutive_failures.saturating_add(1);
    if circuit.state == CircuitState::Open {
        // An attempt that started before the circuit opened: it waits with the rest,
        // and the cool-down already running is not extended by it.
        let next = circuit.next_probe_at.unwrap_or(now);
        return Decision {
            export: ExportDecision::Requeue(next),
            circuit: CircuitChange::Update(Circuit {
                consecutive_failures: failures,
                last_error: error,
                ..circuit.clone()
            }),
        };
    }
    let opens = circuit.state == CircuitState::HalfOpen
        || failures >= policy.failures_to_open
        || asked.is_some();
    if opens {
        let openings = circuit.openings.saturating_add(1);
        let wait = cool_down(policy, openings, jitter.cool_down).max(asked.unwrap_or_default());
        let opened = Circuit {
            state: CircuitState::Open,
            consecutive_failures: failures,
            openings,
            since: now,
            next_probe_at: Some(at(now, wait)),
            last_error: error,
        };
        let next = at(now, wait);
        // The connection failed, not the export: it waits for the connection without
        // using up its attempts.
        return Decision {
            export: ExportDecision::Requeue(next),
            circuit: CircuitChange::Opened(opened),
        };
    }
    Decision {
        export: retry_or_fail(policy, attempt, now, jitter),
        circuit: CircuitChange::Update(Circuit {
            consecutive_failures: failures,
            last_error: error,
            ..circuit.clone()
        }),
    }
}

/// The connection answered (a delivery, or a refusal that proves it is reachable): a circuit
/// that was open or half-open closes, failures are forgotten.
fn answered(
    circuit: &Circuit,
    now: DateTime<Utc>,
    error: Option<(String, String)>,
) -> CircuitChange {
    let reopened = circuit.state != CircuitState::Closed;
    if !reopened && circuit.consecutive_failures == 0 && error.is_none() {
        return CircuitChange::Unchanged;
    }
    let closed = Circuit {
        last_error: error.or_else(|| circuit.last_error.clone()),
        since: if reopened || circuit.consecutive_failures > 0 {
            now
        } else {
            circuit.since
        },
        ..Circuit::closed(now)
    };
    if reopened {
        CircuitChange::Closed(closed)
    } else if closed == *circuit {
        CircuitChange::Unchanged
    } else {
        CircuitChange::Update(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    const HALF: Jitter = Jitter {
        backoff: 0.5,
        cool_down: 0.5,
    };

    fn transient() -> AttemptResult {
        AttemptResult::Failed {
            code: "CONNECTION_TIMEOUT".into(),
            message: "Connection timeout".into(),
            transient: true,
            retry_after: None,
        }
    }

    fn permanent() -> AttemptResult {
        AttemptResult::Failed {
            code: "AUTH_FAILED".into(),
            message: "Authentication failed".into(),
            transient: false,
            retry_after: None,
        }
    }

    fn failing(n: u32) -> Circuit {
        Circuit {
            consecutive_failures: n,
            last_error: Some(("CONNECTION_TIMEOUT".into(), "Connection timeout".into())),
            ..Circuit::closed(t(0))
        }
    }

    fn open(openings: u32) -> Circuit {
        Circuit {
            state: CircuitState::Open,
            openings,
            next_probe_at: Some(t(5)),
            ..failing(5)
        }
    }

    #[test]
    fn a_delivery_on_a_clean_circuit_changes_nothing() {
        let p = DeliveryPolicy::default();
        let d = decide(
            &p,
            &Circuit::closed(t(0)),
            1,
            &AttemptResult::Delivered,
            t(1),
            HALF,
        );
        assert_eq!(d.export, ExportDecision::Sent);
        assert_eq!(d.circuit, CircuitChange::Unchanged);
    }

    #[test]
    fn a_delivery_after_failures_clears_them() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &failing(3), 1, &AttemptResult::Delivered, t(9), HALF);
        assert_eq!(d.export, ExportDecision::Sent);
        let CircuitChange::Update(c) = d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.consecutive_failures, 0);
        assert_eq!(c.health(), Health::Healthy);
        assert_eq!(c.since, t(9));
    }

    #[test]
    fn a_successful_probe_closes_the_circuit() {
        let p = DeliveryPolicy::default();
        let half_open = Circuit {
            state: CircuitState::HalfOpen,
            ..open(2)
        };
        let d = decide(&p, &half_open, 3, &AttemptResult::Delivered, t(20), HALF);
        assert_eq!(d.export, ExportDecision::Sent);
        let CircuitChange::Closed(c) = d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.state, CircuitState::Closed);
        assert_eq!((c.consecutive_failures, c.openings), (0, 0));
        assert_eq!(c.next_probe_at, None);
    }

    #[test]
    fn a_transient_failure_below_the_threshold_retries_with_backoff_and_counts() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &failing(1), 2, &transient(), t(0), HALF);
        assert_eq!(d.export, ExportDecision::Retry(t(10)));
        let CircuitChange::Update(c) = d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.consecutive_failures, 2);
        assert_eq!(c.health(), Health::Degraded);
    }

    #[test]
    fn the_last_attempt_fails_for_good() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &Circuit::closed(t(0)), 6, &transient(), t(0), HALF);
        assert_eq!(d.export, ExportDecision::Fail);
    }

    #[test]
    fn the_threshold_opens_the_circuit_and_requeues_without_burning() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &failing(4), 2, &transient(), t(0), HALF);
        let CircuitChange::Opened(c) = &d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.state, CircuitState::Open);
        assert_eq!(c.openings, 1);
        assert_eq!(c.next_probe_at, Some(t(5)));
        assert_eq!(d.export, ExportDecision::Requeue(t(5)));
        assert_eq!(c.health(), Health::Open);
    }

    #[test]
    fn a_failing_probe_reopens_for_longer_capped() {
        let p = DeliveryPolicy::default();
        let probe = Circuit {
            state: CircuitState::HalfOpen,
            ..open(2)
        };
        let d = decide(&p, &probe, 1, &transient(), t(0), HALF);
        let CircuitChange::Opened(c) = &d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.openings, 3);
        // 5 s doubled twice.
        assert_eq!(c.next_probe_at, Some(t(20)));
        let probe = Circuit {
            state: CircuitState::HalfOpen,
            ..open(30)
        };
        let d = decide(&p, &probe, 1, &transient(), t(0), HALF);
        assert_eq!(d.export, ExportDecision::Requeue(t(30)));
        // Jitter spreads cool-downs within ±25 %.
        let early = cool_down(&p, 1, 0.0);
        let late = cool_down(&p, 1, 0.999);
        assert!(early >= Duration::from_millis(3750) && late < Duration::from_millis(6250));
    }

    #[test]
    fn retry_after_is_honoured_for_the_whole_connection_capped() {
        let p = DeliveryPolicy::default();
        let asked = AttemptResult::Failed {
            code: "ERP_UNAVAILABLE".into(),
            message: "HTTP 429".into(),
            transient: true,
            retry_after: Some(Duration::from_secs(120)),
        };
        let d = decide(&p, &Circuit::closed(t(0)), 1, &asked, t(0), HALF);
        assert_eq!(d.export, ExportDecision::Requeue(t(120)));
        let CircuitChange::Opened(c) = &d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.next_probe_at, Some(t(120)));
        let greedy = AttemptResult::Failed {
            code: "ERP_UNAVAILABLE".into(),
            message: "HTTP 503".into(),
            transient: true,
            retry_after: Some(Duration::from_secs(86_400)),
        };
        let d = decide(&p, &Circuit::closed(t(0)), 1, &greedy, t(0), HALF);
        assert_eq!(d.export, ExportDecision::Requeue(t(900)));
    }

    #[test]
    fn permanent_failures_fail_the_export_and_never_open_the_circuit() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &failing(4), 1, &permanent(), t(3), HALF);
        assert_eq!(d.export, ExportDecision::Fail);
        let CircuitChange::Update(c) = &d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(c.state, CircuitState::Closed);
        assert_eq!(c.consecutive_failures, 0);
        assert_eq!(c.last_error.as_ref().unwrap().0, "AUTH_FAILED");
        // A probe refused for good still proves the connection answers: it closes.
        let probe = Circuit {
            state: CircuitState::HalfOpen,
            ..open(1)
        };
        let d = decide(&p, &probe, 1, &permanent(), t(3), HALF);
        assert!(matches!(d.circuit, CircuitChange::Closed(_)));
        assert_eq!(d.export, ExportDecision::Fail);
    }

    #[test]
    fn failures_while_open_wait_for_the_running_cool_down() {
        let p = DeliveryPolicy::default();
        let d = decide(&p, &open(1), 1, &transient(), t(0), HALF);
        assert_eq!(d.export, ExportDecision::Requeue(t(5)));
        let CircuitChange::Update(c) = &d.circuit else {
            panic!("{:?}", d.circuit)
        };
        assert_eq!(
            (c.state, c.openings, c.next_probe_at),
            (CircuitState::Open, 1, Some(t(5)))
        );
        // A late success of an attempt still in flight proves the connection answers.
        let d = decide(&p, &open(1), 1, &AttemptResult::Delivered, t(1), HALF);
        assert!(matches!(d.circuit, CircuitChange::Closed(_)));
    }

    #[test]
    fn failures_before_the_connection_was_tried_leave_the_circuit_alone() {
        let p = DeliveryPolicy::default();
        let storage_down = AttemptResult::NotTried { transient: true };
        let d = decide(&p, &failing(4), 1, &storage_down, t(0), HALF);
        assert_eq!(d.export, ExportDecision::Retry(t(5)));
        assert_eq!(d.circuit, CircuitChange::Unchanged);
        let d = decide(&p, &failing(4), 6, &storage_down, t(0), HALF);
        assert_eq!(d.export, ExportDecision::Fail);
        let unreadable = AttemptResult::NotTried { transient: false };
        let d = decide(&p, &open(1), 1, &unreadable, t(0), HALF);
        assert_eq!(d.export, ExportDecision::Fail);
        assert_eq!(d.circuit, CircuitChange::Unchanged);
    }

    #[test]
    fn states_round_trip_and_backoff_doubles() {
        for s in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ] {
            assert_eq!(CircuitState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CircuitState::parse("x"), None);
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(base, 2, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(base, 4, 0.5), Duration::from_secs(40));
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(3750));
        assert!(backoff(base, 1, 0.999) < Duration::from_millis(6250));
        assert_eq!(backoff(base, 40, 0.5), Duration::from_secs(3600));
    }
}

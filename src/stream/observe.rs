//! What the serve loop reports as it goes and what it returns: the observer trait, the report of
//! a produce fault, the run's counts. Below every stage, so that each can report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::Statistics;

use super::event::Event;
use super::record::Outbound;
use super::reload::Loaded;

/// What the loop reports as it goes (metrics and dashboards implement it; every method is cheap
/// and called from the loop's tasks, so implementations must not block).
pub trait Observe: Send + Sync {
    /// A batch was classified in `elapsed` (dead letters included).
    fn classified(&self, _records: &[Outbound], _model: &Loaded, _elapsed: Duration) {}
    /// A record was acknowledged by the broker (for exactly-once: its transaction committed).
    fn delivered(&self, _record: &Outbound) {}
    /// A batch was handed on or finished; `bytes` of messages are now read and not finished
    /// (at most `max_inflight_bytes` plus one message).
    fn in_flight(&self, _bytes: usize) {}
    /// The partition assignment changed; `partitions` are now this instance's.
    fn assigned(&self, _partitions: &[i32]) {}
    /// librdkafka's statistics (every `statistics.interval.ms`).
    fn statistics(&self, _stats: &Statistics) {}
    /// Deliveries fail (`Some`: the partition stops advancing until they succeed), or succeed
    /// again after a fault (`None`).
    fn produce_fault(&self, _fault: Option<&ProduceFault>) {}
    /// A failure or turn of the loop (consumer errors, rebalances, retries, unstored offsets,
    /// aborted transactions, …), already logged by [`Event::emit`].
    fn event(&self, _event: &Event<'_>) {}
}

impl Event<'_> {
    /// Logs the event and reports it to `observer`: the one way an event is raised.
    pub fn emit(self, observer: &dyn Observe) {
        self.log();
        observer.event(&self);
    }
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observe for NoObserver {}

/// Why deliveries fail: what `/readyz` names and the produce-error metric counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceFault {
    /// The topic written to.
    pub topic: String,
    /// librdkafka's error code, e.g. `TopicAuthorizationFailed` (the metric's label).
    pub code: String,
    /// Whether librdkafka's own retries cannot fix it (authorization, unknown topic, fatal):
    /// the service still retries, with a capped backoff, so that it recovers once fixed.
    pub permanent: bool,
    /// The error as librdkafka words it.
    pub cause: String,
    /// Records of the batch that failed this round.
    pub records: usize,
}

/// Counts of a finished run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages read.
    pub consumed: u64,
    /// Labelled records acknowledged.
    pub produced: u64,
    /// Dead letters acknowledged.
    pub dead_lettered: u64,
    /// Deliveries that failed and were sent again.
    pub retries: u64,
    /// Whether everything read was acknowledged and committed before the timeout.
    pub drained: bool,
}

/// The counters the stages share while the loop runs.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) produced: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) retries: AtomicU64,
}

impl Counts {
    /// Adds `n` to one counter.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The summary of a run that read `consumed` messages.
    pub(super) fn summary(&self, consumed: u64, drained: bool) -> RunSummary {
        RunSummary {
            consumed,
            produced: self.produced.load(Ordering::Relaxed),
            dead_lettered: self.dead.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            drained,
        }
    }
}

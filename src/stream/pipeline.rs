//! The serve loop: consume → micro-batch → classify on all cores → produce → store the input
//! offsets once the broker has acknowledged every record of the batch → commit periodically.
//!
//! Three tasks joined by bounded channels, so a slow stage holds back the one before it:
//!
//! ```text
//! consume (this task)  --batches-->  work: classify, enqueue  --sent batches-->  ack: await, store
//! ```
//!
//! The ack task takes batches in the order they were read and stores a batch's offsets only after
//! all its records are acknowledged, so a stored offset never passes an unacknowledged message:
//! at-least-once. A failed delivery is retried with backoff, never skipped. Records of one
//! partition are enqueued in input order on one idempotent producer, which keeps that order
//! while deliveries succeed; a record that failed for good (after librdkafka's own retries)
//! and is sent again lands after the records delivered meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::Statistics;
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::{
    consume_stage, consumer_config, is_no_offset, Consumer_, FlowContext, InFlight,
};
use super::deliver::{ack_stage, enqueue, producer_config, Sent};
use super::record::{process_guarded, Inbound, Outbound};
use super::reload::{Loaded, ModelSlot};
use crate::error::StreamError;
use crate::model::Scratch;

/// What the loop reports as it goes (metrics and dashboards implement it; every method is cheap
/// and called from the loop's tasks, so implementations must not block).
pub trait Observe: Send + Sync {
    /// A batch was classified in `elapsed` (dead letters included).
    fn classified(&self, _records: &[Outbound], _model: &Loaded, _elapsed: Duration) {}
    /// A record was acknowledged by the broker.
    fn delivered(&self, _record: &Outbound) {}
    /// The partition assignment changed; `partitions` are now this instance's.
    fn assigned(&self, _partitions: &[i32]) {}
    /// librdkafka's statistics (every `statistics.interval.ms`).
    fn statistics(&self, _stats: &Statistics) {}
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observe for NoObserver {}

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

fn kafka(what: &'static str) -> impl FnOnce(KafkaError) -> StreamError {
    move |source| StreamError::Kafka { what, source }
}

/// Runs the service until `shutdown` resolves, then drains, commits and returns.
pub async fn run(
    cfg: ServeConfig,
    slot: Arc<ModelSlot>,
    observer: Arc<dyn Observe>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, StreamError> {
    let cfg = Arc::new(cfg);
    let inflight = Arc::new(InFlight::default());
    let context = FlowContext {
        inflight: Arc::clone(&inflight),
        drain_timeout: cfg.shutdown_timeout,
        revocations: AtomicU64::new(0),
        observer: Arc::clone(&observer),
    };
    let consumer: Arc<Consumer_> = Arc::new(
        consumer_config(&cfg)
            .create_with_context(context)
            .map_err(kafka("consumer config"))?,
    );
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(kafka("producer config"))?;
    consumer
        .subscribe(&[&cfg.input_topic])
        .map_err(kafka("subscribe"))?;
    tracing::info!(
        brokers = %cfg.brokers,
        input = %cfg.input_topic,
        output = %cfg.output_topic,
        dlq = %cfg.dlq_topic,
        group = %cfg.group,
        librdkafka = ?cfg.redacted_properties(),
        "serving"
    );

    let (batch_tx, batch_rx) = mpsc::channel::<Vec<Inbound>>(2);
    let (sent_tx, sent_rx) = mpsc::channel::<Sent>(4);
    let produced = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let work = tokio::spawn(work_stage(
        batch_rx,
        sent_tx,
        Arc::clone(&cfg),
        slot,
        producer.clone(),
        Arc::clone(&observer),
    ));
    let ack = tokio::spawn(ack_stage(
        sent_rx,
        Arc::clone(&consumer),
        producer.clone(),
        Arc::clone(&cfg),
        Arc::clone(&inflight),
        observer,
        [
            Arc::clone(&produced),
            Arc::clone(&dead),
            Arc::clone(&retries),
        ],
    ));

    let (consumed, deadline) = consume_stage(&consumer, &cfg, &inflight, batch_tx, shutdown).await;
    tracing::info!(consumed, "stopped fetching; draining in-flight batches");

    let drained = tokio::time::timeout_at(deadline.into(), async {
        // A stage that failed (rather than ran dry) means some batch was never finished.
        let work_ok = matches!(work.await, Ok(true));
        let ack_ok = ack.await.is_ok();
        work_ok && ack_ok
    })
    .await
    .unwrap_or(false);
    // Whatever did not drain is read again by the next owner; closing must not wait for it.
    inflight.done(usize::MAX);
    let left = deadline.saturating_duration_since(Instant::now());
    let flushed = producer.flush(left.max(Duration::from_millis(100))).is_ok();
    let commit = consumer.commit_consumer_state(CommitMode::Sync);
    let committed = commit.is_ok() || is_no_offset(&commit);
    if let Err(e) = &commit {
        if !committed {
            tracing::warn!(error = %e, "final commit failed; uncommitted messages will be read again");
        }
    }
    let summary = RunSummary {
        consumed,
        produced: produced.load(Ordering::Relaxed) as u64,
        dead_lettered: dead.load(Ordering::Relaxed) as u64,
        retries: retries.load(Ordering::Relaxed) as u64,
        drained: drained && flushed && committed,
    };
    tracing::info!(?summary, "stopped");
    Ok(summary)
}

/// Classifies each batch on the rayon pool (off the async runtime) and enqueues its records.
async fn work_stage(
    mut rx: mpsc::Receiver<Vec<Inbound>>,
    tx: mpsc::Sender<Sent>,
    cfg: Arc<ServeConfig>,
    slot: Arc<ModelSlot>,
    producer: FutureProducer,
    observer: Arc<dyn Observe>,
) -> bool {
    while let Some(batch) = rx.recv().await {
        let loaded = slot.current();
        let started = Instant::now();
        let (c, l) = (Arc::clone(&cfg), Arc::clone(&loaded));
        let classified = tokio::task::spawn_blocking(move || {
            batch
                .into_par_iter()
                .map_init(Scratch::default, |scratch, m| {
                    process_guarded(m, &c, &l.model, &l.model_ref, scratch)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut records = match classified {
            Ok(r) => r,
            Err(e) => {
                // A panic in the model is a bug; the batch's offsets are never stored, so the
                // messages are read again after a restart.
                tracing::error!(error = %e, "classification task failed; stopping");
                return false;
            }
        };
        observer.classified(&records, &loaded, started.elapsed());
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &mut records {
            deliveries.push(enqueue(&producer, &cfg, r).await);
        }
        if tx
            .send(Sent {
                records,
                deliveries,
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

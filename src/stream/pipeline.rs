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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Statistics};
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::record::{process_guarded, Destination, Inbound, Outbound, Source};
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

/// Messages read but whose offsets are not stored yet; a revoke waits for it to reach zero.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
}

impl InFlight {
    fn add(&self, n: usize) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += n;
    }

    fn done(&self, n: usize) {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.saturating_sub(n);
        if *c == 0 {
            self.zero.notify_all();
        }
    }

    /// Waits until nothing is in flight; false on timeout.
    fn wait_empty(&self, timeout: Duration) -> bool {
        let c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        match self.zero.wait_timeout_while(c, timeout, |c| *c > 0) {
            Ok((_, t)) => !t.timed_out(),
            Err(_) => false,
        }
    }
}

/// The consumer's context: drains and commits before partitions are given up.
struct FlowContext {
    inflight: Arc<InFlight>,
    drain_timeout: Duration,
    revocations: AtomicU64,
    observer: Arc<dyn Observe>,
}

impl ClientContext for FlowContext {
    fn stats(&self, statistics: Statistics) {
        self.observer.statistics(&statistics);
    }
}

impl ConsumerContext for FlowContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revocations.fetch_add(1, Ordering::SeqCst);
            // This callback runs inside `recv()` on a runtime worker. On a multi-thread runtime,
            // hand the worker's other tasks (the stages being drained) to the rest first.
            let wait = || self.inflight.wait_empty(self.drain_timeout);
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let drained = if multi {
                tokio::task::block_in_place(wait)
            } else {
                wait()
            };
            let commit = consumer.commit_consumer_state(CommitMode::Sync);
            tracing::info!(
                partitions = tpl.count(),
                drained,
                committed = commit.is_ok() || is_no_offset(&commit),
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The whole assignment, not the rebalance's list: with cooperative rebalancing that
        // list holds only the partitions that changed.
        let partitions: Vec<i32> = consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        if let Rebalance::Assign(_) = rebalance {
            tracing::info!(?partitions, "partitions assigned");
        }
        self.observer.assigned(&partitions);
    }
}

fn is_no_offset(r: &Result<(), KafkaError>) -> bool {
    matches!(
        r,
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
    )
}

type Consumer_ = StreamConsumer<FlowContext>;

/// A batch whose records are enqueued on the producer.
struct Sent {
    records: Vec<Outbound>,
    deliveries: Vec<DeliveryFuture>,
}

/// The Kafka consumer settings of the service.
pub fn consumer_config(cfg: &ServeConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("client.id", format!("moderato-{}", cfg.instance))
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            cfg.commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000");
    for (k, v) in cfg.client_properties("consumer") {
        c.set(k, v);
    }
    c
}

/// The Kafka producer settings of the service: idempotent, so retries neither duplicate nor
/// reorder a partition's records.
pub fn producer_config(cfg: &ServeConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    let max_bytes = (cfg.max_payload_bytes + (64 << 10)).max(1_000_000);
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("moderato-{}", cfg.instance))
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", max_bytes.to_string());
    for (k, v) in cfg.client_properties("producer") {
        c.set(k, v);
    }
    c
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

/// Reads messages into batches of up to `batch_size` or `batch_timeout`, until `shutdown`;
/// returns how many it read and the deadline of the drain that follows.
async fn consume_stage(
    consumer: &Consumer_,
    cfg: &ServeConfig,
    inflight: &InFlight,
    batch_tx: mpsc::Sender<Vec<Inbound>>,
    shutdown: impl Future<Output = ()>,
) -> (u64, Instant) {
    tokio::pin!(shutdown);
    let mut batch: Vec<Inbound> = Vec::with_capacity(cfg.batch_size);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut revocations = consumer.context().revocations.load(Ordering::SeqCst);
    let mut consumed = 0u64;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let full = tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = timer => true,
            m = consumer.recv() => match m {
                Ok(m) => {
                    consumed += 1;
                    batch.push(inbound(&m));
                    if batch.len() == 1 {
                        deadline = Some(tokio::time::Instant::now() + cfg.batch_timeout);
                    }
                    batch.len() >= cfg.batch_size
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error; librdkafka retries");
                    false
                }
            },
        };
        if full {
            deadline = None;
            // A revoke since this batch began: its messages of lost partitions belong to their
            // new owner now (their offsets were never stored), so they are not processed here.
            let now = consumer.context().revocations.load(Ordering::SeqCst);
            if now != revocations {
                revocations = now;
                drop_unassigned(consumer, &mut batch);
            }
            // The hand-over waits while the stages are full (backpressure), but never past a
            // stop: an abandoned batch was never stored, so its messages are read again.
            let sent = tokio::select! {
                sent = send_batch(&batch_tx, inflight, &mut batch, cfg.batch_size) => sent,
                () = &mut shutdown => {
                    // Not handed over: the bounded try after the loop gets it.
                    inflight.done(batch.len());
                    break;
                }
            };
            if !sent {
                break;
            }
        }
    }
    drop_unassigned(consumer, &mut batch);
    let deadline = Instant::now() + cfg.shutdown_timeout;
    let last = send_batch(&batch_tx, inflight, &mut batch, 0);
    if tokio::time::timeout_at(deadline.into(), last)
        .await
        .is_err()
    {
        tracing::warn!(
            "the last batch could not be handed over before the timeout; it will be read again"
        );
    }
    (consumed, deadline)
}

/// Hands the batch to the work stage; the messages count as in flight until stored.
async fn send_batch(
    tx: &mpsc::Sender<Vec<Inbound>>,
    inflight: &InFlight,
    batch: &mut Vec<Inbound>,
    capacity: usize,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let n = batch.len();
    inflight.add(n);
    let permit = tx.reserve().await;
    let full = std::mem::replace(batch, Vec::with_capacity(capacity));
    match permit {
        Ok(p) => {
            p.send(full);
            true
        }
        Err(_) => {
            inflight.done(n);
            false
        }
    }
}

fn drop_unassigned(consumer: &Consumer_, batch: &mut Vec<Inbound>) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let assigned: Vec<i32> = assignment
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    let before = batch.len();
    batch.retain(|m| assigned.contains(&m.source.partition));
    if batch.len() < before {
        tracing::info!(
            dropped = before - batch.len(),
            "messages of revoked partitions left to their new owner"
        );
    }
}

fn inbound(m: &BorrowedMessage<'_>) -> Inbound {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Inbound {
        source: Source {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
        },
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers,
    }
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

/// Awaits every delivery of each batch in order, re-sending failures, then stores the offsets.
async fn ack_stage(
    mut rx: mpsc::Receiver<Sent>,
    consumer: Arc<Consumer_>,
    producer: FutureProducer,
    cfg: Arc<ServeConfig>,
    inflight: Arc<InFlight>,
    observer: Arc<dyn Observe>,
    [produced, dead, retries]: [Arc<AtomicUsize>; 3],
) {
    while let Some(Sent {
        mut records,
        deliveries,
    }) = rx.recv().await
    {
        for (record, delivery) in records.iter_mut().zip(deliveries) {
            let mut delivery = delivery;
            let mut backoff = Duration::from_millis(100);
            loop {
                let error = match delivery.await {
                    Ok(Ok(_)) => break,
                    Ok(Err((e, _))) => e,
                    Err(_) => KafkaError::Canceled,
                };
                tracing::warn!(
                    error = %error,
                    topic = topic_of(&cfg, record.destination),
                    partition = record.source.partition,
                    offset = record.source.offset,
                    retry_in_ms = backoff.as_millis() as u64,
                    "delivery failed; retrying (offsets wait)"
                );
                if is_too_large(&error) {
                    shrink(record);
                }
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                delivery = enqueue(&producer, &cfg, record).await;
            }
            match record.destination {
                Destination::Output => produced.fetch_add(1, Ordering::Relaxed),
                Destination::DeadLetter => dead.fetch_add(1, Ordering::Relaxed),
            };
            observer.delivered(record);
        }
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &records {
            let o = last.entry(r.source.partition).or_insert(r.source.offset);
            *o = (*o).max(r.source.offset);
        }
        for (partition, offset) in last {
            if let Err(e) = consumer.store_offset(&cfg.input_topic, partition, offset) {
                tracing::debug!(partition, offset, error = %e, "offset not stored (partition revoked)");
            }
        }
        inflight.done(records.len());
    }
}

fn topic_of(cfg: &ServeConfig, d: Destination) -> &str {
    match d {
        Destination::Output => &cfg.output_topic,
        Destination::DeadLetter => &cfg.dlq_topic,
    }
}

fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

/// Makes a record the broker refuses as too large smaller, and says so in a header: first the
/// payload is cut (to 64 KiB, then by half down to 1 KiB), then the key and the input's own
/// headers go. A record that can never be written would otherwise stall its partition for good.
fn shrink(record: &mut Outbound) {
    const KEEP: usize = 64 << 10;
    let original = record.payload.len();
    if original > 1024 {
        record
            .payload
            .truncate(if original > KEEP { KEEP } else { original / 2 });
    } else {
        record.key = None;
        record.headers.retain(|(k, _)| k.starts_with("moderato-"));
    }
    if !record
        .headers
        .iter()
        .any(|(k, _)| k == "moderato-payload-cut-from")
    {
        record.headers.push((
            "moderato-payload-cut-from".into(),
            original.to_string().into_bytes(),
        ));
    }
    tracing::warn!(
        partition = record.source.partition,
        offset = record.source.offset,
        from = original,
        to = record.payload.len(),
        "record too large for the broker; cut"
    );
}

/// Puts one record on the producer's queue, waiting while the queue is full.
async fn enqueue(producer: &FutureProducer, cfg: &ServeConfig, r: &mut Outbound) -> DeliveryFuture {
    let mut backoff = Duration::from_millis(1);
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic_of(cfg, r.destination))
            .payload(&r.payload)
            .headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        let error = match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((e, _)) => e,
        };
        if is_too_large(&error) {
            shrink(r);
        } else if !matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        ) {
            tracing::warn!(error = %error, "cannot enqueue record; retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

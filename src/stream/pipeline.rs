//! The serve loop: consume → micro-batch → classify on all cores → deliver → store the input
//! offsets (at-least-once) or commit them in the batch's transaction (exactly-once).
//!
//! Three tasks joined by bounded channels; data flows one way and a slow stage holds back the
//! one before it (the consumer then pauses its partitions and keeps polling):
//!
//! ```text
//! consume (this task) --Batch--> classify (work) --Classified--> deliver: send, await, store/commit
//! ```
//!
//! The delivering task owns the producer and each round (a batch, with the batches that were
//! classified while the round before was delivered, up to `batch_size` records) from its first
//! record sent to its offsets stored or its transaction committed, before it takes the next: a
//! stored offset never passes an unacknowledged message, and records of one round never enter
//! another round's transaction. A revoke waits until every batch handed on is finished.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::{
    consume_stage, consumer_config, is_no_offset, FlowContext, GroupConsumer, InFlight,
};
use super::deliver::{deliver_stage, flush, producer_config, Classified, Deliverer};
use super::event::Event;
use super::observe::Counts;
use super::reload::ModelSlot;
use super::work::classify_stage;
use crate::error::StreamError;

pub use super::observe::{NoObserver, Observe, ProduceFault, RunSummary};

fn kafka(what: &'static str) -> impl FnOnce(KafkaError) -> StreamError {
    move |source| StreamError::Kafka {
        what,
        source: super::properties::hide_value(source),
    }
}

/// Runs the service until `shutdown` resolves, then drains, commits and returns.
pub async fn run(
    cfg: ServeConfig,
    slot: Arc<ModelSlot>,
    observer: Arc<dyn Observe>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, StreamError> {
    let cfg = Arc::new(cfg);
    let transactional = cfg.guarantee.transactional();
    let inflight = Arc::new(InFlight::default());
    let context = FlowContext {
        inflight: Arc::clone(&inflight),
        drain_timeout: cfg.shutdown_timeout,
        rebalances: AtomicU64::new(0),
        revoked: Mutex::new(Vec::new()),
        rewinds: AtomicU64::new(1),
        rewind_wanted: AtomicU64::new(0),
        wake: tokio::sync::Notify::new(),
        observer: Arc::clone(&observer),
        commits: !transactional,
    };
    let consumer: Arc<GroupConsumer> = Arc::new(
        consumer_config(&cfg)
            .create_with_context(context)
            .map_err(kafka("consumer config"))?,
    );
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(kafka("producer config"))?;
    if transactional {
        super::deliver::transact::init(&producer)?;
    }
    consumer
        .subscribe(&[&cfg.input_topic])
        .map_err(kafka("subscribe"))?;
    tracing::info!(
        brokers = %cfg.brokers,
        input = %cfg.input_topic,
        output = %cfg.output_topic,
        dlq = %cfg.dlq_topic,
        group = %cfg.group,
        guarantee = ?cfg.guarantee,
        librdkafka = ?cfg.redacted_properties(),
        "serving"
    );

    let (batch_tx, batch_rx) = mpsc::channel(2);
    let (classified_tx, classified_rx) = mpsc::channel::<Classified>(2);
    let counts = Arc::new(Counts::default());
    let work = tokio::spawn(classify_stage(
        batch_rx,
        classified_tx,
        Arc::clone(&cfg),
        slot,
        Arc::clone(&observer),
    ));
    let deliverer = Deliverer {
        producer,
        consumer: Arc::clone(&consumer),
        cfg: Arc::clone(&cfg),
        observer,
        counts: Arc::clone(&counts),
        faulted: false,
    };
    let deliver = tokio::spawn(deliver_stage(
        classified_rx,
        deliverer,
        Arc::clone(&inflight),
    ));

    let (consumed, deadline) = consume_stage(&consumer, &cfg, &inflight, batch_tx, shutdown).await;
    tracing::info!(consumed, "stopped fetching; draining in-flight batches");

    let finished = tokio::time::timeout_at(deadline.into(), async {
        // A stage that failed (rather than ran dry) means some batch was never finished.
        let work_ok = matches!(work.await, Ok(true));
        match deliver.await {
            Ok((Ok(()), producer)) => (work_ok, Some(producer), None),
            Ok((Err(e), producer)) => (false, Some(producer), Some(e)),
            Err(_) => (false, None, None),
        }
    })
    .await;
    let (drained, producer, stopped_by) = finished.unwrap_or((false, None, None));
    // Whatever did not drain is read again by the next owner; closing must not wait for it.
    inflight.clear();
    let left = deadline.saturating_duration_since(Instant::now());
    let flushed = producer.is_some_and(|p| flush(&p, left.max(Duration::from_millis(100))));
    let committed = transactional || {
        let commit = consumer.commit_consumer_state(CommitMode::Sync);
        let ok = commit.is_ok() || is_no_offset(&commit);
        if let Err(e) = &commit {
            if !ok {
                Event::FinalCommitFailed { error: e }.emit(&*consumer.context().observer);
            }
        }
        ok
    };
    let summary = counts.summary(consumed, drained && flushed && committed);
    tracing::info!(?summary, "stopped");
    match stopped_by {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

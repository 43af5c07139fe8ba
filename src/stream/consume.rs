//! The consuming side of the serve loop: the consumer's settings and context (drain and commit
//! before partitions are revoked), the count of messages in flight, and the stage that reads
//! messages into micro-batches.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::pipeline::Observe;
use super::record::{Inbound, Source};

/// Messages read but whose offsets are not stored yet; a revoke waits for it to reach zero.
#[derive(Default)]
pub(super) struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
}

impl InFlight {
    pub(super) fn add(&self, n: usize) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += n;
    }

    pub(super) fn done(&self, n: usize) {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.saturating_sub(n);
        if *c == 0 {
            self.zero.notify_all();
        }
    }

    /// Waits until nothing is in flight; false on timeout.
    pub(super) fn wait_empty(&self, timeout: Duration) -> bool {
        let c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        match self.zero.wait_timeout_while(c, timeout, |c| *c > 0) {
            Ok((_, t)) => !t.timed_out(),
            Err(_) => false,
        }
    }
}

/// The consumer's context: drains and commits before partitions are given up.
pub(super) struct FlowContext {
    pub(super) inflight: Arc<InFlight>,
    pub(super) drain_timeout: Duration,
    pub(super) revocations: AtomicU64,
    pub(super) observer: Arc<dyn Observe>,
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
        let partitions = consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        if let Rebalance::Assign(_) = rebalance {
            tracing::info!(?partitions, "partitions assigned");
        }
        self.observer.assigned(&partitions);
    }
}

/// The partition numbers of a list (a consumer's whole assignment, say).
pub fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

pub(super) fn is_no_offset(r: &Result<(), KafkaError>) -> bool {
    matches!(
        r,
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
    )
}

pub(super) type Consumer_ = StreamConsumer<FlowContext>;

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

/// Reads messages into batches of up to `batch_size` or `batch_timeout`, until `shutdown`;
/// returns how many it read and the deadline of the drain that follows.
pub(super) async fn consume_stage(
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
    let assigned = partitions(&assignment);
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

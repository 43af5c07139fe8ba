//! The producing side of the serve loop: the producer's settings, putting records on its queue,
//! and the stage that finishes each round (a classified batch, with those queued behind it, up
//! to `batch_size` records), one at a time, before it takes the next: every record
//! acknowledged, then the input offsets stored (at-least-once), or records and offsets
//! committed in one transaction (exactly-once, [`transact`]). So a transaction holds at
//! most `batch_size` records and, at a low rate, what arrived within `batch_timeout` plus one
//! commit.
//!
//! Failed deliveries are sent again as a whole, in input order, after one capped backoff (100 ms
//! doubling to 5 s): after an outage longer than `message.timeout.ms` the batch goes out again at
//! once rather than record by record. A partition's records are enqueued in input order on one
//! idempotent producer, which keeps that order; librdkafka fails a partition's queue from the
//! first record that timed out on, so the records re-sent follow the ones delivered.
//!
//! Recovery bound: once the broker is back, a batch is delivered within one backoff (≤ 5 s)
//! plus the time to send one batch; the stages behind hold at most a few batches.

pub mod transact;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::{GroupConsumer, InFlight, Load};
use super::event::Event;
use super::fit;
use super::observe::{Counts, Observe, ProduceFault};
use super::record::{Destination, Outbound};
use crate::error::StreamError;

/// A classified batch, in input order, with the rewind epoch its messages were read in.
pub(super) struct Classified {
    pub(super) records: Vec<Outbound>,
    /// The load of the messages they answer, as counted in flight.
    pub(super) load: Load,
    pub(super) epoch: u64,
    /// The group metadata the batch was read under (see [`super::consume::Batch::group`]).
    pub(super) group: Option<rdkafka::consumer::ConsumerGroupMetadata>,
}

/// The Kafka producer settings of the service: idempotent, so retries neither duplicate nor
/// reorder a partition's records; transactional for exactly-once.
pub fn producer_config(cfg: &ServeConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("moderato-{}", cfg.instance))
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", cfg.producer_max_bytes().to_string())
        // Bounded by the bytes in flight anyway; librdkafka's default is 1 GiB.
        .set(
            "queue.buffering.max.kbytes",
            super::config::QUEUE_KBYTES.to_string(),
        );
    if cfg.guarantee.transactional() {
        c.set("transactional.id", transactional_id(cfg))
            .set("transaction.timeout.ms", "30000");
    }
    for (k, v) in cfg.client_properties("producer") {
        c.set(k, v);
    }
    c
}

/// The transactional id of an instance: stable across its restarts (so a restarted instance
/// fences its previous self and aborts its open transaction), distinct per group and input.
pub fn transactional_id(cfg: &ServeConfig) -> String {
    format!(
        "moderato-{}-{}-{}",
        cfg.group, cfg.input_topic, cfg.instance
    )
}

/// How a batch ended.
pub(super) enum Outcome {
    /// Delivered (and, exactly-once, committed).
    Done,
    /// Given up: its transaction was aborted and its partitions must be read again from the
    /// committed positions (the group moved on, e.g. this instance was fenced out of it).
    Abandoned,
}

/// The stage that owns the producer and finishes each batch before it takes the next.
pub(super) struct Deliverer {
    pub(super) producer: FutureProducer,
    pub(super) consumer: Arc<GroupConsumer>,
    pub(super) cfg: Arc<ServeConfig>,
    pub(super) observer: Arc<dyn Observe>,
    pub(super) counts: Arc<Counts>,
    /// Whether a fault is being reported (cleared at the next success).
    pub(super) faulted: bool,
}

/// Finishes every batch in order; false if it had to stop with batches unfinished. Gives the
/// producer back (a new one if the first failed fatally) for the final flush, with the error
/// that stopped the stage, if one did.
pub(super) async fn deliver_stage(
    mut rx: mpsc::Receiver<Classified>,
    mut d: Deliverer,
    inflight: Arc<InFlight>,
) -> (Result<(), StreamError>, FutureProducer) {
    // Batches read before a rewind this stage asked for are read again: they are dropped here.
    let mut discard_through = 0u64;
    // A batch taken from the channel that could not join the round before it.
    let mut next: Option<Classified> = None;
    loop {
        let first = match next.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => break,
            },
        };
        let Classified {
            mut records,
            mut load,
            epoch,
            group,
        } = first;
        if epoch <= discard_through || records.is_empty() {
            inflight.done(load);
            continue;
        }
        // The batches classified while the previous round was delivered join this one, up to
        // `batch_size` records: one wait for acknowledgements, one transaction, instead of one
        // each behind the other (waiting batches were most of exactly-once's latency).
        while let Ok(more) = rx.try_recv() {
            if more.epoch == epoch && records.len() + more.records.len() <= d.cfg.batch_size {
                records.extend(more.records);
                load = load.plus(more.load);
            } else {
                next = Some(more);
                break;
            }
        }
        let n = records.len();
        let started = std::time::Instant::now();
        let outcome = if d.cfg.guarantee.transactional() {
            transact::complete(&mut d, &mut records, group.as_ref()).await
        } else {
            d.at_least_once(&mut records).await;
            Ok(Outcome::Done)
        };
        match outcome {
            Ok(Outcome::Done) => d.delivered(&records),
            Ok(Outcome::Abandoned) => {
                discard_through = epoch;
                let ctx = d.consumer.context();
                ctx.rewind_wanted
                    .store(epoch, std::sync::atomic::Ordering::SeqCst);
                ctx.wake.notify_one();
            }
            Err(e) => {
                Event::DeliveryStopped { error: &e }.emit(&*d.observer);
                return (Err(e), d.producer);
            }
        }
        inflight.done(load);
        d.observer.in_flight(inflight.bytes());
        tracing::debug!(
            records = n,
            deliver_us = started.elapsed().as_micros() as u64,
            "batch delivered"
        );
    }
    (Ok(()), d.producer)
}

impl Deliverer {
    /// Sends every record until each is acknowledged, then stores the batch's input offsets.
    async fn at_least_once(&mut self, records: &mut [Outbound]) {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = Backoff::new();
        loop {
            let failed = self.send_round(records, &pending).await;
            if failed.is_empty() {
                break;
            }
            self.failed(records, &failed);
            if self.producer.client().fatal_error().is_some() {
                self.renew_producer();
            }
            backoff.wait().await;
            pending = failed.into_iter().map(|(i, _)| i).collect();
        }
        for (partition, offset) in last_offsets(records) {
            if let Err(e) = self
                .consumer
                .store_offset(&self.cfg.input_topic, partition, offset)
            {
                Event::OffsetNotStored {
                    partition,
                    offset,
                    error: &e,
                }
                .emit(&*self.observer);
            }
        }
    }

    /// Enqueues the `pending` records in order, awaits them all and returns the failures.
    pub(super) async fn send_round(
        &self,
        records: &mut [Outbound],
        pending: &[usize],
    ) -> Vec<(usize, KafkaError)> {
        let mut deliveries = Vec::with_capacity(pending.len());
        for &i in pending {
            if let Some(r) = records.get_mut(i) {
                deliveries.push((
                    i,
                    enqueue(&self.producer, &self.cfg, &*self.observer, r).await,
                ));
            }
        }
        let mut failed = Vec::new();
        for (i, delivery) in deliveries {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    failed.push((i, e));
                    continue;
                }
            };
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                Err(_) => KafkaError::Canceled,
            };
            failed.push((i, error));
        }
        failed
    }

    /// Reports a failed round (log, metric, readiness) and cuts records refused as too large.
    pub(super) fn failed(&mut self, records: &mut [Outbound], failed: &[(usize, KafkaError)]) {
        let Some(fault) = worst_fault(&self.cfg, records, failed) else {
            return;
        };
        Event::DeliveryRetry {
            topic: &fault.topic,
            code: &fault.code,
            permanent: fault.permanent,
            records: failed.len(),
            error: &fault.cause,
        }
        .emit(&*self.observer);
        self.report(&fault);
        Counts::add(&self.counts.retries, failed.len() as u64);
        for (i, e) in failed {
            if is_too_large(e) {
                if let Some(r) = records.get_mut(*i) {
                    // One that cannot get smaller is sent as it is, the fault reported.
                    shrink(r, &*self.observer);
                }
            }
        }
    }

    /// Reports a fault to the observer.
    pub(super) fn report(&mut self, fault: &ProduceFault) {
        self.faulted = true;
        self.observer.produce_fault(Some(fault));
    }

    /// Counts and reports a finished batch; clears a fault reported before.
    fn delivered(&mut self, records: &[Outbound]) {
        if self.faulted {
            self.faulted = false;
            self.observer.produce_fault(None);
            Event::DeliveryRecovered.emit(&*self.observer);
        }
        for r in records {
            match r.destination {
                Destination::Output => Counts::add(&self.counts.produced, 1),
                Destination::DeadLetter => Counts::add(&self.counts.dead, 1),
            }
            self.observer.delivered(r);
        }
    }

    /// Replaces a producer that hit a fatal error (no record can go through it again).
    pub(super) fn renew_producer(&mut self) {
        match producer_config(&self.cfg).create::<FutureProducer>() {
            Ok(p) => {
                Event::ProducerReplaced.emit(&*self.observer);
                self.producer = p;
            }
            Err(e) => {
                let e = super::properties::hide_value(e);
                Event::ProducerNotReplaced { error: &e }.emit(&*self.observer)
            }
        }
    }
}

/// Doubling waits, 100 ms to 5 s.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// The highest offset of each input partition in a batch.
pub(super) fn last_offsets(records: &[Outbound]) -> BTreeMap<i32, i64> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let o = last.entry(r.source.partition).or_insert(r.source.offset);
        *o = (*o).max(r.source.offset);
    }
    last
}

/// What a delivery error means for the service: permanent errors are those librdkafka's own
/// retries cannot fix (authorization, unknown topic, a fatal producer error).
/// The fault a failed round reports: the first permanent one if any record failed
/// permanently (a refused dead-letter topic must not hide behind a transient output error),
/// else the first failure. `None` when nothing failed.
fn worst_fault(
    cfg: &ServeConfig,
    records: &[Outbound],
    failed: &[(usize, KafkaError)],
) -> Option<ProduceFault> {
    let faults = failed.iter().map(|(i, e)| {
        let topic = records
            .get(*i)
            .map(|r| topic_of(cfg, r.destination))
            .unwrap_or_default();
        fault(topic, e, failed.len())
    });
    let mut first = None;
    for f in faults {
        if f.permanent {
            return Some(f);
        }
        first.get_or_insert(f);
    }
    first
}

pub(super) fn fault(topic: &str, error: &KafkaError, records: usize) -> ProduceFault {
    let code = error.rdkafka_error_code();
    let permanent = code.is_some_and(is_permanent);
    ProduceFault {
        topic: topic.to_string(),
        code: code.map_or_else(|| "Other".to_string(), |c| format!("{c:?}")),
        permanent,
        cause: error.to_string(),
        records,
    }
}

fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::UnknownPartition
            | C::InvalidRecord
            | C::PolicyViolation
            | C::Fatal
            | C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::InvalidProducerIdMapping
            | C::UnsupportedForMessageFormat
    )
}

pub(super) fn topic_of(cfg: &ServeConfig, d: Destination) -> &str {
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

/// Fits a record that the broker refused as too large (a broker or topic limit below the
/// producer's) to half its size, by the policy of [`super::fit`]: a labelled record stays valid
/// JSON, a dead letter keeps its key, headers, length and digest. False if it cannot get
/// smaller; it is then sent again as it is, and the fault is reported until the limit is raised.
fn shrink(record: &mut Outbound, observer: &dyn Observe) -> bool {
    let before = fit::size(record);
    let smaller = fit::fit(record, before / 2, None) && fit::size(record) < before;
    Event::RecordShrunk {
        partition: record.source.partition,
        offset: record.source.offset,
        from: before,
        to: fit::size(record),
    }
    .emit(observer);
    smaller
}

/// Puts one record on the producer's queue, waiting while the queue is full; other refusals
/// (a fatal producer, no open transaction, a topic known not to exist) are returned.
pub(super) async fn enqueue(
    producer: &FutureProducer,
    cfg: &ServeConfig,
    observer: &dyn Observe,
    r: &mut Outbound,
) -> Result<DeliveryFuture, KafkaError> {
    let mut backoff = Duration::from_millis(1);
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic_of(cfg, r.destination))
            .payload(&r.payload)
            .headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        let error = match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((e, _)) => e,
        };
        if is_too_large(&error) {
            if !shrink(r, observer) {
                return Err(error);
            }
        } else if !matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        ) {
            return Err(error);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Flushes what is queued, at most `timeout`; true if everything went out.
pub(super) fn flush(producer: &FutureProducer, timeout: Duration) -> bool {
    producer.flush(timeout).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Source;

    fn outbound(destination: Destination) -> Outbound {
        Outbound {
            destination,
            key: None,
            payload: Vec::new(),
            headers: Vec::new(),
            source: Source {
                topic: "in".into(),
                partition: 0,
                offset: 0,
                timestamp: None,
            },
            summary: None,
            reason: None,
        }
    }

    #[test]
    fn a_permanent_failure_is_reported_even_behind_a_transient_one() {
        let cfg = ServeConfig::with_brokers("localhost:1").expect("valid");
        let records = [
            outbound(Destination::Output),
            outbound(Destination::DeadLetter),
        ];
        let failed = [
            (
                0,
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            ),
            (
                1,
                KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
            ),
        ];
        let f = worst_fault(&cfg, &records, &failed).expect("a fault");
        assert!(f.permanent);
        assert_eq!(f.topic, cfg.dlq_topic);
        assert_eq!(f.records, 2);
        let f = worst_fault(&cfg, &records, &failed[..1]).expect("a fault");
        assert!(!f.permanent);
        assert_eq!(f.topic, cfg.output_topic);
        assert!(worst_fault(&cfg, &records, &[]).is_none());
    }
}

//! The producing side of the serve loop: the producer's settings, putting records on its queue,
//! and the stage that awaits every delivery of a batch in order, re-sending failures, before it
//! stores the batch's input offsets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::{Consumer_, InFlight};
use super::pipeline::Observe;
use super::record::{Destination, Outbound};

/// A batch whose records are enqueued on the producer.
pub(super) struct Sent {
    pub(super) records: Vec<Outbound>,
    pub(super) deliveries: Vec<DeliveryFuture>,
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

/// Awaits every delivery of each batch in order, re-sending failures, then stores the offsets.
pub(super) async fn ack_stage(
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
pub(super) async fn enqueue(
    producer: &FutureProducer,
    cfg: &ServeConfig,
    r: &mut Outbound,
) -> DeliveryFuture {
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

//! Exactly-once delivery: each batch is one Kafka transaction holding its output records, its
//! dead letters and its input offsets (`send_offsets_to_transaction` with the consumer's group
//! metadata, so a zombie of an older group generation cannot commit). The delivering stage owns
//! the producer and finishes one batch's transaction before it takes the next batch, so records
//! of batch N+1 never enter batch N's transaction.
//!
//! On a failed delivery the transaction is aborted and the batch, still in memory, is sent again
//! in a new one. When the transaction's outcome is out of this instance's hands (the producer
//! failed fatally or was fenced, or the consumer left the group) the batch is abandoned and the
//! consuming stage seeks back to the committed positions, so the inputs are read and answered
//! again. Readers of the output see only committed records with `isolation.level=read_committed`.

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{fault, last_offsets, Backoff, Deliverer, Outcome};
use crate::error::StreamError;
use crate::stream::event::Event;
use crate::stream::message::Outbound;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Registers the transactional id with the broker, fencing an earlier instance of it and
/// aborting its open transaction.
pub(crate) fn init(producer: &FutureProducer) -> Result<(), StreamError> {
    blocking(|| producer.init_transactions(TIMEOUT)).map_err(|source| StreamError::Kafka {
        what: "init transactions",
        source,
    })
}

/// Delivers one batch in one transaction, retrying until it commits or must be abandoned.
pub(super) async fn complete(
    d: &mut Deliverer,
    records: &mut [Outbound],
    group: Option<&ConsumerGroupMetadata>,
) -> Result<Outcome, StreamError> {
    let all: Vec<usize> = (0..records.len()).collect();
    let mut backoff = Backoff::new();
    loop {
        if let Err(e) = blocking(|| d.producer.begin_transaction()) {
            if is_fatal(&e) {
                return renew(d, &e).map(|()| Outcome::Abandoned);
            }
            d.report(&fault(&d.cfg.output_topic, &e, records.len()));
            backoff.wait().await;
            continue;
        }
        let failed = d.send_round(records, &all).await;
        if !failed.is_empty() {
            d.failed(records, &failed);
            if let Err(e) = abort(d) {
                return renew(d, &e).map(|()| Outcome::Abandoned);
            }
            backoff.wait().await;
            continue;
        }
        // The generation the batch was read under, not the current one: after a rebalance
        // the broker refuses it (a group error: abandoned, read again by the owner).
        let Some(group) = group else {
            let _ = abort(d);
            return Ok(Outcome::Abandoned);
        };
        let offsets = next_offsets(&d.cfg.input_topic, records)?;
        let sent = blocking(|| {
            d.producer
                .send_offsets_to_transaction(&offsets, group, TIMEOUT)
        });
        let committed = match sent {
            Ok(()) => commit(d).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => return Ok(Outcome::Done),
            Err(e) => {
                Event::TransactionAborted { error: &e }.emit(&*d.observer);
                if is_fatal(&e) {
                    return renew(d, &e).map(|()| Outcome::Abandoned);
                }
                if let Err(a) = abort(d) {
                    return renew(d, &a).map(|()| Outcome::Abandoned);
                }
                if is_group_error(&e) {
                    return Ok(Outcome::Abandoned);
                }
                d.report(&fault(&d.cfg.output_topic, &e, records.len()));
                backoff.wait().await;
            }
        }
    }
}

/// Commits the open transaction, again while librdkafka says a retry can succeed.
async fn commit(d: &Deliverer) -> Result<(), KafkaError> {
    let mut backoff = Backoff::new();
    loop {
        match blocking(|| d.producer.commit_transaction(TIMEOUT)) {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.txn_requires_abort() => {
                Event::CommitRetry { error: &e }.emit(&*d.observer);
                backoff.wait().await;
            }
            other => return other,
        }
    }
}

/// Aborts the open transaction; an error if the producer cannot (it must be replaced).
fn abort(d: &Deliverer) -> Result<(), KafkaError> {
    blocking(|| d.producer.abort_transaction(TIMEOUT))
        .inspect_err(|e| Event::AbortFailed { error: e }.emit(&*d.observer))
}

/// A new producer with the same transactional id; its registration fences the old one and
/// settles the old one's open transaction. Unless the old one was fenced by another producer
/// with this id: then two instances share it, and this one stops rather than fence the other
/// back (which would go on for ever, each aborting the other's transactions).
fn renew(d: &mut Deliverer, cause: &KafkaError) -> Result<(), StreamError> {
    if is_fenced(cause) {
        return Err(StreamError::Fenced {
            transactional_id: super::transactional_id(&d.cfg),
        });
    }
    d.renew_producer();
    init(&d.producer)
}

/// This producer's transactional id was taken over by a newer registration.
fn is_fenced(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::Transaction(t) => Some(t.code()),
        _ => e.rdkafka_error_code(),
    };
    matches!(code, Some(C::Fenced | C::ProducerFenced))
}

/// The offsets to commit with a batch: one past each partition's last input.
fn next_offsets(topic: &str, records: &[Outbound]) -> Result<TopicPartitionList, StreamError> {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in last_offsets(records) {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .map_err(|source| StreamError::Kafka {
                what: "offsets of a transaction",
                source,
            })?;
    }
    Ok(tpl)
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal),
    }
}

/// The consumer is no longer the group member the offsets would be committed for.
fn is_group_error(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::IllegalGeneration
                | C::UnknownMemberId
                | C::RebalanceInProgress
                | C::FencedInstanceId
                | C::NotCoordinator
        )
    )
}

/// Runs a blocking librdkafka call, off the runtime's other tasks on a multi-thread runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

//! The consuming side of the serve loop: the consumer's settings and context (drain before
//! partitions are revoked), the count of messages handed on, and the stage that reads messages
//! into micro-batches. While the stages behind it are full, the stage pauses the assigned
//! partitions and keeps polling, so the group never loses it (past `max.poll.interval.ms` an
//! instance that does not poll is expelled and the group rebalances).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::event::Event;
use super::inbound::inbound;
use super::observe::Observe;
use super::record::Inbound;

/// How long a full hand-over waits before the assignment is paused (and polling goes on).
/// Well under any sane `max.poll.interval.ms`; short waits never pause, which some brokers
/// handle badly (with tansu, partitions resumed after a pause were seen to stall).
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// What is in flight: messages read and handed on whose batch is not finished (offsets stored
/// or transaction committed) yet, and their bytes as read (payload, key and headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Load {
    /// Messages.
    pub(super) messages: usize,
    /// Their bytes.
    pub(super) bytes: usize,
}

impl Load {
    /// The load of these messages.
    pub(super) fn of(messages: &[Inbound]) -> Self {
        Self {
            messages: messages.len(),
            bytes: messages.iter().map(Inbound::size).sum(),
        }
    }

    /// Both counts added.
    pub(super) fn plus(self, other: Load) -> Self {
        Self {
            messages: self.messages + other.messages,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The messages and bytes handed on but not finished: a revoke waits for the count to reach
/// zero, and the consuming stage reads no further while the bytes are over
/// `max_inflight_bytes`.
#[derive(Default)]
pub(super) struct InFlight {
    load: Mutex<Load>,
    zero: Condvar,
    /// Told each time a batch finishes (one waiter: the consuming stage).
    freed: tokio::sync::Notify,
}

impl InFlight {
    pub(super) fn add(&self, n: Load) {
        let mut l = self.load.lock().unwrap_or_else(|p| p.into_inner());
        *l = l.plus(n);
    }

    pub(super) fn done(&self, n: Load) {
        let mut l = self.load.lock().unwrap_or_else(|p| p.into_inner());
        l.messages = l.messages.saturating_sub(n.messages);
        l.bytes = l.bytes.saturating_sub(n.bytes);
        if l.messages == 0 {
            self.zero.notify_all();
        }
        drop(l);
        self.freed.notify_one();
    }

    /// Forgets everything in flight (the service stops; what did not finish is read again).
    pub(super) fn clear(&self) {
        self.done(Load {
            messages: usize::MAX,
            bytes: usize::MAX,
        });
    }

    /// Bytes in flight now.
    pub(super) fn bytes(&self) -> usize {
        self.load.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Resolves once a batch has finished since the last call.
    async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Waits until nothing is in flight; false on timeout.
    pub(super) fn wait_empty(&self, timeout: Duration) -> bool {
        let c = self.load.lock().unwrap_or_else(|p| p.into_inner());
        match self.zero.wait_timeout_while(c, timeout, |l| l.messages > 0) {
            Ok((_, t)) => !t.timed_out(),
            Err(_) => false,
        }
    }
}

/// A batch of messages read, in order, as handed to the classifying stage.
pub(super) struct Batch {
    /// The messages.
    pub(super) messages: Vec<Inbound>,
    /// Their load, as counted in flight.
    pub(super) load: Load,
    /// The rewind epoch it was read in (see [`FlowContext::rewinds`]).
    pub(super) epoch: u64,
    /// The consumer's group metadata (generation) when the batch was taken: exactly-once
    /// commits the batch's offsets under it, so a batch that outlived a rebalance is refused
    /// by the broker instead of committing for partitions another instance now owns.
    pub(super) group: Option<rdkafka::consumer::ConsumerGroupMetadata>,
}

/// The consumer's context: drains before partitions are given up, and tells the consuming
/// stage which partitions went.
pub(super) struct FlowContext {
    pub(super) inflight: Arc<InFlight>,
    pub(super) drain_timeout: Duration,
    /// Bumped at every revoke and assign.
    pub(super) rebalances: AtomicU64,
    /// Partitions revoked since the consuming stage last looked.
    pub(super) revoked: Mutex<Vec<i32>>,
    /// Bumped by the consuming stage each time it seeks back to the committed positions; the
    /// delivering stage asks for it by raising `rewind_wanted` and drops batches read before.
    pub(super) rewinds: AtomicU64,
    /// The epoch a rewind was asked for in (0: none pending; epochs start at 1).
    pub(super) rewind_wanted: AtomicU64,
    /// Wakes the consuming stage when a rewind is asked for.
    pub(super) wake: tokio::sync::Notify,
    pub(super) observer: Arc<dyn Observe>,
    /// Whether offsets are committed by the consumer (at-least-once) rather than in transactions.
    pub(super) commits: bool,
}

impl ClientContext for FlowContext {
    fn stats(&self, statistics: Statistics) {
        self.observer.statistics(&statistics);
    }
}

impl ConsumerContext for FlowContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut r) = self.revoked.lock() {
                r.extend(partitions(tpl));
            }
            self.rebalances.fetch_add(1, Ordering::SeqCst);
            // This callback runs inside `recv()` on a runtime worker. On a multi-thread runtime,
            // hand the worker's other tasks (the stages being drained) to the rest first. The
            // drain finishes (stores or commits the transaction of) every batch handed on.
            let wait = || self.inflight.wait_empty(self.drain_timeout);
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let drained = if multi {
                tokio::task::block_in_place(wait)
            } else {
                wait()
            };
            let committed = !self.commits || {
                let commit = consumer.commit_consumer_state(CommitMode::Sync);
                commit.is_ok() || is_no_offset(&commit)
            };
            Event::Revoked {
                partitions: tpl.count(),
                drained,
                committed,
            }
            .emit(&*self.observer);
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
            self.rebalances.fetch_add(1, Ordering::SeqCst);
            Event::Assigned {
                partitions: &partitions,
            }
            .emit(&*self.observer);
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

/// The group consumer every stage of the pipeline shares, with its rebalance context.
pub(super) type GroupConsumer = StreamConsumer<FlowContext>;

/// The Kafka consumer settings of the service.
pub fn consumer_config(cfg: &ServeConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    // Exactly-once commits the offsets in each batch's transaction, never from the consumer.
    let auto_commit = !cfg.guarantee.transactional();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("client.id", format!("moderato-{}", cfg.instance))
        .set("enable.auto.commit", auto_commit.to_string())
        .set(
            "auto.commit.interval.ms",
            cfg.commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set(
            "queued.max.messages.kbytes",
            super::config::QUEUE_KBYTES.to_string(),
        )
        .set("statistics.interval.ms", "5000");
    for (k, v) in cfg.client_properties("consumer") {
        c.set(k, v);
    }
    c
}

/// Reads messages into batches of up to `batch_size` or `batch_timeout`, until `shutdown`;
/// returns how many it read and the deadline of the drain that follows.
pub(super) async fn consume_stage(
    consumer: &GroupConsumer,
    cfg: &ServeConfig,
    inflight: &InFlight,
    batch_tx: mpsc::Sender<Batch>,
    shutdown: impl Future<Output = ()>,
) -> (u64, Instant) {
    tokio::pin!(shutdown);
    let mut held = Held::new(consumer, cfg);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut consumed = 0u64;
    'read: loop {
        // What is held goes now if reading more would pass the byte budget.
        let over = inflight.bytes().saturating_add(held.bytes) >= cfg.max_inflight_bytes;
        if over && held.messages.is_empty() {
            // The batches handed on hold the whole budget: read on once one finishes.
            if !wait_for_room(&mut held, inflight, &mut shutdown, &mut consumed).await {
                break;
            }
            continue;
        }
        let full = over || {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = timer => true,
                () = consumer.context().wake.notified() => false,
                m = consumer.recv() => match m {
                    Ok(m) => {
                        consumed += 1;
                        held.read(&m);
                        if held.messages.len() == 1 {
                            held.began = Instant::now();
                            deadline = Some(tokio::time::Instant::now() + cfg.batch_timeout);
                        }
                        held.messages.len() >= cfg.batch_size
                    }
                    Err(e) => {
                        Event::ConsumerError { error: &e }.emit(&*consumer.context().observer);
                        false
                    }
                },
            }
        };
        held.settle();
        if held.messages.is_empty() {
            deadline = None;
        }
        if !full || held.messages.is_empty() {
            continue;
        }
        deadline = None;
        let full_at = Instant::now();
        // The hand-over waits while the stages are full (backpressure). Meanwhile the assigned
        // partitions are paused and the consumer is still polled: rebalances and the group's
        // heartbeat go on, and nothing new is fetched.
        loop {
            let permit = match batch_tx.try_reserve() {
                Ok(p) => Ok(p),
                Err(mpsc::error::TrySendError::Closed(())) => break 'read,
                Err(mpsc::error::TrySendError::Full(())) if !held.paused => {
                    // A short wait is the usual backpressure; only a longer one pauses.
                    let waited = tokio::select! {
                        biased;
                        () = &mut shutdown => break 'read,
                        p = tokio::time::timeout(PAUSE_AFTER, batch_tx.reserve()) => p,
                    };
                    match waited {
                        Ok(p) => p.map_err(|_| ()),
                        Err(_) => {
                            held.pause();
                            continue;
                        }
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    held.pause();
                    let got = tokio::select! {
                        biased;
                        () = &mut shutdown => break 'read,
                        p = batch_tx.reserve() => Some(p.map_err(|_| ())),
                        () = consumer.context().wake.notified() => None,
                        m = consumer.recv() => {
                            // Fetched before the pause took effect: kept in this batch.
                            if let Ok(m) = m {
                                consumed += 1;
                                held.read(&m);
                            }
                            None
                        }
                    };
                    match got {
                        Some(p) => p,
                        None => {
                            held.settle();
                            if held.messages.is_empty() {
                                held.resume();
                                continue 'read;
                            }
                            continue;
                        }
                    }
                }
            };
            match permit {
                Ok(p) => {
                    held.settle();
                    let fill = full_at.saturating_duration_since(held.began);
                    let batch = held.take();
                    let n = batch.messages.len();
                    inflight.add(batch.load);
                    consumer.context().observer.in_flight(inflight.bytes());
                    p.send(batch);
                    held.resume();
                    tracing::debug!(
                        records = n,
                        fill_us = fill.as_micros() as u64,
                        handover_us = full_at.elapsed().as_micros() as u64,
                        "batch read"
                    );
                    break;
                }
                Err(()) => break 'read,
            }
        }
    }
    held.resume();
    held.settle();
    let deadline = Instant::now() + cfg.shutdown_timeout;
    if !held.messages.is_empty() {
        let batch = held.take();
        let load = batch.load;
        inflight.add(load);
        let last = batch_tx.send(batch);
        match tokio::time::timeout_at(deadline.into(), last).await {
            Ok(Ok(())) => {}
            _ => {
                inflight.done(load);
                Event::LastBatchDropped.emit(&*consumer.context().observer);
            }
        }
    }
    (consumed, deadline)
}

/// Waits, with nothing held, until a batch in flight finishes and frees part of the byte budget.
/// Past [`PAUSE_AFTER`] the assignment is paused and the consumer polled meanwhile (a message
/// fetched before the pause took effect is kept). False if `shutdown` came first.
async fn wait_for_room(
    held: &mut Held<'_>,
    inflight: &InFlight,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    consumed: &mut u64,
) -> bool {
    let freed = tokio::select! {
        biased;
        () = &mut *shutdown => return false,
        f = tokio::time::timeout(PAUSE_AFTER, inflight.freed()) => f.is_ok(),
    };
    if !freed {
        held.pause();
        let consumer = held.consumer;
        tokio::select! {
            biased;
            () = &mut *shutdown => return false,
            () = inflight.freed() => {}
            () = consumer.context().wake.notified() => {}
            m = consumer.recv() => {
                if let Ok(m) = m {
                    *consumed += 1;
                    held.read(&m);
                }
            }
        }
    }
    held.settle();
    if held.messages.is_empty() {
        held.resume();
    }
    true
}

/// The batch being filled, and whether the assignment is paused.
struct Held<'a> {
    consumer: &'a GroupConsumer,
    messages: Vec<Inbound>,
    /// The messages' bytes (see [`Inbound::size`]).
    bytes: usize,
    /// Payloads over this many bytes are copied only this far (`max_record_bytes`).
    keep: usize,
    /// The input topic (what is paused and resumed).
    topic: String,
    capacity: usize,
    rebalances: u64,
    paused: bool,
    /// Per partition, the offset after the last message read since it was assigned.
    next: BTreeMap<i32, i64>,
    /// The partitions paused now.
    stopped: Vec<i32>,
    /// When the batch's first message was read.
    began: Instant,
}

impl<'a> Held<'a> {
    fn new(consumer: &'a GroupConsumer, cfg: &ServeConfig) -> Self {
        let capacity = cfg.batch_size;
        Self {
            consumer,
            messages: Vec::with_capacity(capacity),
            bytes: 0,
            keep: cfg.max_record_bytes(),
            topic: cfg.input_topic.clone(),
            capacity,
            rebalances: consumer.context().rebalances.load(Ordering::SeqCst),
            paused: false,
            next: BTreeMap::new(),
            stopped: Vec::new(),
            began: Instant::now(),
        }
    }

    /// Copies a message read and keeps it (see [`Held::push`]).
    fn read(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        self.push(inbound(m, self.keep));
    }

    /// Keeps a message read; while paused, its partition is paused too. A rebalance that ran
    /// inside the poll that returned it is settled first: the message belongs to the new
    /// assignment, the ones held before may not.
    fn push(&mut self, m: Inbound) {
        if self.settle() {
            return; // read before the rewind: read again after it
        }
        let fresh = self
            .next
            .insert(m.source.partition, m.source.offset + 1)
            .is_none();
        self.bytes += m.size();
        self.messages.push(m);
        if fresh && self.paused {
            self.pause();
        }
    }

    /// After a rebalance: messages of revoked partitions belong to their next owner (their
    /// offsets were never stored; a partition assigned again is fetched again from its committed
    /// offset), and a paused instance pauses its new assignment too. After a rewind the
    /// delivering stage asked for: everything held is dropped and the assignment is read again
    /// from the committed positions (true if so).
    fn settle(&mut self) -> bool {
        let ctx = self.consumer.context();
        let wanted = ctx.rewind_wanted.load(Ordering::SeqCst);
        let rewound = wanted != 0 && wanted == ctx.rewinds.load(Ordering::SeqCst);
        if rewound {
            self.rewind();
        }
        let now = ctx.rebalances.load(Ordering::SeqCst);
        if now == self.rebalances {
            return rewound;
        }
        self.rebalances = now;
        let revoked: Vec<i32> = ctx
            .revoked
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let before = self.messages.len();
        self.messages
            .retain(|m| !revoked.contains(&m.source.partition));
        self.bytes = Load::of(&self.messages).bytes;
        self.next.retain(|p, _| !revoked.contains(p));
        let gone: Vec<i32> = self
            .stopped
            .iter()
            .copied()
            .filter(|p| revoked.contains(p))
            .collect();
        if !gone.is_empty() {
            self.unpause(&gone);
            self.stopped.retain(|p| !revoked.contains(p));
        }
        if self.messages.len() < before {
            tracing::info!(
                dropped = before - self.messages.len(),
                "messages of revoked partitions left to their next owner"
            );
        }
        if self.paused {
            self.pause();
        }
        rewound
    }

    /// Seeks every assigned partition back to its committed offset and starts a new epoch.
    fn rewind(&mut self) {
        let ctx = self.consumer.context();
        self.messages.clear();
        self.bytes = 0;
        // Resume what backpressure paused first: `resume` needs the read positions.
        self.resume();
        self.next.clear();
        let committed = self
            .consumer
            .assignment()
            .and_then(|a| self.consumer.committed_offsets(a, Duration::from_secs(30)));
        let result = committed.and_then(|tpl| {
            for e in tpl.elements().iter_mut() {
                if !matches!(e.offset(), Offset::Offset(_)) {
                    e.set_offset(Offset::Beginning)?;
                }
            }
            let sought = self
                .consumer
                .seek_partitions(tpl, Duration::from_secs(30))?;
            // A partition whose seek failed would go on past the abandoned batch: try again.
            match sought.elements().iter().find_map(|e| e.error().err()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        match result {
            Ok(()) => {
                ctx.rewinds.fetch_add(1, Ordering::SeqCst);
                ctx.rewind_wanted.store(0, Ordering::SeqCst);
                Event::Rewound.emit(&*ctx.observer);
            }
            Err(e) => Event::RewindFailed { error: &e }.emit(&*ctx.observer),
        }
    }

    fn take(&mut self) -> Batch {
        let load = Load {
            messages: self.messages.len(),
            bytes: std::mem::take(&mut self.bytes),
        };
        Batch {
            load,
            messages: std::mem::replace(&mut self.messages, Vec::with_capacity(self.capacity)),
            epoch: self.consumer.context().rewinds.load(Ordering::SeqCst),
            group: self.consumer.group_metadata(),
        }
    }

    /// Pauses the partitions read from since they were assigned (librdkafka then resumes each
    /// from the message after the last one read); a partition not read from yet is paused when
    /// its first message arrives. (librdkafka resumes a partition paused before the application
    /// read from it from its own fetch position, skipping the messages the pause dropped.)
    fn pause(&mut self) {
        self.paused = true;
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            let p = e.partition();
            if self.next.contains_key(&p) && !self.stopped.contains(&p) {
                tpl.add_partition(e.topic(), p);
                self.stopped.push(p);
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.pause(&tpl) {
            Ok(()) => tracing::debug!(partitions = tpl.count(), "stages full: partitions paused"),
            Err(e) => tracing::debug!(error = %e, "cannot pause partitions"),
        }
    }

    /// Resumes every partition paused, assigned or not, and seeks the assigned ones to the
    /// message after the last one read.
    fn resume(&mut self) {
        self.paused = false;
        if self.stopped.is_empty() {
            return;
        }
        let stopped = std::mem::take(&mut self.stopped);
        self.unpause(&stopped);
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            let p = e.partition();
            if let (true, Some(&next)) = (stopped.contains(&p), self.next.get(&p)) {
                let _ = tpl.add_partition_offset(e.topic(), p, Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // From the message after the last one read, whatever position librdkafka (or a broker's
        // fetch session) kept: anything fetched before this seek is discarded by librdkafka.
        if let Err(e) = self.consumer.seek_partitions(tpl, Duration::ZERO) {
            tracing::debug!(error = %e, "cannot seek the resumed partitions");
        }
    }

    /// Clears librdkafka's pause of `partitions`. A partition paused when it was revoked stays
    /// paused in librdkafka when it is assigned again (the instance then reads nothing from
    /// it, for ever: seen after a session timeout), so a revoked one is resumed too.
    fn unpause(&self, partitions: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::debug!(error = %e, "cannot resume partitions");
        }
    }
}

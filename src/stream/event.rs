//! The loop's failures and turns, one typed event per occurrence. [`Event::emit`] logs it once
//! and hands it to [`Observe::event`](super::observe::Observe::event), which counts it
//! (`moderato_stream_events_total{event}`), so that what the log says and what the metric
//! counts cannot drift apart (as Vector's internal events do). Never a comment's text: an event
//! carries codes, counts and positions.

use std::fmt::Display;

/// Something the loop met that an operator may need to see (more kinds may come: match with a
/// wildcard arm outside this crate).
#[non_exhaustive]
pub enum Event<'a> {
    /// The consumer reported an error; librdkafka reconnects and retries by itself.
    ConsumerError {
        /// The error as librdkafka words it.
        error: &'a dyn Display,
    },
    /// Partitions were taken from this instance, after draining what it had read of them.
    Revoked {
        /// How many partitions went.
        partitions: usize,
        /// Whether every batch read from them finished before the drain timeout.
        drained: bool,
        /// Whether their offsets were committed.
        committed: bool,
    },
    /// Partitions were given to this instance.
    Assigned {
        /// Its whole assignment now.
        partitions: &'a [i32],
    },
    /// A delivery round failed; its failed records are sent again and the offsets wait.
    DeliveryRetry {
        /// The topic written to.
        topic: &'a str,
        /// librdkafka's error code.
        code: &'a str,
        /// Whether librdkafka's own retries cannot fix it.
        permanent: bool,
        /// Records that failed this round.
        records: usize,
        /// The error as librdkafka words it.
        error: &'a dyn Display,
    },
    /// Deliveries succeed again after a fault.
    DeliveryRecovered,
    /// A record the broker refused as too large was fitted to half its size.
    RecordShrunk {
        /// Its input partition.
        partition: i32,
        /// Its input offset.
        offset: i64,
        /// Its size before, in bytes.
        from: usize,
        /// Its size after.
        to: usize,
    },
    /// An offset could not be stored, because its partition was revoked meanwhile: the next
    /// owner reads the batch again.
    OffsetNotStored {
        /// The input partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// Why not.
        error: &'a dyn Display,
    },
    /// The producer failed fatally and was replaced with a new one.
    ProducerReplaced,
    /// The producer failed fatally and no new one could be made yet; tried again.
    ProducerNotReplaced {
        /// Why not (property values hidden).
        error: &'a dyn Display,
    },
    /// An exactly-once transaction failed and is aborted.
    TransactionAborted {
        /// Why.
        error: &'a dyn Display,
    },
    /// A commit of a transaction was not confirmed and is tried again.
    CommitRetry {
        /// Why.
        error: &'a dyn Display,
    },
    /// A transaction could not be aborted; the producer is replaced.
    AbortFailed {
        /// Why.
        error: &'a dyn Display,
    },
    /// After an abandoned batch, the consumer sought back to the committed positions.
    Rewound,
    /// The seek back failed and is tried again.
    RewindFailed {
        /// Why.
        error: &'a dyn Display,
    },
    /// At shutdown, the last batch read could not be handed on in time: it is read again.
    LastBatchDropped,
    /// The final commit at shutdown failed: uncommitted messages are read again.
    FinalCommitFailed {
        /// Why.
        error: &'a dyn Display,
    },
    /// The classification task panicked or was cancelled: the loop stops, offsets unstored.
    ClassifierStopped {
        /// Whether it panicked (its message withheld: it can quote a comment).
        panicked: bool,
    },
    /// Delivery cannot go on: the loop stops, and the batch is read again after a restart.
    DeliveryStopped {
        /// Why.
        error: &'a dyn Display,
    },
    /// The feedback collector's consumer reported an error; librdkafka retries by itself.
    FeedbackConsumerError {
        /// The error as librdkafka words it.
        error: &'a dyn Display,
    },
    /// A feedback message is not a decision (`{"id", "head", "label"}`): skipped.
    FeedbackInvalid {
        /// Its partition on the feedback topic.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// A decision could not be appended to the feedback file: read again in a second.
    FeedbackAppendFailed {
        /// The file.
        file: &'a std::path::Path,
        /// The I/O error.
        error: &'a dyn Display,
    },
}

impl Event<'_> {
    /// Every event's name, as the metric's `event` label spells it.
    pub const NAMES: [&'static str; 21] = [
        "consumer_error",
        "revoked",
        "assigned",
        "delivery_retry",
        "delivery_recovered",
        "record_shrunk",
        "offset_not_stored",
        "producer_replaced",
        "producer_not_replaced",
        "transaction_aborted",
        "commit_retry",
        "abort_failed",
        "rewound",
        "rewind_failed",
        "last_batch_dropped",
        "final_commit_failed",
        "classifier_stopped",
        "delivery_stopped",
        "feedback_consumer_error",
        "feedback_invalid",
        "feedback_append_failed",
    ];

    /// This event's name, one of [`Event::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Event::ConsumerError { .. } => "consumer_error",
            Event::Revoked { .. } => "revoked",
            Event::Assigned { .. } => "assigned",
            Event::DeliveryRetry { .. } => "delivery_retry",
            Event::DeliveryRecovered => "delivery_recovered",
            Event::RecordShrunk { .. } => "record_shrunk",
            Event::OffsetNotStored { .. } => "offset_not_stored",
            Event::ProducerReplaced => "producer_replaced",
            Event::ProducerNotReplaced { .. } => "producer_not_replaced",
            Event::TransactionAborted { .. } => "transaction_aborted",
            Event::CommitRetry { .. } => "commit_retry",
            Event::AbortFailed { .. } => "abort_failed",
            Event::Rewound => "rewound",
            Event::RewindFailed { .. } => "rewind_failed",
            Event::LastBatchDropped => "last_batch_dropped",
            Event::FinalCommitFailed { .. } => "final_commit_failed",
            Event::ClassifierStopped { .. } => "classifier_stopped",
            Event::DeliveryStopped { .. } => "delivery_stopped",
            Event::FeedbackConsumerError { .. } => "feedback_consumer_error",
            Event::FeedbackInvalid { .. } => "feedback_invalid",
            Event::FeedbackAppendFailed { .. } => "feedback_append_failed",
        }
    }

    /// The event's one log line, at the level its meaning asks for (see [`Event::emit`]).
    pub(super) fn log(&self) {
        let event = self.name();
        match *self {
            Event::ConsumerError { error } => {
                tracing::warn!(event, error = %error, "consumer error; librdkafka retries")
            }
            Event::Revoked {
                partitions,
                drained,
                committed,
            } => tracing::info!(event, partitions, drained, committed, "partitions revoked"),
            Event::Assigned { partitions } => {
                tracing::info!(event, ?partitions, "partitions assigned")
            }
            Event::DeliveryRetry {
                topic,
                code,
                permanent,
                records,
                error,
            } => tracing::warn!(
                event,
                error = %error,
                topic,
                code,
                permanent,
                records,
                "delivery failed; sending the batch's failed records again (offsets wait)"
            ),
            Event::DeliveryRecovered => tracing::info!(event, "deliveries succeed again"),
            Event::RecordShrunk {
                partition,
                offset,
                from,
                to,
            } => tracing::warn!(
                event,
                partition,
                offset,
                from,
                to,
                "record too large for the broker; fitted to half its size"
            ),
            Event::OffsetNotStored {
                partition,
                offset,
                error,
            } => tracing::debug!(
                event,
                partition,
                offset,
                error = %error,
                "offset not stored (partition revoked)"
            ),
            Event::ProducerReplaced => {
                tracing::warn!(event, "producer failed fatally; replaced with a new one")
            }
            Event::ProducerNotReplaced { error } => {
                tracing::error!(event, error = %error, "cannot create a new producer; retrying")
            }
            Event::TransactionAborted { error } => {
                tracing::warn!(event, error = %error, "transaction failed; aborting it")
            }
            Event::CommitRetry { error } => {
                tracing::warn!(event, error = %error, "commit not confirmed; trying again")
            }
            Event::AbortFailed { error } => {
                tracing::warn!(event, error = %error, "cannot abort the transaction")
            }
            Event::Rewound => tracing::warn!(event, "read again from the committed positions"),
            Event::RewindFailed { error } => {
                tracing::warn!(event, error = %error, "cannot seek back yet; retrying")
            }
            Event::LastBatchDropped => tracing::warn!(
                event,
                "the last batch could not be handed over before the timeout; it will be read again"
            ),
            Event::FinalCommitFailed { error } => tracing::warn!(
                event,
                error = %error,
                "final commit failed; uncommitted messages will be read again"
            ),
            Event::ClassifierStopped { panicked } => {
                let why = if panicked {
                    "panicked"
                } else {
                    "was cancelled"
                };
                tracing::error!(event, "classification task {why}; stopping")
            }
            Event::DeliveryStopped { error } => tracing::error!(
                event,
                error = %error,
                "cannot deliver; stopping (the batch is read again after a restart)"
            ),
            Event::FeedbackConsumerError { error } => tracing::warn!(
                event,
                error = %error,
                "feedback consumer error; librdkafka retries"
            ),
            Event::FeedbackInvalid { partition, offset } => tracing::warn!(
                event,
                partition,
                offset,
                "feedback message is not {{\"id\", \"head\", \"label\"}}; skipped"
            ),
            Event::FeedbackAppendFailed { file, error } => tracing::error!(
                event,
                file = %file.display(),
                error = %error,
                "cannot append feedback to its file; reading the decision again in 1 s"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::stream::observe::Observe;

    /// Records the names of the events it is handed.
    #[derive(Default)]
    struct Seen(Mutex<Vec<&'static str>>);
    impl Observe for Seen {
        fn event(&self, event: &Event<'_>) {
            if let Ok(mut v) = self.0.lock() {
                v.push(event.name());
            }
        }
    }

    #[test]
    fn every_event_reaches_the_observer_once_under_its_own_listed_name() {
        let e = "boom";
        let all = [
            Event::ConsumerError { error: &e },
            Event::Revoked {
                partitions: 2,
                drained: true,
                committed: false,
            },
            Event::Assigned {
                partitions: &[0, 1],
            },
            Event::DeliveryRetry {
                topic: "out",
                code: "UnknownTopic",
                permanent: true,
                records: 3,
                error: &e,
            },
            Event::DeliveryRecovered,
            Event::RecordShrunk {
                partition: 0,
                offset: 7,
                from: 100,
                to: 50,
            },
            Event::OffsetNotStored {
                partition: 0,
                offset: 7,
                error: &e,
            },
            Event::ProducerReplaced,
            Event::ProducerNotReplaced { error: &e },
            Event::TransactionAborted { error: &e },
            Event::CommitRetry { error: &e },
            Event::AbortFailed { error: &e },
            Event::Rewound,
            Event::RewindFailed { error: &e },
            Event::LastBatchDropped,
            Event::FinalCommitFailed { error: &e },
            Event::ClassifierStopped { panicked: true },
            Event::DeliveryStopped { error: &e },
            Event::FeedbackConsumerError { error: &e },
            Event::FeedbackInvalid {
                partition: 0,
                offset: 7,
            },
            Event::FeedbackAppendFailed {
                file: std::path::Path::new("feedback.jsonl"),
                error: &e,
            },
        ];
        let seen = Seen::default();
        for event in all {
            event.emit(&seen);
        }
        let names = seen.0.into_inner().expect("not poisoned");
        // In order, each once, and the list the metric pre-registers is the same list.
        assert_eq!(names, Event::NAMES);
    }
}

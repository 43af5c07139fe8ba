//! `moderato monitor`: watches a label topic that any number of moderato instances write,
//! aggregates it (rates per head, language, target, model version) into the same live view and
//! metrics as `serve`, and flags drift.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::HeadResult;
use crate::clock::now;
use crate::error::StreamError;
use crate::lang::Script;
use crate::ops::live::Item;
use crate::ops::telemetry::Telemetry;
use crate::record::Record;
use crate::stream::consume::partitions;
use crate::stream::pipeline::Observe;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Statistics};

/// Settings of `moderato monitor`.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// The label topic.
    pub topic: String,
    /// Consumer group (each monitor sees every record only in its own group).
    pub group: String,
    /// Read the topic from its start instead of from now on.
    pub from_beginning: bool,
    /// Pass-through librdkafka properties.
    pub librdkafka: Vec<(String, String)>,
}

struct MonitorContext {
    telemetry: Arc<Telemetry>,
}

impl ClientContext for MonitorContext {
    fn stats(&self, statistics: Statistics) {
        self.telemetry.statistics(&statistics);
    }
}

impl ConsumerContext for MonitorContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The whole assignment, as serve reports it (cooperative rebalances list only changes).
        let p = consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        if let Rebalance::Assign(_) = rebalance {
            tracing::info!(partitions = ?p, "monitoring partitions");
        }
        self.telemetry.assigned(&p);
    }
}

/// A label record, owned, as far as the monitor reads it.
#[derive(Debug, PartialEq)]
pub struct Seen {
    /// Comment id.
    pub id: String,
    /// Script.
    pub lang: Script,
    /// Binary head names, in record order.
    pub heads: Vec<String>,
    /// (head index, score, flag).
    pub scores: Vec<(usize, f32, bool)>,
    /// (target, label, probability) of a conditioned head.
    pub stance: Option<(String, String, f32)>,
    /// Model version.
    pub model_version: String,
    /// Input partition and offset.
    pub source: (i32, i64),
}

/// Reads a label record as `serve` writes it ([`Record`]); `None` if it is not one.
pub fn parse_record(payload: &[u8]) -> Option<Seen> {
    let record: Record = serde_json::from_slice(payload).ok()?;
    let source = record.source.as_ref();
    let mut seen = Seen {
        id: record.id.text(),
        lang: record.script(),
        heads: Vec::new(),
        scores: Vec::new(),
        stance: None,
        source: source.map_or((-1, -1), |s| (s.partition, s.offset)),
        model_version: record.model.version,
    };
    for (name, head) in record.heads {
        match head {
            HeadResult::Binary { flag, score } => {
                seen.scores.push((seen.heads.len(), score, flag));
                seen.heads.push(name);
            }
            HeadResult::Multiclass {
                label,
                scores,
                target: Some(target),
            } => {
                let p = scores.get(&label).copied().unwrap_or(0.0);
                seen.stance = Some((target, label, p));
            }
            HeadResult::Multiclass { target: None, .. } => {}
        }
    }
    Some(seen)
}

/// Most distinct values of one label dimension (head, target, label, model version) that
/// `monitor` keeps; later values are counted as [`OTHER`].
pub const MAX_VALUES: usize = 50;
/// Longest label value kept, in bytes; a longer one is counted as [`OTHER`].
pub const MAX_VALUE_LEN: usize = 64;
/// What a value past the caps is counted as.
pub const OTHER: &str = "other";
/// The label dimensions `monitor` takes from records, as `moderato_monitor_lumped_total` names them.
pub const DIMENSIONS: [&str; 4] = ["head", "target", "label", "model_version"];

/// The label values `monitor` has admitted so far, per dimension: whoever writes the label
/// topic decides what the records say, so only the first [`MAX_VALUES`] distinct values of each
/// dimension (each at most [`MAX_VALUE_LEN`] bytes) become Prometheus labels and dashboard
/// series; the rest are lumped into [`OTHER`] and counted.
#[derive(Debug, Default)]
pub struct Cardinality {
    kept: [BTreeSet<String>; 4],
}

impl Cardinality {
    /// Whether `value` of dimension `dim` (an index into [`DIMENSIONS`]) is kept, admitting it
    /// if there is room.
    fn keeps(&mut self, dim: usize, value: &str) -> bool {
        let kept = &mut self.kept[dim];
        if kept.contains(value) {
            return true;
        }
        let fits = kept.len() < MAX_VALUES && value.len() <= MAX_VALUE_LEN && value != OTHER;
        if fits {
            kept.insert(value.to_string());
        }
        fits || value == OTHER
    }

    /// Lumps every value of `seen` past the caps into [`OTHER`] (lumped binary heads become one
    /// `other` head: flagged if any was, the highest score) and returns, per dimension, whether
    /// anything of this record was lumped.
    pub fn apply(&mut self, seen: &mut Seen) -> [bool; 4] {
        let mut lumped = [false; 4];
        if !self.keeps(3, &seen.model_version) {
            seen.model_version = OTHER.into();
            lumped[3] = true;
        }
        if let Some((target, label, _)) = &mut seen.stance {
            for (dim, value) in [(1, target), (2, label)] {
                if !self.keeps(dim, value) {
                    *value = OTHER.into();
                    lumped[dim] = true;
                }
            }
        }
        let names: Vec<String> = seen
            .heads
            .iter()
            .map(|h| {
                if self.keeps(0, h) {
                    h.clone()
                } else {
                    lumped[0] = true;
                    OTHER.to_string()
                }
            })
            .collect();
        if lumped[0] {
            let mut heads: Vec<String> = Vec::new();
            let mut scores: Vec<(usize, f32, bool)> = Vec::new();
            for &(h, score, flag) in &seen.scores {
                let Some(name) = names.get(h) else { continue };
                let at = match heads.iter().position(|n| n == name) {
                    Some(i) => i,
                    None => {
                        heads.push(name.clone());
                        heads.len() - 1
                    }
                };
                match scores.iter_mut().find(|s| s.0 == at) {
                    Some(s) => {
                        s.1 = s.1.max(score);
                        s.2 |= flag;
                    }
                    None => scores.push((at, score, flag)),
                }
            }
            (seen.heads, seen.scores) = (heads, scores);
        } else {
            seen.heads = names;
        }
        lumped
    }
}

/// Caps `seen`'s label values (see [`Cardinality`]) and counts what was lumped.
pub fn admit(telemetry: &Telemetry, caps: &mut Cardinality, seen: &mut Seen) {
    for (dim, lumped) in DIMENSIONS.iter().zip(caps.apply(seen)) {
        if lumped {
            telemetry
                .metrics
                .monitor_lumped
                .with_label_values(&[dim])
                .inc();
        }
    }
}

/// Feeds parsed records to the telemetry, one `record_batch` per run of records that share a
/// model version and head list (usually the whole batch).
pub fn observe(telemetry: &Telemetry, seen: &[Seen]) {
    telemetry.metrics.consumed.inc_by(seen.len() as u64);
    let t = now();
    for run in seen.chunk_by(|a, b| a.heads == b.heads && a.model_version == b.model_version) {
        let items: Vec<Item<'_>> = run
            .iter()
            .map(|seen| Item {
                id: &seen.id,
                text: None,
                lang: seen.lang.code(),
                scores: &seen.scores,
                stance: seen
                    .stance
                    .as_ref()
                    .map(|(t, l, p)| (t.as_str(), l.as_str(), *p)),
                dead: None,
                partition: seen.source.0,
                offset: seen.source.1,
            })
            .collect();
        telemetry.record_batch(t, &run[0].heads, &run[0].model_version, &items);
    }
}

/// Most records aggregated together, and the longest wait to fill such a batch.
const BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// Watches the label topic until `stop` resolves; returns how many records it read.
pub async fn run(
    cfg: MonitorConfig,
    telemetry: Arc<Telemetry>,
    stop: impl Future<Output = ()>,
) -> Result<u64, StreamError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "true")
        .set(
            "auto.offset.reset",
            if cfg.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        .set("statistics.interval.ms", "5000");
    for (k, v) in &cfg.librdkafka {
        c.set(k, v);
    }
    let consumer: StreamConsumer<MonitorContext> = c
        .create_with_context(MonitorContext {
            telemetry: Arc::clone(&telemetry),
        })
        .map_err(|source| StreamError::Kafka {
            what: "monitor consumer config",
            source: crate::stream::properties::hide_value(source),
        })?;
    consumer
        .subscribe(&[&cfg.topic])
        .map_err(|source| StreamError::Kafka {
            what: "subscribe",
            source,
        })?;
    tracing::info!(brokers = %cfg.brokers, topic = %cfg.topic, group = %cfg.group, "monitoring");
    tokio::pin!(stop);
    let (mut read, mut skipped) = (0u64, 0u64);
    let mut batch: Vec<Seen> = Vec::with_capacity(BATCH);
    let mut caps = Cardinality::default();
    let mut tick = tokio::time::interval(BATCH_WAIT);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                observe(&telemetry, &batch);
                batch.clear();
            }
            m = consumer.recv() => match m {
                Ok(m) => match m.payload().and_then(parse_record) {
                    Some(mut seen) => {
                        read += 1;
                        admit(&telemetry, &mut caps, &mut seen);
                        batch.push(seen);
                        if batch.len() >= BATCH {
                            observe(&telemetry, &batch);
                            batch.clear();
                        }
                    }
                    None => {
                        skipped += 1;
                        tracing::debug!(offset = m.offset(), "not a label record; skipped");
                    }
                },
                Err(e) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            },
        }
    }
    observe(&telemetry, &batch);
    tracing::info!(read, skipped, "monitor stopped");
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_record_is_read_back() {
        let record = br#"{"schema_version":1,"id":7,"labels":["offensive"],"heads":{"hate":{"flag":false,"score":0.1},"offensive":{"flag":true,"score":0.9},"stance":{"label":"AGAINST","scores":{"AGAINST":0.7,"FAVOR":0.2,"NONE":0.1},"target":"Atheism"}},"model":{"name":"default","version":"v9","sha256":"x"},"source":{"topic":"c","partition":2,"offset":5,"timestamp":1},"lang":"latin"}"#;
        let seen = parse_record(record).expect("a label record");
        assert_eq!(seen.id, "7");
        assert_eq!(seen.heads, vec!["hate", "offensive"]);
        assert_eq!(seen.scores, vec![(0, 0.1, false), (1, 0.9, true)]);
        assert_eq!(seen.stance, Some(("Atheism".into(), "AGAINST".into(), 0.7)));
        assert_eq!((seen.model_version.as_str(), seen.source), ("v9", (2, 5)));
        assert_eq!(seen.lang, Script::Latin);
        assert!(parse_record(b"{\"not\": \"a record\"}").is_none());
        let wrong_head = br#"{"id":1,"labels":[],"heads":{"h":{"flag":"yes"}},"model":{"name":"m","version":"v","sha256":"x"},"lang":"ar"}"#;
        assert!(parse_record(wrong_head).is_none(), "a head of neither kind");
    }
}

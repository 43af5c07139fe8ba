//! The serve loop's observer: turns each batch into metrics and live-view updates, and keeps the
//! readiness facts (model loaded, partitions assigned, broker reachable). Work is done once per
//! batch, not per message, so watching costs the loop next to nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::Statistics;

use super::live::{used_heads, Item, Live};
use super::metrics::Metrics;
use super::state::{DashboardState, ModelState};
use crate::clock::now;
use crate::stream::event::Event;
use crate::stream::feedback::RecentTexts;
use crate::stream::observe::{Observe, ProduceFault};
use crate::stream::record::{Destination, Outbound};
use crate::stream::reload::{Loaded, ModelSlot};

/// What `/readyz` checks.
#[derive(Default)]
pub struct Health {
    /// The serving model, once loaded.
    pub model: OnceLock<Arc<ModelSlot>>,
    /// Whether readiness needs a model (`monitor` does not).
    pub needs_model: bool,
    /// Whether readiness needs Kafka (`api` does not).
    pub needs_kafka: bool,
    /// Partitions assigned now.
    pub assigned: AtomicUsize,
    /// Whether a broker answered lately.
    pub broker_up: AtomicBool,
    /// Why deliveries fail for good, while they do (the partitions behind stop advancing).
    pub produce_fault: Mutex<Option<String>>,
}

impl Health {
    /// Readiness and its parts.
    pub fn ready(&self) -> (bool, Readiness) {
        let model_loaded = self.model.get().is_some() || !self.needs_model;
        let partitions_assigned = self.assigned.load(Ordering::Relaxed) > 0;
        let broker_reachable = self.broker_up.load(Ordering::Relaxed);
        let produce_error = self
            .produce_fault
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let ready = model_loaded
            && (!self.needs_kafka
                || (partitions_assigned && broker_reachable && produce_error.is_none()));
        let parts = Readiness {
            ready,
            model_loaded,
            partitions_assigned,
            broker_reachable,
            produce_error,
        };
        (ready, parts)
    }
}

/// The body of `/readyz`: the verdict and each check behind it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// All checks pass.
    pub ready: bool,
    /// The model is loaded (always true for `monitor`, which needs none).
    pub model_loaded: bool,
    /// At least one partition is assigned to this instance.
    pub partitions_assigned: bool,
    /// A broker answered lately.
    pub broker_reachable: bool,
    /// Why deliveries fail for good, while they do (absent otherwise): no input offset passes
    /// the failing records, and they are retried until the cause is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce_error: Option<String>,
}

/// Metrics, live view and health of one process.
pub struct Telemetry {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Dashboard state.
    pub live: Live,
    /// Readiness.
    pub health: Health,
    /// Recent comment texts for the feedback join (only when feedback is collected).
    pub recent: Option<Arc<RecentTexts>>,
}

impl Telemetry {
    /// Telemetry for `mode` (`serve` or `monitor`).
    pub fn new(live: Live, needs_model: bool) -> Self {
        Self {
            metrics: Metrics::new(),
            live,
            health: Health {
                needs_model,
                needs_kafka: true,
                ..Health::default()
            },
            recent: None,
        }
    }

    /// Everything the dashboard shows, now: the live view, the serving model and its reload
    /// failures.
    pub fn state(&self) -> DashboardState {
        let (model, failures) = match self.health.model.get() {
            Some(slot) => {
                let m = slot.current();
                let r = &m.model_ref;
                let model = ModelState {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    sha256: r.sha256.clone(),
                    loaded_at: m.loaded_at,
                };
                (Some(model), slot.reload_failures.load(Ordering::Relaxed))
            }
            None => (None, 0),
        };
        self.live.state(now(), model, failures)
    }

    /// Brings the gauges that are read rather than pushed up to date (model, reloads, drift).
    pub fn refresh(&self) {
        let m = &self.metrics;
        if let Some(slot) = self.health.model.get() {
            let loaded = slot.current();
            let r = &loaded.model_ref;
            m.model_info.reset();
            m.model_info
                .with_label_values(&[r.name.as_str(), r.version.as_str(), r.sha256.as_str()])
                .set(1);
            m.model_loaded.set(loaded.loaded_at);
            catch_up(&m.reloads, slot.reloads.load(Ordering::Relaxed));
            catch_up(
                &m.reload_failures,
                slot.reload_failures.load(Ordering::Relaxed),
            );
        }
        m.ready.set(i64::from(self.health.ready().0));
        let drift = self.live.drift_at(now());
        // A head without a verdict yet (too little history) reads NaN: known, but no value.
        for head in self.live.heads() {
            let h = [head.as_str()];
            let d = drift.iter().find(|d| d.head == head);
            m.drift_z
                .with_label_values(&h)
                .set(d.map_or(f64::NAN, |d| d.z));
            m.drift_rate
                .with_label_values(&h)
                .set(d.map_or(f64::NAN, |d| d.rate));
            m.drift_baseline
                .with_label_values(&h)
                .set(d.map_or(f64::NAN, |d| d.baseline));
            m.drift_alert
                .with_label_values(&h)
                .set(i64::from(d.is_some_and(|d| d.alert)));
        }
    }

    /// Records a batch of labelled records: metrics and live view.
    pub fn record_batch(&self, t: f64, heads: &[String], version: &str, items: &[Item<'_>]) {
        self.count_batch(heads, version, items);
        self.live.record(t, heads, version, items);
    }

    /// Counts a batch in the Prometheus metrics only (nothing reaches the live view).
    pub fn count_batch(&self, heads: &[String], version: &str, items: &[Item<'_>]) {
        let m = &self.metrics;
        let mut per_lang: BTreeMap<&str, (u64, u64, Vec<u64>)> = BTreeMap::new();
        let mut stance: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let histograms: Vec<_> = heads
            .iter()
            .zip(used_heads(heads.len(), items))
            .map(|(h, used)| used.then(|| m.score.with_label_values(&[h.as_str()])))
            .collect();
        for item in items.iter().filter(|i| i.dead.is_none()) {
            let e = per_lang
                .entry(item.lang)
                .or_insert_with(|| (0, 0, vec![0; heads.len()]));
            e.0 += 1;
            let mut any = false;
            for &(h, score, flag) in item.scores {
                if let Some(Some(hist)) = histograms.get(h) {
                    hist.observe(f64::from(score));
                }
                if flag {
                    any = true;
                    if let Some(c) = e.2.get_mut(h) {
                        *c += 1;
                    }
                }
            }
            e.1 += u64::from(any);
            if let Some((target, label, _)) = item.stance {
                *stance.entry((target, label)).or_default() += 1;
            }
        }
        for (lang, (n, flagged, per_head)) in per_lang {
            m.classified.with_label_values(&[lang, version]).inc_by(n);
            m.flagged_comments
                .with_label_values(&[lang, version])
                .inc_by(flagged);
            for (h, k) in per_head.into_iter().enumerate().filter(|(_, k)| *k > 0) {
                m.flagged
                    .with_label_values(&[heads[h].as_str(), lang, version])
                    .inc_by(k);
            }
        }
        for ((target, label), n) in stance {
            m.stance.with_label_values(&[target, label]).inc_by(n);
        }
    }
}

fn catch_up(counter: &prometheus::IntCounter, value: u64) {
    let have = counter.get();
    if value > have {
        counter.inc_by(value - have);
    }
}

impl Observe for Telemetry {
    fn classified(&self, records: &[Outbound], model: &Loaded, elapsed: Duration) {
        let m = &self.metrics;
        m.consumed.inc_by(records.len() as u64);
        m.batch_size.observe(records.len() as f64);
        m.classify_seconds.observe(elapsed.as_secs_f64());
        let heads: Vec<String> = model.model.heads().iter().map(|h| h.name.clone()).collect();
        // A dead letter has no parsed id: its key stands in.
        let keys: Vec<String> = records
            .iter()
            .map(|r| match (&r.summary, &r.key) {
                (None, Some(k)) => String::from_utf8_lossy(k).into_owned(),
                _ => String::new(),
            })
            .collect();
        let items: Vec<Item<'_>> = records
            .iter()
            .zip(&keys)
            .map(|(r, key)| match &r.summary {
                Some(s) => Item {
                    id: &s.id,
                    text: Some(&s.preview),
                    lang: s.lang,
                    scores: &s.scores,
                    stance: s
                        .stance
                        .as_ref()
                        .map(|(_, t, l, p)| (t.as_str(), l.as_str(), *p)),
                    dead: None,
                    partition: r.source.partition,
                    offset: r.source.offset,
                },
                None => Item {
                    id: key,
                    text: None,
                    lang: "",
                    scores: &[],
                    stance: None,
                    dead: r.reason,
                    partition: r.source.partition,
                    offset: r.source.offset,
                },
            })
            .collect();
        self.record_batch(now(), &heads, &model.model_ref.version, &items);
        if let Some(recent) = &self.recent {
            for s in records.iter().filter_map(|r| r.summary.as_ref()) {
                if let Some((text, target)) = &s.full {
                    recent.insert(&s.id, text, target.as_deref());
                }
            }
        }
    }

    fn delivered(&self, record: &Outbound) {
        match record.destination {
            Destination::Output => {
                self.metrics.produced.inc();
                if let Some(ts) = record.source.timestamp {
                    let delay = now() - ts as f64 / 1000.0;
                    self.metrics.end_to_end_seconds.observe(delay.max(0.0));
                }
            }
            Destination::DeadLetter => {
                let reason = record.reason.unwrap_or("unknown");
                self.metrics.dead_letters.with_label_values(&[reason]).inc();
            }
        }
    }

    fn in_flight(&self, bytes: usize) {
        self.metrics
            .inflight_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn assigned(&self, partitions: &[i32]) {
        self.health
            .assigned
            .store(partitions.len(), Ordering::Relaxed);
        if !partitions.is_empty() {
            self.health.broker_up.store(true, Ordering::Relaxed);
        }
        self.metrics
            .assigned_partitions
            .set(partitions.len() as i64);
        self.live.set_assigned(partitions);
    }

    fn produce_fault(&self, fault: Option<&ProduceFault>) {
        if let Some(f) = fault {
            let kind = if f.permanent {
                "permanent"
            } else {
                "retriable"
            };
            self.metrics
                .produce_errors
                .with_label_values(&[kind, f.code.as_str()])
                .inc();
        }
        let cause = fault
            .filter(|f| f.permanent)
            .map(|f| format!("writing to {}: {}", f.topic, f.cause));
        match self.health.produce_fault.lock() {
            Ok(mut g) => *g = cause,
            Err(p) => *p.into_inner() = cause,
        }
    }

    fn event(&self, event: &Event<'_>) {
        self.metrics.events.with_label_values(&[event.name()]).inc();
    }

    fn statistics(&self, stats: &Statistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        self.health.broker_up.store(up, Ordering::Relaxed);
        let mut lag = BTreeMap::new();
        self.metrics.consumer_lag.reset();
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                // librdkafka reports -1 for partitions it does not consume; -1 is not a lag.
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .with_label_values(&[topic.as_str(), &p.to_string()])
                    .set(part.consumer_lag);
                lag.insert(format!("{topic}/{p}"), part.consumer_lag);
            }
        }
        self.live.set_lag(lag);
    }
}

/// Every 10 s: updates the drift gauges and logs when a head's drift alert starts or ends.
pub async fn watch_drift(telemetry: Arc<Telemetry>) {
    let mut alerting: BTreeMap<String, bool> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        telemetry.refresh();
        for d in telemetry.live.drift_at(now()) {
            let was = alerting.insert(d.head.clone(), d.alert).unwrap_or(false);
            if d.alert && !was {
                tracing::warn!(head = %d.head, rate = d.rate, baseline = d.baseline, z = d.z, "drift: flag rate left its baseline");
            } else if !d.alert && was {
                tracing::info!(head = %d.head, rate = d.rate, baseline = d.baseline, z = d.z, "drift: flag rate back within its baseline");
            }
        }
    }
}

//! The Prometheus metrics of `serve` and `monitor`, in one registry (the `prometheus` crate).
//! Names follow Prometheus conventions: a `moderato_` prefix, `_total` on counters, base units
//! (`_seconds`) in the name.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::stream::event::Event;

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Messages read from the input topic.
    pub consumed: IntCounter,
    /// Labelled records acknowledged by the broker.
    pub produced: IntCounter,
    /// Dead letters acknowledged, by reason code.
    pub dead_letters: IntCounterVec,
    /// Comments classified, by script and model version.
    pub classified: IntCounterVec,
    /// Flags raised, one per flagged head, by head, script and model version.
    pub flagged: IntCounterVec,
    /// Comments with at least one flag, by script and model version.
    pub flagged_comments: IntCounterVec,
    /// Stance decisions by target and label.
    pub stance: IntCounterVec,
    /// Score distribution per binary head.
    pub score: HistogramVec,
    /// Messages per classified batch.
    pub batch_size: Histogram,
    /// Time to classify one batch.
    pub classify_seconds: Histogram,
    /// Output acknowledged minus the input's Kafka timestamp.
    pub end_to_end_seconds: Histogram,
    /// Consumer lag per input partition (librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// Partitions assigned to this instance.
    pub assigned_partitions: IntGauge,
    /// Bytes of messages read and not finished (as of the last batch handed on or finished).
    pub inflight_bytes: IntGauge,
    /// This build (value 1; version as a label).
    pub build_info: IntGaugeVec,
    /// 1 while `/readyz` answers 200, else 0.
    pub ready: IntGauge,
    /// The serving model (value 1; name, version and checksum as labels).
    pub model_info: IntGaugeVec,
    /// When the serving model was loaded (seconds since the epoch).
    pub model_loaded: Gauge,
    /// Successful hot reloads.
    pub reloads: IntCounter,
    /// Refused hot reloads (the old model kept serving).
    pub reload_failures: IntCounter,
    /// Failed delivery rounds, by kind (`permanent`, `retriable`) and librdkafka error code.
    pub produce_errors: IntCounterVec,
    /// Feedback decisions written to the feedback file, by whether their text was found.
    pub feedback: IntCounterVec,
    /// `monitor`: label records with a value past the cardinality caps, by dimension.
    pub monitor_lumped: IntCounterVec,
    /// Drift: z-score of each head's flag rate against its trailing baseline.
    pub drift_z: GaugeVec,
    /// Drift: 1 while a head's flag rate is out of its baseline band.
    pub drift_alert: IntGaugeVec,
    /// Drift: the head's flag rate over the current window.
    pub drift_rate: GaugeVec,
    /// Drift: the head's baseline flag rate.
    pub drift_baseline: GaugeVec,
    /// The stream's failures and turns ([`Event`]), by event name: each logged once too.
    pub events: IntCounterVec,
    /// The name of every metric above, in the order they are made (what `/metrics` can show,
    /// and what the README's metric table must list).
    pub names: Vec<String>,
}

/// Makes metrics from fixed options (valid by construction) and registers each as it is made,
/// so no metric can be declared and then forgotten in the registry.
struct Add<'a>(&'a Registry, std::cell::RefCell<Vec<String>>);

impl Add<'_> {
    fn register<M: Collector + Clone + 'static>(&self, made: prometheus::Result<M>) -> M {
        let metric = made.expect("fixed, valid metric options");
        self.1
            .borrow_mut()
            .extend(metric.desc().iter().map(|d| d.fq_name.clone()));
        // Names are fixed and distinct: registration cannot collide.
        let _ = self.0.register(Box::new(metric.clone()));
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(Gauge::with_opts(Opts::new(name, help)))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(GaugeVec::new(Opts::new(name, help), labels))
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)))
    }

    fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        ))
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> HistogramVec {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        ))
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let add = Add(&registry, Default::default());
        let score_buckets = (1..=10).map(|i| f64::from(i) / 10.0).collect();
        let latency_buckets = prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap_or_default();
        let size_buckets = prometheus::exponential_buckets(1.0, 2.0, 15).unwrap_or_default();
        let (lang_version, head) = (&["lang", "model_version"][..], &["head"][..]);
        let metrics = Metrics {
            consumed: add.counter(
                "moderato_messages_consumed_total",
                "Messages read from the input topic.",
            ),
            produced: add.counter(
                "moderato_messages_produced_total",
                "Labelled records acknowledged by the broker.",
            ),
            dead_letters: add.counters(
                "moderato_dead_letters_total",
                "Dead letters acknowledged, by reason.",
                &["reason"],
            ),
            classified: add.counters(
                "moderato_classified_total",
                "Comments classified, by script and model version.",
                lang_version,
            ),
            flagged: add.counters(
                "moderato_flagged_total",
                "Flags raised (one per flagged head), by head, script and model version.",
                &["head", "lang", "model_version"],
            ),
            flagged_comments: add.counters(
                "moderato_flagged_comments_total",
                "Comments with at least one flag, by script and model version.",
                lang_version,
            ),
            stance: add.counters(
                "moderato_stance_total",
                "Stance decisions, by target and label.",
                &["target", "label"],
            ),
            score: add.histograms(
                "moderato_score_ratio",
                "Calibrated score per binary head.",
                score_buckets,
                head,
            ),
            batch_size: add.histogram(
                "moderato_batch_messages",
                "Messages per classified batch.",
                size_buckets,
            ),
            classify_seconds: add.histogram(
                "moderato_classify_seconds",
                "Time to classify one batch.",
                latency_buckets.clone(),
            ),
            end_to_end_seconds: add.histogram(
                "moderato_end_to_end_seconds",
                "Output acknowledged minus the input's Kafka timestamp.",
                latency_buckets,
            ),
            consumer_lag: add.int_gauges(
                "moderato_consumer_lag_messages",
                "Consumer lag per input partition, in messages.",
                &["topic", "partition"],
            ),
            assigned_partitions: add.int_gauge(
                "moderato_assigned_partitions",
                "Input partitions assigned to this instance.",
            ),
            inflight_bytes: add.int_gauge(
                "moderato_inflight_bytes",
                "Bytes of messages read and not yet finished (bounded by max_inflight_bytes).",
            ),
            build_info: add.int_gauges(
                "moderato_build_info",
                "This build of moderato (always 1).",
                &["version"],
            ),
            ready: add.int_gauge(
                "moderato_ready",
                "1 while the instance is ready (what /readyz answers with 200), else 0.",
            ),
            model_info: add.int_gauges(
                "moderato_model_info",
                "The serving model (always 1).",
                &["name", "version", "sha256"],
            ),
            model_loaded: add.gauge(
                "moderato_model_loaded_timestamp_seconds",
                "When the serving model was loaded.",
            ),
            reloads: add.counter(
                "moderato_model_reloads_total",
                "Successful hot model reloads.",
            ),
            reload_failures: add.counter(
                "moderato_model_reload_failures_total",
                "Refused hot model reloads (the previous model kept serving).",
            ),
            produce_errors: add.counters(
                "moderato_produce_errors_total",
                "Failed delivery rounds (each retried), by kind (permanent or retriable) and error code.",
                &["kind", "code"],
            ),
            feedback: add.counters(
                "moderato_feedback_total",
                "Moderator decisions written to the feedback file, by whether the text was joined.",
                &["joined"],
            ),
            monitor_lumped: add.counters(
                "moderato_monitor_lumped_total",
                "Label records (monitor) with a head, target, label or model version past the \
                 cardinality caps, counted as `other`, by dimension.",
                &["dimension"],
            ),
            drift_z: add.gauges(
                "moderato_drift_z",
                "Flag rate of a head against its trailing baseline, in standard deviations.",
                head,
            ),
            drift_alert: add.int_gauges(
                "moderato_drift_alert",
                "1 while a head's flag rate is outside its baseline band.",
                head,
            ),
            drift_rate: add.gauges(
                "moderato_drift_flag_ratio",
                "A head's flag rate over the drift window.",
                head,
            ),
            drift_baseline: add.gauges(
                "moderato_drift_baseline_ratio",
                "A head's baseline flag rate (trailing mean).",
                head,
            ),
            events: add.counters(
                "moderato_stream_events_total",
                "The stream's failures and turns (consumer errors, rebalances, retries, unstored \
                 offsets, aborted transactions, ...), by event; each is logged once too.",
                &["event"],
            ),
            names: add.1.take(),
            registry,
        };
        // Every event at 0 from the start, so a rate over it has a series before it first happens.
        for name in Event::NAMES {
            metrics.events.with_label_values(&[name]);
        }
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // The process_* metrics (CPU, resident memory, open files, start time) of this process,
        // from /proc: Linux only, as the prometheus crate reads them.
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = metrics.registry.register(Box::new(process)) {
                tracing::warn!(error = %e, "process metrics are not exported");
            }
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! The Prometheus metrics of `serve` and `monitor`, in one registry (the `prometheus` crate).
//! Names follow Prometheus conventions: a `moderato_` prefix, `_total` on counters, base units
//! (`_seconds`) in the name.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    /// The serving model (value 1; name, version and checksum as labels).
    pub model_info: IntGaugeVec,
    /// When the serving model was loaded (seconds since the epoch).
    pub model_loaded: Gauge,
    /// Successful hot reloads.
    pub reloads: IntCounter,
    /// Refused hot reloads (the old model kept serving).
    pub reload_failures: IntCounter,
    /// Feedback decisions written to the feedback file, by whether their text was found.
    pub feedback: IntCounterVec,
    /// Drift: z-score of each head's flag rate against its trailing baseline.
    pub drift_z: GaugeVec,
    /// Drift: 1 while a head's flag rate is out of its baseline band.
    pub drift_alert: IntGaugeVec,
    /// Drift: the head's flag rate over the current window.
    pub drift_rate: GaugeVec,
    /// Drift: the head's baseline flag rate.
    pub drift_baseline: GaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let score_buckets = (1..=10).map(|i| f64::from(i) / 10.0).collect();
        let latency_buckets = prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap_or_default();
        let size_buckets = prometheus::exponential_buckets(1.0, 2.0, 15).unwrap_or_default();
        let m = Metrics {
            consumed: IntCounter::with_opts(opts(
                "moderato_messages_consumed_total",
                "Messages read from the input topic.",
            ))
            .expect("valid metric"),
            produced: IntCounter::with_opts(opts(
                "moderato_messages_produced_total",
                "Labelled records acknowledged by the broker.",
            ))
            .expect("valid metric"),
            dead_letters: IntCounterVec::new(
                opts(
                    "moderato_dead_letters_total",
                    "Dead letters acknowledged, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            classified: IntCounterVec::new(
                opts(
                    "moderato_classified_total",
                    "Comments classified, by script and model version.",
                ),
                &["lang", "model_version"],
            )
            .expect("valid metric"),
            flagged: IntCounterVec::new(
                opts(
                    "moderato_flagged_total",
                    "Flags raised (one per flagged head), by head, script and model version.",
                ),
                &["head", "lang", "model_version"],
            )
            .expect("valid metric"),
            flagged_comments: IntCounterVec::new(
                opts(
                    "moderato_flagged_comments_total",
                    "Comments with at least one flag, by script and model version.",
                ),
                &["lang", "model_version"],
            )
            .expect("valid metric"),
            stance: IntCounterVec::new(
                opts(
                    "moderato_stance_total",
                    "Stance decisions, by target and label.",
                ),
                &["target", "label"],
            )
            .expect("valid metric"),
            score: HistogramVec::new(
                HistogramOpts::new("moderato_score", "Calibrated score per binary head.")
                    .buckets(score_buckets),
                &["head"],
            )
            .expect("valid metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("moderato_batch_size", "Messages per classified batch.")
                    .buckets(size_buckets),
            )
            .expect("valid metric"),
            classify_seconds: Histogram::with_opts(
                HistogramOpts::new("moderato_classify_seconds", "Time to classify one batch.")
                    .buckets(latency_buckets.clone()),
            )
            .expect("valid metric"),
            end_to_end_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "moderato_end_to_end_seconds",
                    "Output acknowledged minus the input's Kafka timestamp.",
                )
                .buckets(latency_buckets),
            )
            .expect("valid metric"),
            consumer_lag: IntGaugeVec::new(
                opts(
                    "moderato_consumer_lag",
                    "Consumer lag per input partition, in messages.",
                ),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            assigned_partitions: IntGauge::with_opts(opts(
                "moderato_assigned_partitions",
                "Input partitions assigned to this instance.",
            ))
            .expect("valid metric"),
            model_info: IntGaugeVec::new(
                opts("moderato_model_info", "The serving model (always 1)."),
                &["name", "version", "sha256"],
            )
            .expect("valid metric"),
            model_loaded: Gauge::with_opts(opts(
                "moderato_model_loaded_timestamp_seconds",
                "When the serving model was loaded.",
            ))
            .expect("valid metric"),
            reloads: IntCounter::with_opts(opts(
                "moderato_model_reloads_total",
                "Successful hot model reloads.",
            ))
            .expect("valid metric"),
            reload_failures: IntCounter::with_opts(opts(
                "moderato_model_reload_failures_total",
                "Refused hot model reloads (the previous model kept serving).",
            ))
            .expect("valid metric"),
            feedback: IntCounterVec::new(
                opts(
                    "moderato_feedback_total",
                    "Moderator decisions written to the feedback file, by whether the text was joined.",
                ),
                &["joined"],
            )
            .expect("valid metric"),
            drift_z: GaugeVec::new(
                opts(
                    "moderato_drift_z",
                    "Flag rate of a head against its trailing baseline, in standard deviations.",
                ),
                &["head"],
            )
            .expect("valid metric"),
            drift_alert: IntGaugeVec::new(
                opts(
                    "moderato_drift_alert",
                    "1 while a head's flag rate is outside its baseline band.",
                ),
                &["head"],
            )
            .expect("valid metric"),
            drift_rate: GaugeVec::new(
                opts(
                    "moderato_drift_rate",
                    "A head's flag rate over the drift window.",
                ),
                &["head"],
            )
            .expect("valid metric"),
            drift_baseline: GaugeVec::new(
                opts(
                    "moderato_drift_baseline",
                    "A head's baseline flag rate (trailing mean).",
                ),
                &["head"],
            )
            .expect("valid metric"),
            registry,
        };
        m.register_all();
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.consumed.clone()),
            Box::new(self.produced.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.classified.clone()),
            Box::new(self.flagged.clone()),
            Box::new(self.flagged_comments.clone()),
            Box::new(self.stance.clone()),
            Box::new(self.score.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.classify_seconds.clone()),
            Box::new(self.end_to_end_seconds.clone()),
            Box::new(self.consumer_lag.clone()),
            Box::new(self.assigned_partitions.clone()),
            Box::new(self.model_info.clone()),
            Box::new(self.model_loaded.clone()),
            Box::new(self.reloads.clone()),
            Box::new(self.reload_failures.clone()),
            Box::new(self.feedback.clone()),
            Box::new(self.drift_z.clone()),
            Box::new(self.drift_alert.clone()),
            Box::new(self.drift_rate.clone()),
            Box::new(self.drift_baseline.clone()),
        ];
        for c in collectors {
            // Names are fixed and distinct: registration cannot collide.
            let _ = self.registry.register(c);
        }
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

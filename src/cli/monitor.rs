//! `moderato monitor`: the dashboard and metrics of a label topic, with drift alerts.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use moderato::monitor::{self, MonitorConfig};
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::App;
use moderato::ops::live::Live;
use moderato::ops::{start_http, Telemetry};

/// Arguments of `moderato monitor`.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "MODERATO_BROKERS")]
    brokers: String,
    /// The label topic moderato instances write.
    #[arg(long, default_value = "comment-labels", env = "MODERATO_MONITOR_TOPIC")]
    topic: String,
    /// Consumer group of this monitor.
    #[arg(
        long,
        default_value = "moderato-monitor",
        env = "MODERATO_MONITOR_GROUP"
    )]
    group: String,
    /// Read the topic from its start (default: from now on).
    #[arg(long)]
    from_beginning: bool,
    /// Address of the dashboard and `/metrics`.
    #[arg(long, default_value = "127.0.0.1:9465", env = "MODERATO_MONITOR_HTTP")]
    http: std::net::SocketAddr,
    /// Drift: alert when a head's flag rate is this many standard deviations off its baseline.
    #[arg(long, default_value_t = 4.0)]
    drift_sigmas: f64,
    /// Drift: the window whose flag rate is judged, in seconds (a multiple of 10).
    #[arg(long, default_value_t = 60)]
    drift_window_secs: u64,
    /// Drift: the trailing baseline before the window, in seconds.
    #[arg(long, default_value_t = 1800)]
    drift_baseline_secs: u64,
    /// Drift: fewest comments in a window for a verdict.
    #[arg(long, default_value_t = 100)]
    drift_min_count: u64,
    /// A librdkafka property, e.g. `-X security.protocol=SASL_SSL` (repeatable); a value `@PATH`
    /// is read from the file PATH, and `MODERATO_LIBRDKAFKA__NAME` variables set properties too.
    #[arg(short = 'X', value_name = "PROPERTY=VALUE", value_parser = super::serve::property)]
    properties: Vec<(String, String)>,
}

/// Runs `moderato monitor`.
pub fn run(a: MonitorArgs) -> anyhow::Result<ExitCode> {
    if a.drift_window_secs < 10 || a.drift_window_secs % 10 != 0 {
        anyhow::bail!("--drift-window-secs must be a positive multiple of 10 (the bucket length)");
    }
    if a.drift_sigmas.is_nan() || a.drift_sigmas <= 0.0 {
        anyhow::bail!("--drift-sigmas must be positive");
    }
    let min_windows = DriftConfig::default().min_windows as u64;
    let shortest = min_windows.saturating_mul(a.drift_window_secs);
    if a.drift_baseline_secs < shortest || a.drift_baseline_secs > 86_400 {
        anyhow::bail!(
            "--drift-baseline-secs must hold at least {min_windows} windows ({} s) and at most 86400 s",
            shortest
        );
    }
    let drift = DriftConfig {
        sigmas: a.drift_sigmas,
        window_secs: a.drift_window_secs,
        baseline_secs: a.drift_baseline_secs,
        min_count: a.drift_min_count,
        ..DriftConfig::default()
    };
    let instance = format!("monitor-{}", std::process::id());
    let telemetry = Arc::new(Telemetry::new(Live::new("monitor", instance, drift), false));
    // `-X` over `MODERATO_LIBRDKAFKA__*`; `@PATH` values are read from files.
    let mut properties = moderato::stream::properties::from_env(std::env::vars_os())?;
    properties.extend(a.properties);
    moderato::stream::properties::read_files(&mut properties)?;
    let cfg = MonitorConfig {
        brokers: a.brokers,
        topic: a.topic,
        group: a.group,
        from_beginning: a.from_beginning,
        librdkafka: properties.into_iter().collect(),
    };
    super::runtime()?.block_on(async move {
        let http = start_http(a.http, App::new(Arc::clone(&telemetry), None, 10_000))
            .await
            .with_context(|| format!("cannot listen on --http {}", a.http))?;
        let drift = tokio::spawn(moderato::ops::telemetry::watch_drift(Arc::clone(
            &telemetry,
        )));
        let read = monitor::run(cfg, telemetry, super::stop_signal()).await;
        drift.abort();
        let _ = http.stop.send(());
        let _ = http.task.await;
        read?;
        Ok(ExitCode::SUCCESS)
    })
}

//! `moderato serve`: the Kafka service (see `moderato::stream`).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::App;
use moderato::ops::keys::ApiKeys;
use moderato::ops::live::Live;
use moderato::ops::telemetry::watch_drift;
use moderato::ops::{check_auth, start_router, Telemetry};
use moderato::perspective::attributes::Attributes;
use moderato::perspective::suggest::FeedbackSink;
use moderato::perspective::Perspective;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::feedback::{self, RecentTexts};
use moderato::stream::{self, reload, ModelSlot, ServeConfig, ServeSettings};

/// Arguments of `moderato serve`; every setting also reads `MODERATO_*` and `--config`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    settings: ServeSettings,
    /// TOML file with the same settings (flags and environment variables win).
    #[arg(long, env = "MODERATO_CONFIG")]
    config: Option<PathBuf>,
    /// A librdkafka property for both clients, e.g. `-X security.protocol=SASL_SSL`
    /// (repeatable; `consumer.` / `producer.` prefixes aim at one client). A value `@PATH` is
    /// read from the file PATH (`-X sasl.password=@/run/secrets/kafka`); secrets can also come
    /// from `MODERATO_LIBRDKAFKA__SASL_PASSWORD`-style variables.
    #[arg(short = 'X', value_name = "PROPERTY=VALUE", value_parser = property)]
    properties: Vec<(String, String)>,
    /// Start an in-process broker (librdkafka's mock cluster) and serve from it; prints its
    /// bootstrap address so any Kafka client can send comments.
    #[arg(long)]
    embedded_broker: bool,
}

/// Parses `-X PROPERTY=VALUE`.
pub fn property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not PROPERTY=VALUE"))
}

/// The settings as given: flags over `MODERATO_*` over the file (defaults come at `resolve`).
fn merged(a: &ServeArgs) -> anyhow::Result<ServeSettings> {
    let file = match &a.config {
        Some(p) => ServeSettings::from_file(p)?,
        None => ServeSettings::default(),
    };
    let mut cli = a.settings.clone();
    // `-X` over `MODERATO_LIBRDKAFKA__*` over the file's `[librdkafka]` table.
    cli.librdkafka = stream::properties::from_env(std::env::vars_os())?;
    cli.librdkafka.extend(a.properties.iter().cloned());
    Ok(cli.or(file))
}

/// Runs `moderato serve`.
pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut settings = merged(&a)?;
    let embedded = if a.embedded_broker {
        // The topics must be known (and valid) before the broker's address is.
        let topics = ServeSettings {
            brokers: Some("embedded".into()),
            ..settings.clone()
        }
        .resolve()?;
        let broker = EmbeddedBroker::for_service(&topics)?;
        println!("embedded broker: {}", broker.bootstrap_servers());
        settings.brokers = Some(broker.bootstrap_servers());
        Some(broker)
    } else {
        None
    };
    let cfg = settings.resolve()?;
    let source = super::ModelSource::find(cfg.model.as_deref())?;
    let summary = super::runtime()?.block_on(serve(cfg, source, super::stop_signal()))?;
    drop(embedded);
    if summary.drained {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: shutdown timed out before everything was acknowledged and committed; unacknowledged messages will be read again");
        Ok(ExitCode::from(1))
    }
}

/// The HTTP side of `serve`: metrics, health, dashboard, `/v1/classify` and the Perspective
/// routes, whose `suggestscore` appends to the feedback file when feedback is collected; with
/// the handlers' state, whose limits and shutdown the server takes.
fn http_routes(
    cfg: &ServeConfig,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<(App, axum::Router)> {
    let keys = cfg.api_keys.as_deref().map(ApiKeys::load).transpose()?;
    // Here, not in `run`, so that `demo` (which calls `serve`) keeps the loopback rule too.
    if let Some(addr) = cfg.http {
        check_auth(addr, keys.as_ref(), cfg.insecure_no_auth).map_err(anyhow::Error::msg)?;
    }
    let feedback = match &cfg.feedback {
        Some(fb) => Some(
            FeedbackSink::open(&fb.file)
                .map(Arc::new)
                .with_context(|| format!("cannot open the feedback file {}", fb.file.display()))?,
        ),
        None => None,
    };
    let mut app = App::new(
        Arc::clone(telemetry),
        cfg.domain.clone(),
        cfg.max_text_chars,
    )
    .with_limits(cfg.http_limits);
    app.keys = keys.clone().map(Arc::new);
    let perspective = Arc::new(Perspective {
        app: app.clone(),
        attributes: Attributes::default(),
        feedback,
        keys,
        public_url: None,
    });
    let router = moderato::http_api::router(app.clone(), perspective);
    Ok((app, router))
}

/// The whole service until `stop` resolves: the HTTP side first (so `/readyz` answers while the
/// model loads), then the model, the start-up check of brokers and topics, the reload watchers
/// and the Kafka loop.
pub async fn serve(
    cfg: ServeConfig,
    model: super::ModelSource,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<stream::RunSummary> {
    let live = Live::new("serve", cfg.instance.clone(), DriftConfig::default());
    let mut telemetry = Telemetry::new(live, true);
    if let Some(fb) = &cfg.feedback {
        telemetry.recent = Some(Arc::new(RecentTexts::new(fb.cache, fb.cache_bytes)));
    }
    let telemetry = Arc::new(telemetry);
    let http = match cfg.http {
        Some(addr) => Some({
            let (app, router) = http_routes(&cfg, &telemetry)?;
            start_router(addr, &app, router).await.with_context(|| {
                format!("cannot listen on --http {addr} (use another address or `off`)")
            })?
        }),
        None => None,
    };
    let loading = model.clone();
    let loaded = tokio::task::spawn_blocking(move || loading.load())
        .await
        .context("model loading task")??;
    // The brokers accept these settings and the topics exist, or the start stops here.
    let check = cfg.clone();
    tokio::task::spawn_blocking(move || stream::preflight::check(&check))
        .await
        .context("start-up check task")??;
    let slot = Arc::new(ModelSlot::new(
        loaded,
        model.file().map(std::path::Path::to_path_buf),
    ));
    let _ = telemetry.health.model.set(Arc::clone(&slot));
    let hup = tokio::spawn(reload::watch_sighup(Arc::clone(&slot)));
    let drift = tokio::spawn(watch_drift(Arc::clone(&telemetry)));
    let file = cfg
        .reload_poll
        .map(|every| tokio::spawn(reload::watch_file(Arc::clone(&slot), every)));
    let (feedback_stop, feedback_stopped) = tokio::sync::oneshot::channel::<()>();
    let feedback = match (&cfg.feedback, &telemetry.recent) {
        (Some(fb), Some(recent)) => {
            let (cfg, fb, recent, t) = (
                cfg.clone(),
                fb.clone(),
                Arc::clone(recent),
                Arc::clone(&telemetry),
            );
            Some(tokio::spawn(async move {
                let counted = |joined: &str| t.metrics.feedback.with_label_values(&[joined]).inc();
                let stopped = async move {
                    let _ = feedback_stopped.await;
                };
                feedback::run(&cfg, &fb, &recent, counted, stopped).await
            }))
        }
        _ => None,
    };
    let summary = stream::run(cfg, slot, telemetry, stop).await;
    let _ = feedback_stop.send(());
    if let Some(f) = feedback {
        match f.await {
            Ok(Ok(n)) => tracing::info!(written = n, "feedback collector stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "feedback collector failed"),
            Err(e) => tracing::error!(error = %e, "feedback collector task failed"),
        }
    }
    hup.abort();
    drift.abort();
    if let Some(f) = file {
        f.abort();
    }
    if let Some(h) = http {
        let _ = h.stop.send(());
        let _ = h.task.await;
    }
    Ok(summary?)
}

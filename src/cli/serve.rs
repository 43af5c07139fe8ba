//! `moderato serve`: the Kafka service (see `moderato::stream`).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{self, reload, ModelSlot, NoObserver, Observe, ServeConfig, ServeSettings};

/// Arguments of `moderato serve`; every setting also reads `MODERATO_*` and `--config`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    settings: ServeSettings,
    /// TOML file with the same settings (flags and environment variables win).
    #[arg(long, env = "MODERATO_CONFIG")]
    config: Option<PathBuf>,
    /// A librdkafka property for both clients, e.g. `-X security.protocol=SASL_SSL`
    /// (repeatable; `consumer.` / `producer.` prefixes aim at one client).
    #[arg(short = 'X', value_name = "PROPERTY=VALUE", value_parser = property)]
    properties: Vec<(String, String)>,
    /// Start an in-process broker (librdkafka's mock cluster) and serve from it; prints its
    /// bootstrap address so any Kafka client can send comments.
    #[arg(long)]
    embedded_broker: bool,
}

fn property(s: &str) -> Result<(String, String), String> {
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
        let broker = EmbeddedBroker::start(&[
            (topics.input_topic.as_str(), 3),
            (topics.output_topic.as_str(), 3),
            (topics.dlq_topic.as_str(), 1),
        ])?;
        println!("embedded broker: {}", broker.bootstrap_servers());
        settings.brokers = Some(broker.bootstrap_servers());
        Some(broker)
    } else {
        None
    };
    let cfg = settings.resolve()?;
    let path = super::model_path(cfg.model.as_deref())?;
    let model = super::load_model(Some(&path))?;
    let slot = Arc::new(ModelSlot::new(model, Some(path)));
    let summary =
        super::runtime()?.block_on(serve(cfg, slot, Arc::new(NoObserver), super::stop_signal()))?;
    drop(embedded);
    if summary.drained {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: shutdown timed out before everything was acknowledged and committed; unacknowledged messages will be read again");
        Ok(ExitCode::from(1))
    }
}

/// The service with its reload watchers, until `stop` resolves.
pub async fn serve(
    cfg: ServeConfig,
    slot: Arc<ModelSlot>,
    observer: Arc<dyn Observe>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<stream::RunSummary> {
    let hup = tokio::spawn(reload::watch_sighup(Arc::clone(&slot)));
    let file = cfg
        .reload_poll
        .map(|every| tokio::spawn(reload::watch_file(Arc::clone(&slot), every)));
    let summary = stream::run(cfg, slot, observer, stop).await;
    hup.abort();
    if let Some(f) = file {
        f.abort();
    }
    Ok(summary?)
}

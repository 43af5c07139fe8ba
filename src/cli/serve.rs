//! `moderato serve`: the Kafka service's settings from flags, environment and file; the
//! service itself is `moderato::service`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{self, ServeSettings};

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
    let summary =
        super::runtime()?.block_on(moderato::service::run(cfg, source, super::stop_signal()))?;
    drop(embedded);
    if summary.drained {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: shutdown timed out before everything was acknowledged and committed; unacknowledged messages will be read again");
        Ok(ExitCode::from(1))
    }
}

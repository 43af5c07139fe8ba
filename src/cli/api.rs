//! `moderato api`: the HTTP API alone, for sites without Kafka. The Perspective API's routes
//! (`/v1alpha1/comments:analyze`, `:suggestscore`, the discovery document), `/v1/classify`,
//! metrics, health and the live dashboard, over one hot-reloaded model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::App;
use moderato::ops::keys::ApiKeys;
use moderato::ops::live::Live;
use moderato::ops::{check_auth, start_router, Telemetry};
use moderato::perspective::attributes::{parse_override, Attributes};
use moderato::perspective::suggest::FeedbackSink;
use moderato::perspective::Perspective;
use moderato::service::Watchers;
use moderato::stream::ModelSlot;

/// Arguments of `moderato api`.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Address to listen on. A non-loopback address needs `--api-keys` (or `--insecure-no-auth`).
    #[arg(long, default_value = "127.0.0.1:8080", env = "MODERATO_API_HTTP")]
    http: SocketAddr,
    /// Model file [default: the shipped default model]; a change to it is hot-reloaded.
    #[arg(long, env = "MODERATO_MODEL")]
    model: Option<PathBuf>,
    /// File of accepted API keys: one key, or its SHA-256 hex, per line (`#` comments). The key
    /// is read from `?key=` or the `x-goog-api-key` header; a wrong or missing one gets 403.
    #[arg(long, env = "MODERATO_API_KEYS")]
    api_keys: Option<PathBuf>,
    /// Accept any key on a non-loopback address (only behind a proxy that authenticates).
    #[arg(long)]
    insecure_no_auth: bool,
    /// JSONL file `comments:suggestscore` appends moderators' verdicts to (the format of `serve
    /// --feedback-topic`); without it, suggestscore answers 501.
    #[arg(long, env = "MODERATO_FEEDBACK_FILE")]
    feedback_file: Option<PathBuf>,
    /// Domain (calibration) for requests without a `communityId`.
    #[arg(long, env = "MODERATO_DOMAIN")]
    domain: Option<String>,
    /// Longer texts are scored on this many leading characters (counted after normalization).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_text_chars: u64,
    /// Map a Perspective attribute to a head, e.g. `--attribute THREAT=hate` (repeatable); the
    /// defaults are TOXICITY=offensive, IDENTITY_ATTACK=hate, INSULT=insult, PROFANITY=obscene,
    /// plus every head's own name in upper case.
    #[arg(long, value_name = "ATTRIBUTE=HEAD", value_parser = parse_override)]
    attribute: Vec<(String, String)>,
    /// Base URL written into the discovery document [default: http://<Host header>/].
    #[arg(long, env = "MODERATO_PUBLIC_URL")]
    public_url: Option<String>,
    /// How often the model file is checked for changes, in milliseconds; 0 = only on SIGHUP.
    #[arg(long, default_value_t = 2000)]
    reload_poll_ms: u64,
    /// Name of this instance on the dashboard.
    #[arg(long, env = "MODERATO_INSTANCE", default_value = "api")]
    instance: String,
}

/// Runs `moderato api`.
pub fn run(a: ApiArgs) -> anyhow::Result<ExitCode> {
    let keys = a
        .api_keys
        .as_deref()
        .map(ApiKeys::load)
        .transpose()
        .context("--api-keys")?;
    check_auth(a.http, keys.as_ref(), a.insecure_no_auth).map_err(anyhow::Error::msg)?;
    let feedback = a
        .feedback_file
        .as_deref()
        .map(|p| {
            FeedbackSink::open(p)
                .map(Arc::new)
                .with_context(|| format!("cannot open --feedback-file {}", p.display()))
        })
        .transpose()?;
    if let Some(url) = &a.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--public-url {url:?} must start with http:// or https://");
        }
    }
    let source = super::ModelSource::find(a.model.as_deref())?;
    let model = source.load()?;
    let attributes = Attributes::new(&a.attribute);
    attributes
        .check(&model)
        .map_err(|e| anyhow::anyhow!("--attribute: {e}"))?;
    super::runtime()?.block_on(async move {
        let live = Live::new("api", a.instance.clone(), DriftConfig::default());
        let mut telemetry = Telemetry::new(live, true);
        telemetry.health.needs_kafka = false;
        let telemetry = Arc::new(telemetry);
        let slot = Arc::new(ModelSlot::new(
            model,
            source.file().map(std::path::Path::to_path_buf),
        ));
        let _ = telemetry.health.model.set(Arc::clone(&slot));
        let mut app = App::new(
            Arc::clone(&telemetry),
            a.domain.clone(),
            a.max_text_chars as usize,
        );
        app.keys = keys.clone().map(Arc::new);
        let perspective = Arc::new(Perspective {
            app: app.clone(),
            attributes,
            feedback,
            keys,
            public_url: a.public_url.clone(),
        });
        let router = moderato::http_api::router(app.clone(), perspective);
        let server = start_router(a.http, &app, router)
            .await
            .with_context(|| format!("cannot listen on --http {}", a.http))?;
        println!("moderato api listening on http://{}", server.addr);
        let poll = (a.reload_poll_ms > 0).then(|| Duration::from_millis(a.reload_poll_ms));
        let watchers = Watchers::start(&slot, &telemetry, poll);
        super::stop_signal().await;
        tracing::info!("stopping");
        watchers.stop();
        let _ = server.stop.send(());
        match server.task.await {
            Ok(Ok(())) => Ok(ExitCode::SUCCESS),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("http server")),
            Err(e) => Err(anyhow::Error::new(e).context("http server task")),
        }
    })
}

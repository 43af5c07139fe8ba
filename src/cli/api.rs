//! `moderato api`: the HTTP API alone, for sites without Kafka. The Perspective API's routes
//! (`/v1alpha1/comments:analyze`, `:suggestscore`, the discovery document), `/v1/classify`,
//! metrics, health and the live dashboard, over one hot-reloaded model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use moderato::http_limits::HttpLimits;
use moderato::perspective::attributes::{parse_override, Attributes};
use moderato::service::{Api, HttpSide};

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
    let side = HttpSide {
        listen: a.http,
        api_keys: a.api_keys,
        insecure_no_auth: a.insecure_no_auth,
        feedback_file: a.feedback_file,
        domain: a.domain,
        max_text_chars: a.max_text_chars as usize,
        limits: HttpLimits::new(),
        attributes: Attributes::new(&a.attribute),
        public_url: a.public_url,
    };
    let source = super::ModelSource::find(a.model.as_deref())?;
    let poll = (a.reload_poll_ms > 0).then(|| Duration::from_millis(a.reload_poll_ms));
    super::runtime()?.block_on(async move {
        let api = Api::start(side, source, a.instance, poll).await?;
        println!("moderato api listening on http://{}", api.addr);
        super::stop_signal().await;
        tracing::info!("stopping");
        api.stop().await?;
        Ok(ExitCode::SUCCESS)
    })
}

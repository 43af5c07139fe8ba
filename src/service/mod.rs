//! The whole `moderato serve` service, wired once: the HTTP side, the model, the start-up check
//! of brokers and topics, the reload and drift watchers, the feedback collector and the Kafka
//! loop, started in that order and stopped in reverse. `moderato serve`, `moderato demo` and the
//! tests all call [`run`]; `moderato api` runs its HTTP side alone ([`Api`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::error::{ConfigError, ModelError, StreamError};
use crate::model::source::ModelSource;
use crate::ops::drift::DriftConfig;
use crate::ops::live::Live;
use crate::ops::Telemetry;
use crate::stream::feedback::{self, RecentTexts};
use crate::stream::preflight::PreflightError;
use crate::stream::{self, ModelSlot, RunSummary, ServeConfig};

pub mod http;
pub mod watchers;

pub use http::{Api, HttpSide};
pub use watchers::Watchers;

/// A service could not start (or its loop failed): what `moderato serve` and `moderato api`
/// report.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The model could not be found or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A setting or a key file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The brokers refuse these settings, or a topic is missing.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The loop failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The API key file cannot be read.
    #[error("cannot read the --api-keys file {path} (MODERATO_API_KEYS)")]
    ApiKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// The HTTP side would serve without keys on a public address.
    #[error("{0}")]
    Auth(String),
    /// The feedback file cannot be opened for appending.
    #[error("cannot open the feedback file {path}")]
    FeedbackFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP address cannot be bound.
    #[error("cannot listen on --http {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `--public-url` is not an http(s) URL.
    #[error("--public-url {0:?} must start with http:// or https://")]
    PublicUrl(String),
    /// The attribute table names a head the model lacks.
    #[error("--attribute: {0}")]
    Attributes(String),
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// A task panicked or was cancelled.
    #[error("the {task} task failed")]
    Task {
        /// What it was doing.
        task: &'static str,
        /// Whether it panicked or was cancelled.
        source: tokio::task::JoinError,
    },
}

/// Runs the service until `stop` resolves: the HTTP side first (so `/readyz` answers while the
/// model loads), then the model, the start-up check, the watchers and the Kafka loop; then
/// drains, and returns what the loop did.
pub async fn run(
    cfg: ServeConfig,
    model: ModelSource,
    stop: impl Future<Output = ()>,
) -> Result<RunSummary, ServiceError> {
    let live = Live::new("serve", cfg.instance.clone(), DriftConfig::default());
    let mut telemetry = Telemetry::new(live, true);
    if let Some(fb) = &cfg.feedback {
        telemetry.recent = Some(Arc::new(RecentTexts::new(fb.cache, fb.cache_bytes)));
    }
    let telemetry = Arc::new(telemetry);
    let http = match HttpSide::of(&cfg) {
        Some(side) => {
            let prepared = side.prepare()?;
            Some(side.serve(prepared, &telemetry).await?)
        }
        None => None,
    };
    let loaded = load(&model).await?;
    // The brokers accept these settings and the topics exist, or the start stops here.
    let check = cfg.clone();
    blocking("start-up check", move || stream::preflight::check(&check)).await??;
    let slot = Arc::new(ModelSlot::new(
        loaded,
        model.file().map(std::path::Path::to_path_buf),
    ));
    let _ = telemetry.health.model.set(Arc::clone(&slot));
    let watchers = Watchers::start(&slot, &telemetry, cfg.reload_poll);
    let (feedback_stop, feedback_stopped) = tokio::sync::oneshot::channel::<()>();
    let feedback = collect_feedback(&cfg, &telemetry, async move {
        let _ = feedback_stopped.await;
    });
    let summary = stream::run(cfg, slot, Arc::clone(&telemetry) as _, stop).await;
    let _ = feedback_stop.send(());
    if let Some(f) = feedback {
        match f.await {
            Ok(Ok(n)) => tracing::info!(written = n, "feedback collector stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "feedback collector failed"),
            Err(e) => tracing::error!(error = %e, "feedback collector task failed"),
        }
    }
    watchers.stop();
    if let Some(h) = http {
        let _ = h.stop.send(());
        let _ = h.task.await;
    }
    Ok(summary?)
}

/// Runs `work` on the blocking pool: `task` names it if it panics.
async fn blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| ServiceError::Task { task, source })
}

/// Loads the model off the async threads (reading and checking 16 MB takes a while).
async fn load(model: &ModelSource) -> Result<crate::model::Model, ServiceError> {
    let model = model.clone();
    Ok(blocking("model loading", move || model.load()).await??)
}

/// The feedback collector's task, when `--feedback-topic` is set: moderators' decisions joined
/// with the texts the loop saw, counted in `moderato_feedback_total`.
fn collect_feedback(
    cfg: &ServeConfig,
    telemetry: &Arc<Telemetry>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Option<JoinHandle<Result<u64, StreamError>>> {
    let (fb, recent) = (
        cfg.feedback.clone()?,
        Arc::clone(telemetry.recent.as_ref()?),
    );
    let (cfg, t) = (cfg.clone(), Arc::clone(telemetry));
    Some(tokio::spawn(async move {
        let counted = |joined: &str| t.metrics.feedback.with_label_values(&[joined]).inc();
        feedback::run(&cfg, &fb, &recent, counted, t.as_ref(), stop).await
    }))
}

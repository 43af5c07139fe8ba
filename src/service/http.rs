//! The HTTP side, wired once: metrics, health, the dashboard, `/v1/classify` and the
//! Perspective routes. `moderato serve` starts it beside the Kafka loop; `moderato api` runs it
//! alone over a hot-reloaded model ([`Api`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ServiceError, Watchers};
use crate::http_limits::HttpLimits;
use crate::model::source::ModelSource;
use crate::ops::drift::DriftConfig;
use crate::ops::http::App;
use crate::ops::keys::ApiKeys;
use crate::ops::live::Live;
use crate::ops::{check_auth, start_router, HttpHandle, Telemetry};
use crate::perspective::attributes::Attributes;
use crate::perspective::suggest::FeedbackSink;
use crate::perspective::Perspective;
use crate::stream::{ModelSlot, ServeConfig};

/// The HTTP side's settings: `serve` takes them from its config, `api` from its flags.
#[derive(Debug, Clone)]
pub struct HttpSide {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// File of accepted API keys (`None`: no keys asked).
    pub api_keys: Option<PathBuf>,
    /// Whether a non-loopback address may serve without keys.
    pub insecure_no_auth: bool,
    /// JSONL file `comments:suggestscore` appends to (`None`: suggestscore answers 501).
    pub feedback_file: Option<PathBuf>,
    /// Domain (calibration) for requests that name none.
    pub domain: Option<String>,
    /// Longer texts are scored on this many leading characters.
    pub max_text_chars: usize,
    /// Request size, time and concurrency limits.
    pub limits: HttpLimits,
    /// Which head answers each Perspective attribute.
    pub attributes: Attributes,
    /// Base URL written into the discovery document (`None`: from the Host header).
    pub public_url: Option<String>,
}

impl HttpSide {
    /// `serve`'s HTTP side (`None` with `--http off`): the default attribute table, and the
    /// feedback collector's file for suggestscore.
    pub fn of(cfg: &ServeConfig) -> Option<Self> {
        Some(Self {
            listen: cfg.http?,
            api_keys: cfg.api_keys.clone(),
            insecure_no_auth: cfg.insecure_no_auth,
            feedback_file: cfg.feedback.as_ref().map(|fb| fb.file.clone()),
            domain: cfg.domain.clone(),
            max_text_chars: cfg.max_text_chars,
            limits: cfg.http_limits,
            attributes: Attributes::default(),
            public_url: None,
        })
    }

    /// Checks what needs no model, before anything loads: the public URL, the key file, an
    /// unauthenticated public address, the feedback file.
    pub fn prepare(&self) -> Result<Prepared, ServiceError> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ServiceError::PublicUrl(url.clone()));
            }
        }
        let keys = match &self.api_keys {
            Some(path) => Some(ApiKeys::load(path).map_err(|source| ServiceError::ApiKeys {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        check_auth(self.listen, keys.as_ref(), self.insecure_no_auth)
            .map_err(ServiceError::Auth)?;
        let feedback = match &self.feedback_file {
            Some(path) => Some(FeedbackSink::open(path).map(Arc::new).map_err(|source| {
                ServiceError::FeedbackFile {
                    path: path.clone(),
                    source,
                }
            })?),
            None => None,
        };
        Ok(Prepared { keys, feedback })
    }

    /// Starts serving `telemetry`'s state with what [`HttpSide::prepare`] opened.
    pub(super) async fn serve(
        &self,
        prepared: Prepared,
        telemetry: &Arc<Telemetry>,
    ) -> Result<HttpHandle, ServiceError> {
        let Prepared { keys, feedback } = prepared;
        let mut app = App::new(
            Arc::clone(telemetry),
            self.domain.clone(),
            self.max_text_chars,
        )
        .with_limits(self.limits);
        app.keys = keys.clone().map(Arc::new);
        let perspective = Arc::new(Perspective {
            app: app.clone(),
            attributes: self.attributes.clone(),
            feedback,
            keys,
            public_url: self.public_url.clone(),
        });
        let router = crate::http_api::router(app.clone(), perspective);
        start_router(self.listen, &app, router)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: self.listen,
                source,
            })
    }
}

/// What [`HttpSide::prepare`] opened: the accepted keys and the feedback file.
pub struct Prepared {
    keys: Option<ApiKeys>,
    feedback: Option<Arc<FeedbackSink>>,
}

/// `moderato api`: the HTTP side alone, over one model that is reloaded when its file changes.
pub struct Api {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    server: HttpHandle,
    watchers: Watchers,
}

impl Api {
    /// Loads the model, checks the attribute table against its heads, and starts serving;
    /// `poll` is how often the model file is checked (`None`: only on SIGHUP).
    pub async fn start(
        side: HttpSide,
        model: ModelSource,
        instance: String,
        poll: Option<Duration>,
    ) -> Result<Self, ServiceError> {
        let prepared = side.prepare()?;
        let loaded = super::load(&model).await?;
        side.attributes
            .check(&loaded)
            .map_err(ServiceError::Attributes)?;
        let live = Live::new("api", instance, DriftConfig::default());
        let mut telemetry = Telemetry::new(live, true);
        telemetry.health.needs_kafka = false;
        let telemetry = Arc::new(telemetry);
        let slot = Arc::new(ModelSlot::new(
            loaded,
            model.file().map(std::path::Path::to_path_buf),
        ));
        let _ = telemetry.health.model.set(Arc::clone(&slot));
        let server = side.serve(prepared, &telemetry).await?;
        let watchers = Watchers::start(&slot, &telemetry, poll);
        Ok(Self {
            addr: server.addr,
            server,
            watchers,
        })
    }

    /// Stops the watchers, then the server once its open requests are answered.
    pub async fn stop(self) -> Result<(), ServiceError> {
        self.watchers.stop();
        let _ = self.server.stop.send(());
        match self.server.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ServiceError::Serve(source)),
            Err(source) => Err(ServiceError::Task {
                task: "http server",
                source,
            }),
        }
    }
}

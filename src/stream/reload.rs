//! Hot model reload: the serving model sits behind a lock that batches read once each; a new
//! file is loaded and verified off to the side and swapped in only if it is sound.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::classify::ModelRef;
use crate::error::ModelError;
use crate::model::{file, Model};

/// A loaded model with its reference and when it was loaded.
#[derive(Debug)]
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// Its name, version and checksum.
    pub model_ref: ModelRef,
    /// Seconds since the epoch at load time.
    pub loaded_at: f64,
}

impl Loaded {
    /// Wraps a model that was just loaded.
    pub fn new(model: Model) -> Self {
        let loaded_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            model_ref: ModelRef::of(&model),
            model,
            loaded_at,
        }
    }
}

/// The serving model and the file it came from.
#[derive(Debug)]
pub struct ModelSlot {
    current: RwLock<Arc<Loaded>>,
    path: Option<PathBuf>,
    /// Reloads refused because the new file was unusable.
    pub reload_failures: AtomicU64,
    /// Successful reloads.
    pub reloads: AtomicU64,
}

impl ModelSlot {
    /// A slot serving `model`, reloadable from `path` when one is given.
    pub fn new(model: Model, path: Option<PathBuf>) -> Self {
        Self {
            current: RwLock::new(Arc::new(Loaded::new(model))),
            path,
            reload_failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }
    }

    /// The model serving now (a batch holds on to it until it is done).
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The file reloads read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Loads the file again and swaps it in; on error the old model keeps serving. A file
    /// whose SHA-256 is the served model's is not loaded again (a SIGHUP and the file watcher
    /// both see one change): the served model's reference comes back, and no reload is counted.
    pub fn reload(&self) -> Result<ModelRef, ModelError> {
        let Some(path) = &self.path else {
            return Ok(self.current().model_ref.clone());
        };
        let served = self.current().model_ref.clone();
        if file::file_sha256(path).is_ok_and(|sha| sha == served.sha256) {
            tracing::info!(sha256 = %served.sha256, "the model file is the one being served; not loaded again");
            return Ok(served);
        }
        let checked = file::load(path).and_then(|model| {
            let (serving, found) = (heads_of(&self.current().model), heads_of(&model));
            if serving == found {
                Ok(model)
            } else {
                Err(ModelError::HeadsChanged {
                    path: path.clone(),
                    serving,
                    found,
                })
            }
        });
        match checked {
            Ok(model) => {
                let loaded = Arc::new(Loaded::new(model));
                let model_ref = loaded.model_ref.clone();
                match self.current.write() {
                    Ok(mut g) => *g = loaded,
                    Err(poisoned) => *poisoned.into_inner() = loaded,
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(model_ref)
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Reloads and logs the outcome.
    pub fn reload_logged(&self, why: &str) {
        let before = self.reloads.load(Ordering::Relaxed);
        match self.reload() {
            Ok(r) if self.reloads.load(Ordering::Relaxed) != before => {
                tracing::info!(why, version = %r.version, sha256 = %r.sha256, "model reloaded")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(why, error = %e, "model reload refused; the previous model keeps serving")
            }
        }
    }
}

/// A model's heads as a reload compares them: name, kind and classes, in order. These decide
/// the shape of every record (its `heads`, `labels` and label values) and the metric and
/// dashboard series, so a reload may change weights and calibration but not these.
fn heads_of(model: &Model) -> String {
    let heads: Vec<String> = model
        .heads()
        .iter()
        .map(|h| format!("{} ({:?}: {})", h.name, h.kind, h.classes.join("/")))
        .collect();
    format!("[{}]", heads.join(", "))
}

/// Size and modification time of a file, to notice when it changes.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Reloads the model whenever its file changes (checked every `every`), until the task is
/// dropped. A change is acted on once the file has stopped changing for one interval.
pub async fn watch_file(slot: Arc<ModelSlot>, every: Duration) {
    let Some(path) = slot.path().map(Path::to_path_buf) else {
        return;
    };
    let mut seen = stamp(&path);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<Option<(u64, SystemTime)>> = None;
    loop {
        interval.tick().await;
        let now = stamp(&path);
        match pending.take() {
            Some(candidate) if candidate == now && now != seen => {
                seen = now;
                let slot = Arc::clone(&slot);
                let _ =
                    tokio::task::spawn_blocking(move || slot.reload_logged("model file changed"))
                        .await;
            }
            _ if now != seen => pending = Some(now),
            _ => {}
        }
    }
}

/// Reloads the model on every SIGHUP, until the task is dropped.
#[cfg(unix)]
pub async fn watch_sighup(slot: Arc<ModelSlot>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by changing the model file");
        return;
    };
    while hup.recv().await.is_some() {
        let slot = Arc::clone(&slot);
        let _ = tokio::task::spawn_blocking(move || slot.reload_logged("SIGHUP")).await;
    }
}

/// Reloads on SIGHUP (no signals here: a no-op).
#[cfg(not(unix))]
pub async fn watch_sighup(_slot: Arc<ModelSlot>) {
    std::future::pending::<()>().await
}

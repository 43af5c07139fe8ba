//! The tasks every service runs beside its work: model reloads and the drift watch.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::ops::telemetry::watch_drift;
use crate::ops::Telemetry;
use crate::stream::{reload, ModelSlot};

/// The tasks every service runs beside its work: reload on SIGHUP, reload when the model file
/// changes (every `poll`, if set), and the drift watch.
pub struct Watchers(Vec<JoinHandle<()>>);

impl Watchers {
    /// Starts the watchers of `slot`'s model and `telemetry`'s drift.
    pub fn start(
        slot: &Arc<ModelSlot>,
        telemetry: &Arc<Telemetry>,
        poll: Option<Duration>,
    ) -> Self {
        let mut tasks = vec![
            tokio::spawn(reload::watch_sighup(Arc::clone(slot))),
            tokio::spawn(watch_drift(Arc::clone(telemetry))),
        ];
        if let Some(every) = poll {
            tasks.push(tokio::spawn(reload::watch_file(Arc::clone(slot), every)));
        }
        Self(tasks)
    }

    /// Stops them all.
    pub fn stop(self) {
        for task in self.0 {
            task.abort();
        }
    }
}

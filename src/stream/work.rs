//! The classifying stage of the serve loop: each batch on the rayon pool, off the async runtime,
//! in the order the batches were read.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::Batch;
use super::deliver::Classified;
use super::observe::Observe;
use super::record::process_guarded;
use super::reload::ModelSlot;
use crate::model::Scratch;

/// Classifies every batch and hands it on; false if it had to stop with a batch unfinished.
pub(super) async fn classify_stage(
    mut rx: mpsc::Receiver<Batch>,
    tx: mpsc::Sender<Classified>,
    cfg: Arc<ServeConfig>,
    slot: Arc<ModelSlot>,
    observer: Arc<dyn Observe>,
) -> bool {
    while let Some(Batch {
        messages,
        epoch,
        group,
    }) = rx.recv().await
    {
        let loaded = slot.current();
        let started = Instant::now();
        let (c, l) = (Arc::clone(&cfg), Arc::clone(&loaded));
        let classified = tokio::task::spawn_blocking(move || {
            messages
                .into_par_iter()
                .map_init(Scratch::default, |scratch, m| {
                    process_guarded(m, &c, &l.model, &l.model_ref, scratch)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let records = match classified {
            Ok(r) => r,
            Err(e) => {
                // A panic in the model is a bug; the batch's offsets are never stored, so the
                // messages are read again after a restart.
                tracing::error!(error = %e, "classification task failed; stopping");
                return false;
            }
        };
        let classify = started.elapsed();
        observer.classified(&records, &loaded, classify);
        let observed = started.elapsed();
        let n = records.len();
        let next = Classified {
            records,
            epoch,
            group,
        };
        if tx.send(next).await.is_err() {
            return false;
        }
        tracing::debug!(
            records = n,
            classify_us = classify.as_micros() as u64,
            observe_us = (observed - classify).as_micros() as u64,
            handover_us = (started.elapsed() - observed).as_micros() as u64,
            "batch classified"
        );
    }
    true
}

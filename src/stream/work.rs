//! The classifying stage of the serve loop: each batch off the async runtime (a large one on the
//! rayon pool), in the order the batches were read.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc;

use super::config::ServeConfig;
use super::consume::Batch;
use super::deliver::Classified;
use super::event::Event;
use super::observe::Observe;
use super::record::process_guarded;
use super::reload::ModelSlot;
use crate::model::Scratch;

/// Smaller batches are classified on one thread. Waking the rayon pool for a few messages cost
/// more than it saved: at 5,000 comments/s offered (batches of ~50), a quarter of the service's
/// CPU went to context switches, a third of those in the idle workers' `sched_yield` (perf).
const PARALLEL_FROM: usize = 128;

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
        load,
        epoch,
        group,
    }) = rx.recv().await
    {
        let loaded = slot.current();
        let started = Instant::now();
        let (c, l) = (Arc::clone(&cfg), Arc::clone(&loaded));
        let classified = tokio::task::spawn_blocking(move || {
            let one =
                |scratch: &mut Scratch, m| process_guarded(m, &c, &l.model, &l.model_ref, scratch);
            if messages.len() < PARALLEL_FROM {
                let mut scratch = Scratch::default();
                messages
                    .into_iter()
                    .map(|m| one(&mut scratch, m))
                    .collect::<Vec<_>>()
            } else {
                messages
                    .into_par_iter()
                    .map_init(Scratch::default, one)
                    .collect::<Vec<_>>()
            }
        })
        .await;
        let records = match classified {
            Ok(r) => r,
            Err(e) => {
                // A panic in the model is a bug; the batch's offsets are never stored, so the
                // messages are read again after a restart.
                // Never the JoinError's text: a panic's message can quote the comment.
                Event::ClassifierStopped {
                    panicked: e.is_panic(),
                }
                .emit(&*observer);
                return false;
            }
        };
        let classify = started.elapsed();
        observer.classified(&records, &loaded, classify);
        let observed = started.elapsed();
        let n = records.len();
        let next = Classified {
            records,
            load,
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

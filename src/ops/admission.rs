//! Bounded admission to an expensive route: a few requests at work, a few more waiting for a
//! turn, and every other one refused at once with 503 and `Retry-After` (an unbounded wait
//! would only pile up bodies in memory and answer them after their clients gave up).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused client is asked to wait before it tries again.
pub const RETRY_AFTER_SECS: u64 = 1;

/// `concurrency` requests at work and up to `queue` more waiting.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    /// Requests at work or waiting.
    admitted: AtomicUsize,
    capacity: usize,
}

/// A turn at work; dropping it gives the turn to the next waiting request. It is owned, so
/// the work can take it along (into `spawn_blocking`): a client that hangs up, or a request
/// timeout, drops the handler but not the turn of work still running.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

/// One place at work or in the queue (given back on drop, also when a waiter gives up).
#[derive(Debug)]
struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every turn is taken and the queue is full.
    #[error("too many classification requests at once; retry after {RETRY_AFTER_SECS} s")]
    Busy,
    /// The server is shutting down.
    #[error("shutting down")]
    Closed,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
            Json(json!({"error": self.to_string()})),
        )
            .into_response()
    }
}

impl Admission {
    /// `concurrency` turns (at least 1) and a queue of `queue`.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: AtomicUsize::new(0),
            capacity: concurrency.saturating_add(queue),
        }
    }

    /// Waits for a turn if there is room in the queue; refuses at once if there is not.
    pub async fn admit(self: &Arc<Self>) -> Result<Admitted, Refused> {
        let capacity = self.capacity;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .map_err(|_| Refused::Busy)?;
        let slot = Slot(Arc::clone(self));
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Refused::Closed)?;
        Ok(Admitted {
            _permit: permit,
            _slot: slot,
        })
    }

    /// Requests at work or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Refuses every request from now on, waiting ones included.
    pub fn close(&self) {
        self.permits.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Lets every spawned task run until it waits (single-threaded runtime).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn admits_up_to_its_turns_queues_the_next_and_refuses_the_rest() {
        let gate = Arc::new(Admission::new(2, 3));
        let first = gate.admit().await.expect("a free turn");
        let second = gate.admit().await.expect("a free turn");
        let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let (gate, tx) = (Arc::clone(&gate), tx.clone());
                tokio::spawn(async move {
                    let turn = gate.admit().await;
                    let _ = tx.send((i, turn.is_ok()));
                    // Hold the turn until the test ends.
                    std::future::pending::<()>().await;
                })
            })
            .collect();
        settle().await;
        assert_eq!(gate.admitted(), 5, "two at work, three waiting");
        assert!(done.try_recv().is_err(), "the waiters wait");
        assert_eq!(gate.admit().await.err(), Some(Refused::Busy), "queue full");

        drop(first);
        settle().await;
        assert!(
            matches!(done.try_recv(), Ok((_, true))),
            "one waiter got the turn"
        );
        assert!(done.try_recv().is_err(), "only one");

        // A waiter that gives up (its client left) frees its place in the queue.
        for w in &waiters {
            w.abort();
        }
        settle().await;
        assert_eq!(gate.admitted(), 1, "only `second` is left");
        drop(second);
        assert_eq!(gate.admitted(), 0);
        let turn = gate.admit().await;
        assert!(turn.is_ok(), "room again");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_gate_refuses_and_says_so_with_retry_after() {
        let gate = Arc::new(Admission::new(1, 1));
        gate.close();
        let refused = gate.admit().await.err();
        assert_eq!(refused, Some(Refused::Closed));
        assert_eq!(gate.admitted(), 0, "a refusal keeps no place");
        let res = Refused::Busy.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_turn_taken_into_the_work_outlives_a_client_that_hung_up() {
        let gate = Arc::new(Admission::new(1, 0));
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let g = Arc::clone(&gate);
        let handler = tokio::spawn(async move {
            let turn = g.admit().await.expect("a free turn");
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let _ = finished.recv();
            })
            .await
        });
        while gate.admitted() == 0 {
            tokio::task::yield_now().await;
        }
        handler.abort(); // the client hung up: the handler's future is dropped
        let _ = handler.await;
        assert_eq!(gate.admitted(), 1, "the work still holds its turn");
        assert_eq!(gate.admit().await.err(), Some(Refused::Busy));
        let _ = finish.send(());
        for _ in 0..1000 {
            if gate.admitted() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(gate.admitted(), 0, "given back when the work ended");
    }
}

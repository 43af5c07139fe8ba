//! A shutdown signal shared by the HTTP server and its long-lived responses: the server stops
//! accepting and winds its connections down, and every live feed (`/events`) ends at once, so
//! an open dashboard never holds a shutdown up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;
use tokio_stream::Stream;

/// A one-way switch, cheap to clone; every clone sees the same state.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    /// A switch that is off.
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }

    /// Turns it on (again is harmless).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Whether it is on.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once it is on (at once if it already is).
    pub async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only returns once the value is true.
        let _ = rx.wait_for(|on| *on).await;
    }

    /// [`Shutdown::triggered`] as an owned future, for streams that outlive the borrow.
    pub async fn triggered_owned(self) {
        self.triggered().await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// `stream`, ending when this switch turns on (or when `stream` itself ends).
    pub fn until<S: Stream + Unpin>(&self, stream: S) -> UntilShutdown<S> {
        UntilShutdown {
            inner: stream,
            stop: Some(Box::pin(self.clone().triggered_owned())),
        }
    }
}

/// A stream cut short by a [`Shutdown`]; see [`Shutdown::until`].
pub struct UntilShutdown<S> {
    inner: S,
    /// `None` once the switch has turned on.
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S: Stream + Unpin> Stream for UntilShutdown<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let Some(stop) = self.stop.as_mut() else {
            return Poll::Ready(None);
        };
        if stop.as_mut().poll(cx).is_ready() {
            self.stop = None;
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_stream_ends_when_the_switch_turns_on_and_every_clone_sees_it() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let mut events = shutdown.until(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        tx.send(1).expect("open");
        assert_eq!(events.next().await, Some(1));
        let clone = shutdown.clone();
        assert!(!clone.is_triggered());
        clone.trigger();
        assert!(shutdown.is_triggered());
        tx.send(2).expect("still open");
        assert_eq!(
            events.next().await,
            None,
            "ended although the source has more"
        );
        assert_eq!(events.next().await, None, "and stays ended");
        shutdown.triggered().await;
    }
}

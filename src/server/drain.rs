//! The drain: how the accept loop tells its connections to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// The accept loop's side of the drain: tells each of its connections to finish, when shutdown
/// begins or when the loop is dropped.
pub(super) struct Drain {
    begun: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
}

/// A connection's side of the drain: `begun` is set before the channel changes, so a connection
/// woken by the change always sees it.
#[derive(Clone)]
pub(super) struct DrainSignal {
    pub(super) begun: Arc<AtomicBool>,
    pub(super) rx: watch::Receiver<bool>,
}

impl Drain {
    pub(super) fn new() -> Self {
        Self {
            begun: Arc::default(),
            tx: watch::Sender::new(false),
        }
    }

    pub(super) fn subscribe(&self) -> DrainSignal {
        DrainSignal {
            begun: self.begun.clone(),
            rx: self.tx.subscribe(),
        }
    }

    pub(super) fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.begin();
    }
}
